"""Figure 8 (left: scan time vs sequence length; right: generation throughput vs batch) and Table 15
(training memory vs batch) from the benchmark CSVs (see :mod:`mambabench.report.bench_csv`).

The paper gives Figure 8 as plots only, so its cells have no paper value; Table 15's paper values come
from ``paper_values.yaml``. A setting without a measurement is *missing*; ``oom`` marks one that ran out
of memory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mambabench.report.bench_csv import number, read_rows
from mambabench.report.figure import Series, line_figure
from mambabench.report.paper import PAPER, paper_values
from mambabench.report.table import OUT_OF_MEMORY, Cell, Table

SCAN_LENGTHS = [2**k for k in range(9, 20)]  # Figure 8 left: 2^9..2^19
GENERATE_BATCHES = [1, 2, 4, 8, 16, 32, 64, 128]  # Figure 8 right
MEMORY_SEQLEN = 2048  # Table 15


def _power(n: int) -> str:
    return f"2^{n.bit_length() - 1}" if n > 0 and n & (n - 1) == 0 else str(n)


def _devices(rows: list[dict[str, str]]) -> str:
    names = sorted({r.get("device", "") for r in rows if r.get("device")})
    return ", ".join(names) or "device not recorded"


def _int(text: str | None) -> int | None:
    try:
        return int(float(text)) if text not in (None, "") else None
    except ValueError:
        return None


def _series(label: str, values: dict[int, float | str], color: int, dashed: bool = False) -> Series:
    return Series(
        label,
        [(x, v) for x, v in values.items() if not isinstance(v, str)],
        oom=[x for x, v in values.items() if v == OUT_OF_MEMORY],
        dashed=dashed,
        color=color,
    )


def scan_speed(files: list[Path], out_dir: Path) -> list[Path]:
    """Figure 8 (left): ms per call by implementation and length (bench_scan.py's ``fig8`` rows)."""
    rows = read_rows(files)
    devices = _devices([r for r in rows if r.get("section") == "env"])
    rows = [r for r in rows if r.get("section") == "fig8" and _int(r.get("seqlen"))]
    if not rows:
        return []
    measured: dict[str, dict[int, float | str]] = {}
    sources: dict[str, Path] = {}
    for row in rows:  # oldest file first: a newer measurement of a cell wins
        value = number(row.get("ms"))
        if value is not None:
            measured.setdefault(row["impl"], {})[_int(row["seqlen"])] = value
            sources[row["impl"]] = Path(row["source"]).parent
    lengths = sorted(set(SCAN_LENGTHS) | {n for v in measured.values() for n in v})
    table = Table(
        "figure8_scan",
        "Figure 8 (left): scan, convolution and attention time (ms)",
        f"{paper_values()['figures']['figure8']}, {PAPER}",
        f"`scripts/bench_scan.py` section fig8: batch 1, bf16, scan dim 4096 (N=16) vs causal attention "
        f"16 x 128; {devices}",
        ["Implementation"],
        [_power(n) for n in lengths],
        digits=3,
    )
    return _write_rows_and_figure(
        table,
        measured,
        sources,
        lengths,
        out_dir / "figure8_scan",
        title="Figure 8 (left): time vs sequence length, batch 1",
        xlabel="sequence length",
        ylabel="time (ms)",
        logx=2,
        logy=True,
        note=f"ours on {devices}; the paper's Figure 8 is a plot only (A100 80GB PCIe)",
    )


def generation_throughput(files: list[Path], out_dir: Path) -> list[Path]:
    """Figure 8 (right): generated tokens per second by model and batch (bench_generate.csv)."""
    rows = [r for r in read_rows(files) if _int(r.get("batch"))]
    if not rows:
        return []
    measured: dict[str, dict[int, float | str]] = {}
    sources: dict[str, Path] = {}
    for row in rows:
        name = f"{row.get('model', '?')} ({row.get('impl', '?')})"
        value = number(row.get("tokens_per_s"))
        if value is None and number(row.get("seconds")) == OUT_OF_MEMORY:
            value = OUT_OF_MEMORY
        if value is not None:
            measured.setdefault(name, {})[_int(row["batch"])] = value
            sources[name] = Path(row["source"]).parent
    prompts = sorted({f"prompt {r.get('prompt_len')} + {r.get('gen_len')} generated" for r in rows})
    batches = sorted(set(GENERATE_BATCHES) | {n for v in measured.values() for n in v})
    table = Table(
        "figure8_generation",
        "Figure 8 (right): generation throughput (tokens/s)",
        f"{paper_values()['figures']['figure8']}, {PAPER}",
        f"`bench_generate.csv`: {'; '.join(prompts)}; {_devices(rows)}",
        ["Model (implementation)"],
        [f"batch {n}" for n in batches],
        digits=0,
    )
    return _write_rows_and_figure(
        table,
        measured,
        sources,
        batches,
        out_dir / "figure8_generation",
        title="Figure 8 (right): generation throughput vs batch",
        xlabel="batch size",
        ylabel="tokens / s",
        logx=2,
        logy=True,
        note=f"ours on {_devices(rows)}; the paper gives bars only (A100 80GB PCIe)",
    )


def _write_rows_and_figure(
    table: Table,
    measured: dict[str, dict[int, float | str]],
    sources: dict[str, Path],
    xs: list[int],
    figure_path: Path,
    **figure: Any,
) -> list[Path]:
    """One table row and one figure line per measured series (values by x); writes both."""
    series = []
    for index, (name, values) in enumerate(measured.items()):
        table.add([name], [Cell(values.get(x), None, sources.get(name) if x in values else None) for x in xs])
        series.append(_series(name, values, index))
    return table.write(figure_path.parent) + line_figure(figure_path, series, **figure)


def _column(model: str, prefixes: list[str]) -> int | None:
    """Which Table 15 column a benchmarked model fills: the first whose model-name prefix it has."""
    return next((i for i, prefix in enumerate(prefixes) if model.lower().startswith(prefix)), None)


def training_memory(files: list[Path], out_dir: Path) -> list[Path]:
    """Table 15: peak training memory (GB) by batch, ours beside the paper's (bench_memory.csv);
    written with every cell missing when there is no measurement yet."""
    paper = paper_values()["table15"]
    labels, prefixes = paper["labels"], paper["models"]
    rows = [r for r in read_rows(files) if _int(r.get("batch"))]
    extra = sorted({r["model"] for r in rows if _column(r.get("model", ""), prefixes) is None})
    measured: dict[tuple[int, int], dict[int, tuple[float | str, Path]]] = {}
    for row in rows:
        column = _column(row.get("model", ""), prefixes)
        column = len(prefixes) + extra.index(row["model"]) if column is None else column
        value = number(row.get("peak_mem_gb"))
        if value is not None:
            key = (_int(row.get("seqlen")) or MEMORY_SEQLEN, _int(row["batch"]))
            measured.setdefault(key, {})[column] = (value, Path(row["source"]).parent)
    keys = sorted(set(measured) | {(MEMORY_SEQLEN, int(b)) for b in paper["rows"]})
    table = Table(
        "table15_memory",
        "Table 15: training memory (GB)",
        f"{paper['source']}, {PAPER}",
        f"`bench_memory.csv`: peak GPU memory of a training step; {_devices(rows) if rows else 'no measurements yet'}",
        ["Seq. length", "Batch"],
        list(labels) + extra,
    )
    for seqlen, batch in keys:
        paper_row = paper["rows"].get(str(batch), {}).get("values", []) if seqlen == MEMORY_SEQLEN else []
        cells = []
        for column in range(len(labels) + len(extra)):
            value, source = measured.get((seqlen, batch), {}).get(column, (None, None))
            cells.append(Cell(value, paper_row[column] if column < len(paper_row) else None, source))
        table.add([str(seqlen), str(batch)], cells)
    outputs = table.write(out_dir)
    series = []
    for column, label in enumerate(list(labels) + extra):
        ours = {b: v[column][0] for (s, b), v in measured.items() if s == MEMORY_SEQLEN and column in v}
        if ours:
            series.append(_series(f"{label} (ours)", ours, column))
        if column < len(labels):
            points = {int(b): row["values"][column] for b, row in paper["rows"].items()}
            series.append(_series(f"{label} (paper)", points, column, dashed=True))
    outputs += line_figure(
        out_dir / "table15_memory",
        series,
        title=f"Table 15: training memory vs batch (sequence length {MEMORY_SEQLEN})",
        xlabel="batch size",
        ylabel="peak memory (GB)",
        logx=2,
        note=f"paper: {paper['source']}",
    )
    return outputs


def render(bench: dict[str, list[Path]], out_dir: Path) -> list[Path]:
    """Every speed and memory table and figure that the found CSVs allow (Table 15 always)."""
    return (
        scan_speed(bench.get("scan", []), out_dir)
        + generation_throughput(bench.get("generate", []), out_dir)
        + training_memory(bench.get("memory", []), out_dir)
    )
