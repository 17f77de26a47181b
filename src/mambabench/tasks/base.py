"""Shared LightningModule machinery: optimizer groups, schedules, and metrics per eval loader.

A task owns the loss, the metrics and the optimizer; the network it wraps knows nothing about them.
Subclasses implement :meth:`SequenceTask.compute` for one batch and declare which metrics they track.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import lightning as L
import torch
from torch import Tensor, nn
from torchmetrics import MeanMetric

from mambabench.tasks.optim import build_param_groups
from mambabench.utils.built_shapes import record_built_shapes
from mambabench.utils.checkpoint import CheckpointError, state_dict_mismatch


class SequenceTask(L.LightningModule):
    """Base task.

    Args:
        network: the model (e.g. :class:`mambabench.models.LMHeadModel`).
        optimizer: partial optimizer (``_partial_: true``) taking param groups; its ``weight_decay``
            applies to the decayed group only.
        scheduler: optional partial ``scheduler(optimizer, total_steps=...)`` stepped every optimizer step.
        compile: wrap the network in ``torch.compile`` (GPU runs).
    """

    #: metrics averaged over tokens/examples, logged as ``{stage}/{name}``
    mean_metrics: tuple[str, ...] = ("loss", "accuracy")

    def __init__(
        self,
        network: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        compile: bool = False,
    ) -> None:
        super().__init__()
        self.network = network
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.compile_network = compile
        self.eval_metrics = nn.ModuleDict()
        self.tokens_seen = 0

    # ----------------------------------------------------------------------------------- hooks
    def compute(self, batch: dict[str, Tensor]) -> dict[str, tuple[Tensor, int | Tensor]]:
        """Return {metric: (mean value, weight)} for a batch; must include "loss"."""
        raise NotImplementedError

    def derived_metrics(self, means: dict[str, Tensor]) -> dict[str, Tensor]:
        """Metrics computed from the epoch means (e.g. perplexity from the mean loss)."""
        return {}

    def configure_model(self) -> None:
        """Runs before the strategy wraps the model: records each parameter's built shape
        (:mod:`mambabench.utils.built_shapes`, read by the optimizer groups and the FLOP count: FSDP
        flattens and shards the parameters), then compiles the network if asked."""
        record_built_shapes(self)
        if self.compile_network and not isinstance(self.network, torch._dynamo.eval_frame.OptimizedModule):
            self.network = torch.compile(self.network)

    # -------------------------------------------------------------------------------- training
    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        values = self.compute(batch)
        self.tokens_seen += int(batch["input_ids"].numel())
        for name, (value, _) in values.items():
            self.log(
                f"train/{name}", value, on_step=True, on_epoch=False, prog_bar=name in ("loss", "accuracy")
            )
        return values["loss"][0]

    def _loader_name(self, stage: str, dataloader_idx: int) -> str:
        names = getattr(self.trainer.datamodule, f"{stage}_names", None) if self._trainer else None
        if names and dataloader_idx < len(names):
            return names[dataloader_idx]
        return str(dataloader_idx)

    def _eval_step(self, stage: str, batch: dict[str, Tensor], dataloader_idx: int) -> None:
        key = f"{stage}|{self._loader_name(stage, dataloader_idx)}"
        if key not in self.eval_metrics:
            self.eval_metrics[key] = nn.ModuleDict({m: MeanMetric() for m in self.mean_metrics}).to(
                self.device
            )
        for name, (value, weight) in self.compute(batch).items():
            if name in self.eval_metrics[key]:
                self.eval_metrics[key][name].update(value.detach().float(), weight)

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval_step("val", batch, dataloader_idx)

    def test_step(self, batch: dict[str, Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval_step("test", batch, dataloader_idx)

    def _log_eval(self, stage: str) -> None:
        names = getattr(self.trainer.datamodule, f"{stage}_names", None) or []
        primary = names[0] if names else "0"
        for key in [k for k in self.eval_metrics if k.startswith(f"{stage}|")]:
            loader = key.split("|", 1)[1]
            metrics = self.eval_metrics[key]
            means = {name: metric.compute() for name, metric in metrics.items() if metric.update_called}
            means.update(self.derived_metrics(means))
            for name, value in means.items():
                if len(names) > 1:
                    self.log(f"{stage}/{loader}/{name}", value, add_dataloader_idx=False)
                if loader == primary:
                    self.log(
                        f"{stage}/{name}",
                        value,
                        prog_bar=name in ("loss", "accuracy"),
                        add_dataloader_idx=False,
                    )
            for metric in metrics.values():
                metric.reset()

    def on_validation_epoch_end(self) -> None:
        self._log_eval("val")

    def on_test_epoch_end(self) -> None:
        self._log_eval("test")

    # ------------------------------------------------------------------------------- optimizer
    def configure_optimizers(self) -> Any:
        weight_decay = getattr(self.optimizer_factory, "keywords", {}).get("weight_decay", 0.0)
        optimizer = self.optimizer_factory(build_param_groups(self, weight_decay))
        if self.scheduler_factory is None:
            return optimizer
        total = self.trainer.estimated_stepping_batches
        if not math.isfinite(total):
            raise ValueError(
                "the LR schedule needs a finite run: set trainer.max_steps or trainer.max_epochs"
            )
        scheduler = self.scheduler_factory(optimizer, total_steps=int(total))
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step", "name": "trainer/lr"},
        }

    def configure_gradient_clipping(
        self,
        optimizer: torch.optim.Optimizer,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        """Clip as ``trainer.gradient_clip_val`` / ``gradient_clip_algorithm`` say. Under FSDP the norm is
        that of the whole gradient, which only the root FSDP module can compute from the shards of all
        ranks (its ``clip_grad_norm_``); Lightning 2.6 refuses norm clipping with FSDP instead."""
        fsdp = _fsdp_root(self.trainer.strategy.model) if self._trainer is not None else None
        if fsdp is not None and gradient_clip_val and gradient_clip_algorithm in (None, "norm"):
            fsdp.clip_grad_norm_(gradient_clip_val)
            return
        super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["tokens_seen"] = self.tokens_seen

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Refuse a checkpoint of a differently configured model with the differing keys and shapes."""

        def plain(state: dict[str, Any]) -> dict[str, Any]:
            return {k.replace("_orig_mod.", ""): v for k, v in state.items()}

        mismatch = state_dict_mismatch(plain(checkpoint.get("state_dict", {})), plain(self.state_dict()))
        if mismatch:
            raise CheckpointError(
                "the checkpoint was saved by a model with a different config than this run's:\n  "
                + "\n  ".join(mismatch)
                + "\nuse the model overrides of the run that wrote it (its config.yaml), or another checkpoint"
            )
        self.tokens_seen = checkpoint.get("tokens_seen", 0)


def _fsdp_root(model: nn.Module | None) -> nn.Module | None:
    """``model`` if it is a ``FullyShardedDataParallel`` module (the root of an FSDP-wrapped task), else None."""
    if model is None or not torch.distributed.is_available():
        return None
    from torch.distributed.fsdp import FullyShardedDataParallel

    return model if isinstance(model, FullyShardedDataParallel) else None
