"""Sequence classification task: pool the backbone's hidden states and apply a linear head."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mambabench.tasks.base import SequenceTask

POOLINGS = ("mean", "last")


class ClassificationTask(SequenceTask):
    """Batches are {"input_ids": (batch, seqlen), "labels": (batch,)} with optional "lengths" (batch,)
    for right-padded sequences (padding never feeds the pooled state).

    Args:
        num_classes: set from the data module.
        pooling: "mean" over valid positions or "last" valid position (the causal-model choice).
    """

    def __init__(
        self,
        network: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        num_classes: int | None = None,
        scheduler: Callable[..., Any] | None = None,
        pooling: str = "mean",
        compile: bool = False,
    ) -> None:
        super().__init__(network, optimizer, scheduler, compile)
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        if not num_classes or num_classes < 2:
            raise ValueError("ClassificationTask needs num_classes >= 2 (it normally comes from the data module)")
        self.pooling = pooling
        self.num_classes = num_classes
        self.head = nn.Linear(network.d_model, num_classes)

    def forward(self, input_ids: Tensor, lengths: Tensor | None = None) -> Tensor:
        """input_ids (batch, seqlen) -> logits (batch, num_classes)."""
        hidden = self.network(input_ids, return_hidden=True)
        seqlen = hidden.shape[1]
        if lengths is None:
            lengths = torch.full((hidden.shape[0],), seqlen, device=hidden.device)
        if self.pooling == "last":
            pooled = hidden[torch.arange(hidden.shape[0], device=hidden.device), lengths - 1]
        else:
            mask = (torch.arange(seqlen, device=hidden.device)[None] < lengths[:, None]).to(hidden.dtype)
            pooled = (hidden * mask[..., None]).sum(1) / lengths[:, None].to(hidden.dtype)
        return self.head(pooled)

    def compute(self, batch: dict[str, Tensor]) -> dict[str, tuple[Tensor, int]]:
        logits = self(batch["input_ids"], batch.get("lengths"))
        labels = batch["labels"]
        loss = F.cross_entropy(logits.float(), labels)
        accuracy = (logits.argmax(-1) == labels).float().mean()
        return {"loss": (loss, labels.numel()), "accuracy": (accuracy, labels.numel())}
