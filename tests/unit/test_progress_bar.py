"""The progress bar title of step-based runs (max_epochs = -1) names the step budget, not 'Epoch 0/-2'."""

from __future__ import annotations

from types import SimpleNamespace

from mambabench.utils.callbacks import StepProgressBar


def title(max_epochs: int | None, max_steps: int, epoch: int = 3) -> str:
    bar = StepProgressBar()
    bar._trainer = SimpleNamespace(max_epochs=max_epochs, max_steps=max_steps)
    return bar._get_train_description(epoch).strip()


def test_step_based_run_shows_the_step_budget() -> None:
    assert title(-1, 800) == "Epoch 3 (max 800 steps)"
    assert title(None, -1) == "Epoch 3"


def test_epoch_based_run_keeps_lightnings_title() -> None:
    assert title(5, -1) == "Epoch 3/4"
