"""Table 11 / the Table 2 figure: induction-heads accuracy vs test length, trained at one length
(preset ``induction_heads/<scale>``, one run per model; runs are told apart by their model config)."""

from __future__ import annotations

import re
from pathlib import Path

from mambabench.report.figure import Series, line_figure
from mambabench.report.paper import PAPER, paper_number, paper_values
from mambabench.report.runs import Run, latest
from mambabench.report.sections.common import by_scale, file_name, percent, setting
from mambabench.report.table import NOT_APPLICABLE, OUT_OF_MEMORY, Cell, Table

TOPIC = "induction_heads"
LENGTH_METRIC = re.compile(r"^(test|val)/L(\d+)/accuracy$")


def accuracy_by_length(run: Run) -> dict[int, float | str]:
    """{test length: accuracy in %, "oom" or "n/a" (past the learned positions)}; test metrics win over
    validation ones."""
    found: dict[int, float | str] = {}
    for stage in ("val", "test"):
        for key, value in run.metrics.items():
            match = LENGTH_METRIC.match(key)
            if match and match.group(1) == stage:
                found[int(match.group(2))] = percent(float(value))
    for length in run.out_of_memory_lengths:
        found.setdefault(length, OUT_OF_MEMORY)
    for length in run.beyond_positions_lengths:
        found.setdefault(length, NOT_APPLICABLE)
    return found


def _models(runs: list[Run]) -> list[str]:
    paper_rows = list(paper_values()["table11"]["rows"])
    ours = {r.model_name for r in runs if r.model_name}
    return paper_rows + sorted(ours - set(paper_rows))


def render_scale(runs: list[Run], scale: str, out_dir: Path) -> list[Path]:
    paper = paper_values()["table11"]
    paper_lengths = paper["lengths"]
    per_model = {m: latest(r for r in runs if r.model_name == m) for m in _models(runs)}
    measured = {m: accuracy_by_length(r) for m, r in per_model.items() if r}
    lengths = sorted(set(paper_lengths) | {n for acc in measured.values() for n in acc})
    train_length = next((r.config("data.train_seq_len") for r in per_model.values() if r), None)
    train_length = train_length or paper["train_length"]
    table = Table(
        file_name("induction_heads", scale),
        f"Table 11: induction heads ({scale or 'no runs'})",
        f"{paper['source']}, {PAPER}",
        setting([r for r in per_model.values() if r]) + f"; trained at length {train_length}",
        ["Model"],
        ["Params"] + [f"2^{n.bit_length() - 1}" if n & (n - 1) == 0 else str(n) for n in lengths],
    )
    series = []
    notes = [f"paper: {paper['source']}"]
    for model, run in per_model.items():
        row = paper["rows"].get(model, {})
        paper_by_length = dict(zip(paper_lengths, row.get("values", []), strict=False))
        acc = measured.get(model, {})
        cells = [
            Cell(acc.get(n), paper_number(paper_by_length.get(n)), run.run_dir if run and n in acc else None)
            for n in lengths
        ]
        # our count only from a run (a missing run is missing, never the paper's number)
        params = run.summary.get("params", {}).get("total") if run else None
        size = Cell(f"{params:,}" if params else None, row.get("params"), run.run_dir if params else None)
        table.add([row.get("label", model)], [size, *cells])
        color = len(table.rows) - 1
        beyond = [n for n, v in acc.items() if v == NOT_APPLICABLE]
        if beyond:
            notes.append(f"{row.get('label', model)}: no learned positions from {min(beyond)} on")
        if acc:
            series.append(
                Series(
                    f"{row.get('label', model)} (ours)",
                    [(n, v) for n, v in acc.items() if not isinstance(v, str)],
                    oom=[n for n, v in acc.items() if v == OUT_OF_MEMORY],
                    color=color,
                )
            )
            paper_points = [(n, float(v)) for n, v in paper_by_length.items() if not isinstance(v, str)]
            if paper_points:
                series.append(
                    Series(f"{row.get('label', model)} (paper)", paper_points, dashed=True, color=color)
                )
    outputs = table.write(out_dir)
    if series:
        outputs += line_figure(
            out_dir / file_name("induction_heads", scale),
            series,
            title=f"Induction heads: accuracy vs test length ({scale})",
            xlabel="test length",
            ylabel="accuracy (%)",
            logx=2,
            vline=(train_length, "training length"),
            hline=(100.0 / 16, "random"),
            note="; ".join(notes),
        )
    return outputs


def render(runs: list[Run], out_dir: Path) -> list[Path]:
    return [p for scale, group in by_scale(runs, TOPIC).items() for p in render_scale(group, scale, out_dir)]
