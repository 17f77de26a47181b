"""What a user reads when stdout is a file or a pipe (SLURM, ``| tee``): a short multirun, then eval and
generate on one of its checkpoints, each run as a user runs it, with its output captured (not a TTY)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from mambabench.utils.run import train
from tests.conftest import ROOT

TINY = [
    "data.seq_len=32",
    "data.num_tokens_memorize=4",
    "data.batch_size=4",
    "data.num_val_samples=8",
    "data.num_test_samples=8",
    "model.n_layer=1",
    "trainer.max_steps=3",
    "trainer.val_check_interval=3",
    "callbacks.progress_bar.min_interval_s=0",
]
NOISE = (
    "Traceback",
    "LeafSpec",
    "is deprecated",
    "Tip:",
    "litlogger",
    "Be aware that when using `ckpt_path`",
    "no best checkpoint",
)


def _run(args: list[str], root: Path) -> str:
    """stdout + stderr of ``python <args>`` in a pipe, 80 columns declared as on a batch node."""
    env = {**os.environ, "PROJECT_ROOT": str(root), "COLUMNS": "80"}
    proc = subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    return output


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    root = tmp_path_factory.mktemp("user")
    output = _run(["src/train.py", "-m", "model.d_model=8,16", *TINY], root)
    return output, root


def test_printed_paths_are_whole(sweep: tuple[str, Path]) -> None:
    output, root = sweep
    paths = [p.rstrip(".,;:)") for p in re.findall(re.escape(str(root)) + r"\S*", output)]
    assert len(paths) >= 4
    for path in paths:
        assert Path(path).exists(), f"printed path split or wrong: {path!r}"
    assert re.search(r"^wall time .* run directory: \S+/1_\S*model\.d_model:16\S*$", output, flags=re.M)


def test_progress_is_plain_lines_with_rate_eta_and_full_metric_names(sweep: tuple[str, Path]) -> None:
    output, _ = sweep
    steps = re.findall(
        r"^step (\d)/3 \(\d+%\) \| [\d.]+ steps/s \| elapsed \d+:\d\d \| ETA \d+:\d\d \| "
        r"train/loss [\d.]+ \| train/accuracy [\d.]+$",
        output,
        flags=re.M,
    )
    assert steps.count("3") == 2 and steps.count("1") == 2, output[-3000:]
    assert re.search(r"^validation at step 3: val/accuracy [\d.]+ \| val/bits_per_token", output, flags=re.M)
    assert "…" not in output and "\r" not in output and "\x1b[" not in output
    for noise in NOISE:
        assert noise not in output


def test_multirun_ends_with_one_table_of_its_runs(sweep: tuple[str, Path]) -> None:
    output, root = sweep
    (sweep_dir,) = (root / "outputs" / "train" / "multiruns").iterdir()
    table = (sweep_dir / "runs.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| ") and "model.d_model=" in line]
    assert [row.split(" | ")[1] for row in rows] == ["model.d_model=8", "model.d_model=16"]
    assert "val/loss" in table and "test/accuracy" in table and "trainer.max_steps=3" in table
    assert (sweep_dir / "runs.csv").read_text().startswith("run,overrides,")
    assert "2 runs" in output and str(sweep_dir / "runs.md") in output


def test_every_run_file_has_content(sweep: tuple[str, Path]) -> None:
    _, root = sweep
    for run in (root / "outputs" / "train" / "multiruns").glob("*/[0-9]_*"):
        log = (run / "train.log").read_text()
        assert "step 3/3" in log and "final metrics: " in log and "resolved config:" in log
        for path in run.rglob("*"):
            assert not path.is_file() or path.stat().st_size > 0, f"empty file {path}"


def test_eval_and_generate_read_well(sweep: tuple[str, Path]) -> None:
    _, root = sweep
    (ckpt,) = (root / "outputs" / "train" / "multiruns").glob("*/0_*/checkpoints/last.ckpt")
    evaluated = _run(["src/eval.py", f"ckpt_path={ckpt}"], root)
    assert "test/accuracy" in evaluated and "final metrics" in evaluated
    for noise in NOISE:
        assert noise not in evaluated
    generated = _run(
        [
            "src/generate.py",
            f"ckpt_path={ckpt}",
            "num_samples=1",
            "prompt_len=6",
            "max_new_tokens=4",
            "show_ids=true",
        ],
        root,
    )
    assert re.search(r"^  prompt +\(6 tokens\): (\S+ ){5}\S+$", generated, flags=re.M), generated
    assert re.search(r"^  continuation \(4 tokens\): (\S+ ){3}\S+$", generated, flags=re.M), generated
    assert re.search(r"^  continuation ids: (\d+ ){3}\d+$", generated, flags=re.M), generated


def test_fast_dev_run_tests_without_warning(make_config) -> None:
    """``debug=fdr`` saves no checkpoint on purpose: testing the current weights is not worth a warning."""
    cfg = make_config(["debug=fdr", *TINY[:6], "model.d_model=8"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        metrics = train(cfg)
    assert "test/loss" in metrics
    assert not [w for w in caught if "no best checkpoint" in str(w.message)]
