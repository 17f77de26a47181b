"""Small Triton helpers shared by the tiled (scan_tiled.py) and sequential (scan_sequential.py) scan kernels."""

from __future__ import annotations

import triton
import triton.language as tl

__all__ = ["softplus", "add_or_store", "exp2", "log2", "sigmoid", "halve_across_lanes"]


# FAST (compiled for the GPU): flush-to-zero approximate PTX, one MUFU instruction each, as the official
# kernel gets from --use_fast_math. tl.exp2 / tl.log2 compile to the non-ftz forms, which wrap every
# MUFU in a range test and two rescaling multiplies (about a tenth of the sequential backward's instructions).
# The interpreter cannot run inline PTX, so FAST is off there.
@triton.jit
def exp2(x, FAST: tl.constexpr):
    """2**x in fp32."""
    if FAST:
        return tl.inline_asm_elementwise(
            "ex2.approx.ftz.f32 $0, $1;", "=f,f", [x], dtype=tl.float32, is_pure=True, pack=1
        )
    else:
        return tl.exp2(x)


@triton.jit
def log2(x, FAST: tl.constexpr):
    """log2(x) in fp32."""
    if FAST:
        return tl.inline_asm_elementwise(
            "lg2.approx.ftz.f32 $0, $1;", "=f,f", [x], dtype=tl.float32, is_pure=True, pack=1
        )
    else:
        return tl.log2(x)


@triton.jit
def sigmoid(x, FAST: tl.constexpr):
    """1 / (1 + e^-x) in fp32."""
    if FAST:
        e = exp2(x * -1.4426950408889634, FAST)
        return tl.inline_asm_elementwise(
            "rcp.approx.ftz.f32 $0, $1;", "=f,f", [1.0 + e], dtype=tl.float32, is_pure=True, pack=1
        )
    else:
        return tl.sigmoid(x)


@triton.jit
def softplus(x, FAST: tl.constexpr = False):
    """log(1 + e^x), linear above 20 as in the official kernel."""
    if FAST:
        sp = log2(1.0 + exp2(x * 1.4426950408889634, FAST), FAST) * 0.6931471805599453
    else:
        sp = tl.log(1.0 + tl.exp(x))
    return tl.where(x <= 20.0, sp, x)


@triton.jit
def add_or_store(ptr, value, mask, DETERMINISTIC: tl.constexpr):
    """Write one program's dB/dC contribution: its own partial slot (DETERMINISTIC, summed on the
    host afterwards) or an fp32 atomic add into the shared gradient."""
    if DETERMINISTIC:
        tl.store(ptr, value, mask=mask)
    else:
        tl.atomic_add(ptr, value, mask=mask, sem="relaxed")


@triton.jit
def _shfl_xor(x, lane_mask):
    """x of the lane whose id differs from this one's by ``lane_mask`` (an int32 tensor like x): one
    SHFL.BFLY per element; every lane of the warp must run it (Triton's elementwise code does)."""
    return tl.inline_asm_elementwise(
        "shfl.sync.bfly.b32 $0, $1, $2, 0x1f, -1;",
        "=f,f,r",
        [x, lane_mask],
        dtype=tl.float32,
        is_pure=True,
        pack=1,
    )


@triton.jit
def halve_across_lanes(v, bit, LANE_MASK: tl.constexpr):
    """One step of a reduce-scatter over warp lanes: split v's last axis (size 2), keep the half that
    ``bit`` (this lane's bit of the lane id, broadcastable to a half) selects, send the other half to
    the partner lane (id ^ LANE_MASK) and add what it sends back.  After log2(k) steps over the bits of
    k lanes each lane holds the k-lane sum of one k-th of the values: k - 1 shuffles per value
    group instead of log2(k) per value for an all-reduce (tl.sum).  GPU only (inline PTX)."""
    a, b = tl.split(v)
    send = tl.where(bit, a, b)
    keep = tl.where(bit, b, a)
    return keep + _shfl_xor(send, tl.full(send.shape, LANE_MASK, tl.int32))
