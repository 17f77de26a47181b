"""DNA (§4.3): Figure 5 left (perplexity vs parameters, preset ``dna/model_size/<scale>``), Figure 5 right
(perplexity vs context length, ``dna/context_length/<scale>``) and Table 13 (great apes accuracy vs
context length, ``dna/great_apes/<scale>``). One line / row per model config."""

from __future__ import annotations

from pathlib import Path

from mambabench.report.figure import Series, line_figure
from mambabench.report.paper import PAPER, paper_values
from mambabench.report.runs import Run, latest
from mambabench.report.sections.common import by_scale, file_name, percent, setting
from mambabench.report.table import Cell, Table

PERPLEXITY = ("test/perplexity", "val/perplexity")
ACCURACY = ("test/accuracy", "val/accuracy")


def _length(run: Run) -> int | None:
    value = run.config("data.seq_len") or run.config("data.train_seq_len")
    return int(value) if value else None


def _curves(runs: list[Run], x_of, metric: tuple[str, ...]) -> list[Series]:
    lines: dict[str, list[tuple[float, float]]] = {}
    for run in runs:
        x, y = x_of(run), run.metric(*metric)
        if x is not None and y is not None:
            lines.setdefault(run.model_name or "?", []).append((float(x), y))
    return [Series(model, points) for model, points in sorted(lines.items())]


def render(runs: list[Run], out_dir: Path) -> list[Path]:
    figures = paper_values()["figures"]
    outputs: list[Path] = []
    for scale, group in by_scale(runs, "dna/model_size").items():
        series = _curves(group, lambda r: (r.summary.get("params") or {}).get("total"), PERPLEXITY)
        if series:
            outputs += line_figure(
                out_dir / file_name("figure5_model_size", scale),
                series,
                title=f"HG38: perplexity vs model size ({scale})",
                xlabel="parameters",
                ylabel="test perplexity",
                logx=10,
                note=f"paper: {figures['figure5']} ({PAPER}); {setting(group)}",
            )
    for scale, group in by_scale(runs, "dna/context_length").items():
        series = _curves(group, _length, PERPLEXITY)
        if series:
            outputs += line_figure(
                out_dir / file_name("figure5_context_length", scale),
                series,
                title=f"HG38: perplexity vs context length ({scale})",
                xlabel="sequence length",
                ylabel="test perplexity",
                logx=2,
                note=f"paper: {figures['figure5']} ({PAPER}); {setting(group)}",
            )
    paper = paper_values()["table13"]
    for scale, group in by_scale(runs, "dna/great_apes").items():
        lengths = sorted(set(paper["lengths"]) | {n for r in group if (n := _length(r))})
        table = Table(
            file_name("table13", scale),
            f"Table 13: great apes classification ({scale or 'no runs'})",
            f"{paper['source']}, {PAPER}",
            setting(group) + f"; metric {ACCURACY[0]}",
            ["Model"],
            [f"2^{n.bit_length() - 1}" if n & (n - 1) == 0 else str(n) for n in lengths],
            digits=2,
        )
        models = sorted({r.model_name or "?" for r in group})
        for row in paper["rows"].values():
            table.add(
                [f"{row['label']} (paper)"],
                [Cell("-", dict(zip(paper["lengths"], row["values"], strict=True)).get(n)) for n in lengths],
            )
        for model in models:
            cells = []
            for n in lengths:
                run = latest(r for r in group if r.model_name == model and _length(r) == n)
                ours = percent(run.metric(*ACCURACY)) if run else None
                cells.append(Cell(ours, None, run.run_dir if ours is not None else None))
            table.add([f"{model} (ours)"], cells)
        outputs += table.write(out_dir)
    return outputs
