"""Language modelling task: next-token cross-entropy on the positions whose target is not ignored."""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from mambabench.kernels import cross_entropy_fn
from mambabench.models.flops import peak_flops, training_flops_per_token
from mambabench.tasks.base import SequenceTask

IGNORE_INDEX = -100
log = logging.getLogger(__name__)


def warn_if_logits_outgrow_memory(tokens: int, vocab_size: int, total_bytes: int | None = None) -> None:
    """On a CPU the loss keeps fp32 logits, their log-softmax and their gradient, (tokens, vocab) each:
    warn before the first step when those alone take over a quarter of the machine's memory (a GPU
    preset run on a CPU is killed by the kernel without a word otherwise)."""
    need = 3 * 4 * tokens * vocab_size
    total = total_bytes or os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if need > total / 4:
        log.warning(
            "a batch of %d tokens over a %d-token vocabulary needs ~%.1f GB for the logits alone on this CPU "
            "(%.1f GB of memory): lower data.batch_size (global_batch_size keeps the optimisation the same "
            "through gradient accumulation) or, for the lm presets, add +lm=cpu",
            tokens, vocab_size, need / 2**30, total / 2**30,
        )  # fmt: skip


class LanguageModelingTask(SequenceTask):
    """Batches are {"input_ids": (batch, seqlen), "targets": (batch, seqlen)}; targets equal to -100
    carry no loss (e.g. the noise positions of selective copying).

    Metrics: loss (mean nats per target token), accuracy, perplexity, bits_per_token and, with
    ``bytes_per_token``, bits_per_byte (for DNA one token is one base, so bits_per_token is bits per base).

    ``loss_backend`` picks the cross-entropy (:func:`mambabench.kernels.cross_entropy_fn`): "auto" (the
    Triton kernel for CUDA logits, which reads bf16 logits in place and keeps no fp32 (tokens, vocab)
    copy, log-softmax or gradient; ``F.cross_entropy`` on fp32 logits on CPU), "triton" or "reference".

    Every ``log_throughput_every`` steps it logs ``trainer/mfu`` (model FLOPs utilisation: training FLOPs
    per token of :mod:`mambabench.models.flops` x tokens/s / ``peak_flops``, by default the device's
    dense bf16 peak) and ``trainer/peak_memory_gb`` (CUDA).
    """

    LOSS_BACKENDS = ("auto", "triton", "reference")

    mean_metrics = ("loss", "accuracy")

    def __init__(
        self,
        network: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        bytes_per_token: float | None = None,
        compile: bool = False,
        loss_backend: str = "auto",
        peak_flops: float | None = None,
        log_throughput_every: int = 10,
    ) -> None:
        if loss_backend not in self.LOSS_BACKENDS:
            raise ValueError(
                f"task.loss_backend={loss_backend!r}; choose one of {', '.join(self.LOSS_BACKENDS)}"
            )
        super().__init__(network, optimizer, scheduler, compile)
        self.bytes_per_token = bytes_per_token
        self.loss_backend = loss_backend
        self.peak_flops = peak_flops
        self.log_throughput_every = log_throughput_every
        self.flops_per_token: int | None = None
        self._step_start: float | None = None
        self._window_time, self._window_tokens = 0.0, 0  # training-step time and tokens since the last log

    def forward(self, input_ids: Tensor) -> Tensor:
        return self.network(input_ids)

    def compute(self, batch: dict[str, Tensor]) -> dict[str, tuple[Tensor, Tensor]]:
        logits = self.network(batch["input_ids"])
        targets = batch["targets"]
        mask = targets != IGNORE_INDEX
        count = mask.sum().clamp(min=1)
        loss = (
            cross_entropy_fn(
                logits.flatten(0, 1),
                targets.flatten(),
                ignore_index=IGNORE_INDEX,
                reduction="sum",
                backend=self.loss_backend,
            )
            / count
        )
        correct = ((logits.argmax(-1) == targets) & mask).sum()
        return {"loss": (loss, count), "accuracy": (correct.float() / count, count)}

    def on_train_batch_start(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        if self.flops_per_token is None:
            head = getattr(getattr(self.network, "lm_head", None), "weight", None)
            if self.device.type == "cpu" and head is not None:
                warn_if_logits_outgrow_memory(int(batch["input_ids"].numel()), int(head.shape[0]))
            self.flops_per_token = training_flops_per_token(self.network, int(batch["input_ids"].shape[-1]))
            self.peak_flops = self.peak_flops or peak_flops(self.device)
        self._step_start = time.perf_counter()

    def on_train_batch_end(self, outputs: Any, batch: dict[str, Tensor], batch_idx: int) -> None:
        """MFU over the training steps of the window only (validation and data loading between the steps
        left out, as in ``trainer/tokens_per_sec``)."""
        if self._step_start is None:
            return
        log_now = (batch_idx + 1) % self.log_throughput_every == 0
        if log_now and self.device.type == "cuda":
            torch.cuda.synchronize(self.device)  # the window's queued kernels count towards its time
        self._window_time += time.perf_counter() - self._step_start
        self._window_tokens += int(batch["input_ids"].numel()) * self.trainer.world_size
        self._step_start = None
        if not log_now:
            return
        if self.device.type == "cuda":
            self.log(
                "trainer/peak_memory_gb", torch.cuda.max_memory_allocated(self.device) / 2**30, on_step=True
            )
        if self.peak_flops and self._window_time > 0:
            tokens_per_s = self._window_tokens / self._window_time
            mfu = self.flops_per_token * tokens_per_s / (self.peak_flops * self.trainer.world_size)
            self.log("trainer/mfu", mfu, on_step=True)
        self._window_time, self._window_tokens = 0.0, 0

    def derived_metrics(self, means: dict[str, Tensor]) -> dict[str, Tensor]:
        if "loss" not in means:
            return {}
        loss = means["loss"]
        out = {"perplexity": torch.exp(loss.clamp(max=80)), "bits_per_token": loss / math.log(2)}
        if self.bytes_per_token:
            out["bits_per_byte"] = out["bits_per_token"] / self.bytes_per_token
        return out


def scaling_summary(
    network: nn.Module,
    seq_len: int | None,
    train_tokens: int | None,
    tokens_per_s: float | None,
    metrics: dict[str, float],
) -> dict[str, Any]:
    """The fields a scaling-law plot reads from a run's summary.json: non-embedding parameters, training
    FLOPs (per token and in total), tokens, MFU and the final validation loss / perplexity; with
    ``task.bytes_per_token`` set (byte-level runs, MambaByte's metric) also the final validation and
    test bits per byte."""
    embedding = sum(m.weight.numel() for m in network.modules() if isinstance(m, nn.Embedding))
    params = sum(p.numel() for p in network.parameters())
    per_token = training_flops_per_token(network, seq_len) if seq_len else None
    peak = peak_flops()
    val_loss = metrics.get("val/loss")
    bits_per_byte = {
        f"final_{stage}_bits_per_byte": metrics[f"{stage}/bits_per_byte"]
        for stage in ("val", "test")
        if metrics.get(f"{stage}/bits_per_byte") is not None
    }
    return {
        "params_non_embedding": params - embedding,
        "flops_per_token": per_token,
        "flops": per_token * train_tokens if per_token and train_tokens else None,
        "tokens": train_tokens,
        "mfu": per_token * tokens_per_s / peak if per_token and tokens_per_s and peak else None,
        "peak_memory_gb": torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None,
        "final_val_loss": val_loss,
        "final_val_perplexity": math.exp(min(val_loss, 80)) if val_loss is not None else None,
        **bits_per_byte,
    }
