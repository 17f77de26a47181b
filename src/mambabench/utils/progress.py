"""Training progress (and the model summary) that suits where stdout goes: a live rich bar on a terminal, periodic plain lines
in a log file or a pipe.

A live bar redrawn in place turns into thousands of partial lines (or nothing until the end) once stdout
is a file, as on a cluster. :class:`ProgressLog` writes instead one self-contained line every few
percent of the run, for example::

    step 400/800 (50%) | 3.41 steps/s | elapsed 1:57 | ETA 1:57 | train/loss 1.027 | train/accuracy 0.6133
    validation at step 400: val/loss 0.9931 | val/accuracy 0.6201

The lines go through the ``mambabench`` logger, so they also land in the run's log file.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelSummary, RichModelSummary
from lightning.pytorch.callbacks.progress import ProgressBar

from mambabench.utils.callbacks import StepProgressBar
from mambabench.utils.console import stdout_is_terminal

log = logging.getLogger("mambabench.progress")


def format_duration(seconds: float) -> str:
    """``75`` -> ``1:15``, ``3725`` -> ``1:02:05``; ``?`` when unknown."""
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def format_metrics(metrics: dict[str, Any]) -> str:
    """``name value`` pairs joined by `` | ``, numbers to 4 significant digits, names never shortened."""
    parts = []
    for name, value in metrics.items():
        try:
            parts.append(f"{name} {float(value):.4g}")
        except (TypeError, ValueError):
            parts.append(f"{name} {value}")
    return " | ".join(parts)


class ProgressLog(ProgressBar):
    """Plain progress lines for logs: step, steps/s, elapsed time, ETA and the progress-bar metrics
    (written by the global-rank-0 process only).

    Args:
        every_n_steps: steps between lines; ``None`` = every 5 % of the run (at least every step).
        min_interval_s: at most one line per this many seconds (first and last step excepted), so a
            fast run does not flood the log.
    """

    def __init__(self, every_n_steps: int | None = None, min_interval_s: float = 5.0) -> None:
        super().__init__()
        self.every_n_steps = every_n_steps
        self.min_interval_s = min_interval_s
        self._enabled = True
        self._fit_start = 0.0
        self._last_line = 0.0
        self._last_step = -1
        self._start_step = 0

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    @property
    def total_steps(self) -> int | None:
        """Optimizer steps this fit will run (``None`` when unbounded)."""
        trainer = self.trainer
        if trainer.max_steps and trainer.max_steps > 0:
            return int(trainer.max_steps)
        total = trainer.estimated_stepping_batches
        return int(total) if math.isfinite(total) else None

    def _interval(self) -> int:
        if self.every_n_steps:
            return max(1, int(self.every_n_steps))
        total = self.total_steps
        return max(1, total // 20) if total else 50

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._fit_start = self._last_line = time.monotonic()
        self._start_step = self._last_step = trainer.global_step

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        step = trainer.global_step
        if not self._enabled or not trainer.is_global_zero or step == self._last_step:
            return
        now = time.monotonic()
        total = self.total_steps
        first, last = step == self._start_step + 1, total is not None and step >= total
        due = step % self._interval() == 0 and now - self._last_line >= self.min_interval_s
        if not (first or last or due):
            return
        self._write_step_line(trainer, pl_module, step, total, now)

    def _write_step_line(
        self, trainer: L.Trainer, pl_module: L.LightningModule, step: int, total: int | None, now: float
    ) -> None:
        done = step - self._start_step
        elapsed = now - self._fit_start
        rate = done / elapsed if elapsed > 0 else float("nan")
        parts = [
            f"step {step}/{total} ({100 * step / total:.0f}%)" if total else f"step {step}",
            f"{rate:.3g} steps/s",
            f"elapsed {format_duration(elapsed)}",
        ]
        if total:
            parts.append(f"ETA {format_duration((total - step) / rate if rate > 0 else float('nan'))}")
        metrics = {
            k: v
            for k, v in self.get_metrics(trainer, pl_module).items()
            if k != "v_num" and not k.startswith("val/")
        }
        if metrics:
            parts.append(format_metrics(metrics))
        log.info(" | ".join(parts))
        self._last_line, self._last_step = now, step

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if (
            not self._enabled
            or not trainer.is_global_zero
            or trainer.sanity_checking
            or trainer.state.fn != "fit"
        ):
            return
        metrics = {k: v for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
        if metrics:
            log.info(
                f"validation at step {trainer.global_step}: {format_metrics(dict(sorted(metrics.items())))}"
            )

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._enabled or not trainer.is_global_zero:
            return
        done = trainer.global_step - self._start_step
        elapsed = time.monotonic() - self._fit_start
        rate = f" ({done / elapsed:.3g} steps/s)" if elapsed > 0 and done else ""
        log.info(f"training stopped at step {trainer.global_step} after {format_duration(elapsed)}{rate}")


def progress_for_stdout(
    leave: bool = True, every_n_steps: int | None = None, min_interval_s: float = 5.0
) -> ProgressBar:
    """A live rich bar when stdout is a terminal, else :class:`ProgressLog` lines (``leave`` keeps the
    finished bar on screen; the two other arguments are :class:`ProgressLog`'s)."""
    if stdout_is_terminal():
        return StepProgressBar(leave=leave)
    return ProgressLog(every_n_steps=every_n_steps, min_interval_s=min_interval_s)


def model_summary_for_stdout(max_depth: int = 1) -> ModelSummary:
    """Lightning's table of the model's layers and parameters: drawn with rich on a terminal, as plain
    log lines (which also reach the run's log file) otherwise."""
    return (
        RichModelSummary(max_depth=max_depth) if stdout_is_terminal() else ModelSummary(max_depth=max_depth)
    )
