"""The standalone S4 layer: in_proj -> diagonal SSM (or another inner layer) -> GELU -> [gate] -> out_proj.

With ``gate=False`` and the S4D-Lin SSM (:class:`mambabench.models.mixers.s4d.S4DInner`) it is the
"No gate / S4" architecture of Table 1 (arXiv:2312.00752); with ``inner_layer="s6"`` the "No gate / S6"
row.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mambabench.models.mixers.inner import make_inner
from mambabench.models.mixers.s4d import S4DInner
from mambabench.models.ssm import SSMCache


class S4D(nn.Module):
    """Standalone S4(D) layer: in_proj -> S4D SSM -> GELU -> [x silu(z) gate] -> out_proj.

    With ``gate=False`` this is the "No gate" architecture of Table 1 (the S4 row). d_inner =
    expand * d_model channels each carry an independent SSM.

    Args:
        d_model: width D; expand: E (d_inner = E * D).
        d_state, A_init, dt_min, dt_max: of the SSM (:class:`S4DInner`).
        gate: multiply by silu(z) with z from in_proj (the H3/Mamba-style gate).
        activation: "gelu" (S4) or "identity".
        bias: biases on the projections.
        inner_layer: None (this S4D SSM, initialised by ``A_init``) or another inner layer of
            :mod:`mambabench.models.mixers.inner` ("s6", "hyena", ...) in the same shell.
    """

    def __init__(
        self,
        d_model: int,
        d_state: int = 64,
        expand: int = 1,
        A_init: str = "s4d_lin",
        dt_min: float = 0.001,
        dt_max: float = 0.1,
        gate: bool = False,
        activation: str = "gelu",
        bias: bool = True,
        inner_layer: str | None = None,
        scan_backend: str = "auto",
        layer_idx: int | None = None,
    ) -> None:
        super().__init__()
        if activation not in ("gelu", "identity"):
            raise ValueError(f"activation must be 'gelu' or 'identity', got {activation!r}")
        self.d_inner = expand * d_model
        self.gate = gate
        self.activation = activation
        self.layer_idx = layer_idx
        self.in_proj = nn.Linear(d_model, self.d_inner * (2 if gate else 1), bias=bias)
        if inner_layer is None:
            self.ssm = S4DInner(self.d_inner, d_state, A_init, dt_min, dt_max, scan_backend=scan_backend)
        else:  # another inner layer in the same un-gated shell (Table 1: "No gate / S6")
            self.ssm = make_inner(
                inner_layer, self.d_inner, d_state, dt_min=dt_min, dt_max=dt_max, scan_backend=scan_backend
            )
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=bias)

    def _finish(self, y: Tensor, z: Tensor | None) -> Tensor:
        if self.activation == "gelu":
            y = F.gelu(y)
        if z is not None:
            y = y * F.silu(z)
        return self.out_proj(y)

    def forward(self, hidden: Tensor, cache: SSMCache | None = None) -> Tensor:
        """hidden: (batch, seqlen, d_model) -> (batch, seqlen, d_model)."""
        xz = self.in_proj(hidden)
        x, z = xz.chunk(2, dim=-1) if self.gate else (xz, None)
        y = self.ssm(x.transpose(1, 2), cache=cache).transpose(1, 2)
        return self._finish(y, z)

    def step(self, hidden: Tensor, cache: SSMCache) -> Tensor:
        """hidden: (batch, d_model) -> (batch, d_model)."""
        xz = self.in_proj(hidden)
        x, z = xz.chunk(2, dim=-1) if self.gate else (xz, None)
        return self._finish(self.ssm.step(x, cache), z)

    def allocate_cache(
        self, batch_size: int, dtype: torch.dtype, device: torch.device, max_seqlen: int | None = None
    ) -> Any:
        return self.ssm.allocate_cache(batch_size, dtype, device, max_seqlen=max_seqlen)
