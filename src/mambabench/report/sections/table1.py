"""Table 1: Selective Copying accuracy by architecture x inner layer (preset ``ablations/table1/<scale>``)."""

from __future__ import annotations

from pathlib import Path

from mambabench.report.paper import PAPER, paper_values
from mambabench.report.runs import Run, latest
from mambabench.report.sections.common import by_scale, file_name, percent, setting
from mambabench.report.table import Cell, Table

TOPIC = "ablations/table1"
METRIC = ("test/accuracy", "val/accuracy")


def build_table(runs: list[Run], scale: str) -> Table:
    paper = paper_values()["table1"]
    table = Table(
        file_name("table1", scale),
        f"Table 1: Selective Copying ({scale or 'no runs'})",
        f"{paper['source']}, {PAPER}",
        setting(runs) + f"; metric {METRIC[0]}",
        ["Model", "Arch.", "Layer"],
        ["Accuracy (%)"],
    )
    for key, row in paper["rows"].items():
        run = latest(r for r in runs if r.model_name == key)
        ours = percent(run.metric(*METRIC)) if run else None
        table.add(
            [row["model"], row["arch"], row["layer"]],
            [Cell(ours, row["value"], run.run_dir if run and ours is not None else None)],
        )
    return table


def render(runs: list[Run], out_dir: Path) -> list[Path]:
    return [
        p for scale, group in by_scale(runs, TOPIC).items() for p in build_table(group, scale).write(out_dir)
    ]
