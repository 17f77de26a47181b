"""Triton single-token selective state update (decoding), state updated in place.

    state : (batch, dim, dstate) fp32, updated in place
    x, dt, z : (batch, dim)
    A : (dim, dstate);  B, C : (batch, dstate) or (batch, groups, dstate);  D, dt_bias : (dim,)
    returns out (batch, dim) in x's dtype

    state <- state * exp(dt * A) + dt * B * x;   out = sum_n state * C + D * x;   out *= silu(z)

The launch parameters are fixed by dstate (no autotuning: a tuning run would update the state
several times).
"""

from __future__ import annotations

from contextlib import nullcontext

import torch
import triton
import triton.language as tl
from torch import Tensor

from mambabench.kernels import _interpret_compat
from mambabench.kernels._host import cdiv, next_power_of_2

_interpret_compat.patch()

__all__ = ["selective_state_update_triton"]


@triton.jit
def _state_update_kernel(
    state_ptr,
    x_ptr,
    dt_ptr,
    A_ptr,
    B_ptr,
    C_ptr,
    D_ptr,
    z_ptr,
    bias_ptr,
    out_ptr,
    dim,
    dstate,
    dim_per_group,
    s_sb,
    s_sd,
    s_sn,
    s_xb,
    s_xd,
    s_tb,
    s_td,
    s_Ad,
    s_An,
    s_Bb,
    s_Bg,
    s_Bn,
    s_Cb,
    s_Cg,
    s_Cn,
    s_zb,
    s_zd,
    s_ob,
    s_od,
    HAS_D: tl.constexpr,
    HAS_Z: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    SOFTPLUS: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    """Grid (cdiv(dim, BLOCK_D), batch); each program owns a [BLOCK_D, BLOCK_N] state tile."""
    pid_d = tl.program_id(0)
    pid_b = tl.program_id(1).to(tl.int64)
    offs_d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    offs_n = tl.arange(0, BLOCK_N)
    mask_d = offs_d < dim
    mask_n = offs_n < dstate
    mask = mask_d[:, None] & mask_n[None, :]
    d64 = offs_d.to(tl.int64)
    group = d64 // dim_per_group

    s_ptrs = state_ptr + pid_b * s_sb + d64[:, None] * s_sd + offs_n[None, :] * s_sn
    h = tl.load(s_ptrs, mask=mask, other=0.0).to(tl.float32)
    x = tl.load(x_ptr + pid_b * s_xb + d64 * s_xd, mask=mask_d, other=0.0).to(tl.float32)
    dt = tl.load(dt_ptr + pid_b * s_tb + d64 * s_td, mask=mask_d, other=0.0).to(tl.float32)
    if HAS_BIAS:
        dt += tl.load(bias_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)
    if SOFTPLUS:
        dt = tl.where(dt <= 20.0, tl.log(1.0 + tl.exp(dt)), dt)
    A = tl.load(A_ptr + d64[:, None] * s_Ad + offs_n[None, :] * s_An, mask=mask, other=0.0).to(tl.float32)
    Bv = tl.load(
        B_ptr + pid_b * s_Bb + group[:, None] * s_Bg + offs_n[None, :] * s_Bn, mask=mask, other=0.0
    ).to(tl.float32)
    Cv = tl.load(
        C_ptr + pid_b * s_Cb + group[:, None] * s_Cg + offs_n[None, :] * s_Cn, mask=mask, other=0.0
    ).to(tl.float32)
    dA = tl.exp2(A * dt[:, None] * 1.4426950408889634)
    h = h * dA + Bv * (dt * x)[:, None]
    tl.store(s_ptrs, h.to(state_ptr.dtype.element_ty), mask=mask)
    out = tl.sum(h * Cv, axis=1)
    if HAS_D:
        out += x * tl.load(D_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)
    if HAS_Z:
        z = tl.load(z_ptr + pid_b * s_zb + d64 * s_zd, mask=mask_d, other=0.0).to(tl.float32)
        out = out * z * tl.sigmoid(z)
    tl.store(out_ptr + pid_b * s_ob + d64 * s_od, out.to(out_ptr.dtype.element_ty), mask=mask_d)


def _config(dstate: int) -> tuple[int, int]:
    """(BLOCK_D, num_warps) by dstate, as hand-tuned kernels of this kind do."""
    if dstate <= 16:
        return 32, 4
    if dstate <= 32:
        return 16, 4
    if dstate <= 64:
        return 8, 4
    if dstate <= 128:
        return 4, 4
    return 4, 8


def selective_state_update_triton(
    state: Tensor,
    x: Tensor,
    dt: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    dt_bias: Tensor | None = None,
    dt_softplus: bool = False,
) -> Tensor:
    """One decoding step; ``state`` (batch, dim, dstate) is updated in place. Returns (batch, dim)."""
    batch, dim, dstate = state.shape
    if x.shape != (batch, dim) or dt.shape != (batch, dim):
        raise ValueError(f"x and dt must be (batch={batch}, dim={dim})")
    if A.shape != (dim, dstate):
        raise ValueError(f"A must be (dim={dim}, dstate={dstate}), got {tuple(A.shape)}")
    if A.is_complex():
        raise ValueError("selective_state_update_triton supports real A only")
    if B.dim() == 2:
        B, C = B.unsqueeze(1), C.unsqueeze(1)
    groups = B.shape[1]
    if dim % groups != 0:
        raise ValueError(f"dim={dim} is not divisible by groups={groups}")
    out = torch.empty_like(x)
    block_d, warps = _config(dstate)
    dummy = A
    zz = z if z is not None else x
    grid = (cdiv(dim, block_d), batch)
    with torch.cuda.device(x.device) if x.is_cuda else nullcontext():
        _state_update_kernel[grid](
            state,
            x,
            dt,
            A,
            B,
            C,
            D if D is not None else dummy,
            zz,
            dt_bias if dt_bias is not None else dummy,
            out,
            dim,
            dstate,
            dim // groups,
            *state.stride(),
            *x.stride(),
            *dt.stride(),
            *A.stride(),
            *B.stride(),
            *C.stride(),
            *zz.stride(),
            *out.stride(),
            HAS_D=D is not None,
            HAS_Z=z is not None,
            HAS_BIAS=dt_bias is not None,
            SOFTPLUS=bool(dt_softplus),
            BLOCK_D=block_d,
            BLOCK_N=max(2, next_power_of_2(dstate)),
            num_warps=warps,
        )
    return out
