"""Triton causal depthwise conv1d with optional fused SiLU (forward and backward).

    x      : (batch, dim, seqlen), unit stride along seqlen
    weight : (dim, width);  bias : (dim,) or None
    out[b, d, t] = act(bias[d] + sum_k weight[d, k] * x[b, d, t - width + 1 + k])

The backward recomputes the pre-activation (no activation tensor is saved), writes dx and adds
per-program partial sums of dweight and dbias with fp32 atomics.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch
import triton
import triton.language as tl
from torch import Tensor

from mambabench.kernels import _interpret_compat

_interpret_compat.patch()

__all__ = ["causal_conv1d_triton", "CausalConv1dTriton"]


@triton.jit
def _conv_pre(x_base, w_base, s_wk, b_ptr, offs_d, t, mask_d, seqlen, WIDTH: tl.constexpr, HAS_BIAS: tl.constexpr,
              BLOCK_D: tl.constexpr, BLOCK_T: tl.constexpr):
    """Pre-activation at positions t ([BLOCK_T]) for the program's channels: [BLOCK_D, BLOCK_T] fp32."""
    acc = tl.zeros([BLOCK_D, BLOCK_T], dtype=tl.float32)
    for k in tl.static_range(WIDTH):
        src = t - (WIDTH - 1) + k
        m = mask_d[:, None] & (src[None, :] >= 0) & (src[None, :] < seqlen)
        xv = tl.load(x_base + src[None, :], mask=m, other=0.0).to(tl.float32)
        w = tl.load(w_base + k * s_wk, mask=mask_d, other=0.0).to(tl.float32)
        acc += w[:, None] * xv
    if HAS_BIAS:
        acc += tl.load(b_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)[:, None]
    return acc


@triton.jit
def _conv_fwd_kernel(
    x_ptr, w_ptr, b_ptr, out_ptr, dim, seqlen,
    s_xb, s_xd, s_wd, s_wk, s_ob, s_od,
    WIDTH: tl.constexpr, HAS_BIAS: tl.constexpr, SILU: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_T: tl.constexpr,
):
    """Grid (cdiv(seqlen, BLOCK_T), cdiv(dim, BLOCK_D), batch)."""
    pid_t = tl.program_id(0)
    pid_d = tl.program_id(1)
    pid_b = tl.program_id(2).to(tl.int64)
    offs_d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    t = pid_t * BLOCK_T + tl.arange(0, BLOCK_T)
    mask_d = offs_d < dim
    d64 = offs_d.to(tl.int64)
    x_base = x_ptr + pid_b * s_xb + d64[:, None] * s_xd
    w_base = w_ptr + d64 * s_wd
    acc = _conv_pre(x_base, w_base, s_wk, b_ptr, offs_d, t, mask_d, seqlen, WIDTH, HAS_BIAS, BLOCK_D, BLOCK_T)
    if SILU:
        acc = acc * tl.sigmoid(acc)
    mask = mask_d[:, None] & (t[None, :] < seqlen)
    tl.store(out_ptr + pid_b * s_ob + d64[:, None] * s_od + t[None, :], acc.to(out_ptr.dtype.element_ty),
             mask=mask)


@triton.jit
def _conv_bwd_kernel(
    x_ptr, w_ptr, b_ptr, dout_ptr, dx_ptr, dw_ptr, db_ptr, dim, seqlen,
    s_xb, s_xd, s_wd, s_wk, s_gb, s_gd, s_dxb, s_dxd,
    WIDTH: tl.constexpr, HAS_BIAS: tl.constexpr, SILU: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_T: tl.constexpr,
):
    """Grid (cdiv(seqlen, BLOCK_T), cdiv(dim, BLOCK_D), batch).  dw (dim, WIDTH), db (dim,) fp32."""
    pid_t = tl.program_id(0)
    pid_d = tl.program_id(1)
    pid_b = tl.program_id(2).to(tl.int64)
    offs_d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    t = pid_t * BLOCK_T + tl.arange(0, BLOCK_T)
    mask_d = offs_d < dim
    d64 = offs_d.to(tl.int64)
    x_base = x_ptr + pid_b * s_xb + d64[:, None] * s_xd
    g_base = dout_ptr + pid_b * s_gb + d64[:, None] * s_gd
    w_base = w_ptr + d64 * s_wd
    dx = tl.zeros([BLOCK_D, BLOCK_T], dtype=tl.float32)
    for j in tl.static_range(WIDTH):
        # output position s = t + j uses x[t] with weight index WIDTH - 1 - j
        s = t + j
        ms = mask_d[:, None] & (s[None, :] < seqlen)
        g = tl.load(g_base + s[None, :], mask=ms, other=0.0).to(tl.float32)
        if SILU:
            pre = _conv_pre(x_base, w_base, s_wk, b_ptr, offs_d, s, mask_d, seqlen, WIDTH, HAS_BIAS, BLOCK_D, BLOCK_T)
            sg = tl.sigmoid(pre)
            g = g * sg * (1.0 + pre * (1.0 - sg))
        w = tl.load(w_base + (WIDTH - 1 - j) * s_wk, mask=mask_d, other=0.0).to(tl.float32)
        dx += w[:, None] * g
        if j == 0:
            # dweight[k] += sum_t g[t] * x[t - WIDTH + 1 + k];  dbias += sum_t g[t]
            for k in tl.static_range(WIDTH):
                src = t - (WIDTH - 1) + k
                m = ms & (src[None, :] >= 0)
                xv = tl.load(x_base + src[None, :], mask=m, other=0.0).to(tl.float32)
                tl.atomic_add(dw_ptr + d64 * WIDTH + k, tl.sum(g * xv, axis=1), mask=mask_d, sem="relaxed")
            if HAS_BIAS:
                tl.atomic_add(db_ptr + offs_d, tl.sum(g, axis=1), mask=mask_d, sem="relaxed")
    mask = mask_d[:, None] & (t[None, :] < seqlen)
    tl.store(dx_ptr + pid_b * s_dxb + d64[:, None] * s_dxd + t[None, :], dx.to(dx_ptr.dtype.element_ty),
             mask=mask)


def _cfg(seqlen: int) -> tuple[int, int, int]:
    """(BLOCK_D, BLOCK_T, num_warps)."""
    return 16, min(256, max(16, triton.next_power_of_2(seqlen))), 4


def _launch_fwd(x: Tensor, weight: Tensor, bias: Tensor | None, silu: bool) -> Tensor:
    batch, dim, seqlen = x.shape
    out = torch.empty((batch, dim, seqlen), device=x.device, dtype=x.dtype)
    bd, bt, warps = _cfg(seqlen)
    grid = (triton.cdiv(seqlen, bt), triton.cdiv(dim, bd), batch)
    with torch.cuda.device(x.device) if x.is_cuda else nullcontext():
        _conv_fwd_kernel[grid](
            x, weight, bias if bias is not None else weight, out, dim, seqlen,
            x.stride(0), x.stride(1), weight.stride(0), weight.stride(1), out.stride(0), out.stride(1),
            WIDTH=weight.shape[1], HAS_BIAS=bias is not None, SILU=silu, BLOCK_D=bd, BLOCK_T=bt,
            num_warps=warps,
        )
    return out


class CausalConv1dTriton(torch.autograd.Function):
    """autograd wrapper around the forward and backward kernels."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None, silu: bool) -> Tensor:
        if x.stride(-1) != 1:
            x = x.contiguous()
        ctx.save_for_backward(x, weight, bias)
        ctx.silu = silu
        return _launch_fwd(x, weight, bias, silu)

    @staticmethod
    def backward(ctx, dout: Tensor):
        x, weight, bias = ctx.saved_tensors
        if dout.stride(-1) != 1:
            dout = dout.contiguous()
        batch, dim, seqlen = x.shape
        width = weight.shape[1]
        dx = torch.empty_like(x)
        dw = torch.zeros((dim, width), device=x.device, dtype=torch.float32)
        db = torch.zeros((dim,), device=x.device, dtype=torch.float32)
        bd, bt, warps = _cfg(seqlen)
        grid = (triton.cdiv(seqlen, bt), triton.cdiv(dim, bd), batch)
        with torch.cuda.device(x.device) if x.is_cuda else nullcontext():
            _conv_bwd_kernel[grid](
                x, weight, bias if bias is not None else weight, dout, dx, dw, db, dim, seqlen,
                x.stride(0), x.stride(1), weight.stride(0), weight.stride(1),
                dout.stride(0), dout.stride(1), dx.stride(0), dx.stride(1),
                WIDTH=width, HAS_BIAS=bias is not None, SILU=ctx.silu, BLOCK_D=bd, BLOCK_T=bt,
                num_warps=warps,
            )
        return dx, dw.to(weight.dtype), (db.to(bias.dtype) if bias is not None else None), None


def causal_conv1d_triton(
    x: Tensor, weight: Tensor, bias: Tensor | None = None, activation: str | None = None
) -> Tensor:
    """Causal depthwise conv1d: x (batch, dim, seqlen), weight (dim, width), bias (dim,) or None;
    ``activation`` None or "silu"/"swish" (fused). Returns (batch, dim, seqlen) in x's dtype."""
    if activation not in (None, "silu", "swish"):
        raise ValueError(f"activation must be None or 'silu', got {activation!r}")
    if x.dim() != 3 or weight.dim() != 2 or weight.shape[0] != x.shape[1]:
        raise ValueError(f"expected x (batch, dim, seqlen) and weight (dim, width), got {tuple(x.shape)}, "
                         f"{tuple(weight.shape)}")
    return CausalConv1dTriton.apply(x, weight, bias, activation is not None)
