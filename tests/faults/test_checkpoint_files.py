"""Atomic checkpoint writes and the choice of CPU threads, without training."""

from __future__ import annotations

import pytest
import torch

from mambabench.utils.checkpoint import CheckpointError, atomic_save, newest_good_checkpoint, read_checkpoint
from mambabench.utils.errors import ConfigError
from mambabench.utils.threads import auto_cpu_threads, configure_cpu_threads


class Unpicklable:
    def __reduce__(self):
        raise RuntimeError("disk full")  # a failure in the middle of writing


def test_a_failed_write_leaves_the_previous_checkpoint_intact(tmp_path) -> None:
    path = tmp_path / "checkpoints" / "last.ckpt"
    atomic_save({"state_dict": {"w": torch.ones(3)}, "global_step": 1}, path)
    with pytest.raises(RuntimeError, match="disk full"):
        atomic_save({"state_dict": {"w": torch.zeros(3)}, "global_step": 2, "x": Unpicklable()}, path)
    assert read_checkpoint(path)["global_step"] == 1
    assert [p.name for p in path.parent.iterdir()] == ["last.ckpt"]  # no temporary file left behind


def test_newest_good_checkpoint_skips_damaged_files(tmp_path) -> None:
    folder = tmp_path / "checkpoints"
    for step in (2, 4):
        atomic_save({"state_dict": {}, "global_step": step}, folder / f"periodic-step{step}.ckpt")
    damaged = folder / "periodic-step6.ckpt"
    damaged.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.warns(UserWarning, match="periodic-step6.ckpt' is truncated or corrupt.*skipping it"):
        assert newest_good_checkpoint(tmp_path) == folder / "periodic-step4.ckpt"
    with pytest.raises(
        CheckpointError, match="is a directory, not a checkpoint file: pass ckpt_path=.*periodic-step2"
    ):
        read_checkpoint(tmp_path)
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="is not a Lightning checkpoint \\(no 'state_dict'\\)"):
        read_checkpoint(tmp_path / "other.pt")


def test_cpu_threads() -> None:
    assert auto_cpu_threads(processes=1, cores=2, load=0.0) == 2
    assert auto_cpu_threads(processes=1, cores=2, load=3.0) == 1  # the cores are busy: one thread
    assert auto_cpu_threads(processes=2, cores=2, load=0.0) == 1
    assert auto_cpu_threads(processes=1, cores=64, load=0.0) == 4
    before = torch.get_num_threads()
    try:
        assert configure_cpu_threads(1, {"accelerator": "cpu"}) == 1 and torch.get_num_threads() == 1
        assert configure_cpu_threads("auto", {"accelerator": "gpu"}) is None
        with pytest.raises(ConfigError, match="cpu_threads=0 is not valid: use auto, null"):
            configure_cpu_threads(0, {"accelerator": "cpu"})
    finally:
        torch.set_num_threads(before)
