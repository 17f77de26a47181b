"""Triton one-token attention for KV-cached decoding (split-K "flash decoding"), positions on the device.

    qkv      : (batch, 3 * n_heads * head_dim)  the fused Wqkv projection of the new token (q | k | v)
    k_cache, v_cache : (batch, n_heads, capacity, head_dim), filled at positions 0 .. seqlen - 1
    seqlen   : () int64 tensor, the number of cached tokens (the new token's position)
    returns  : (batch, n_heads * head_dim), softmax(q k^T / sqrt(head_dim)) v over positions 0 .. seqlen

One launch rotates the new q and k (RoPE, optionally xPos; pairs (i, i + head_dim / 2) as
:class:`mambabench.models.mixers.attention.RotaryEmbedding`), writes the new key/value into the cache at
``seqlen`` and attends over the cache in ``n_splits`` slices per (batch, head), each with an online
softmax; a second launch merges the slices (none when one slice is enough). The length is read inside the kernels, so a CUDA graph
captured once replays at every position, and the work follows the filled length, not the capacity.
Splitting the keys keeps the GPU busy when batch x heads is small (batch-1 decoding); at large batch
one slice per (batch, head) is enough. The caller advances ``seqlen``.
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

__all__ = ["decode_attention_triton", "rotary_qkv_inplace_triton", "split_plan"]

ROPE, XPOS = 1, 2  # values of the ROTARY constexpr (0: no rotation)


@triton.jit
def _decode_partial_kernel(
    qkv_ptr,
    k_cache_ptr,
    v_cache_ptr,
    seqlen_ptr,
    inv_freq_ptr,
    zeta_ptr,
    m_ptr,
    l_ptr,
    acc_ptr,
    out_ptr,
    n_heads,
    split_len,
    n_splits,
    sm_scale,
    xpos_scale_base,
    s_qkv_b,
    s_cb,
    s_ch,
    s_cn,
    s_ob,
    ROTARY: tl.constexpr,
    HEAD_DIM: tl.constexpr,
    BLOCK_N: tl.constexpr,
    ONE_SPLIT: tl.constexpr,
):
    """Grid (batch * n_heads, n_splits): the softmax state (max, sum, weighted values) of one slice,
    or, with ONE_SPLIT, the finished output row (no merge launch)."""
    pid_bh = tl.program_id(0).to(tl.int64)
    pid_s = tl.program_id(1)
    b = pid_bh // n_heads
    h = pid_bh % n_heads
    n = tl.load(seqlen_ptr).to(tl.int32)
    offs_d = tl.arange(0, HEAD_DIM)
    inner = n_heads * HEAD_DIM
    q_base = qkv_ptr + b * s_qkv_b + h * HEAD_DIM
    q = tl.load(q_base + offs_d).to(tl.float32)
    k = tl.load(q_base + inner + offs_d).to(tl.float32)
    v = tl.load(q_base + 2 * inner + offs_d).to(tl.float32)
    if ROTARY:
        HALF: tl.constexpr = HEAD_DIM // 2
        partner = (offs_d + HALF) % HEAD_DIM
        q_partner = tl.load(q_base + partner).to(tl.float32)
        k_partner = tl.load(q_base + inner + partner).to(tl.float32)
        freq = offs_d % HALF
        pos = n.to(tl.float32)
        angle = pos * tl.load(inv_freq_ptr + freq)
        cos = tl.cos(angle)
        sin = tl.where(offs_d < HALF, -tl.sin(angle), tl.sin(angle))
        if ROTARY == 2:  # xPos: q * zeta^(pos / scale_base), k / zeta^(pos / scale_base)
            scale = tl.exp2(tl.log2(tl.load(zeta_ptr + freq)) * (pos / xpos_scale_base))
            q = q * (cos * scale) + q_partner * (sin * scale)
            k = k * (cos / scale) + k_partner * (sin / scale)
        else:
            q = q * cos + q_partner * sin
            k = k * cos + k_partner * sin
    # round as the cache stores them, so this token scores itself as later tokens will score it
    q = q.to(k_cache_ptr.dtype.element_ty).to(tl.float32) * (sm_scale * 1.4426950408889634)
    k_new = k.to(k_cache_ptr.dtype.element_ty)
    v_new = v.to(v_cache_ptr.dtype.element_ty)

    start = pid_s * split_len
    end = tl.minimum(start + split_len, n)
    cache_offset = b * s_cb + h * s_ch
    m_i = tl.full([], float("-inf"), tl.float32)
    l_i = tl.full([], 0.0, tl.float32)
    acc = tl.zeros([HEAD_DIM], dtype=tl.float32)
    for block in tl.range(start, end, BLOCK_N):
        offs_n = block + tl.arange(0, BLOCK_N)
        mask_n = offs_n < end
        ptrs = cache_offset + offs_n.to(tl.int64)[:, None] * s_cn + offs_d[None, :]
        keys = tl.load(k_cache_ptr + ptrs, mask=mask_n[:, None], other=0.0).to(tl.float32)
        scores = tl.where(mask_n, tl.sum(keys * q[None, :], axis=1), float("-inf"))
        m_new = tl.maximum(m_i, tl.max(scores, axis=0))
        alpha = tl.exp2(m_i - m_new)
        p = tl.exp2(scores - m_new)
        values = tl.load(v_cache_ptr + ptrs, mask=mask_n[:, None], other=0.0).to(tl.float32)
        l_i = l_i * alpha + tl.sum(p, axis=0)
        acc = acc * alpha + tl.sum(p[:, None] * values, axis=0)
        m_i = m_new
    if (n >= start) & (n < start + split_len):  # the slice that holds the new token's position
        new_ptrs = cache_offset + n.to(tl.int64) * s_cn + offs_d
        tl.store(k_cache_ptr + new_ptrs, k_new)
        tl.store(v_cache_ptr + new_ptrs, v_new)
        score = tl.sum(k_new.to(tl.float32) * q, axis=0)
        m_new = tl.maximum(m_i, score)
        alpha = tl.exp2(m_i - m_new)
        p = tl.exp2(score - m_new)
        l_i = l_i * alpha + p
        acc = acc * alpha + p * v_new.to(tl.float32)
        m_i = m_new
    if ONE_SPLIT:
        tl.store(out_ptr + b * s_ob + h * HEAD_DIM + offs_d, (acc / l_i).to(out_ptr.dtype.element_ty))
    else:
        slot = pid_bh * n_splits + pid_s
        tl.store(m_ptr + slot, m_i)
        tl.store(l_ptr + slot, l_i)
        tl.store(acc_ptr + slot * HEAD_DIM + offs_d, acc)


@triton.jit
def _decode_combine_kernel(
    m_ptr,
    l_ptr,
    acc_ptr,
    out_ptr,
    n_heads,
    n_splits,
    s_ob,
    HEAD_DIM: tl.constexpr,
    SPLITS: tl.constexpr,
):
    """Grid (batch * n_heads,): merge the slices' softmax states into the output row of the head."""
    pid_bh = tl.program_id(0).to(tl.int64)
    b = pid_bh // n_heads
    h = pid_bh % n_heads
    offs_s = tl.arange(0, SPLITS)
    offs_d = tl.arange(0, HEAD_DIM)
    mask_s = offs_s < n_splits
    slots = pid_bh * n_splits + offs_s
    m = tl.load(m_ptr + slots, mask=mask_s, other=float("-inf"))
    l_s = tl.load(l_ptr + slots, mask=mask_s, other=0.0)
    acc = tl.load(acc_ptr + slots[:, None] * HEAD_DIM + offs_d[None, :], mask=mask_s[:, None], other=0.0)
    m_max = tl.max(m, axis=0)  # finite: one slice always holds the new token
    weight = tl.where(mask_s, tl.exp2(m - m_max), 0.0)
    out = tl.sum(acc * weight[:, None], axis=0) / tl.sum(l_s * weight, axis=0)
    tl.store(out_ptr + b * s_ob + h * HEAD_DIM + offs_d, out.to(out_ptr.dtype.element_ty))


@triton.jit
def _rotary_qkv_kernel(
    qkv_ptr,
    inv_freq_ptr,
    zeta_ptr,
    offset,
    seqlen,
    n_heads,
    xpos_scale_base,
    s_qkv_b,
    s_qkv_l,
    ROTARY: tl.constexpr,
    HEAD_DIM: tl.constexpr,
    BLOCK_L: tl.constexpr,
):
    """Grid (cdiv(seqlen, BLOCK_L), batch * 2 * n_heads): rotate one head of q (or k) in place for
    BLOCK_L positions; pairs (i, i + HEAD_DIM / 2), angle (offset + t) * inv_freq[i]."""
    HALF: tl.constexpr = HEAD_DIM // 2
    pid_l = tl.program_id(0)
    pid = tl.program_id(1).to(tl.int64)
    b = pid // (2 * n_heads)
    is_key = (pid // n_heads) % 2
    h = pid % n_heads
    offs_l = pid_l * BLOCK_L + tl.arange(0, BLOCK_L)
    offs_i = tl.arange(0, HALF)
    mask = (offs_l < seqlen)[:, None]
    ptrs = (
        qkv_ptr
        + b * s_qkv_b
        + offs_l.to(tl.int64)[:, None] * s_qkv_l
        + (is_key * n_heads + h) * HEAD_DIM
        + offs_i[None, :]
    )
    x1 = tl.load(ptrs, mask=mask, other=0.0).to(tl.float32)
    x2 = tl.load(ptrs + HALF, mask=mask, other=0.0).to(tl.float32)
    pos = (offset + offs_l).to(tl.float32)[:, None]
    angle = pos * tl.load(inv_freq_ptr + offs_i)[None, :]
    cos = tl.cos(angle)
    sin = tl.sin(angle)
    if ROTARY == 2:  # xPos: q * zeta^(pos / scale_base), k / zeta^(pos / scale_base)
        power = pos / xpos_scale_base * (1.0 - 2.0 * is_key.to(tl.float32))
        scale = tl.exp2(tl.log2(tl.load(zeta_ptr + offs_i))[None, :] * power)
        cos = cos * scale
        sin = sin * scale
    tl.store(ptrs, (x1 * cos - x2 * sin).to(qkv_ptr.dtype.element_ty), mask=mask)
    tl.store(ptrs + HALF, (x1 * sin + x2 * cos).to(qkv_ptr.dtype.element_ty), mask=mask)


def rotary_qkv_inplace_triton(
    qkv: Tensor,
    n_heads: int,
    offset: int,
    inv_freq: Tensor,
    zeta: Tensor | None = None,
    xpos_scale_base: float = 512.0,
) -> Tensor:
    """Rotate the q and k parts of a (batch, seqlen, 3 * n_heads * head_dim) fused projection in place
    (positions offset .. offset + seqlen - 1; xPos with ``zeta``): one read and one write of q and k,
    where the PyTorch rotation makes several fp32 passes. For inference (no autograd); returns qkv."""
    batch, seqlen, width = qkv.shape
    head_dim = width // (3 * n_heads)
    if width != 3 * n_heads * head_dim or qkv.stride(-1) != 1:
        raise ValueError(f"qkv must be (batch, seqlen, 3 * {n_heads} * head_dim) with contiguous rows")
    if head_dim != next_power_of_2(head_dim) or head_dim < 16:
        raise ValueError(f"the rotary kernel needs a power-of-two head_dim >= 16, got {head_dim}")
    block_l = 32
    with torch.cuda.device(qkv.device) if qkv.is_cuda else nullcontext():
        _rotary_qkv_kernel[(cdiv(seqlen, block_l), batch * 2 * n_heads)](
            qkv,
            inv_freq,
            zeta if zeta is not None else inv_freq,
            int(offset),
            seqlen,
            n_heads,
            float(xpos_scale_base),
            qkv.stride(0),
            qkv.stride(1),
            ROTARY=XPOS if zeta is not None else ROPE,
            HEAD_DIM=head_dim,
            BLOCK_L=block_l,
            num_warps=4,
        )
    return qkv


def split_plan(rows: int, capacity: int, device: torch.device, block_n: int) -> tuple[int, int]:
    """(n_splits, split_len): enough slices that rows x slices fill the GPU about twice, each slice a
    multiple of ``block_n`` keys; fixed by (rows, capacity), so a captured graph keeps its launch."""
    sms = torch.cuda.get_device_properties(device).multi_processor_count if device.type == "cuda" else 4
    wanted = max(1, min(cdiv(2 * sms, rows), cdiv(capacity, block_n), 64))
    split_len = cdiv(cdiv(capacity, wanted), block_n) * block_n
    return cdiv(capacity, split_len), split_len


def decode_attention_triton(
    qkv: Tensor,
    k_cache: Tensor,
    v_cache: Tensor,
    seqlen: Tensor,
    inv_freq: Tensor | None = None,
    zeta: Tensor | None = None,
    xpos_scale_base: float = 512.0,
    sm_scale: float | None = None,
    n_splits: int | None = None,
) -> Tensor:
    """One decoding step of attention (see the module docstring); writes the new key/value into the
    cache at ``seqlen`` (not advanced here). ``inv_freq`` (head_dim / 2,) turns on RoPE, ``zeta`` as
    well xPos. ``n_splits`` overrides the split plan (tests)."""
    batch, n_heads, capacity, head_dim = k_cache.shape
    if qkv.shape != (batch, 3 * n_heads * head_dim) or qkv.stride(-1) != 1:
        raise ValueError(
            f"qkv must be a contiguous-rows (batch={batch}, 3 * {n_heads} * {head_dim}) tensor, got "
            f"{tuple(qkv.shape)}"
        )
    if v_cache.shape != k_cache.shape or k_cache.stride(-1) != 1 or v_cache.stride() != k_cache.stride():
        raise ValueError("k_cache and v_cache must share one (batch, heads, capacity, head_dim) layout")
    if head_dim != next_power_of_2(head_dim) or head_dim < 16:
        raise ValueError(f"the decode kernel needs a power-of-two head_dim >= 16, got {head_dim}")
    if zeta is not None and inv_freq is None:
        raise ValueError("xPos (zeta) needs the rotary frequencies (inv_freq) too")
    block_n = 64 if head_dim <= 64 else 32
    rows = batch * n_heads
    if n_splits is None:
        n_splits, split_len = split_plan(rows, capacity, qkv.device, block_n)
    else:
        split_len = cdiv(capacity, n_splits)
    out = torch.empty(batch, n_heads * head_dim, dtype=qkv.dtype, device=qkv.device)
    one_split = n_splits == 1
    f32 = dict(dtype=torch.float32, device=qkv.device)
    m = torch.empty(1 if one_split else rows * n_splits, **f32)
    l_sum = torch.empty(1 if one_split else rows * n_splits, **f32)
    acc = torch.empty(1 if one_split else rows * n_splits * head_dim, **f32)
    rotary = 0 if inv_freq is None else (XPOS if zeta is not None else ROPE)
    freqs = inv_freq if inv_freq is not None else m
    with torch.cuda.device(qkv.device) if qkv.is_cuda else nullcontext():
        _decode_partial_kernel[(rows, n_splits)](
            qkv,
            k_cache,
            v_cache,
            seqlen,
            freqs,
            zeta if zeta is not None else freqs,
            m,
            l_sum,
            acc,
            out,
            n_heads,
            split_len,
            n_splits,
            float(sm_scale if sm_scale is not None else head_dim**-0.5),
            float(xpos_scale_base),
            qkv.stride(0),
            k_cache.stride(0),
            k_cache.stride(1),
            k_cache.stride(2),
            out.stride(0),
            ROTARY=rotary,
            HEAD_DIM=head_dim,
            BLOCK_N=block_n,
            ONE_SPLIT=one_split,
            num_warps=4,
        )
        if one_split:
            return out
        _decode_combine_kernel[(rows,)](
            m,
            l_sum,
            acc,
            out,
            n_heads,
            n_splits,
            out.stride(0),
            HEAD_DIM=head_dim,
            SPLITS=max(2, next_power_of_2(n_splits)),
            num_warps=1 if head_dim <= 64 else 2,
        )
    return out
