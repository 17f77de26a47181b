"""A run killed with SIGKILL mid-epoch, then started again with the same command, ends with the same
weights as an uninterrupted run; SIGTERM saves and stops; damaged checkpoints are skipped on resume."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from mambabench.utils.run import train
from tests.conftest import ROOT, checkpoint_weights
from tests.faults.helpers import TINY

# 5 batches per epoch: the kill at step >= 4 is mid-epoch and the resumed run crosses an epoch boundary
RUN = [
    *TINY,
    "data.train_batches_per_epoch=5",
    "trainer.max_steps=12",
    "test=false",
    "callbacks.periodic_checkpoint.every_n_train_steps=2",
    "callbacks.progress_bar=null",
]


def _command(run_dir: Path) -> list[str]:
    slow = [
        "+callbacks.slow._target_=tests.faults.helpers.SlowDown",
        "+callbacks.slow.seconds=0.4",
        "+callbacks.slow.after_step=4",
    ]
    return [
        sys.executable,
        str(ROOT / "src" / "train.py"),
        *RUN,
        *slow,
        f"run_dir={run_dir}",
        "print_config=false",
    ]


def _env() -> dict[str, str]:
    return {**os.environ, "PROJECT_ROOT": str(ROOT), "PYTHONPATH": str(ROOT), "WANDB_MODE": "offline"}


def test_kill_9_mid_epoch_then_same_command_resumes_bit_for_bit(make_config, tmp_path) -> None:
    run_dir = tmp_path / "killed"
    proc = subprocess.Popen(
        _command(run_dir), cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    target = run_dir / "checkpoints" / "periodic-step0000004.ckpt"
    deadline = time.time() + 300
    while not target.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert target.exists(), (
        f"no step-4 checkpoint appeared; stderr: {proc.stderr.read()[-2000:] if proc.poll() is not None else ''}"
    )
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    killed_at = max(
        torch.load(p, map_location="cpu", weights_only=False, mmap=True)["global_step"]
        for p in (run_dir / "checkpoints").glob("*.ckpt")
    )
    assert 4 <= killed_at < 12

    again = subprocess.run(
        _command(run_dir), cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=600
    )
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resuming the run in" in again.stderr + again.stdout

    straight = make_config(RUN, subdir="straight")
    train(straight)
    a = checkpoint_weights(Path(straight.paths.output_dir) / "checkpoints" / "last.ckpt")
    b_ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert b_ckpt["global_step"] == 12
    b = b_ckpt["state_dict"]
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)
    # the validations of the resumed run are those of the uninterrupted run (rows the killed process had
    # flushed to metrics.csv before the checkpoint step are kept too)
    resumed_curve, straight_curve = _val_curve(run_dir), dict(_val_curve(Path(straight.paths.output_dir)))
    assert len(straight_curve) == 4 and resumed_curve and resumed_curve[-1][0] == max(straight_curve)
    for step, loss in resumed_curve:
        assert straight_curve[step] == loss, step


def _val_curve(run: Path) -> list[tuple[int, float]]:
    with open(run / "csv" / "metrics.csv", newline="") as handle:
        return [
            (int(row["step"]), float(row["val/loss"]))
            for row in csv.DictReader(handle)
            if row.get("val/loss")
        ]


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGUSR1"])
def test_preemption_signal_saves_last_checkpoint_and_stops(make_config, signame) -> None:
    cfg = make_config(
        [
            *RUN,
            "+callbacks.term._target_=tests.faults.helpers.SendSignal",
            f"+callbacks.term.signame={signame}",
            "+callbacks.term.at_step=5",
        ]
    )
    train(cfg)
    last = torch.load(
        Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False
    )
    assert last["global_step"] == 6  # the step in flight finished, then it saved and stopped
    assert not (Path(cfg.paths.output_dir) / "summary.json").exists()


def test_resume_skips_a_truncated_checkpoint(make_config, tmp_path) -> None:
    run_dir = tmp_path / "run"
    cfg = make_config([*RUN, "trainer.max_steps=4", f"run_dir={run_dir}"])
    train(cfg)
    newest = run_dir / "checkpoints" / "periodic-step0000004.ckpt"
    assert newest.exists()
    for other in ("last.ckpt", "step0000003.ckpt"):
        (run_dir / "checkpoints" / other).unlink(missing_ok=True)
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])  # a half-written file
    again = make_config([*RUN, "trainer.max_steps=6", f"run_dir={run_dir}"], subdir="ignored")
    import pytest

    with pytest.warns(UserWarning, match="periodic-step0000004.ckpt' is truncated or corrupt"):
        train(again)
    # it fell back to the step-2 checkpoint and trained on to 6
    assert (
        torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)[
            "global_step"
        ]
        == 6
    )
