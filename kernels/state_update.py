"""Triton single-token selective state update (decoding), state updated in place.

    state : (batch, dim, dstate) fp32, updated in place
    x, dt, z : (batch, dim)
    A : (dim, dstate);  B, C : (batch, dstate) or (batch, groups, dstate);  D, dt_bias : (dim,)
    returns out (batch, dim) in x's dtype

    state <- state * exp(dt * A) + dt * B * x;   out = sum_n state * C + D * x;   out *= silu(z)

For the Mamba decode step the same kernel also takes the low-rank delta and ``-exp(A_log)``
(:func:`selective_state_update_fused`): dt = round(dt_low @ dt_proj_weight^T) + dt_bias, computed per
tile from dt_low (batch, dt_rank), so dt_proj, the bias add, the softplus, exp(A_log), the state
update, the D skip and the SiLU(z) gate are one launch (the official step runs dt_proj as its own GEMM
and A = -exp(A_log) as two more kernels per layer).

The output is computed from the state as stored: for an fp32 state (the models') nothing changes; for
a bf16/fp16 state (the official tests) the output sees the rounded state, as the official reference
does, instead of the fp32 registers (up to 0.25 apart at dim 4096, dstate 64 in bf16).

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

__all__ = ["selective_state_update_fused", "selective_state_update_triton"]


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
    wdt_ptr,
    dim,
    dstate,
    dim_per_group,
    dt_rank,
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
    s_wd,
    s_wr,
    HAS_D: tl.constexpr,
    HAS_Z: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    SOFTPLUS: tl.constexpr,
    DT_PROJ: tl.constexpr,
    A_IS_LOG: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_R: tl.constexpr,
):
    """Grid (cdiv(dim, BLOCK_D), batch); each program owns a [BLOCK_D, BLOCK_N] state tile.

    DT_PROJ: dt_ptr holds dt_low (batch, dt_rank) and dt = dt_low @ wdt^T (wdt (dim, dt_rank)), rounded
    to x's dtype as the GEMM would. A_IS_LOG: A_ptr holds A_log and A = -exp(A_log).
    """
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
    if DT_PROJ:
        offs_r = tl.arange(0, BLOCK_R)
        mask_r = offs_r < dt_rank
        dt_low = tl.load(dt_ptr + pid_b * s_tb + offs_r * s_td, mask=mask_r, other=0.0).to(tl.float32)
        w = tl.load(
            wdt_ptr + d64[:, None] * s_wd + offs_r[None, :] * s_wr,
            mask=mask_d[:, None] & mask_r[None, :],
            other=0.0,
        ).to(tl.float32)
        dt = tl.sum(w * dt_low[None, :], axis=1).to(x_ptr.dtype.element_ty).to(tl.float32)
    else:
        dt = tl.load(dt_ptr + pid_b * s_tb + d64 * s_td, mask=mask_d, other=0.0).to(tl.float32)
    if HAS_BIAS:
        dt += tl.load(bias_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)
    if SOFTPLUS:
        dt = tl.where(dt <= 20.0, tl.log(1.0 + tl.exp(dt)), dt)
    A = tl.load(A_ptr + d64[:, None] * s_Ad + offs_n[None, :] * s_An, mask=mask, other=0.0).to(tl.float32)
    if A_IS_LOG:
        A = -tl.exp(A)
    Bv = tl.load(
        B_ptr + pid_b * s_Bb + group[:, None] * s_Bg + offs_n[None, :] * s_Bn, mask=mask, other=0.0
    ).to(tl.float32)
    Cv = tl.load(
        C_ptr + pid_b * s_Cb + group[:, None] * s_Cg + offs_n[None, :] * s_Cn, mask=mask, other=0.0
    ).to(tl.float32)
    dA = tl.exp2(A * dt[:, None] * 1.4426950408889634)
    h = h * dA + Bv * (dt * x)[:, None]
    h = h.to(state_ptr.dtype.element_ty)
    tl.store(s_ptrs, h, mask=mask)
    out = tl.sum(h.to(tl.float32) * Cv, axis=1)
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


def _launch(
    state: Tensor,
    x: Tensor,
    dt: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None,
    z: Tensor | None,
    dt_bias: Tensor | None,
    dt_softplus: bool,
    dt_proj_weight: Tensor | None,
    a_is_log: bool,
) -> Tensor:
    batch, dim, dstate = state.shape
    if x.shape != (batch, dim):
        raise ValueError(f"x must be (batch={batch}, dim={dim}), got {tuple(x.shape)}")
    if dt_proj_weight is None and dt.shape != (batch, dim):
        raise ValueError(f"dt must be (batch={batch}, dim={dim}), got {tuple(dt.shape)}")
    if dt_proj_weight is not None and (dt.dim() != 2 or dt_proj_weight.shape != (dim, dt.shape[1])):
        raise ValueError(
            f"dt_low {tuple(dt.shape)} and dt_proj_weight {tuple(dt_proj_weight.shape)} must be "
            f"(batch, dt_rank) and (dim={dim}, dt_rank)"
        )
    if A.shape != (dim, dstate):
        raise ValueError(f"A must be (dim={dim}, dstate={dstate}), got {tuple(A.shape)}")
    if A.is_complex():
        raise ValueError("selective_state_update_triton supports real A only")
    if B.dim() == 2:
        B, C = B.unsqueeze(1), C.unsqueeze(1)
    groups = B.shape[1]
    if dim % groups != 0:
        raise ValueError(f"dim={dim} is not divisible by groups={groups}")
    out = torch.empty(batch, dim, dtype=x.dtype, device=x.device)
    block_d, warps = _config(dstate)
    dummy = A
    zz = z if z is not None else x
    w = dt_proj_weight if dt_proj_weight is not None else A
    rank = dt.shape[1] if dt_proj_weight is not None else 1
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
            w,
            dim,
            dstate,
            dim // groups,
            rank,
            *state.stride(),
            *x.stride(),
            *dt.stride(),
            *A.stride(),
            *B.stride(),
            *C.stride(),
            *zz.stride(),
            *out.stride(),
            *w.stride(),
            HAS_D=D is not None,
            HAS_Z=z is not None,
            HAS_BIAS=dt_bias is not None,
            SOFTPLUS=bool(dt_softplus),
            DT_PROJ=dt_proj_weight is not None,
            A_IS_LOG=a_is_log,
            BLOCK_D=block_d,
            BLOCK_N=max(2, next_power_of_2(dstate)),
            BLOCK_R=max(2, next_power_of_2(rank)),
            num_warps=warps,
        )
    return out


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
    return _launch(state, x, dt, A, B, C, D, z, dt_bias, dt_softplus, None, False)


def selective_state_update_fused(
    state: Tensor,
    x: Tensor,
    dt: Tensor,
    dt_proj_weight: Tensor | None,
    dt_bias: Tensor,
    A_log: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor,
    z: Tensor | None,
) -> Tensor:
    """The Mamba decode step after x_proj, in one launch; ``state`` (batch, dim, dstate) fp32 in place.

    dt is dt_low (batch, dt_rank) with ``dt_proj_weight`` (dim, dt_rank) (dt = dt_low @ W^T, in the
    kernel), or the projected (batch, dim) dt when ``dt_proj_weight`` is None. dt, B, C (batch, dstate)
    may be column views of x_proj's output; x, z (batch, dim) views of in_proj's output. Then
    dt = softplus(dt + dt_bias), A = -exp(A_log) (dim, dstate). Returns y (batch, dim) in x's dtype,
    gated by silu(z).
    """
    return _launch(state, x, dt, A_log, B, C, D, z, dt_bias, True, dt_proj_weight, True)
