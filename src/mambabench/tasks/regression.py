"""In-context regression task: squared error at every prompt position, normalised by the dimension.

Batches are ``{"inputs": (batch, 2n, n_dims), "targets": (batch, n)}`` (see :mod:`mambabench.data.icl`);
the network predicts a scalar at every position and the task reads it at the ``x`` positions (even
indices), so the prediction at ``x_i`` has seen ``i`` examples. The training loss is the mean squared
error over all positions (Garg et al., arXiv 2208.01066). Evaluation logs ``error`` = squared error /
n_dims averaged over positions (the zero predictor scores 1 on noiseless linear regression) and keeps
the whole curve, error vs number of in-context examples, per loader: written to
``<run>/icl/<stage>_curves.csv`` and returned by :meth:`summary_items` for ``summary.json``.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from mambabench.tasks.base import SequenceTask


def x_position_predictions(network: nn.Module, inputs: Tensor) -> Tensor:
    """inputs (batch, 2n, n_dims) -> the predictions read at the x positions (batch, n), in float32."""
    return network(inputs)[:, 0::2, 0].float()


def normalised_squared_error(predictions: Tensor, targets: Tensor, n_dims: int) -> Tensor:
    """(batch, n) squared error divided by ``n_dims`` (Garg et al.'s normalisation)."""
    return (predictions.float() - targets.float()).square() / n_dims


class RegressionTask(SequenceTask):
    """Trains and evaluates a :class:`mambabench.models.regression_head.VectorSequenceModel`.

    Args:
        network, optimizer, scheduler, compile: as :class:`SequenceTask`.
        curves_csv: write the per-position error curves of every evaluation under ``<run>/icl/``.
    """

    mean_metrics = ("loss", "error")

    def __init__(
        self,
        network: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        compile: bool = False,
        curves_csv: bool = True,
    ) -> None:
        super().__init__(network, optimizer, scheduler, compile)
        self.curves_csv = curves_csv
        self._curve_sums: dict[str, tuple[Tensor, int]] = {}
        self.curves: dict[str, dict[str, list[float]]] = {}

    def forward(self, inputs: Tensor) -> Tensor:
        return x_position_predictions(self.network, inputs)

    def compute(self, batch: dict[str, Tensor]) -> dict[str, tuple[Tensor, int]]:
        inputs, targets = batch["inputs"], batch["targets"]
        predictions = self(inputs)
        squared = (predictions - targets.float()).square()
        count = targets.numel()
        self._last_error = squared.detach() / inputs.shape[-1]
        return {"loss": (squared.mean(), count), "error": (self._last_error.mean(), count)}

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        values = self.compute(batch)
        self.tokens_seen += int(batch["inputs"].shape[0] * batch["inputs"].shape[1])
        for name, (value, _) in values.items():
            self.log(f"train/{name}", value, on_step=True, on_epoch=False, prog_bar=name == "loss")
        return values["loss"][0]

    # ---------------------------------------------------------------- per-position curves per loader
    def _eval_step(self, stage: str, batch: dict[str, Tensor], dataloader_idx: int) -> None:
        super()._eval_step(stage, batch, dataloader_idx)
        key = f"{stage}|{self._loader_name(stage, dataloader_idx)}"
        sums, count = self._curve_sums.get(key, (0.0, 0))
        self._curve_sums[key] = (sums + self._last_error.sum(0).double(), count + self._last_error.shape[0])

    def _log_eval(self, stage: str) -> None:
        curves = {}
        for key in [k for k in self._curve_sums if k.startswith(f"{stage}|")]:
            sums, count = self._curve_sums.pop(key)
            sums = self.trainer.strategy.reduce(sums.to(self.device), reduce_op="sum")
            count = self.trainer.strategy.reduce(
                torch.tensor(float(count), device=self.device), reduce_op="sum"
            )
            curves[key.split("|", 1)[1]] = (sums / count).cpu().tolist()
        if curves and not self.trainer.sanity_checking:
            self.curves[stage] = curves
            if self.curves_csv and self.trainer.is_global_zero:
                write_curves_csv(curves, Path(self.trainer.default_root_dir) / "icl" / f"{stage}_curves.csv")
        super()._log_eval(stage)

    def summary_items(self) -> dict[str, Any]:
        """``icl_curves``: {stage: {loader: error at 0, 1, ... in-context examples}} for ``summary.json``."""
        return {"icl_curves": self.curves} if self.curves else {}


def write_curves_csv(curves: dict[str, list[float]], path: Path) -> Path:
    """Rows (loader, examples, error); one row per loader and number of in-context examples."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["loader", "examples", "error"])
        for loader, curve in curves.items():
            writer.writerows((loader, k, f"{e:.6g}") for k, e in enumerate(curve))
    return path
