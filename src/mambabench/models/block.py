"""Pre-norm residual block (official ``Block``: Add -> Norm -> Mixer [-> Add -> Norm -> MLP])."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor, nn

from mambabench.models.norms import RMSNorm, fused_add_rms_norm


def add_norm_step(
    hidden: Tensor, residual: Tensor | None, norm: nn.Module, residual_in_fp32: bool
) -> tuple[Tensor, Tensor]:
    """Residual add + norm for generation (prefill and decode): hidden, residual (..., d_model) ->
    (normed in the norm's dtype, new residual). On CUDA an RMSNorm with an fp32 residual stream runs as one Triton
    kernel (:func:`mambabench.kernels.rms_norm.add_rms_norm_triton`, normalising the fp32 residual;
    any weight dtype), saving five launches per norm in the decode step; elsewhere the PyTorch path."""
    if hidden.is_cuda and residual_in_fp32 and isinstance(norm, RMSNorm):
        try:
            from mambabench.kernels.rms_norm import add_rms_norm_triton
        except ImportError:  # no triton
            pass
        else:
            return add_rms_norm_triton(hidden, residual, norm.weight, norm.eps, True, norm.weight.dtype)
    residual = hidden if residual is None else residual + hidden
    residual = residual.float() if residual_in_fp32 else residual
    return norm(residual.to(norm.weight.dtype)), residual


class Block(nn.Module):
    """One residual layer; carries the residual stream separately so add and norm could fuse.

    Args:
        d_model: width.
        mixer: the sequence mixer module (Mamba, attention, ...).
        norm_cls: callable d_model -> norm module.
        mlp: optional channel MLP (None for pure Mamba stacks). An MLP with ``stateful = True``
            (RWKV's channel-mix) is called as ``mlp(x, cache=...)`` / ``mlp.step(x, cache)`` with the
            layer's cache.
        residual_in_fp32: keep the residual stream in fp32 (as the released Mamba LMs do).
        fused_add_norm: on CUDA, the residual add and the RMSNorm before the mixer run as one Triton
            kernel forward and one backward (:func:`mambabench.models.norms.fused_add_rms_norm`; the
            official ``fused_add_norm``); elsewhere, or for other norms, the PyTorch path.
    """

    def __init__(
        self,
        d_model: int,
        mixer: nn.Module,
        norm_cls: Callable[[int], nn.Module],
        mlp: nn.Module | None = None,
        residual_in_fp32: bool = True,
        fused_add_norm: bool = False,
    ) -> None:
        super().__init__()
        self.residual_in_fp32 = residual_in_fp32
        self.fused_add_norm = fused_add_norm
        self.norm = norm_cls(d_model)
        self.mixer = mixer
        self.mlp = mlp
        self.norm2 = norm_cls(d_model) if mlp is not None else None

    def _add(self, hidden: Tensor, residual: Tensor | None) -> Tensor:
        residual = hidden if residual is None else residual + hidden
        return residual.float() if self.residual_in_fp32 else residual

    def forward(
        self, hidden: Tensor, residual: Tensor | None = None, cache: Any = None
    ) -> tuple[Tensor, Tensor]:
        """hidden, residual: (batch, seqlen, d_model) -> (mixer output, new residual)."""
        fused = (
            fused_add_rms_norm(hidden, residual, self.norm, self.residual_in_fp32)
            if self.fused_add_norm
            else None
        )
        if fused is not None:
            normed, residual = fused
        elif cache is not None:  # generation's prefill: no gradients, the one-kernel add + norm applies
            normed, residual = add_norm_step(hidden, residual, self.norm, self.residual_in_fp32)
        else:
            residual = self._add(hidden, residual)
            normed = self.norm(residual.to(self.norm.weight.dtype))
        hidden = self.mixer(normed, cache=cache)
        if self.mlp is not None:
            if cache is not None:
                normed, residual = add_norm_step(hidden, residual, self.norm2, self.residual_in_fp32)
            else:
                residual = self._add(hidden, residual)
                normed = self.norm2(residual.to(self.norm2.weight.dtype))
            # a stateful MLP (RWKV's channel-mix, token shift) shares the layer's cache
            hidden = (
                self.mlp(normed, cache=cache) if getattr(self.mlp, "stateful", False) else self.mlp(normed)
            )
        return hidden, residual

    def step(self, hidden: Tensor, residual: Tensor | None, cache: Any) -> tuple[Tensor, Tensor]:
        """One token: hidden, residual (batch, d_model)."""
        normed, residual = add_norm_step(hidden, residual, self.norm, self.residual_in_fp32)
        hidden = self.mixer.step(normed, cache)
        if self.mlp is not None:
            normed, residual = add_norm_step(hidden, residual, self.norm2, self.residual_in_fp32)
            hidden = (
                self.mlp.step(normed, cache) if getattr(self.mlp, "stateful", False) else self.mlp(normed)
            )
        return hidden, residual
