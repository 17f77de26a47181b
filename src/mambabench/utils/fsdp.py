"""Lightning's FSDP, also on CPU processes, so that sharded training can be checked without GPUs.

Lightning 2.6 refuses ``strategy="fsdp"`` unless the accelerator is CUDA, although PyTorch's
``FullyShardedDataParallel`` runs on CPU tensors with the gloo backend when it is given the CPU device.
:class:`FSDPStrategyAnyDevice` is Lightning's :class:`~lightning.pytorch.strategies.FSDPStrategy` but
for that, so ``trainer=fsdp_cpu`` trains on CPU processes through the same wrapping, flat parameters,
gradient reduce-scatter, clipping and full-state-dict checkpoints as ``trainer=fsdp`` on GPUs (slowly:
for checking, like ``trainer=ddp_cpu``).
"""

from __future__ import annotations

import torch
from lightning.pytorch.strategies import FSDPStrategy
from torch import nn


class FSDPStrategyAnyDevice(FSDPStrategy):
    """:class:`~lightning.pytorch.strategies.FSDPStrategy` that also runs on CPU processes (gloo).

    Lightning refuses a CPU accelerator only when ``type(strategy) is FSDPStrategy``, so this subclass
    passes; on CPU it wraps the model itself with ``device_id=cpu`` (Lightning passes the device index,
    None for the CPU, and FSDP then looks for a GPU) and leaves the rest to Lightning. On GPUs it is
    Lightning's strategy as is. Arguments: those of Lightning's ``FSDPStrategy``.
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
