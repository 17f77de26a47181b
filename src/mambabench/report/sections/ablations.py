"""Tables 6-10: the ablations of §4.6 (presets ``ablations/table6`` ... ``ablations/table10``, each a
sweep). Runs are placed in rows by the swept config values they carry; ours is the test perplexity
(the paper: Pile validation perplexity at ~350M parameters)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from mambabench.report.paper import PAPER, paper_values
from mambabench.report.runs import Run, latest
from mambabench.report.sections.common import setting
from mambabench.report.table import Cell, Table

METRIC = ("test/perplexity", "val/perplexity")


def _flag(value: object) -> str:
    return str(bool(value)).lower()


def _mixer(run: Run, key: str, default: object = None) -> object:
    return run.config(f"model.mixer.{key}", default)


# table -> (label columns, labels of a paper row, the row key a run belongs to)
ROW_KEYS: dict[str, tuple[list[str], Callable[[str, dict], list[str]], Callable[[Run], str]]] = {
    "table6": (
        ["Arch.", "SSM layer"],
        lambda key, row: [row["arch"], row["layer"]],
        lambda run: f"{run.model_name}/{_mixer(run, 'inner_layer', 's6')}",
    ),
    "table7": (
        ["Selective delta", "Selective B", "Selective C"],
        lambda key, row: key.split("/"),
        lambda run: "/".join(
            _flag(_mixer(run, k, True)) for k in ("selective_delta", "selective_B", "selective_C")
        ),
    ),
    "table8": (
        ["A_n initialisation"],
        lambda key, row: [row["label"]],
        lambda run: str(_mixer(run, "A_init")),
    ),
    "table9": (
        ["Delta projection size", "Params (M, paper)"],
        lambda key, row: [key, str(row["params_m"])],
        lambda run: str(_mixer(run, "dt_rank")),
    ),
    "table10": (
        ["N", "B, C"],
        lambda key, row: [key.split("/")[0], "selective" if key.endswith("true") else "constant"],
        lambda run: f"{_mixer(run, 'd_state')}/{_flag(_mixer(run, 'selective_B', True))}",
    ),
}


def build_table(name: str, runs: list[Run]) -> Table:
    paper = paper_values()[name]
    labels, paper_labels, row_key = ROW_KEYS[name]
    data = sorted({str(r.choices.get("data")) for r in runs}) or ["-"]
    table = Table(
        name,
        f"Table {name.removeprefix('table')}: ablation",
        f"{paper['source']}, {PAPER}",
        setting(runs) + f"; metric {METRIC[0]} on data={','.join(data)}",
        labels,
        ["Perplexity"],
        digits=2,
    )
    for key, row in paper["rows"].items():
        run = latest(r for r in runs if row_key(r) == key)
        ours = run.metric(*METRIC) if run else None
        table.add(
            paper_labels(key, row), [Cell(ours, row["value"], run.run_dir if ours is not None else None)]
        )
    return table


def render(runs: list[Run], out_dir: Path) -> list[Path]:
    outputs = []
    for name in ROW_KEYS:
        preset = f"ablations/{name}"
        mine = [r for r in runs if r.experiment == preset or (r.experiment or "").startswith(preset + "/")]
        outputs += build_table(name, mine).write(out_dir)
    return outputs
