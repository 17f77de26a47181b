"""Lightning's FSDP, also on CPU processes, so that sharded training can be checked without GPUs.

Lightning 2.6 refuses ``strategy="fsdp"`` unless the accelerator is CUDA, although PyTorch's
``FullyShardedDataParallel`` runs on CPU tensors with the gloo backend when it is given the CPU device.
:class:`FSDPStrategyAnyDevice` is Lightning's :class:`~lightning.pytorch.strategies.FSDPStrategy` but
for that, so ``trainer=fsdp_cpu`` trains on CPU processes through the same wrapping, flat parameters,
gradient reduce-scatter, clipping and full-state-dict checkpoints as ``trainer=fsdp`` on GPUs (slowly:
for checking, like ``trainer=ddp_cpu``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import lightning.pytorch.strategies.fsdp as lightning_fsdp
import torch
from lightning.pytorch.strategies import FSDPStrategy
from torch import nn
from torch.optim import Optimizer


class FSDPStrategyAnyDevice(FSDPStrategy):
    """:class:`~lightning.pytorch.strategies.FSDPStrategy` that also runs on CPU processes (gloo).

    Lightning refuses a CPU accelerator only when ``type(strategy) is FSDPStrategy``, so this subclass
    passes. On CPU it wraps the model itself with ``device_id=cpu`` (Lightning passes the device index,
    None for the CPU, and FSDP then looks for a GPU) and gathers checkpoints without CPU offload (see
    :meth:`_gather_without_offload`); the rest is Lightning's. On GPUs it is Lightning's strategy as is.
    Arguments: those of Lightning's ``FSDPStrategy``.
    """

    def _setup_model(self, model: nn.Module) -> nn.Module:
        from torch.distributed.fsdp import FullyShardedDataParallel

        wrapped = any(isinstance(module, FullyShardedDataParallel) for module in model.modules())
        if self.root_device.type == "cpu" and not wrapped:
            model = FullyShardedDataParallel(
                module=model,
                cpu_offload=self.cpu_offload,
                mixed_precision=self.mixed_precision_config,
                sharding_strategy=self.sharding_strategy,
                device_id=torch.device("cpu"),
                **self.kwargs,
            )
            self.kwargs.pop("auto_wrap_policy", None)  # applied; Lightning would warn that it is ignored
        return super()._setup_model(model)

    def lightning_module_state_dict(self) -> dict[str, Any]:
        with self._gather_without_offload():
            return super().lightning_module_state_dict()

    def optimizer_state(self, optimizer: Optimizer) -> dict[str, Any]:
        with self._gather_without_offload():
            return super().optimizer_state(optimizer)

    def load_checkpoint(self, checkpoint_path: Any, weights_only: bool | None = None) -> dict[str, Any]:
        with self._gather_without_offload():
            return super().load_checkpoint(checkpoint_path, weights_only=weights_only)

    @contextmanager
    def _gather_without_offload(self) -> Iterator[None]:
        """On CPU ranks, gather full state dicts without FSDP's CPU offload.

        Lightning always asks FSDP to offload a gathered full state dict to the CPU; with parameters that
        are on the CPU already, FSDP then frees the gathered parameters under the views it hands back
        (a segmentation fault while saving a checkpoint from two or more CPU ranks). GPU ranks are left
        alone.
        """
        if self.root_device.type != "cpu":
            yield
            return
        original = lightning_fsdp._get_full_state_dict_context
        lightning_fsdp._get_full_state_dict_context = _full_state_dict_context_without_offload
        try:
            yield
        finally:
            lightning_fsdp._get_full_state_dict_context = original


def _full_state_dict_context_without_offload(
    module: nn.Module, world_size: int, rank0_only: bool = True
) -> AbstractContextManager:
    """FSDP's full-state-dict context (model and optimizer) with ``offload_to_cpu=False``."""
    from torch.distributed.fsdp import FullStateDictConfig, FullyShardedDataParallel, StateDictType
    from torch.distributed.fsdp.api import FullOptimStateDictConfig

    return FullyShardedDataParallel.state_dict_type(
        module=module,
        state_dict_type=StateDictType.FULL_STATE_DICT,
        state_dict_config=FullStateDictConfig(offload_to_cpu=False, rank0_only=rank0_only),
        optim_state_dict_config=FullOptimStateDictConfig(offload_to_cpu=False, rank0_only=rank0_only),
    )
