"""Normalisation layers used by the backbones."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn


def _rms_forward(xf: Tensor, weight: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    """xf (..., d) fp32 -> (xf * rstd * weight, rstd (..., 1))."""
    rstd = torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    return xf * rstd * weight.float(), rstd


class _RMSNormFn(torch.autograd.Function):
    """RMSNorm that keeps only its input and rstd (..., 1) for the backward.

    Plain autograd would also keep the fp32 normalised activations (for the weight's gradient): one
    more (batch, seqlen, d_model) fp32 tensor per norm (2.4 GB at the Mamba-130M step, 16 x 2048 x 24).
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, eps: float) -> Tensor:
        out, rstd = _rms_forward(x.float(), weight, eps)
        ctx.save_for_backward(x, weight, rstd)
        # no `out.to(x.dtype)` when it would return `out` itself: torch.compile (Dynamo, torch 2.11) then
        # takes `out` for a second output of the Function and routes the gradient to it, so every
        # gradient before the norm comes back zero
        return out if out.dtype == x.dtype else out.to(x.dtype)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, Tensor, None]:
        x, weight, rstd = ctx.saved_tensors
        xhat = x.float() * rstd
        g = grad.float()
        gw = g * weight.float()
        dx = rstd * (gw - xhat * (gw * xhat).mean(-1, keepdim=True))
        dweight = (g * xhat).reshape(-1, xhat.shape[-1]).sum(0)
        return dx.to(x.dtype), dweight.to(weight.dtype), None


class RMSNorm(nn.Module):
    """Root-mean-square norm (no mean subtraction, no bias), as in the released Mamba LMs.

    Computed in fp32 and cast back, so bf16 activations keep a stable normaliser. With gradients it
    keeps only its input and the (..., 1) normaliser for the backward (:class:`_RMSNormFn`).
    """

    def __init__(self, d_model: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d_model))

    def forward(self, x: Tensor) -> Tensor:
        """x: (..., d_model) -> (..., d_model)."""
        if torch.is_grad_enabled() and (x.requires_grad or self.weight.requires_grad):
            return _RMSNormFn.apply(x, self.weight, self.eps)
        return _rms_forward(x.float(), self.weight, self.eps)[0].to(x.dtype)


# tests set this to run the Triton kernel on CPU tensors (under TRITON_INTERPRET=1)
_FUSED_ON_CPU = False


def fused_add_rms_norm(
    hidden: Tensor,
    residual: Tensor | None,
    norm: nn.Module,
    residual_in_fp32: bool,
    autocast_out: bool = True,
) -> tuple[Tensor, Tensor] | None:
    """Residual add + RMSNorm in one Triton kernel (:mod:`mambabench.kernels.rms_norm`), or None when
    it does not apply (CPU tensors, no Triton, another norm, a non-fp32 norm weight or residual stream).

    hidden, residual: (batch, seqlen, d_model) (residual None for the first layer). Returns (normed,
    new residual): the residual in fp32, the normed output in the autocast dtype under autocast (the
    dtype the next matmul casts it to anyway; same values) if ``autocast_out``, else fp32. It replaces
    ``residual = residual + hidden`` (fp32), ``norm(residual)``.
    """
    if not (
        (hidden.is_cuda or _FUSED_ON_CPU)
        and residual_in_fp32
        and isinstance(norm, RMSNorm)
        and norm.weight.dtype == torch.float32
    ):
        return None
    try:
        from mambabench.kernels.rms_norm import add_rms_norm_triton
    except ImportError:  # no triton
        return None
    device_type = hidden.device.type
    autocast = autocast_out and torch.is_autocast_enabled(device_type)
    out_dtype = torch.get_autocast_dtype(device_type) if autocast else torch.float32
    return add_rms_norm_triton(hidden, residual, norm.weight, norm.eps, True, out_dtype)
