"""Model FLOPs per token, counted per architecture, for MFU and the x-axis of scaling-law plots.

Forward FLOPs per token = 2 x (weights of every matrix multiply a token goes through: linear layers,
convolutions, the LM head; not the embedding lookup) + the sequence-mixing terms that are not weights:

* attention (MHA, and RetNet's parallel form): ``4 * seq_len * n_heads * head_dim`` per layer (QK^T and
  AV over the full context, PaLM's convention, arXiv 2204.02311 App. B);
* Mamba's selective scan: ``9 * d_inner * d_state`` per layer (mamba-paper.md §3.3's ``9BLDN``);
* Hyena / H3 long convolutions by FFT: ``10 * d * log2(2 * seq_len)`` per filtered channel set.

Training FLOPs are 3x forward (backward = 2x forward). MFU = training FLOPs per token x tokens/s / peak.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from mambabench.utils.built_shapes import built_shape

#: dense bf16 peak FLOP/s by device name fragment (without sparsity)
PEAK_BF16_FLOPS = {
    "H200": 989e12,
    "H100": 989e12,
    "A100": 312e12,
    "L40S": 362e12,
    "A10G": 125e12,
    "4090": 165e12,
}


def _weight_flops(network: nn.Module) -> int:
    """2 x the weights used per token (linear and conv layers, including a tied head once). A weight's
    size is that of its shape as built (:func:`~mambabench.utils.built_shapes.built_shape`): under FSDP each
    rank holds a flat shard only."""
    total, seen = 0, set()
    for module in network.modules():
        if isinstance(module, nn.Linear | nn.Conv1d):
            weight = module.weight
            if id(weight) in seen:
                continue
            seen.add(id(weight))
            total += 2 * math.prod(built_shape(weight))
    return total


def forward_flops_per_token(network: nn.Module, seq_len: int) -> int:
    """Forward FLOPs per token of ``network`` at context ``seq_len`` (see the module docstring)."""
    flops = _weight_flops(network)
    for module in network.modules():
        name = type(module).__name__
        if name == "MHA":
            flops += 4 * seq_len * module.n_heads * module.head_dim
        elif name == "MultiScaleRetention":
            flops += 2 * seq_len * module.n_heads * (module.k_dim + module.v_dim)
        elif name == "Mamba":
            flops += 9 * module.d_inner * module.d_state
        elif name in ("HyenaInner", "H3"):
            width = getattr(module, "d_model", None) or getattr(module, "d_inner", 0)
            flops += int(10 * width * math.log2(2 * seq_len))
    return int(flops)


def training_flops_per_token(network: nn.Module, seq_len: int) -> int:
    return 3 * forward_flops_per_token(network, seq_len)


def peak_flops(device: torch.device | str | None = None) -> float | None:
    """Dense bf16 peak FLOP/s of a CUDA device by name, or None (CPU, unknown GPU)."""
    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_BF16_FLOPS.items() if k in name), None)
