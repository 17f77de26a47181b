"""Causal depthwise 1-D convolution (the short convolution of the Mamba block), in PyTorch.

Reference for the Triton kernel and the CPU path; also the single-step update used in decoding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["causal_conv1d_ref", "causal_conv1d_update_ref"]


def causal_conv1d_ref(
    x: Tensor, weight: Tensor, bias: Tensor | None = None, activation: str | None = None
) -> Tensor:
    """Depthwise causal convolution: out[:, :, t] depends only on x[:, :, t-k+1 .. t].

    Args:
        x: (batch, dim, seqlen).
        weight: (dim, width).
        bias: (dim,) or None.
        activation: None or "silu" (fused SiLU, as in the official causal_conv1d_fn).

    Returns:
        (batch, dim, seqlen) in x's dtype.
    """
    if activation not in (None, "silu", "swish"):
        raise ValueError(f"activation must be None or 'silu', got {activation!r}")
    dim, width = weight.shape
    out = F.conv1d(
        x,
        weight.unsqueeze(1).to(x.dtype),
        None if bias is None else bias.to(x.dtype),
        padding=width - 1,
        groups=dim,
    )[..., : x.shape[-1]]
    return F.silu(out) if activation is not None else out


def causal_conv1d_update_ref(
    x: Tensor, conv_state: Tensor, weight: Tensor, bias: Tensor | None = None, activation: str | None = None
) -> Tensor:
    """One decoding step; shifts ``conv_state`` (batch, dim, width) in place and appends x (batch, dim).

    Returns the convolution output for this step, (batch, dim).
    """
    conv_state.copy_(torch.roll(conv_state, shifts=-1, dims=-1))
    conv_state[:, :, -1] = x
    out = torch.sum(conv_state * weight.to(conv_state.dtype), dim=-1)
    if bias is not None:
        out = out + bias.to(out.dtype)
    out = F.silu(out) if activation is not None else out
    return out.to(x.dtype)
