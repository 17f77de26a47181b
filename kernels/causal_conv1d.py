"""Triton causal depthwise conv1d with optional fused SiLU (forward and backward).

    x      : (batch, dim, seqlen), unit stride along seqlen
    weight : (dim, width);  bias : (dim,) or None
    out[b, d, t] = act(bias[d] + sum_k weight[d, k] * x[b, d, t - width + 1 + k])

The backward recomputes the pre-activation (no activation tensor is saved), writes dx (optionally into
a given strided buffer, e.g. half of the gradient of xz) and adds per-program partial sums of dweight
and dbias with fp32 atomics. ``causal_conv1d_fwd`` / ``causal_conv1d_bwd`` are the kernels without
autograd (used by the fused Mamba block path, :mod:`mambabench.models.mixers.mamba_fused`).
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

__all__ = [
    "causal_conv1d_triton",
    "causal_conv1d_fwd",
    "causal_conv1d_bwd",
    "causal_conv1d_update_triton",
    "CausalConv1dTriton",
]


@triton.jit
def _conv_pre(
    x_base,
    w_base,
    s_wk,
    b_ptr,
    offs_d,
    t,
    mask_d,
    seqlen,
    WIDTH: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_T: tl.constexpr,
):
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
    x_ptr,
    w_ptr,
    b_ptr,
    out_ptr,
    dim,
    seqlen,
    s_xb,
    s_xd,
    s_wd,
    s_wk,
    s_ob,
    s_od,
    WIDTH: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    SILU: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_T: tl.constexpr,
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
    tl.store(
        out_ptr + pid_b * s_ob + d64[:, None] * s_od + t[None, :], acc.to(out_ptr.dtype.element_ty), mask=mask
    )


@triton.jit
def _pick(o: tl.constexpr, xm3, xm2, xm1, x0, xp1, xp2, xp3):
    """The preloaded x tile at time offset ``o`` (-3 .. 3)."""
    if o == -3:
        return xm3
    elif o == -2:
        return xm2
    elif o == -1:
        return xm1
    elif o == 0:
        return x0
    elif o == 1:
        return xp1
    elif o == 2:
        return xp2
    else:
        return xp3


@triton.jit
def _ld(base, t, o: tl.constexpr, WIDTH: tl.constexpr, mask_d, seqlen):
    """x at positions t + o as fp32 (zero outside [0, seqlen) and for offsets the width never reads)."""
    if o <= -WIDTH or o >= WIDTH:
        return tl.zeros([mask_d.shape[0], t.shape[0]], dtype=tl.float32)
    src = t + o
    if o < 0:
        m = mask_d[:, None] & (src[None, :] >= 0) & (src[None, :] < seqlen)
    else:
        m = mask_d[:, None] & (src[None, :] < seqlen)
    return tl.load(base + src[None, :], mask=m, other=0.0).to(tl.float32)


@triton.jit
def _wcol(w_base, s_wk, k: tl.constexpr, WIDTH: tl.constexpr, mask_d):
    """Column k of the weight as fp32 [BLOCK_D] (zeros for k >= WIDTH)."""
    if k < WIDTH:
        return tl.load(w_base + k * s_wk, mask=mask_d, other=0.0).to(tl.float32)
    return tl.zeros([mask_d.shape[0]], dtype=tl.float32)


@triton.jit
def _conv_bwd_kernel(
    x_ptr,
    w_ptr,
    b_ptr,
    dout_ptr,
    dx_ptr,
    dw_ptr,
    db_ptr,
    dim,
    seqlen,
    s_xb,
    s_xd,
    s_wd,
    s_wk,
    s_gb,
    s_gd,
    s_dxb,
    s_dxd,
    WIDTH: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    SILU: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_T: tl.constexpr,
    N_TILES: tl.constexpr,
):
    """Grid (cdiv(seqlen, BLOCK_T * N_TILES), cdiv(dim, BLOCK_D), batch); WIDTH <= 4.

    dw (dim, WIDTH), db (dim,) fp32, accumulated with one fp32 atomic per channel and tap per program.
    Each program walks N_TILES time tiles of [BLOCK_D, BLOCK_T]; per tile it loads x at the 2 * WIDTH - 1
    offsets t - WIDTH + 1 .. t + WIDTH - 1 once (registers), recomputes the pre-activation at the WIDTH
    output positions t .. t + WIDTH - 1 that read x[t], and keeps the dweight/dbias partial sums as
    [BLOCK_D, BLOCK_T] registers until the end (one reduction and one atomic per program).
    """
    pid_t = tl.program_id(0)
    pid_d = tl.program_id(1)
    pid_b = tl.program_id(2).to(tl.int64)
    offs_d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    mask_d = offs_d < dim
    d64 = offs_d.to(tl.int64)
    x_base = x_ptr + pid_b * s_xb + d64[:, None] * s_xd
    g_base = dout_ptr + pid_b * s_gb + d64[:, None] * s_gd
    dx_base = dx_ptr + pid_b * s_dxb + d64[:, None] * s_dxd
    w_base = w_ptr + d64 * s_wd
    w0 = _wcol(w_base, s_wk, 0, WIDTH, mask_d)[:, None]
    w1 = _wcol(w_base, s_wk, 1, WIDTH, mask_d)[:, None]
    w2 = _wcol(w_base, s_wk, 2, WIDTH, mask_d)[:, None]
    w3 = _wcol(w_base, s_wk, 3, WIDTH, mask_d)[:, None]
    if HAS_BIAS:
        bias = tl.load(b_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)[:, None]
    else:
        bias = tl.zeros([BLOCK_D, 1], dtype=tl.float32)
    acc0 = tl.zeros([BLOCK_D, BLOCK_T], dtype=tl.float32)
    acc1 = tl.zeros([BLOCK_D, BLOCK_T], dtype=tl.float32)
    acc2 = tl.zeros([BLOCK_D, BLOCK_T], dtype=tl.float32)
    acc3 = tl.zeros([BLOCK_D, BLOCK_T], dtype=tl.float32)
    accb = tl.zeros([BLOCK_D, BLOCK_T], dtype=tl.float32)
    for it in range(N_TILES):
        t = (pid_t * N_TILES + it) * BLOCK_T + tl.arange(0, BLOCK_T)
        xm3 = _ld(x_base, t, -3, WIDTH, mask_d, seqlen)
        xm2 = _ld(x_base, t, -2, WIDTH, mask_d, seqlen)
        xm1 = _ld(x_base, t, -1, WIDTH, mask_d, seqlen)
        x0 = _ld(x_base, t, 0, WIDTH, mask_d, seqlen)
        xp1 = _ld(x_base, t, 1, WIDTH, mask_d, seqlen)
        xp2 = _ld(x_base, t, 2, WIDTH, mask_d, seqlen)
        xp3 = _ld(x_base, t, 3, WIDTH, mask_d, seqlen)
        dx = tl.zeros([BLOCK_D, BLOCK_T], dtype=tl.float32)
        for j in tl.static_range(WIDTH):
            # output position s = t + j reads x[t] with tap WIDTH - 1 - j
            s = t + j
            g = tl.load(g_base + s[None, :], mask=mask_d[:, None] & (s[None, :] < seqlen), other=0.0)
            g = g.to(tl.float32)
            if SILU:
                pre = bias + w0 * _pick(j - WIDTH + 1, xm3, xm2, xm1, x0, xp1, xp2, xp3)
                if WIDTH > 1:
                    pre += w1 * _pick(j - WIDTH + 2, xm3, xm2, xm1, x0, xp1, xp2, xp3)
                if WIDTH > 2:
                    pre += w2 * _pick(j - WIDTH + 3, xm3, xm2, xm1, x0, xp1, xp2, xp3)
                if WIDTH > 3:
                    pre += w3 * _pick(j - WIDTH + 4, xm3, xm2, xm1, x0, xp1, xp2, xp3)
                sg = tl.sigmoid(pre)
                g = g * sg * (1.0 + pre * (1.0 - sg))
            if j == 0:
                # dweight[k] += g[t] * x[t - WIDTH + 1 + k];  dbias += g[t]
                acc0 += g * _pick(1 - WIDTH, xm3, xm2, xm1, x0, xp1, xp2, xp3)
                if WIDTH > 1:
                    acc1 += g * _pick(2 - WIDTH, xm3, xm2, xm1, x0, xp1, xp2, xp3)
                if WIDTH > 2:
                    acc2 += g * _pick(3 - WIDTH, xm3, xm2, xm1, x0, xp1, xp2, xp3)
                if WIDTH > 3:
                    acc3 += g * x0
                if HAS_BIAS:
                    accb += g
            if WIDTH - 1 - j == 0:
                dx += w0 * g
            elif WIDTH - 1 - j == 1:
                dx += w1 * g
            elif WIDTH - 1 - j == 2:
                dx += w2 * g
            else:
                dx += w3 * g
        tl.store(
            dx_base + t[None, :], dx.to(dx_ptr.dtype.element_ty), mask=mask_d[:, None] & (t[None, :] < seqlen)
        )
    tl.atomic_add(dw_ptr + d64 * WIDTH, tl.sum(acc0, axis=1), mask=mask_d, sem="relaxed")
    if WIDTH > 1:
        tl.atomic_add(dw_ptr + d64 * WIDTH + 1, tl.sum(acc1, axis=1), mask=mask_d, sem="relaxed")
    if WIDTH > 2:
        tl.atomic_add(dw_ptr + d64 * WIDTH + 2, tl.sum(acc2, axis=1), mask=mask_d, sem="relaxed")
    if WIDTH > 3:
        tl.atomic_add(dw_ptr + d64 * WIDTH + 3, tl.sum(acc3, axis=1), mask=mask_d, sem="relaxed")
    if HAS_BIAS:
        tl.atomic_add(db_ptr + offs_d, tl.sum(accb, axis=1), mask=mask_d, sem="relaxed")


@triton.jit
def _conv_bwd_kernel_wide(
    x_ptr,
    w_ptr,
    b_ptr,
    dout_ptr,
    dx_ptr,
    dw_ptr,
    db_ptr,
    dim,
    seqlen,
    s_xb,
    s_xd,
    s_wd,
    s_wk,
    s_gb,
    s_gd,
    s_dxb,
    s_dxd,
    WIDTH: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    SILU: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_T: tl.constexpr,
):
    """Any WIDTH (> 4): recomputes the pre-activation per tap. Grid (cdiv(seqlen, BLOCK_T), cdiv(dim, BLOCK_D), batch)."""
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
        s = t + j
        ms = mask_d[:, None] & (s[None, :] < seqlen)
        g = tl.load(g_base + s[None, :], mask=ms, other=0.0).to(tl.float32)
        if SILU:
            pre = _conv_pre(
                x_base, w_base, s_wk, b_ptr, offs_d, s, mask_d, seqlen, WIDTH, HAS_BIAS, BLOCK_D, BLOCK_T
            )
            sg = tl.sigmoid(pre)
            g = g * sg * (1.0 + pre * (1.0 - sg))
        w = tl.load(w_base + (WIDTH - 1 - j) * s_wk, mask=mask_d, other=0.0).to(tl.float32)
        dx += w[:, None] * g
        if j == 0:
            for k in tl.static_range(WIDTH):
                src = t - (WIDTH - 1) + k
                m = ms & (src[None, :] >= 0)
                xv = tl.load(x_base + src[None, :], mask=m, other=0.0).to(tl.float32)
                tl.atomic_add(dw_ptr + d64 * WIDTH + k, tl.sum(g * xv, axis=1), mask=mask_d, sem="relaxed")
            if HAS_BIAS:
                tl.atomic_add(db_ptr + offs_d, tl.sum(g, axis=1), mask=mask_d, sem="relaxed")
    mask = mask_d[:, None] & (t[None, :] < seqlen)
    tl.store(
        dx_ptr + pid_b * s_dxb + d64[:, None] * s_dxd + t[None, :], dx.to(dx_ptr.dtype.element_ty), mask=mask
    )


def _cfg(seqlen: int) -> tuple[int, int, int]:
    """Forward tile (BLOCK_D, BLOCK_T, num_warps): 8 elements per thread, 16-byte loads of x[t]."""
    return 8, min(256, max(16, next_power_of_2(seqlen))), 4


def _bwd_cfg(seqlen: int) -> tuple[int, int, int, int]:
    """Backward (BLOCK_D, BLOCK_T, N_TILES, num_warps): 4 elements per thread, 80 registers, no spills
    (sm_90, width 4, SiLU: scripts/kernel_resources.py conv_bwd BLOCK_D=4 BLOCK_T=128 N_TILES=8 --warps 4
    --div16 seqlen dim); up to 8 time tiles per program share one atomic per channel and tap."""
    bt = min(128, max(16, next_power_of_2(seqlen)))
    return 4, bt, min(8, cdiv(seqlen, bt)), max(1, min(4, bt * 4 // 128))


def _device(x: Tensor):  # noqa: ANN202
    return torch.cuda.device(x.device) if x.is_cuda else nullcontext()


def causal_conv1d_fwd(x: Tensor, weight: Tensor, bias: Tensor | None, silu: bool) -> Tensor:
    """Forward kernel without autograd.

    Args:
        x: (batch, dim, seqlen) with unit stride along seqlen (any batch/dim strides, e.g. the x half of xz).
        weight: (dim, width); bias: (dim,) or None.
        silu: fuse SiLU.

    Returns:
        (batch, dim, seqlen) contiguous, in x's dtype.
    """
    if x.stride(-1) != 1:
        x = x.contiguous()
    batch, dim, seqlen = x.shape
    out = torch.empty((batch, dim, seqlen), device=x.device, dtype=x.dtype)
    bd, bt, warps = _cfg(seqlen)
    grid = (cdiv(seqlen, bt), cdiv(dim, bd), batch)
    with _device(x):
        _conv_fwd_kernel[grid](
            x,
            weight,
            bias if bias is not None else weight,
            out,
            dim,
            seqlen,
            x.stride(0),
            x.stride(1),
            weight.stride(0),
            weight.stride(1),
            out.stride(0),
            out.stride(1),
            WIDTH=weight.shape[1],
            HAS_BIAS=bias is not None,
            SILU=silu,
            BLOCK_D=bd,
            BLOCK_T=bt,
            num_warps=warps,
        )
    return out


def causal_conv1d_bwd(
    x: Tensor, weight: Tensor, bias: Tensor | None, dout: Tensor, silu: bool, dx: Tensor | None = None
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Backward kernel without autograd (recomputes the pre-activation; nothing but x is saved).

    Args:
        x: (batch, dim, seqlen), unit stride along seqlen; weight: (dim, width); bias: (dim,) or None.
        dout: (batch, dim, seqlen), gradient of the output.
        silu: whether the forward fused SiLU.
        dx: optional (batch, dim, seqlen) output buffer with unit stride along seqlen (e.g. the x half
            of the gradient of xz), written in place; allocated like x when None.

    Returns:
        dx (batch, dim, seqlen) in x's dtype, dweight (dim, width) and dbias (dim,) (or None) in the
        dtypes of weight and bias (accumulated in fp32).
    """
    if x.stride(-1) != 1:
        x = x.contiguous()
    if dout.stride(-1) != 1:
        dout = dout.contiguous()
    batch, dim, seqlen = x.shape
    width = weight.shape[1]
    if dx is None:
        dx = torch.empty_like(x)
    elif dx.shape != x.shape or dx.stride(-1) != 1:
        raise ValueError(
            f"dx must be {tuple(x.shape)} with unit stride along seqlen, got {tuple(dx.shape)} "
            f"strides {dx.stride()}"
        )
    dw = torch.zeros((dim, width), device=x.device, dtype=torch.float32)
    db = torch.zeros((dim,), device=x.device, dtype=torch.float32)
    args = (
        x,
        weight,
        bias if bias is not None else weight,
        dout,
        dx,
        dw,
        db,
        dim,
        seqlen,
        x.stride(0),
        x.stride(1),
        weight.stride(0),
        weight.stride(1),
        dout.stride(0),
        dout.stride(1),
        dx.stride(0),
        dx.stride(1),
    )
    with _device(x):
        if width <= 4:
            bd, bt, tiles, warps = _bwd_cfg(seqlen)
            grid = (cdiv(seqlen, bt * tiles), cdiv(dim, bd), batch)
            _conv_bwd_kernel[grid](
                *args,
                WIDTH=width,
                HAS_BIAS=bias is not None,
                SILU=silu,
                BLOCK_D=bd,
                BLOCK_T=bt,
                N_TILES=tiles,
                num_warps=warps,
            )
        else:
            bt = min(128, max(16, next_power_of_2(seqlen)))
            grid = (cdiv(seqlen, bt), cdiv(dim, 8), batch)
            _conv_bwd_kernel_wide[grid](
                *args, WIDTH=width, HAS_BIAS=bias is not None, SILU=silu, BLOCK_D=8, BLOCK_T=bt, num_warps=4
            )
    return dx, dw.to(weight.dtype), (db.to(bias.dtype) if bias is not None else None)


class CausalConv1dTriton(torch.autograd.Function):
    """autograd wrapper around the forward and backward kernels."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None, silu: bool) -> Tensor:
        if x.stride(-1) != 1:
            x = x.contiguous()
        ctx.save_for_backward(x, weight, bias)
        ctx.silu = silu
        return causal_conv1d_fwd(x, weight, bias, silu)

    @staticmethod
    def backward(ctx, dout: Tensor):
        x, weight, bias = ctx.saved_tensors
        dx, dw, db = causal_conv1d_bwd(x, weight, bias, dout, ctx.silu)
        return dx, dw, db, None


def causal_conv1d_triton(
    x: Tensor, weight: Tensor, bias: Tensor | None = None, activation: str | None = None
) -> Tensor:
    """Causal depthwise conv1d: x (batch, dim, seqlen), weight (dim, width), bias (dim,) or None;
    ``activation`` None or "silu"/"swish" (fused). Returns (batch, dim, seqlen) in x's dtype."""
    if activation not in (None, "silu", "swish"):
        raise ValueError(f"activation must be None or 'silu', got {activation!r}")
    if x.dim() != 3 or weight.dim() != 2 or weight.shape[0] != x.shape[1]:
        raise ValueError(
            f"expected x (batch, dim, seqlen) and weight (dim, width), got {tuple(x.shape)}, "
            f"{tuple(weight.shape)}"
        )
    return CausalConv1dTriton.apply(x, weight, bias, activation is not None)


@triton.jit
def _conv_update_kernel(
    x_ptr,
    conv_state_ptr,
    w_ptr,
    b_ptr,
    out_ptr,
    dim,
    s_xb,
    s_xd,
    s_sb,
    s_sd,
    s_sw,
    s_wd,
    s_ww,
    s_ob,
    s_od,
    WIDTH: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    SILU: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    """Grid (cdiv(dim, BLOCK_D), batch): shift each channel's window left by one, append x, and
    write act(bias + sum_k w[k] * window[k]) (fp32 accumulation). Tap k is read (from slot k + 1)
    before slot k + 1 is overwritten, by the same thread: the shift needs no barrier."""
    pid_b = tl.program_id(1).to(tl.int64)
    offs_d = tl.program_id(0) * BLOCK_D + tl.arange(0, BLOCK_D)
    mask_d = offs_d < dim
    d64 = offs_d.to(tl.int64)
    row = conv_state_ptr + pid_b * s_sb + d64 * s_sd
    x = tl.load(x_ptr + pid_b * s_xb + d64 * s_xd, mask=mask_d, other=0.0).to(conv_state_ptr.dtype.element_ty)
    acc = tl.zeros([BLOCK_D], dtype=tl.float32)
    for k in tl.static_range(WIDTH):
        if k < WIDTH - 1:
            v = tl.load(row + (k + 1) * s_sw, mask=mask_d, other=0.0)
        else:
            v = x
        tl.store(row + k * s_sw, v, mask=mask_d)
        w = tl.load(w_ptr + d64 * s_wd + k * s_ww, mask=mask_d, other=0.0).to(tl.float32)
        acc += v.to(tl.float32) * w
    if HAS_BIAS:
        acc += tl.load(b_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)
    if SILU:
        acc = acc * tl.sigmoid(acc)
    tl.store(out_ptr + pid_b * s_ob + d64 * s_od, acc.to(out_ptr.dtype.element_ty), mask=mask_d)


def causal_conv1d_update_triton(
    x: Tensor,
    conv_state: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    activation: str | None = None,
) -> Tensor:
    """One decoding step in one launch: x (batch, dim) (any strides, e.g. the x half of in_proj's
    output) enters ``conv_state`` (batch, dim, width), updated in place; returns act(conv) (batch, dim)
    in x's dtype, accumulated in fp32."""
    if activation not in (None, "silu", "swish"):
        raise ValueError(f"activation must be None or 'silu', got {activation!r}")
    batch, dim, width = conv_state.shape
    if x.shape != (batch, dim) or weight.shape != (dim, width):
        raise ValueError(
            f"expected x (batch={batch}, dim={dim}) and weight (dim, width={width}) for conv_state "
            f"{tuple(conv_state.shape)}, got {tuple(x.shape)} and {tuple(weight.shape)}"
        )
    out = torch.empty(batch, dim, dtype=x.dtype, device=x.device)
    block_d = 128
    with _device(x):
        _conv_update_kernel[(cdiv(dim, block_d), batch)](
            x,
            conv_state,
            weight,
            bias if bias is not None else weight,
            out,
            dim,
            *x.stride(),
            *conv_state.stride(),
            *weight.stride(),
            *out.stride(),
            WIDTH=width,
            HAS_BIAS=bias is not None,
            SILU=activation is not None,
            BLOCK_D=block_d,
            num_warps=4,
        )
    return out
