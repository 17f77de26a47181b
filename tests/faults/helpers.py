"""Callbacks that inject faults into a training run (used through ``+callbacks.<name>._target_=...``)."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import lightning as L
import lightning.pytorch.loggers

from tests.conftest import TINY_JOB

# the shared tiny job with cpu_threads=1, so that runs in different processes compute bit-identically
TINY = [*TINY_JOB, "cpu_threads=1"]


class PoisonGradients(L.Callback):
    """Makes one gradient NaN before the optimizer step of global step ``at_step``."""

    def __init__(self, at_step: int) -> None:
        self.at_step = at_step

    def on_after_backward(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.global_step == self.at_step:
            next(p for p in pl_module.parameters() if p.grad is not None).grad.fill_(float("nan"))


class SlowDown(L.Callback):
    """Sleeps after each training batch from ``after_step`` on (gives a test time to kill the process)."""

    def __init__(self, seconds: float, after_step: int = 0) -> None:
        self.seconds, self.after_step = seconds, after_step

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if trainer.global_step >= self.after_step:
            time.sleep(self.seconds)


class SendSignal(L.Callback):
    """Sends ``signame`` to this process once, at the end of global step ``at_step``."""

    def __init__(self, signame: str, at_step: int) -> None:
        self.signame, self.at_step, self.sent = signame, at_step, False

    def on_train_batch_start(self, trainer: L.Trainer, *args: Any) -> None:
        if trainer.global_step == self.at_step and not self.sent:
            self.sent = True
            os.kill(os.getpid(), getattr(signal, self.signame))


class BrokenLogger(L.pytorch.loggers.Logger):
    """A logger whose every write raises, like a tracker whose server is gone."""

    @property
    def name(self) -> str:
        return "broken"

    @property
    def version(self) -> str:
        return "0"

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        raise ConnectionError("tracker unreachable")

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        raise ConnectionError("tracker unreachable")
