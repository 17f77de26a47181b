"""Training callbacks: throughput, non-finite loss guard, a progress bar that knows step-based runs."""

from __future__ import annotations

import math
import time
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import RichProgressBar


def _batch_tokens(batch: dict[str, Any]) -> int:
    """Sequence positions in a batch: token ids (batch, seqlen) or real vectors (batch, seqlen, dim)."""
    if "input_ids" in batch:
        return int(batch["input_ids"].numel())
    return int(batch["inputs"].shape[0] * batch["inputs"].shape[1])


class TokensPerSecond(L.Callback):
    """Logs ``trainer/tokens_per_sec`` (input tokens of training batches per wall-clock second)
    and keeps the run totals for the summary."""

    def __init__(self, log_every_n_steps: int = 50) -> None:
        self.log_every_n_steps = log_every_n_steps
        self.train_time = 0.0
        self.train_tokens = 0
        self._window_tokens = 0
        self._window_time = 0.0
        self._t0: float | None = None

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        self._t0 = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if self._t0 is None:
            return
        if torch.cuda.is_available() and pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)
        elapsed = time.perf_counter() - self._t0
        tokens = _batch_tokens(batch) * trainer.world_size
        self.train_time += elapsed
        self.train_tokens += tokens
        self._window_time += elapsed
        self._window_tokens += tokens
        if (batch_idx + 1) % self.log_every_n_steps == 0 and self._window_time > 0:
            pl_module.log("trainer/tokens_per_sec", self._window_tokens / self._window_time, on_step=True,
                          on_epoch=False)
            self._window_tokens, self._window_time = 0, 0.0

    @property
    def tokens_per_sec(self) -> float:
        return self.train_tokens / self.train_time if self.train_time > 0 else 0.0


class NonFiniteLossGuard(L.Callback):
    """Stops training with a clear error the first time the training loss is NaN or infinite,
    instead of silently continuing (the last good checkpoint stays on disk for a resume)."""

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is not None and not math.isfinite(float(loss.detach())):
            raise FloatingPointError(
                f"training loss became {float(loss)} at global step {trainer.global_step}; stopping. "
                "Lower optimizer.lr, keep parameters in fp32 (trainer.precision=bf16-mixed, not bf16-true), "
                "or set trainer.gradient_clip_val; resume from checkpoints/last.ckpt once fixed."
            )


class StepProgressBar(RichProgressBar):
    """Rich progress bar whose title reads ``Epoch 3 (max 800 steps)`` for step-based runs.

    Lightning titles the bar ``Epoch e/{max_epochs - 1}``, which shows ``Epoch 0/-2`` when training is
    bounded by ``trainer.max_steps`` (max_epochs = -1), as every preset here is."""

    def _get_train_description(self, current_epoch: int) -> str:
        trainer = self.trainer
        if trainer.max_epochs is not None and trainer.max_epochs >= 0:
            return super()._get_train_description(current_epoch)
        description = f"Epoch {current_epoch}"
        if trainer.max_steps > 0:
            description += f" (max {trainer.max_steps} steps)"
        if len(self.validation_description) > len(description):
            description = f"{description:{len(self.validation_description)}}"
        return description
