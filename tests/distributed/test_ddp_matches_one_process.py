"""Two DDP processes (gloo on CPU) train exactly like one process at the same global batch: each rank
draws its own samples, gradients are averaged, evaluation metrics are reduced across ranks."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mambabench.utils.run import train
from tests.conftest import ROOT, checkpoint_weights
from tests.faults.helpers import TINY

# global batch 8: one process takes 2 micro-batches of 4 (accumulation), two processes 1 each
COMMON = [
    *TINY,
    "global_batch_size=8",
    "data.batch_size=4",
    "trainer.max_steps=4",
    "trainer.val_check_interval=2",
    "test=false",
    "callbacks.progress_bar=null",
]


def _val_losses(run: Path) -> list[float]:
    with open(run / "csv" / "metrics.csv") as handle:
        return [float(row["val/loss"]) for row in csv.DictReader(handle) if row.get("val/loss")]


def _assert_same_training(one: Path, two: Path) -> None:
    a, b = (
        checkpoint_weights(one / "checkpoints" / "last.ckpt"),
        checkpoint_weights(two / "checkpoints" / "last.ckpt"),
    )
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-6, msg=key)
    first, second = _val_losses(one), _val_losses(two)
    assert len(first) == len(second) == 2, (first, second)  # validation every 2 optimizer steps in both
    assert first == pytest.approx(second, rel=1e-5)


@pytest.mark.parametrize("model", ["mamba", "transformerpp"])
def test_two_processes_train_like_one(make_config, model) -> None:
    one = make_config([*COMMON, f"model={model}"], subdir="one")
    train(one)
    # ddp_fork: the same DDP strategy as trainer=ddp_cpu, launched by forking this process (no re-import)
    two = make_config(
        [*COMMON, f"model={model}", "trainer=ddp_cpu", "trainer.strategy=ddp_fork"], subdir="two"
    )
    train(two)
    _assert_same_training(Path(one.paths.output_dir), Path(two.paths.output_dir))
    start = torch.load(
        Path(one.paths.output_dir) / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False
    )["global_step"]
    assert start == 4


@pytest.mark.slow
def test_command_line_ddp_cpu_matches_one_process(make_config, tmp_path) -> None:
    """``python src/train.py trainer=ddp_cpu``: Lightning launches the second rank as a new process."""
    one = make_config([*COMMON, "cpu_threads=1"], subdir="one")
    train(one)
    run_dir = tmp_path / "cli"
    env = {**os.environ, "PROJECT_ROOT": str(ROOT), "WANDB_MODE": "offline"}
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "src" / "train.py"),
            *COMMON,
            "trainer=ddp_cpu",
            f"run_dir={run_dir}",
            "print_config=false",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    _assert_same_training(Path(one.paths.output_dir), run_dir)


def test_epoch_sampler_gives_each_rank_distinct_samples() -> None:
    from mambabench.data.base import EpochSampler

    ranks = [EpochSampler(10, rank=r, world_size=2) for r in range(2)]
    for sampler in ranks:
        sampler.set_epoch(1)
    ids = [list(s) for s in ranks]
    assert ids == [[10, 12, 14, 16, 18], [11, 13, 15, 17, 19]]  # interleaved: one process would see 10..19
    ranks[1].skip = 3  # resumed after 3 samples of this rank
    assert list(ranks[1]) == [17, 19]
    with pytest.raises(ValueError, match="cannot be shared by 4 processes"):
        EpochSampler(3, rank=0, world_size=4)
