"""Audio (§4.4): Figure 7 (YouTubeMix bits per sample vs sequence length, presets
``audio/youtubemix/<scale>``) and Table 4 (SC09 NLL and sample metrics, ``audio/sc09/<scale>``)."""

from __future__ import annotations

from pathlib import Path

from mambabench.report.figure import Series, line_figure
from mambabench.report.paper import PAPER, paper_values
from mambabench.report.runs import Run, latest
from mambabench.report.sections.common import by_scale, file_name, setting
from mambabench.report.table import Cell, Table

BITS = ("test/bits_per_byte", "test/bits_per_token", "val/bits_per_byte", "val/bits_per_token")
# Table 4 column -> metric names a run may carry (NLL is the test loss in nats, as SaShiMi reports it)
SC09_METRICS = {
    "nll": ("test/loss",),
    "fid": ("test/fid", "sc09/fid"),
    "is": ("test/is", "sc09/is"),
    "mis": ("test/mis", "sc09/mis"),
    "am": ("test/am", "sc09/am"),
}


def render(runs: list[Run], out_dir: Path) -> list[Path]:
    outputs: list[Path] = []
    for scale, group in by_scale(runs, "audio/youtubemix").items():
        lines: dict[str, list[tuple[float, float]]] = {}
        for run in group:
            length, bits = run.config("data.seq_len"), run.metric(*BITS)
            if length and bits is not None:
                lines.setdefault(run.model_name or "?", []).append((float(length), bits))
        if lines:
            outputs += line_figure(
                out_dir / file_name("figure7", scale),
                [Series(m, pts) for m, pts in sorted(lines.items())],
                title=f"YouTubeMix: bits per sample vs length ({scale})",
                xlabel="sequence length",
                ylabel="test bits per sample",
                logx=2,
                note=f"paper: {paper_values()['figures']['figure7']} ({PAPER}); {setting(group)}",
            )
    paper = paper_values()["table4"]
    for scale, group in by_scale(runs, "audio/sc09").items():
        columns = paper["columns"]
        table = Table(
            file_name("table4", scale),
            f"Table 4: SC09 ({scale or 'no runs'})",
            f"{paper['source']}, {PAPER}",
            setting(group),
            ["Model", "Params"],
            [c.upper() if c != "mis" else "mIS" for c in columns],
            digits=3,
        )
        for label, row in paper["rows"].items():
            table.add([f"{label} (paper)", str(row["params"])], [Cell("-", v) for v in row["values"]])
        for model in sorted({r.model_name or "?" for r in group}):
            run = latest(r for r in group if r.model_name == model)
            params = (run.summary.get("params") or {}).get("total")
            cells = [
                Cell(v := run.metric(*SC09_METRICS[c]), None, run.run_dir if v is not None else None)
                for c in columns
            ]
            table.add([f"{model} (ours)", f"{params / 1e6:.1f}M" if params else "-"], cells)
        outputs += table.write(out_dir)
    return outputs
