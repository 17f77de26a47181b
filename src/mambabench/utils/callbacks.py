"""Training callbacks: throughput, the non-finite loss policy, random state and preemption checkpoints,
a progress bar that knows step-based runs."""

from __future__ import annotations

import math
import signal
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

import lightning as L
import torch
from lightning.fabric.utilities.seed import _collect_rng_states, _set_rng_states
from lightning.pytorch.callbacks import RichProgressBar
from lightning.pytorch.utilities import rank_zero_warn


def _batch_tokens(batch: dict[str, Any]) -> int:
    """Sequence positions in a batch: token ids (batch, seqlen) or real vectors (batch, seqlen, dim)."""
    if "input_ids" in batch:
        return int(batch["input_ids"].numel())
    return int(batch["inputs"].shape[0] * batch["inputs"].shape[1])


class TokensPerSecond(L.Callback):
    """Training throughput: input tokens of training batches per second of training-step time.

    A step's time runs from ``on_train_batch_start`` to ``on_train_batch_end`` (forward, backward and
    optimizer step; on CUDA up to a synchronize), so validation, checkpoint writes and waiting for data
    are left out. The first ``warmup_steps`` steps of every fit (Triton compilation and autotuning,
    ``torch.compile``, allocator growth) are timed but kept out of the rate, as they would otherwise
    dominate short runs. Logs ``trainer/tokens_per_sec`` over windows of ``log_every_n_steps`` steps;
    the run's figures (:attr:`tokens_per_sec`, :attr:`tokens_per_sec_wall`) go to ``summary.json``.
    """

    def __init__(self, log_every_n_steps: int = 50, warmup_steps: int = 2) -> None:
        if warmup_steps < 0:
            raise ValueError(f"callbacks.tokens_per_sec.warmup_steps must be >= 0, got {warmup_steps}")
        self.log_every_n_steps = log_every_n_steps
        self.warmup_steps = warmup_steps
        self.train_time = 0.0  # every training step of this process, warm-up included
        self.train_tokens = 0
        self.measured_time = 0.0  # the steps after each fit's warm-up: the throughput's basis
        self.measured_tokens = 0
        self.fit_time = 0.0  # wall clock from the start to the end of training
        self._steps_this_fit = 0
        self._window_tokens = 0
        self._window_time = 0.0
        self._t0: float | None = None
        self._fit_t0: float | None = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._steps_this_fit = 0
        self._fit_t0 = time.perf_counter()

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._fit_t0 is not None:
            self.fit_time += time.perf_counter() - self._fit_t0
            self._fit_t0 = None

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self._t0 = time.perf_counter()

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self._t0 is None:
            return
        if torch.cuda.is_available() and pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)
        elapsed = time.perf_counter() - self._t0
        self._t0 = None
        tokens = _batch_tokens(batch) * trainer.world_size
        self.train_time += elapsed
        self.train_tokens += tokens
        self._steps_this_fit += 1
        if self._steps_this_fit <= self.warmup_steps:
            return
        self.measured_time += elapsed
        self.measured_tokens += tokens
        self._window_time += elapsed
        self._window_tokens += tokens
        if (batch_idx + 1) % self.log_every_n_steps == 0 and self._window_time > 0:
            pl_module.log(
                "trainer/tokens_per_sec",
                self._window_tokens / self._window_time,
                on_step=True,
                on_epoch=False,
            )
            self._window_tokens, self._window_time = 0, 0.0

    @property
    def tokens_per_sec(self) -> float:
        """Tokens per second of training-step time after warm-up (all steps if the run was shorter)."""
        if self.measured_time > 0:
            return self.measured_tokens / self.measured_time
        return self.train_tokens / self.train_time if self.train_time > 0 else 0.0

    @property
    def tokens_per_sec_wall(self) -> float:
        """All training tokens per second of wall clock from the start to the end of training: warm-up,
        validation, checkpoints and data loading included."""
        return self.train_tokens / self.fit_time if self.fit_time > 0 else 0.0


class NonFiniteLossGuard(L.Callback):
    """Never trains on NaNs: checks the gradients of every optimizer step before it is taken (a non-finite
    loss makes them non-finite too) and applies ``policy``:

    - ``stop``: raise with a clear message before the bad update, so the weights and every checkpoint on
      disk stay the last good ones (resume from ``checkpoints/last.ckpt`` once fixed);
    - ``skip``: drop this step's gradients (the optimizer leaves the weights and its moments untouched),
      count it (logged as ``train/skipped_steps``, kept in checkpoints) and go on; after
      ``max_consecutive_skips`` skips in a row it stops as above.

    With several processes the decision is taken jointly, so all ranks skip or stop together.
    """

    POLICIES = ("stop", "skip")

    def __init__(self, policy: str = "stop", max_consecutive_skips: int = 10) -> None:
        if policy not in self.POLICIES:
            raise ValueError(f"NonFiniteLossGuard policy must be one of {self.POLICIES}, got {policy!r}")
        if max_consecutive_skips < 1:
            raise ValueError(f"max_consecutive_skips must be >= 1, got {max_consecutive_skips}")
        self.policy = policy
        self.max_consecutive_skips = max_consecutive_skips
        self.skipped_steps = 0
        self._consecutive = 0

    @staticmethod
    def _grads_finite(pl_module: L.LightningModule) -> bool:
        grads = [p.grad for p in pl_module.parameters() if p.grad is not None]
        if not grads:
            return True
        norms = torch._foreach_norm(grads)
        return bool(torch.isfinite(torch.stack([n.float() for n in norms])).all())

    def _stop(self, trainer: L.Trainer, loss: str, why: str) -> None:
        raise FloatingPointError(
            f"training loss became {loss} ({why}) at global step {trainer.global_step}; stopping before the "
            "update, so the weights and checkpoints stay the last good ones. Lower optimizer.lr, keep "
            "parameters in fp32 (trainer.precision=bf16-mixed, not bf16-true), set trainer.gradient_clip_val, "
            "or skip such steps with callbacks.nonfinite_guard.policy=skip; then resume from "
            "checkpoints/last.ckpt."
        )

    def on_before_optimizer_step(
        self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Any
    ) -> None:
        finite = self._grads_finite(pl_module)
        if trainer.world_size > 1:
            finite = trainer.strategy.reduce_boolean_decision(finite, all=True)
        if finite:
            self._consecutive = 0
            return
        loss = trainer.callback_metrics.get("train/loss")
        loss_text = f"{float(loss):.4g}" if torch.is_tensor(loss) else "unknown"
        if self.policy == "stop":
            self._stop(trainer, loss_text, "non-finite gradients")
        self._consecutive += 1
        if self._consecutive > self.max_consecutive_skips:
            self._stop(
                trainer,
                loss_text,
                f"{self._consecutive} non-finite steps in a row, "
                f"more than max_consecutive_skips={self.max_consecutive_skips}",
            )
        self.skipped_steps += 1
        for param in pl_module.parameters():
            param.grad = None
        rank_zero_warn(
            f"non-finite loss/gradients at global step {trainer.global_step} (loss {loss_text}): "
            f"step skipped ({self.skipped_steps} so far)"
        )

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self.skipped_steps:
            pl_module.log("train/skipped_steps", float(self.skipped_steps), on_step=True, on_epoch=False)
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if self.policy == "stop" and loss is not None and not math.isfinite(float(loss.detach())):
            self._stop(trainer, str(float(loss)), "non-finite loss")

    def state_dict(self) -> dict[str, int]:
        return {"skipped_steps": self.skipped_steps, "consecutive": self._consecutive}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        self.skipped_steps = int(state_dict.get("skipped_steps", 0))
        self._consecutive = int(state_dict.get("consecutive", 0))


class RandomState(L.Callback):
    """Puts the random number generators (Python, NumPy, torch CPU and CUDA) into checkpoints and
    restores them on resume, so a resumed run draws the same random numbers (dropout, sampling) as an
    uninterrupted one. With several processes rank 0's state is saved; the other ranks are re-seeded
    from ``(seed, rank, global step)`` on resume, which is reproducible but not the uninterrupted stream."""

    KEY = "rng_states"

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        checkpoint[self.KEY] = _collect_rng_states(include_cuda=torch.cuda.is_available())

    def on_load_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        states = checkpoint.get(self.KEY)
        if states is None:
            return
        if trainer.global_rank == 0:
            if not torch.cuda.is_available():
                states = {k: v for k, v in states.items() if k != "torch.cuda"}
            _set_rng_states(states)
        else:
            L.seed_everything(
                hash((self.seed, trainer.global_rank, int(checkpoint.get("global_step", 0)))) % 2**31,
                verbose=False,
            )


class StopAtWallClock(L.Callback):
    """Stops training after the first step that ends at or past ``deadline`` (Unix time, seconds), so
    several runs started together on one machine all stop by the same clock time, however long each
    took to start; the run then saves ``last.ckpt`` and tests as after a normal end. Lightning's
    ``max_time`` counts from each run's own start instead. ``deadline: null`` never stops."""

    def __init__(self, deadline: float | None = None) -> None:
        self.deadline = deadline

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self.deadline is not None and time.time() >= self.deadline and not trainer.should_stop:
            trainer.should_stop = True
            rank_zero_warn(f"wall-clock deadline reached at step {trainer.global_step}; stopping")


class PreemptionCheckpoint(L.Callback):
    """On SIGTERM or SIGUSR1 (what SLURM and cloud schedulers send before they preempt a job), finish the
    current step, write ``<checkpoints>/last.ckpt`` and stop training cleanly; the same command with
    ``resume=auto`` then continues from there. Without a signal it costs nothing (with several processes,
    one tiny collective per step so that all ranks stop at the same step).

    ``stopped_by`` holds the signal's name after such a stop (the entry point then skips testing)."""

    def __init__(
        self, signals: tuple[str, ...] | list[str] = ("SIGTERM", "SIGUSR1"), filename: str = "last.ckpt"
    ) -> None:
        unknown = [name for name in signals if not hasattr(signal, name)]
        if unknown:
            raise ValueError(f"unknown signal names {unknown}; use names such as SIGTERM, SIGUSR1, SIGINT")
        self.signals = [getattr(signal, name) for name in signals]
        self.filename = filename
        self.received: int | None = None
        self.stopped_by: str | None = None
        self.saved_path: str | None = None
        self._previous: dict[int, Any] = {}

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        self.received = signum

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be set from the main thread
        for signum in self.signals:
            self._previous[signum] = signal.signal(signum, self._handler)

    def _restore_handlers(self) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous = {}

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        received = self.received is not None
        if trainer.world_size > 1:
            received = trainer.strategy.reduce_boolean_decision(received, all=False)
        if not received:
            return
        name = signal.Signals(self.received).name if self.received is not None else "a signal on another rank"
        callback = trainer.checkpoint_callback
        folder = (
            Path(callback.dirpath)
            if callback is not None and callback.dirpath
            else Path(trainer.default_root_dir) / "checkpoints"
        )
        path = folder / self.filename
        trainer.save_checkpoint(path)
        self.stopped_by, self.saved_path = name, str(path)
        rank_zero_warn(
            f"received {name}: saved {path} at global step {trainer.global_step} and stopping; "
            "run the same command again (resume=auto) to continue"
        )
        trainer.should_stop = True

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restore_handlers()

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        self._restore_handlers()


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
