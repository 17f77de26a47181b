"""Sequence classification task: pool the backbone's hidden states and apply a linear head.

Besides loss and accuracy it keeps a confusion matrix per evaluation loader: per-class accuracy is
logged as ``{stage}/accuracy_<class>`` and the matrix is saved as a PNG (and sent to W&B when a W&B
logger is attached). ``pretrained_ckpt`` starts the backbone from a pretraining run's checkpoint
(e.g. HG38 next-base pretraining before great-apes fine-tuning).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics.classification import MulticlassConfusionMatrix

from mambabench.tasks.base import SequenceTask
from mambabench.utils.errors import ConfigError

POOLINGS = ("mean", "last")


class ClassificationTask(SequenceTask):
    """Batches are {"input_ids": (batch, seqlen), "labels": (batch,)} with optional "lengths" (batch,)
    for right-padded sequences (padding never feeds the pooled state).

    Args:
        num_classes: set from the data module.
        pooling: "mean" over valid positions or "last" valid position (the causal-model choice).
        pretrained_ckpt: a Lightning checkpoint (or state dict) whose ``network.*`` weights initialise
            the backbone; the network config must match the pretraining run's. The head starts fresh.
        freeze_backbone: train only the head.
        confusion_png: save the confusion matrix of every evaluation as a PNG under the run directory.
    """

    def __init__(
        self,
        network: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        num_classes: int | None = None,
        scheduler: Callable[..., Any] | None = None,
        pooling: str = "mean",
        compile: bool = False,
        pretrained_ckpt: str | None = None,
        freeze_backbone: bool = False,
        confusion_png: bool = True,
    ) -> None:
        super().__init__(network, optimizer, scheduler, compile)
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        if not num_classes or num_classes < 2:
            raise ValueError(
                "ClassificationTask needs num_classes >= 2 (it normally comes from the data module)"
            )
        self.pooling = pooling
        self.num_classes = num_classes
        self.head = nn.Linear(network.d_model, num_classes)
        self.pretrained_ckpt = pretrained_ckpt
        if pretrained_ckpt:
            load_pretrained_backbone(network, pretrained_ckpt)
        if freeze_backbone:
            network.requires_grad_(False)
        self.confusion_png = confusion_png
        self.confusion = nn.ModuleDict()
        self._last_eval: tuple[Tensor, Tensor] | None = None

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
        preds = logits.argmax(-1)
        accuracy = (preds == labels).float().mean()
        self._last_eval = (preds.detach(), labels)
        return {"loss": (loss, labels.numel()), "accuracy": (accuracy, labels.numel())}

    # ------------------------------------------------------------------ confusion matrix per loader
    def _eval_step(self, stage: str, batch: dict[str, Tensor], dataloader_idx: int) -> None:
        super()._eval_step(stage, batch, dataloader_idx)
        key = f"{stage}|{self._loader_name(stage, dataloader_idx)}"
        if key not in self.confusion:
            self.confusion[key] = MulticlassConfusionMatrix(self.num_classes).to(self.device)
        preds, labels = self._last_eval
        self.confusion[key].update(preds, labels)

    def class_names(self) -> list[str]:
        names = getattr(self.trainer.datamodule, "class_names", None) if self._trainer else None
        return (
            list(names)
            if names and len(names) == self.num_classes
            else [str(i) for i in range(self.num_classes)]
        )

    def _log_eval(self, stage: str) -> None:
        names = getattr(self.trainer.datamodule, f"{stage}_names", None) or []
        primary = names[0] if names else "0"
        classes = self.class_names()
        for key in [k for k in self.confusion if k.startswith(f"{stage}|")]:
            metric = self.confusion[key]
            if not metric.update_called:
                continue
            matrix = metric.compute().cpu()  # (true, predicted)
            metric.reset()
            loader = key.split("|", 1)[1]
            prefix = f"{stage}/{loader}" if loader != primary else stage
            per_class = matrix.diag().float() / matrix.sum(1).clamp(min=1).float()
            for name, value in zip(classes, per_class):
                self.log(f"{prefix}/accuracy_{name}", value, add_dataloader_idx=False)
            if self.confusion_png and self.trainer.is_global_zero and not self.trainer.sanity_checking:
                self._save_confusion(matrix, classes, f"{stage}_{loader}")
        super()._log_eval(stage)

    def _save_confusion(self, matrix: Tensor, classes: list[str], tag: str) -> None:
        root = Path(self.trainer.default_root_dir) / "confusion"
        path = save_confusion_png(
            matrix,
            classes,
            root / f"{tag}_step{self.global_step:07d}.png",
            title=f"{tag} step {self.global_step}",
        )
        for logger in self.loggers:
            if hasattr(logger, "log_image"):  # W&B
                logger.log_image(key=f"confusion/{tag}", images=[str(path)], step=self.global_step)


def save_confusion_png(matrix: Tensor, classes: list[str], path: Path, title: str = "") -> Path:
    """Write a (num_classes, num_classes) confusion matrix (rows: true class, columns: predicted) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    counts = matrix.numpy()
    fig, ax = plt.subplots(figsize=(1.2 + 0.8 * len(classes), 1.0 + 0.8 * len(classes)))
    ax.imshow(counts, cmap="Blues")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(
                j,
                i,
                int(counts[i, j]),
                ha="center",
                va="center",
                fontsize=8,
                color="white" if counts[i, j] > counts.max() / 2 else "black",
            )
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def load_pretrained_backbone(network: nn.Module, path: str | Path) -> None:
    """Load the ``network.*`` weights of a task checkpoint (or a bare network state dict) into ``network``.

    Raises ConfigError when the file is missing or its shapes/keys do not fit (a different model config).
    """
    path = Path(path)
    if not path.exists():
        raise ConfigError(
            f"task.pretrained_ckpt '{path}' does not exist; pretrain first (e.g. python src/train.py "
            f"experiment=dna/model_size/mini) and pass its checkpoints/last.ckpt"
        )
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict):
        raise ConfigError(f"task.pretrained_ckpt '{path}' holds no state dict")
    prefixes = ("network._orig_mod.", "network.")
    weights = {}
    for key, value in state.items():
        for prefix in prefixes:
            if key.startswith(prefix):
                weights[key[len(prefix) :]] = value
                break
    if not weights:
        weights = {
            k: v for k, v in state.items() if not k.startswith(("head.", "eval_metrics.", "confusion."))
        }
    try:
        missing, unexpected = network.load_state_dict(weights, strict=False)
    except RuntimeError as err:
        raise ConfigError(
            f"task.pretrained_ckpt '{path}' does not fit the network (use the pretraining run's "
            f"model config): {str(err).splitlines()[0]} {str(err).splitlines()[1:2]}"
        ) from err
    if missing or unexpected:
        raise ConfigError(
            f"task.pretrained_ckpt '{path}' does not fit the network (use the pretraining run's model "
            f"config): missing {list(missing)[:4]}, unexpected {list(unexpected)[:4]}"
        )
