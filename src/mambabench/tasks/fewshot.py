"""Few-shot in-context learning of word tasks by a language model (``task=fewshot_icl``).

Pairs with :class:`mambabench.data.fewshot.FewShotWordsDataModule`: every evaluation loader is one
(task, number of demonstrations). A query counts as solved when the model's greedy continuation of the
prompt is exactly the answer's tokens (teacher-forced argmax at every answer position, the same as
greedy decoding up to the answer's length). Results: ``{stage}/<task>_k<k>/accuracy`` metrics, a CSV
``<run>/fewshot/<stage>_accuracy.csv`` and a figure of accuracy vs demonstrations per task.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mambabench.tasks.base import SequenceTask
from mambabench.tasks.classification import load_pretrained_backbone
from mambabench.tasks.lm import IGNORE_INDEX

_LOADER = re.compile(r"^(?P<task>.+)_k(?P<k>\d+)$")


def answer_accuracy(logits: Tensor, targets: Tensor) -> Tensor:
    """logits (batch, seqlen, vocab), targets (batch, seqlen) with IGNORE_INDEX off the answer ->
    (batch,) 1.0 where every answer token is the argmax."""
    mask = targets != IGNORE_INDEX
    correct = (logits.argmax(-1) == targets) | ~mask
    return correct.all(-1).float()


class FewShotICLTask(SequenceTask):
    """Evaluates an LM network (e.g. :class:`mambabench.models.LMHeadModel`) on few-shot word tasks.

    Args:
        network, optimizer, scheduler, compile: as :class:`SequenceTask` (the optimizer is unused).
        pretrained_ckpt: a training run's checkpoint (or a state dict) whose ``network.*`` weights to load;
            the model config must match that run's.
    """

    mean_metrics = ("loss", "accuracy")

    def __init__(
        self,
        network: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        compile: bool = False,
        pretrained_ckpt: str | None = None,
    ) -> None:
        super().__init__(network, optimizer, scheduler, compile)
        if pretrained_ckpt:
            load_pretrained_backbone(network, pretrained_ckpt)
        self.pretrained_ckpt = pretrained_ckpt
        self.accuracy: dict[str, dict[str, dict[int, float]]] = {}

    def compute(self, batch: dict[str, Tensor]) -> dict[str, tuple[Tensor, int]]:
        logits = self.network(batch["input_ids"])
        targets = batch["targets"]
        loss = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), ignore_index=IGNORE_INDEX)
        accuracy = answer_accuracy(logits, targets)
        return {
            "loss": (loss, int((targets != IGNORE_INDEX).sum())),
            "accuracy": (accuracy.mean(), accuracy.numel()),
        }

    def _log_eval(self, stage: str) -> None:
        results: dict[str, dict[int, float]] = {}
        for key, metrics in self.eval_metrics.items():
            loader = key.split("|", 1)[1]
            match = _LOADER.match(loader)
            if key.startswith(f"{stage}|") and match and metrics["accuracy"].update_called:
                results.setdefault(match["task"], {})[int(match["k"])] = float(metrics["accuracy"].compute())
        super()._log_eval(stage)
        if results and self._trainer and not self.trainer.sanity_checking:
            self.accuracy[stage] = results
            if self.trainer.is_global_zero:
                root = Path(self.trainer.default_root_dir) / "fewshot"
                write_accuracy_csv(results, root / f"{stage}_accuracy.csv")
                plot_accuracy(results, root / f"{stage}_accuracy.png")

    def summary_items(self) -> dict[str, Any]:
        """``fewshot_accuracy``: {stage: {task: {k: accuracy}}} for ``summary.json``."""
        return {"fewshot_accuracy": self.accuracy} if self.accuracy else {}


def write_accuracy_csv(results: dict[str, dict[int, float]], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["task", "demonstrations", "accuracy"])
        for task, per_k in results.items():
            writer.writerows((task, k, f"{acc:.4f}") for k, acc in sorted(per_k.items()))
    return path


def plot_accuracy(results: dict[str, dict[int, float]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.6))
    for task, per_k in sorted(results.items()):
        ks = sorted(per_k)
        ax.plot(ks, [per_k[k] for k in ks], marker="o", label=task)
    ax.set_xlabel("demonstrations")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
