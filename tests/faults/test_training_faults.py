"""Non-finite gradients (stop or skip), loggers that raise, W&B without network: training survives or
stops cleanly, never trains on NaNs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mambabench.utils.run import train
from tests.conftest import checkpoint_weights
from tests.faults.helpers import TINY

POISON = ["+callbacks.poison._target_=tests.faults.helpers.PoisonGradients", "+callbacks.poison.at_step=3"]
RUN = [
    *TINY,
    "test=false",
    "callbacks.periodic_checkpoint.every_n_train_steps=1",
    "callbacks.periodic_checkpoint.save_top_k=-1",
    "callbacks.progress_bar=null",
]


def test_nonfinite_gradients_stop_before_the_update(make_config) -> None:
    cfg = make_config([*RUN, "trainer.max_steps=6", *POISON])
    with pytest.raises(FloatingPointError, match="non-finite gradients.*at global step 3.*policy=skip"):
        train(cfg)
    checkpoints = Path(cfg.paths.output_dir) / "checkpoints"
    saved = sorted(p.name for p in checkpoints.glob("periodic-*.ckpt"))
    assert saved[-1] == "periodic-step0000003.ckpt"  # nothing was saved after the bad step
    assert all(
        torch.isfinite(v).all()
        for v in checkpoint_weights(checkpoints / saved[-1]).values()
        if v.is_floating_point()
    )


def test_nonfinite_gradients_skip_policy_counts_and_continues(make_config) -> None:
    cfg = make_config(
        [
            *RUN,
            "trainer.max_steps=5",
            *POISON,
            "callbacks.nonfinite_guard.policy=skip",
            "trainer.log_every_n_steps=1",
        ]
    )
    with pytest.warns(
        UserWarning, match="non-finite loss/gradients at global step 3.*step skipped \\(1 so far\\)"
    ):
        train(cfg)
    checkpoints = Path(cfg.paths.output_dir) / "checkpoints"
    before, skipped = (
        checkpoint_weights(checkpoints / "periodic-step0000003.ckpt"),
        checkpoint_weights(checkpoints / "periodic-step0000004.ckpt"),
    )
    for key in before:  # the skipped step left every weight as it was
        torch.testing.assert_close(before[key], skipped[key], rtol=0, atol=0)
    last = torch.load(checkpoints / "last.ckpt", map_location="cpu", weights_only=False)
    assert last["global_step"] == 5
    guard = next(v for k, v in last["callbacks"].items() if "NonFiniteLossGuard" in k)
    assert guard["skipped_steps"] == 1
    assert (
        "train/skipped_steps"
        in (Path(cfg.paths.output_dir) / "csv" / "metrics.csv").read_text().splitlines()[0]
    )


def test_skip_policy_stops_after_too_many_bad_steps_in_a_row(make_config) -> None:
    always = [
        "+callbacks.poison._target_=tests.faults.helpers.PoisonGradients",
        "+callbacks.poison.at_step=0",
    ]
    cfg = make_config(
        [
            *TINY,
            "test=false",
            "trainer.max_steps=4",
            *always,
            "callbacks.nonfinite_guard.policy=skip",
            "callbacks.nonfinite_guard.max_consecutive_skips=1",
            "+callbacks.poison2._target_=tests.faults.helpers.PoisonGradients",
            "+callbacks.poison2.at_step=1",
        ]
    )
    with pytest.raises(FloatingPointError, match="2 non-finite steps in a row"), pytest.warns(UserWarning):
        train(cfg)


def test_a_logger_that_raises_does_not_stop_training(make_config) -> None:
    cfg = make_config(
        [
            *TINY,
            "test=false",
            "trainer.max_steps=3",
            "+logger.broken._target_=tests.faults.helpers.BrokenLogger",
        ]
    )
    with pytest.warns(
        UserWarning,
        match="logger BrokenLogger.log_hyperparams failed .*tracker unreachable.*training continues",
    ):
        train(cfg)
    step = torch.load(
        Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False
    )["global_step"]
    assert step == 3


def test_wandb_waits_are_bounded(make_config, monkeypatch) -> None:
    from mambabench.utils.build import build_loggers

    monkeypatch.delenv("WANDB_INIT_TIMEOUT", raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    build_loggers(make_config([*TINY, "logger=wandb"]))
    assert float(__import__("os").environ["WANDB_INIT_TIMEOUT"]) <= 120
