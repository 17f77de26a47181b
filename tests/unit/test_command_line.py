"""Pieces of the command-line layer without starting an entry point: value types against type hints,
where a misplaced key lives, progress-line formatting, the table of a multirun."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import pytest
import yaml
from omegaconf import OmegaConf

from mambabench.utils.errors import ConfigError
from mambabench.utils.multirun import runs_table, write_runs_table
from mambabench.utils.overrides import check_override_types, describe, fits, where_is
from mambabench.utils.progress import format_duration, format_metrics


@pytest.mark.parametrize(
    ("value", "hint", "ok"),
    [
        (3, int, True),
        ("3", int, False),
        (True, int, False),
        (2, float, True),
        ("x", float, False),
        (None, int, True),
        ("auto", int | str, True),
        ("bf17", Literal["bf16-mixed", "32-true"] | None, False),
        ("32-true", Literal["bf16-mixed", "32-true"], True),
        ([1, 2], list[int], True),
        (1, list[int], False),
        (True, bool, True),
        ("yes", bool, False),
    ],
)
def test_fits(value: object, hint: object, ok: bool) -> None:
    assert fits(value, hint) is ok


def test_describe_says_what_is_expected() -> None:
    assert describe(int | None) == "an integer"
    assert describe(Literal["a", "b"] | Literal[1] | None) == "one of 'a', 'b', 1"
    assert describe(float | str) == "a number or a string"


def test_override_types_against_the_target_and_the_defaults() -> None:
    cfg = OmegaConf.create(
        {"trainer": {"_target_": "lightning.pytorch.Trainer", "max_steps": "ten"}, "seed": "x"}
    )
    with pytest.raises(
        ConfigError, match=r"^trainer.max_steps=ten does not fit: max_steps of Trainer takes an integer$"
    ):
        check_override_types(cfg, ["trainer.max_steps=ten"])
    with pytest.raises(ConfigError, match=r"^seed=x does not fit: seed \(default 1\) takes a number$"):
        check_override_types(cfg, ["seed=x"], defaults=OmegaConf.create({"seed": 1}))
    check_override_types(cfg, ["model=hyena", "+model/size=x", "~seed"])  # group choices are not values


def test_where_is_finds_the_place_or_the_closest_name() -> None:
    cfg = OmegaConf.create({"model": {"d_model": 64, "mixer": {"d_state": 16, "_target_": "x"}}, "seed": 1})
    assert where_is("d_state", cfg) == (["model.mixer.d_state"], [])
    assert where_is("model.d_modle", cfg) == ([], ["model.d_model"])
    assert where_is("model.mixer.target", cfg)[1] == []  # private keys are never proposed


def test_progress_formatting() -> None:
    assert [format_duration(s) for s in (5, 75, 3725, float("nan"))] == ["0:05", "1:15", "1:02:05", "?"]
    assert (
        format_metrics({"train/accuracy_chimpanzee": 0.123456, "x": "n/a"})
        == "train/accuracy_chimpanzee 0.1235 | x n/a"
    )


def _job(sweep: Path, name: str, overrides: list[str], metrics: dict[str, float] | None) -> None:
    (sweep / name / ".hydra").mkdir(parents=True)
    (sweep / name / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    if metrics is not None:
        (sweep / name / "summary.json").write_text(
            json.dumps({"metrics": metrics, "global_step": 5, "wall_time_s": 1.5})
        )


def test_multirun_table_lists_each_run_by_what_differs(tmp_path: Path) -> None:
    _job(tmp_path, "0_model.d_model:8", ["model.d_model=8", "seed=1"], {"val/loss": 2.0, "train/loss": 9.0})
    _job(
        tmp_path,
        "1_model.d_model:16",
        ["model.d_model=16", "seed=1"],
        {"val/loss": 1.5, "test/accuracy": 0.5},
    )
    _job(tmp_path, "10_model.d_model:32", ["model.d_model=32", "seed=1"], None)
    header, rows, shared = runs_table(tmp_path)
    assert header == ["run", "overrides", "test/accuracy", "val/loss", "steps", "wall_time_s", "status"]
    assert [r[:4] for r in rows] == [
        ["0", "model.d_model=8", "", "2.0000"],
        ["1", "model.d_model=16", "0.5000", "1.5000"],
        ["10", "model.d_model=32", "", ""],
    ]
    assert rows[2][-1].startswith("no summary.json") and shared == ["seed=1"]
    markdown = write_runs_table(tmp_path)
    assert markdown is not None and "Overrides of every run: `seed=1`" in markdown.read_text()
    assert (tmp_path / "runs.csv").read_text().splitlines()[1].startswith("0,model.d_model=8,")
