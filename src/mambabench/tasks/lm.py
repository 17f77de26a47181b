"""Language modelling task: next-token cross-entropy on the positions whose target is not ignored."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from mambabench.kernels import cross_entropy_fn
from mambabench.tasks.base import SequenceTask

IGNORE_INDEX = -100


class LanguageModelingTask(SequenceTask):
    """Batches are {"input_ids": (batch, seqlen), "targets": (batch, seqlen)}; targets equal to -100
    carry no loss (e.g. the noise positions of selective copying).

    Metrics: loss (mean nats per target token), accuracy, perplexity, bits_per_token and, with
    ``bytes_per_token``, bits_per_byte (for DNA one token is one base, so bits_per_token is bits per base).

    ``loss_backend`` picks the cross-entropy (:func:`mambabench.kernels.cross_entropy_fn`): "auto" (the
    Triton kernel for CUDA logits, which reads bf16 logits in place and keeps no fp32 (tokens, vocab)
    copy, log-softmax or gradient; ``F.cross_entropy`` on fp32 logits on CPU), "triton" or "reference".
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
    ) -> None:
        if loss_backend not in self.LOSS_BACKENDS:
            raise ValueError(f"task.loss_backend={loss_backend!r}; choose one of {', '.join(self.LOSS_BACKENDS)}")
        super().__init__(network, optimizer, scheduler, compile)
        self.bytes_per_token = bytes_per_token
        self.loss_backend = loss_backend

    def forward(self, input_ids: Tensor) -> Tensor:
        return self.network(input_ids)

    def compute(self, batch: dict[str, Tensor]) -> dict[str, tuple[Tensor, Tensor]]:
        logits = self.network(batch["input_ids"])
        targets = batch["targets"]
        mask = targets != IGNORE_INDEX
        count = mask.sum().clamp(min=1)
        loss = cross_entropy_fn(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE_INDEX,
                                reduction="sum", backend=self.loss_backend) / count
        correct = ((logits.argmax(-1) == targets) & mask).sum()
        return {"loss": (loss, count), "accuracy": (correct.float() / count, count)}

    def derived_metrics(self, means: dict[str, Tensor]) -> dict[str, Tensor]:
        if "loss" not in means:
            return {}
        loss = means["loss"]
        out = {"perplexity": torch.exp(loss.clamp(max=80)), "bits_per_token": loss / math.log(2)}
        if self.bytes_per_token:
            out["bits_per_byte"] = out["bits_per_token"] / self.bytes_per_token
        return out
