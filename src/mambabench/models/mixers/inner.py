"""Swappable inner sequence layers on channels, (batch, dim, seqlen) -> (batch, dim, seqlen).

Table 6 crosses the block (Mamba or H3) with the inner layer: "s4_complex" (S4D-Lin), "s4_real"
(S4D-Real), "hyena" (implicit long conv) or "s6" (selective SSM). :func:`make_inner` builds one;
every inner layer has ``forward(u, cache=None)``, ``step(u (batch, dim), cache)`` and
``allocate_cache``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mambabench.kernels import selective_scan_fn
from mambabench.models.mixers.hyena import HyenaInner
from mambabench.models.mixers.s4d import S4DInner
from mambabench.models.ssm import SSMCache, inverse_softplus_dt_bias, ssm_step

INNER_LAYERS = ("s6", "s4_complex", "s4_real", "hyena")


class S6Inner(nn.Module):
    """Selective SSM (S6, Algorithm 2) on channels, without the Mamba block's conv and gate.

    delta, B, C are projected from the input u itself: x_proj (dim -> dt_rank + 2N), dt_proj
    (dt_rank -> dim, bias = softplus^-1 of log-uniform [dt_min, dt_max]); A is S4D-Real.
    """

    def __init__(
        self,
        dim: int,
        d_state: int = 16,
        dt_rank: int | str = "auto",
        dt_min: float = 0.001,
        dt_max: float = 0.1,
        scan_backend: str = "auto",
    ) -> None:
        super().__init__()
        self.dim, self.d_state, self.scan_backend = dim, d_state, scan_backend
        self.dt_rank = math.ceil(dim / 16) if dt_rank == "auto" else int(dt_rank)
        self.x_proj = nn.Linear(dim, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, dim, bias=True)
        std = self.dt_rank**-0.5
        nn.init.uniform_(self.dt_proj.weight, -std, std)
        with torch.no_grad():
            self.dt_proj.bias.copy_(inverse_softplus_dt_bias(dim, dt_min, dt_max, 1e-4))
        self.dt_proj.bias._no_reinit = True
        self.A_log = nn.Parameter(torch.log(torch.arange(1, d_state + 1, dtype=torch.float32).repeat(dim, 1)))
        self.D = nn.Parameter(torch.ones(dim))
        self.A_log._no_weight_decay = True
        self.D._no_weight_decay = True

    def _params(self, u: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        dt, B, C = self.x_proj(u).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        return F.linear(dt, self.dt_proj.weight), B, C

    def forward(self, u: Tensor, cache: SSMCache | None = None) -> Tensor:
        """u: (batch, dim, seqlen) -> (batch, dim, seqlen)."""
        delta, B, C = self._params(u.transpose(1, 2))
        out = selective_scan_fn(
            u,
            delta.transpose(1, 2),
            -torch.exp(self.A_log.float()),
            B.transpose(1, 2).contiguous(),
            C.transpose(1, 2).contiguous(),
            self.D.float(),
            delta_bias=self.dt_proj.bias.float(),
            delta_softplus=True,
            return_last_state=cache is not None,
            backend=self.scan_backend,
        )
        if cache is None:
            return out
        cache.ssm_state.copy_(out[1])
        return out[0]

    def step(self, u: Tensor, cache: SSMCache) -> Tensor:
        delta, B, C = self._params(u)
        return ssm_step(
            cache.ssm_state,
            u,
            delta,
            -torch.exp(self.A_log.float()),
            B,
            C,
            self.D.float(),
            delta_bias=self.dt_proj.bias.float(),
            delta_softplus=True,
            backend=self.scan_backend,
        )

    def allocate_cache(
        self, batch_size: int, dtype: torch.dtype, device: torch.device, max_seqlen: int | None = None
    ) -> SSMCache:
        """Zero state (its size does not depend on ``max_seqlen``)."""
        return SSMCache(torch.zeros(batch_size, self.dim, self.d_state, device=device))


def make_inner(
    kind: str,
    dim: int,
    d_state: int = 16,
    repeat: int = 1,
    dt_rank: int | str = "auto",
    dt_min: float = 0.001,
    dt_max: float = 0.1,
    scan_backend: str = "auto",
    hyena: dict[str, Any] | None = None,
) -> nn.Module:
    """Build the inner layer ``kind`` over ``dim`` channels (see :data:`INNER_LAYERS`).

    ``repeat`` shares one set of parameters among that many consecutive channels (H3 heads); S6
    projects from every channel and cannot share. ``hyena`` holds :class:`HyenaInner` keywords.
    """
    if kind == "s6":
        if repeat != 1:
            raise ValueError("the s6 inner layer has no per-head sharing; use head_dim=1 with it")
        return S6Inner(dim, d_state, dt_rank, dt_min, dt_max, scan_backend)
    if kind in ("s4_complex", "s4_real"):
        A_init = "s4d_lin" if kind == "s4_complex" else "s4d_real"
        return S4DInner(dim, d_state, A_init, dt_min, dt_max, repeat=repeat, scan_backend=scan_backend)
    if kind == "hyena":
        return HyenaInner(dim, repeat=repeat, **(hyena or {}))
    raise ValueError(f"inner layer must be one of {INNER_LAYERS}, got {kind!r}")
