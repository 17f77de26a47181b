"""Initialisations of the SSM parameters: A (Table 8 of arXiv:2312.00752) and the step size's bias."""

from __future__ import annotations

import math

import torch
from torch import Tensor

A_INITS = ("s4d_lin", "s4d_real", "s4d_lin_real", "random")


def init_a_matrix(A_init: str, dim: int, d_state: int) -> tuple[Tensor, Tensor | None]:
    """log(-Re A) (dim, d_state) and Im A (or None for real A) for an initialisation of Table 8.

    s4d_lin: A_n = -1/2 + i*pi*n (complex); s4d_real: A_n = -(n+1); s4d_lin_real: A_n = -1/2 (the
    real part of S4D-Lin); random: A_n = -exp(N(0, 1)).
    """
    n = torch.arange(d_state, dtype=torch.float32).repeat(dim, 1)
    if A_init == "s4d_lin":
        return torch.full((dim, d_state), math.log(0.5)), math.pi * n
    if A_init == "s4d_real":
        return torch.log(n + 1), None
    if A_init == "s4d_lin_real":
        return torch.full((dim, d_state), math.log(0.5)), None
    if A_init == "random":
        return torch.randn(dim, d_state), None
    raise ValueError(f"A_init must be one of {A_INITS}, got {A_init!r}")


def inverse_softplus_dt_bias(
    d_inner: int, dt_min: float, dt_max: float, dt_init_floor: float, generator: torch.Generator | None = None
) -> Tensor:
    """dt ~ logUniform[dt_min, dt_max] (clamped below at dt_init_floor), returned as softplus^-1(dt): (d_inner,)."""
    dt = torch.exp(
        torch.rand(d_inner, generator=generator) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
    ).clamp(min=dt_init_floor)
    return dt + torch.log(-torch.expm1(-dt))
