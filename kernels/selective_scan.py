"""Triton selective scan (Mamba-1 S6): fused forward and recomputing backward.

Contract (same as the official ``selective_scan_fn``)::

    u, delta, z : (batch, dim, seqlen)   fp32 / bf16 / fp16, unit stride along seqlen only
    A           : (dim, dstate)          fp32 (real)
    B, C        : (dim, dstate) constant, (batch, dstate, seqlen) variable
                  or (batch, groups, dstate, seqlen) grouped
    D, delta_bias : (dim,)               fp32
    out         : (batch, dim, seqlen)   dtype of u;  last_state (batch, dim, dstate) fp32

Design (see shared/reference/scan-kernel.md, sections 6 and 7):

* v2 (this module): one program handles ``BLOCK_D`` channels of one batch row and walks the time
  axis in tiles of ``BLOCK_T`` steps; per state n, the tile's recurrence is one
  ``tl.associative_scan`` over time on a ``[BLOCK_D, BLOCK_T]`` tile and the state at the end of a
  tile is carried into the next, so the (seqlen, dstate) state never reaches HBM.
* v3 (:mod:`scan_sequential`): one channel's states on 1-8 lanes, the recurrence run step by step
  in registers.  Below ``split_rows`` (batch, channel) rows its kernels cut time into segments and
  run them at once from each segment's carry (``seq_scan_carry_kernel``).
* Which runs (``SCAN_VARIANT = "auto"``): for dstate <= 16 the v3 backward always; the v3 forward for
  every training forward and for no-grad forwards of >= ``V3_NOGRAD_MIN_ROWS`` or < ``V2_NOGRAD_MIN_ROWS``
  rows; v2 otherwise (no-grad with 4096-6143 rows, and dstate > 16).  Whether the v3 forward
  prefetches the next time tile and the v3 backward's register cap follow a wave model of the grid
  (:func:`pick_by_waves`).  Either backward starts from either forward's saved
  states.  ``MAMBABENCH_SCAN_VARIANT=2|3`` forces one family; docs/benchmarks.md has the
  measurements behind the split.
* ``exp(delta * A)`` is computed as ``exp2(delta * A * log2(e))`` with log2(e) folded into A once
  (approximate ftz ``ex2`` on the GPU, as the official build's ``--use_fast_math``).
* With gradients needed, the forward saves the state entering every chunk (v3: 128 steps, v2: its
  tile): ``4 * dstate / CHUNK`` bytes per (b, d, t), a quarter of a bf16 u at CHUNK = 128, N = 16.
* The backward walks the chunks last to first, recomputes the forward inside each from its saved
  state, runs the reverse recurrence ``dh_t = C_t g_t + a_{t+1} dh_{t+1}`` and forms every gradient
  in registers.  dB and dC (variable) are summed over the program's channels (v3 on the GPU: a
  shuffle reduce-scatter) before fp32 atomics, or written as per-program partials and summed
  afterwards (``deterministic=True``).  dA, dD, ddelta_bias and constant dB/dC accumulate in
  registers and are added once per program.
* Launch parameters are fixed heuristics (:func:`_v3_config`, :func:`_fwd_config`,
  :func:`_bwd_config`), not ``triton.autotune``: the backward accumulates with atomics, and the
  forward's saved-state spacing must match the backward's chunk.  They were chosen from H100/H200
  sweeps (``scripts/sweep_v3.py``, docs/benchmarks.md).  ``MAMBABENCH_SCAN_AUTOTUNE=1`` tunes the v3
  parameters per (seqlen bucket, dim, dstate, dtype, has_z, rows bucket) instead, with trials that
  write only into their own buffers (:mod:`scan_autotune`); ``MAMBABENCH_V3_CONFIG`` fixes them.

Complex A is not supported by this kernel; :func:`selective_scan_triton` falls back to the
PyTorch reference for it (with a one-time warning).
"""

from __future__ import annotations

import os
import warnings
from contextlib import nullcontext

import torch
import triton
import triton.language as tl
from torch import Tensor

from mambabench.kernels import _interpret_compat, scan_autotune
from mambabench.kernels._host import cdiv, next_power_of_2
from mambabench.kernels.scan_common import add_or_store
from mambabench.kernels.scan_common import softplus as _softplus
from mambabench.kernels.scan_sequential import (
    seq_scan_bwd_kernel,
    seq_scan_carry_kernel,
    seq_scan_fwd_kernel,
)

_interpret_compat.patch()

__all__ = ["selective_scan_triton", "SelectiveScanTriton"]

LOG2E = 1.4426950408889634


@triton.jit
def _scan_combine(a_l, b_l, a_r, b_r):
    """Compose two steps of h <- a * h + b (left is earlier): (a_l a_r, a_r b_l + b_r)."""
    return a_l * a_r, a_r * b_l + b_r


# ------------------------------------------------------------------------------------------------
# v2 kernels: 2-D [BLOCK_D, BLOCK_T] tiles, loop over the states n (like the official kernel, but
# BLOCK_D channels per program).  Each thread owns a few consecutive time steps, so most of the
# scan is sequential inside a thread; B_n / C_n rows are loaded once per program for BLOCK_D
# channels.  The state entering the tile for every n is carried in a [BLOCK_D, BLOCK_N] register
# tile (column n read and written with a mask).


@triton.jit
def _fwd_state(
    n, h_all, y, dl, du, offs_n, offs_t, mask_d, mask_t, A_ptr, B_ptr, C_ptr, offs_d64,
    s_Ad, s_An, s_Bb, s_Bn, s_Cb, s_Cn, B_row, C_row, dstate,
    B_VAR: tl.constexpr, C_VAR: tl.constexpr, BLOCK_T: tl.constexpr, BC_TILE: tl.constexpr,
):
    """Advance state n over one time tile; returns (h_all, y) updated.

    B_row / C_row are [BLOCK_T] pointers, or [BLOCK_D, BLOCK_T] (zero stride along channels) when
    BC_TILE: then the rows load straight into the data tiles' layout (no conversion through shared
    memory; the repeated addresses are served by L1)."""
    ok_n = n < dstate
    A2 = tl.load(A_ptr + offs_d64 * s_Ad + n * s_An, mask=mask_d & ok_n, other=0.0).to(tl.float32)
    A2 = A2 * 1.4426950408889634
    a = tl.exp2(dl * A2[:, None])
    if B_VAR:
        Bn = tl.load(B_row + n * s_Bn, mask=mask_t & ok_n, other=0.0).to(tl.float32)
        if BC_TILE:
            b = du * Bn
        else:
            b = du * Bn[None, :]
    else:
        Bn = tl.load(B_ptr + offs_d64 * s_Bb + n * s_Bn, mask=mask_d & ok_n, other=0.0).to(tl.float32)
        b = du * Bn[:, None]
    a_c, b_c = tl.associative_scan((a, b), axis=1, combine_fn=_scan_combine)
    sel_n = offs_n[None, :] == n
    h0 = tl.sum(tl.where(sel_n, h_all, 0.0), axis=1)
    hs = a_c * h0[:, None] + b_c
    if C_VAR:
        Cn = tl.load(C_row + n * s_Cn, mask=mask_t & ok_n, other=0.0).to(tl.float32)
        if BC_TILE:
            y += hs * Cn
        else:
            y += hs * Cn[None, :]
    else:
        Cn = tl.load(C_ptr + offs_d64 * s_Cb + n * s_Cn, mask=mask_d & ok_n, other=0.0).to(tl.float32)
        y += hs * Cn[:, None]
    h_end = tl.sum(tl.where(offs_t[None, :] == BLOCK_T - 1, hs, 0.0), axis=1)
    h_all = tl.where(sel_n, h_end[:, None], h_all)
    return h_all, y


@triton.jit
def _selective_scan_fwd_kernel_v2(
    u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr,
    out_ptr, states_ptr, last_ptr,
    dim, seqlen, dstate, dim_per_group,
    s_ub, s_ud, s_db, s_dd, s_Ad, s_An,
    s_Bb, s_Bg, s_Bn, s_Cb, s_Cg, s_Cn,
    s_zb, s_zd, s_ob, s_od,
    s_sb, s_sd, s_sc,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    B_VAR: tl.constexpr, C_VAR: tl.constexpr, SAVE_STATES: tl.constexpr, SAVE_LAST: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_T: tl.constexpr, UNROLL_N: tl.constexpr,
    CARRY_W: tl.constexpr, BC_TILE: tl.constexpr = False,
):
    """Grid (cdiv(dim, BLOCK_D), batch).  Writes out (batch, dim, seqlen); optionally the state entering
    every tile to states (batch, dim, n_tiles, dstate) and h_L to last (batch, dim, dstate)."""
    pid_d = tl.program_id(0)
    pid_b = tl.program_id(1).to(tl.int64)
    offs_d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    offs_n = tl.arange(0, CARRY_W)  # carry column n holds state n (see _carry_width)
    offs_t = tl.arange(0, BLOCK_T)
    mask_d = offs_d < dim
    mask_dn = mask_d[:, None] & (offs_n[None, :] < dstate)
    offs_d64 = offs_d.to(tl.int64)
    group = ((pid_d * BLOCK_D) // dim_per_group).to(tl.int64)
    if HAS_D:
        Dv = tl.load(D_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)
    u_base = u_ptr + pid_b * s_ub + offs_d64[:, None] * s_ud
    dl_base = delta_ptr + pid_b * s_db + offs_d64[:, None] * s_dd
    o_base = out_ptr + pid_b * s_ob + offs_d64[:, None] * s_od
    if HAS_Z:
        z_base = z_ptr + pid_b * s_zb + offs_d64[:, None] * s_zd
    B_base = B_ptr + pid_b * s_Bb + group * s_Bg
    C_base = C_ptr + pid_b * s_Cb + group * s_Cg
    st_base = states_ptr + pid_b * s_sb + offs_d64[:, None] * s_sd + offs_n[None, :]

    h_all = tl.zeros([BLOCK_D, CARRY_W], dtype=tl.float32)
    n_tiles = (seqlen + BLOCK_T - 1) // BLOCK_T
    for tile in range(0, n_tiles):
        t = tile * BLOCK_T + offs_t
        mask_t = t < seqlen
        mask_dt = mask_d[:, None] & mask_t[None, :]
        if SAVE_STATES:
            tl.store(st_base + tile * s_sc, h_all, mask=mask_dn)
        u = tl.load(u_base + t[None, :], mask=mask_dt, other=0.0).to(tl.float32)
        dl = tl.load(dl_base + t[None, :], mask=mask_dt, other=0.0).to(tl.float32)
        if HAS_BIAS:
            dl = dl + bias[:, None]
        if SOFTPLUS:
            dl = _softplus(dl)
        dl = tl.where(mask_dt, dl, 0.0)
        du = dl * u
        if HAS_D:
            y = Dv[:, None] * u
        else:
            y = tl.zeros([BLOCK_D, BLOCK_T], dtype=tl.float32)
        if BC_TILE:
            B_row = B_base + t[None, :] + offs_d64[:, None] * 0
            C_row = C_base + t[None, :] + offs_d64[:, None] * 0
        else:
            B_row = B_base + t
            C_row = C_base + t
        if UNROLL_N:
            for n in tl.static_range(BLOCK_N):
                h_all, y = _fwd_state(n, h_all, y, dl, du, offs_n, offs_t, mask_d, mask_t, A_ptr, B_ptr, C_ptr,
                                      offs_d64, s_Ad, s_An, s_Bb, s_Bn, s_Cb, s_Cn, B_row, C_row, dstate,
                                      B_VAR, C_VAR, BLOCK_T, BC_TILE)
        else:
            for n in range(0, dstate):
                h_all, y = _fwd_state(n, h_all, y, dl, du, offs_n, offs_t, mask_d, mask_t, A_ptr, B_ptr, C_ptr,
                                      offs_d64, s_Ad, s_An, s_Bb, s_Bn, s_Cb, s_Cn, B_row, C_row, dstate,
                                      B_VAR, C_VAR, BLOCK_T, BC_TILE)
        if HAS_Z:
            zz = tl.load(z_base + t[None, :], mask=mask_dt, other=0.0).to(tl.float32)
            y = y * zz * tl.sigmoid(zz)
        tl.store(o_base + t[None, :], y.to(out_ptr.dtype.element_ty), mask=mask_dt)
    if SAVE_LAST:
        tl.store(last_ptr + pid_b * dim * dstate + offs_d64[:, None] * dstate + offs_n[None, :], h_all,
                 mask=mask_dn)


@triton.jit
def _bwd_state(
    n, dh_all, dA_all, dBc_all, dCc_all, y, dhB, ddl_acc,
    dl, dl1, du, g, offs_n, offs_t, mask_d, mask_t, A_ptr, B_ptr, C_ptr, offs_d64,
    s_Ad, s_An, s_Bb, s_Bn, s_Cb, s_Cn, B_row, C_row, dB_row, dC_row, s_dBn, s_dCn, st_tile, dstate,
    HAS_Z: tl.constexpr, B_VAR: tl.constexpr, C_VAR: tl.constexpr, DETERMINISTIC: tl.constexpr,
    BC_TILE: tl.constexpr,
):
    """Recompute state n over the tile, reverse-scan its gradient and accumulate all gradients."""
    ok_n = n < dstate
    A = tl.load(A_ptr + offs_d64 * s_Ad + n * s_An, mask=mask_d & ok_n, other=0.0).to(tl.float32)
    A2 = A * 1.4426950408889634
    if B_VAR:
        Bn = tl.load(B_row + n * s_Bn, mask=mask_t & ok_n, other=0.0).to(tl.float32)
        if not BC_TILE:
            Bn = Bn[None, :]
    else:
        Bn = tl.load(B_ptr + offs_d64 * s_Bb + n * s_Bn, mask=mask_d & ok_n, other=0.0).to(tl.float32)[:, None]
    if C_VAR:
        Cn = tl.load(C_row + n * s_Cn, mask=mask_t & ok_n, other=0.0).to(tl.float32)
        if not BC_TILE:
            Cn = Cn[None, :]
    else:
        Cn = tl.load(C_ptr + offs_d64 * s_Cb + n * s_Cn, mask=mask_d & ok_n, other=0.0).to(tl.float32)[:, None]
    h0 = tl.load(st_tile + n, mask=mask_d & ok_n, other=0.0)
    # forward recompute
    b = du * Bn
    a_c, b_c = tl.associative_scan((tl.exp2(dl * A2[:, None]), b), axis=1, combine_fn=_scan_combine)
    hs = a_c * h0[:, None] + b_c
    if HAS_Z:
        y += hs * Cn
    # reverse scan dh_t = C_t g_t + a_{t+1} dh_{t+1}
    ra, rb = tl.associative_scan((tl.exp2(dl1 * A2[:, None]), g * Cn), axis=1, combine_fn=_scan_combine,
                                 reverse=True)
    sel_n = offs_n[None, :] == n
    dh_in = tl.sum(tl.where(sel_n, dh_all, 0.0), axis=1)
    dh = rb + ra * dh_in[:, None]
    dh_first = tl.sum(tl.where(offs_t[None, :] == 0, dh, 0.0), axis=1)
    dh_all = tl.where(sel_n, dh_first[:, None], dh_all)
    dhB += dh * Bn
    x = dh * (hs - b)  # dh_t * a_t * h_{t-1}
    ddl_acc += x * A[:, None]
    dA_all = tl.where(sel_n, dA_all + tl.sum(x * dl, axis=1)[:, None], dA_all)
    wB = dh * du
    wC = hs * g
    if B_VAR:
        add_or_store(dB_row + n * s_dBn, tl.sum(wB, axis=0), mask_t & ok_n, DETERMINISTIC)
    else:
        dBc_all = tl.where(sel_n, dBc_all + tl.sum(wB, axis=1)[:, None], dBc_all)
    if C_VAR:
        add_or_store(dC_row + n * s_dCn, tl.sum(wC, axis=0), mask_t & ok_n, DETERMINISTIC)
    else:
        dCc_all = tl.where(sel_n, dCc_all + tl.sum(wC, axis=1)[:, None], dCc_all)
    return dh_all, dA_all, dBc_all, dCc_all, y, dhB, ddl_acc


@triton.jit
def _selective_scan_bwd_kernel_v2(
    u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, dout_ptr, states_ptr,
    du_ptr, ddelta_ptr, dA_ptr, dB_ptr, dC_ptr, dD_ptr, dbias_ptr, dz_ptr,
    dim, seqlen, dstate, dim_per_group, n_dblk_per_group,
    s_ub, s_ud, s_db, s_dd, s_Ad, s_An,
    s_Bb, s_Bg, s_Bn, s_Cb, s_Cg, s_Cn,
    s_zb, s_zd, s_gb, s_gd,
    s_sb, s_sd, s_sc,
    s_dub, s_dud, s_ddb, s_ddd, s_dzb, s_dzd,
    s_dBb, s_dBg, s_dBn, s_dCb, s_dCg, s_dCn,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    B_VAR: tl.constexpr, C_VAR: tl.constexpr, DETERMINISTIC: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_T: tl.constexpr, UNROLL_N: tl.constexpr,
    CARRY_W: tl.constexpr, BC_TILE: tl.constexpr = False,
):
    """Grid (cdiv(dim, BLOCK_D), batch).  Tiles are walked last to first.

    Writes du, ddelta, dz (batch, dim, seqlen) in the input dtype; adds into fp32 dA (dim, dstate),
    dD, dbias (dim,), dB/dC (variable: (batch, groups, dstate, seqlen) with atomics, or
    (batch, groups * n_dblk_per_group, dstate, seqlen) partials when DETERMINISTIC; constant:
    (dim, dstate))."""
    pid_d = tl.program_id(0)
    pid_b = tl.program_id(1).to(tl.int64)
    offs_d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    offs_n = tl.arange(0, CARRY_W)  # carry column n holds state n (see _carry_width)
    offs_t = tl.arange(0, BLOCK_T)
    mask_d = offs_d < dim
    mask_dn = mask_d[:, None] & (offs_n[None, :] < dstate)
    offs_d64 = offs_d.to(tl.int64)
    group = ((pid_d * BLOCK_D) // dim_per_group).to(tl.int64)
    if HAS_D:
        Dv = tl.load(D_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)
    u_base = u_ptr + pid_b * s_ub + offs_d64[:, None] * s_ud
    dl_base = delta_ptr + pid_b * s_db + offs_d64[:, None] * s_dd
    g_base = dout_ptr + pid_b * s_gb + offs_d64[:, None] * s_gd
    du_base = du_ptr + pid_b * s_dub + offs_d64[:, None] * s_dud
    ddl_base = ddelta_ptr + pid_b * s_ddb + offs_d64[:, None] * s_ddd
    if HAS_Z:
        z_base = z_ptr + pid_b * s_zb + offs_d64[:, None] * s_zd
        dz_base = dz_ptr + pid_b * s_dzb + offs_d64[:, None] * s_dzd
    B_base = B_ptr + pid_b * s_Bb + group * s_Bg
    C_base = C_ptr + pid_b * s_Cb + group * s_Cg
    if DETERMINISTIC:
        slot = pid_d.to(tl.int64)
    else:
        slot = group
    dB_base = dB_ptr + pid_b * s_dBb + slot * s_dBg
    dC_base = dC_ptr + pid_b * s_dCb + slot * s_dCg
    st_base = states_ptr + pid_b * s_sb + offs_d64 * s_sd

    dh_all = tl.zeros([BLOCK_D, CARRY_W], dtype=tl.float32)
    dA_all = tl.zeros([BLOCK_D, CARRY_W], dtype=tl.float32)
    dBc_all = tl.zeros([BLOCK_D, CARRY_W], dtype=tl.float32)
    dCc_all = tl.zeros([BLOCK_D, CARRY_W], dtype=tl.float32)
    dD_acc = tl.zeros([BLOCK_D], dtype=tl.float32)
    dbias_acc = tl.zeros([BLOCK_D], dtype=tl.float32)
    n_tiles = (seqlen + BLOCK_T - 1) // BLOCK_T
    for i in range(0, n_tiles):
        tile = n_tiles - 1 - i
        t = tile * BLOCK_T + offs_t
        mask_t = t < seqlen
        mask_dt = mask_d[:, None] & mask_t[None, :]
        mask_t1 = mask_d[:, None] & (t[None, :] + 1 < seqlen)
        u = tl.load(u_base + t[None, :], mask=mask_dt, other=0.0).to(tl.float32)
        dl_raw = tl.load(dl_base + t[None, :], mask=mask_dt, other=0.0).to(tl.float32)
        dl1 = tl.load(dl_base + t[None, :] + 1, mask=mask_t1, other=0.0).to(tl.float32)
        dout = tl.load(g_base + t[None, :], mask=mask_dt, other=0.0).to(tl.float32)
        if HAS_BIAS:
            dl_raw = dl_raw + bias[:, None]
            dl1 = dl1 + bias[:, None]
        if SOFTPLUS:
            dl = _softplus(dl_raw)
            dl1 = _softplus(dl1)
        else:
            dl = dl_raw
        dl = tl.where(mask_dt, dl, 0.0)
        dl1 = tl.where(mask_t1, dl1, 0.0)
        du = dl * u
        if HAS_Z:
            zz = tl.load(z_base + t[None, :], mask=mask_dt, other=0.0).to(tl.float32)
            sz = tl.sigmoid(zz)
            g = dout * zz * sz
        else:
            g = dout
        if HAS_D:
            dD_acc += tl.sum(g * u, axis=1)
            y = Dv[:, None] * u
        else:
            y = tl.zeros([BLOCK_D, BLOCK_T], dtype=tl.float32)
        dhB = tl.zeros([BLOCK_D, BLOCK_T], dtype=tl.float32)
        ddl_acc = tl.zeros([BLOCK_D, BLOCK_T], dtype=tl.float32)
        if BC_TILE:
            B_row = B_base + t[None, :] + offs_d64[:, None] * 0
            C_row = C_base + t[None, :] + offs_d64[:, None] * 0
        else:
            B_row = B_base + t
            C_row = C_base + t
        dB_row = dB_base + t
        dC_row = dC_base + t
        st_tile = st_base + tile * s_sc
        if UNROLL_N:
            for n in tl.static_range(BLOCK_N):
                dh_all, dA_all, dBc_all, dCc_all, y, dhB, ddl_acc = _bwd_state(
                    n, dh_all, dA_all, dBc_all, dCc_all, y, dhB, ddl_acc,
                    dl, dl1, du, g, offs_n, offs_t, mask_d, mask_t, A_ptr, B_ptr, C_ptr, offs_d64,
                    s_Ad, s_An, s_Bb, s_Bn, s_Cb, s_Cn, B_row, C_row, dB_row, dC_row, s_dBn, s_dCn, st_tile,
                    dstate, HAS_Z, B_VAR, C_VAR, DETERMINISTIC, BC_TILE)
        else:
            for n in range(0, dstate):
                dh_all, dA_all, dBc_all, dCc_all, y, dhB, ddl_acc = _bwd_state(
                    n, dh_all, dA_all, dBc_all, dCc_all, y, dhB, ddl_acc,
                    dl, dl1, du, g, offs_n, offs_t, mask_d, mask_t, A_ptr, B_ptr, C_ptr, offs_d64,
                    s_Ad, s_An, s_Bb, s_Bn, s_Cb, s_Cn, B_row, C_row, dB_row, dC_row, s_dBn, s_dCn, st_tile,
                    dstate, HAS_Z, B_VAR, C_VAR, DETERMINISTIC, BC_TILE)
        if HAS_Z:
            dz = dout * y * sz * (1.0 + zz * (1.0 - sz))
            tl.store(dz_base + t[None, :], dz.to(dz_ptr.dtype.element_ty), mask=mask_dt)
        du_out = dhB * dl
        if HAS_D:
            du_out += Dv[:, None] * g
        ddl = dhB * u + ddl_acc
        if SOFTPLUS:
            ddl = tl.where(dl_raw <= 20.0, ddl * tl.sigmoid(dl_raw), ddl)
        if HAS_BIAS:
            dbias_acc += tl.sum(tl.where(mask_dt, ddl, 0.0), axis=1)
        tl.store(du_base + t[None, :], du_out.to(du_ptr.dtype.element_ty), mask=mask_dt)
        tl.store(ddl_base + t[None, :], ddl.to(ddelta_ptr.dtype.element_ty), mask=mask_dt)

    dn_off = offs_d64[:, None] * dstate + offs_n[None, :]
    tl.atomic_add(dA_ptr + dn_off, dA_all, mask=mask_dn, sem="relaxed")
    if not B_VAR:
        tl.atomic_add(dB_ptr + dn_off, dBc_all, mask=mask_dn, sem="relaxed")
    if not C_VAR:
        tl.atomic_add(dC_ptr + dn_off, dCc_all, mask=mask_dn, sem="relaxed")
    if HAS_D:
        tl.atomic_add(dD_ptr + offs_d, dD_acc, mask=mask_d, sem="relaxed")
    if HAS_BIAS:
        tl.atomic_add(dbias_ptr + offs_d, dbias_acc, mask=mask_d, sem="relaxed")


# ------------------------------------------------------------------------------------------------
# launch heuristics


def _pow2_divisor(x: int, cap: int) -> int:
    """Largest power of two <= cap that divides x (>= 1)."""
    p = 1
    while p * 2 <= cap and x % (p * 2) == 0:
        p *= 2
    return p


def _block_d(dim: int, groups: int, want: int) -> int:
    """BLOCK_D <= want; with several groups all channels of a program must share one group."""
    want = min(want, next_power_of_2(dim))
    if groups > 1:
        return _pow2_divisor(dim // groups, want)
    return want


def _carry_width(block_n: int, block_t: int) -> int:
    """Width of the per-state carry tiles of the v2 kernels.

    With dstate <= BLOCK_T the carries (h, dh, dA, ...) live in a [BLOCK_D, BLOCK_T] tile, column n
    for state n: it has the layout of the data tiles, so reading or writing a column needs no
    layout conversion through shared memory.  Otherwise a [BLOCK_D, BLOCK_N] tile is used.
    """
    return block_t if block_n <= block_t else block_n


def _fwd_config(dim: int, dstate: int, seqlen: int, batch: int, elem: int,
                training: bool = True) -> dict[str, int]:
    """Launch parameters of the forward: BLOCK_D, BLOCK_T (the backward's chunk when training), warps.

    Chosen from sweeps on an H100 (bf16, N=16; docs/benchmarks.md).  With gradients the tile is
    also the backward's chunk, so the pair with the smallest fwd + bwd time was kept: BLOCK_T 32 when
    there are many (batch, channel) rows, 64 for few long rows.  Without gradients one config won
    at both sweep shapes (4 channels x 128 steps, one warp).
    """
    block_n = next_power_of_2(dstate)
    many_rows = batch * dim >= 8192
    if training:
        block_t, block_d, warps = (32, 64, 4) if many_rows else (64, 4, 1)
    else:
        block_t, block_d, warps = 128, 4, 1
    block_t = min(block_t, max(16, next_power_of_2(seqlen)))
    block_d = max(2, block_d * 16 // max(16, block_n))  # fewer channels for larger states
    return {"BLOCK_D": block_d, "BLOCK_T": block_t, "num_warps": warps, "num_stages": 1}


def _bwd_config(dim: int, dstate: int, seqlen: int, batch: int, elem: int) -> dict[str, int]:
    """Launch parameters of the backward (its BLOCK_T is the forward's); one warp won the sweeps."""
    block_n = next_power_of_2(dstate)
    block_d = 8 if batch * dim >= 8192 else 2
    block_d = max(2, block_d * 16 // max(16, block_n))
    return {"BLOCK_D": block_d, "num_warps": 1, "num_stages": 1}


# Unroll the loop over the states (dstate <= 16) in the v2 kernels.  The sweeps behind the heuristics
# ran unrolled; compiled for sm_90 (Triton AOT on CPU, see docs/benchmarks.md) every unrolled config
# hits the 255-register cap, and the forward spills, while the run-time loop needs 80-150 registers
# at 4-8 elements per thread.  MAMBABENCH_SCAN_UNROLL=0 switches to the run-time loop (untimed).
UNROLL_STATES = os.environ.get("MAMBABENCH_SCAN_UNROLL", "1") != "0"
# Load variable B/C rows as zero-stride [BLOCK_D, BLOCK_T] tiles (no shared-memory layout conversion per
# state; see _fwd_state).  Off by default: not timed on the GPU yet (MAMBABENCH_SCAN_BCTILE=1 turns it on).
BC_TILE = os.environ.get("MAMBABENCH_SCAN_BCTILE", "0") == "1"

# tuning overrides (used by scripts/bench_scan.py sweeps); None means "use the heuristic"
FWD_OVERRIDE: dict[str, int] | None = None
BWD_OVERRIDE: dict[str, int] | None = None


# ------------------------------------------------------------------------------------------------
# host side


def _bc_layout(x: Tensor, dim: int) -> tuple[bool, int, tuple[int, int, int]]:
    """(is_variable, groups, (stride_batch_or_d, stride_group, stride_n)) for B or C.

    Constant (dim, dstate): strides (stride_d, 0, stride_n).  Variable (batch, [groups,] dstate,
    seqlen) needs unit stride along seqlen.
    """
    if x.dim() == 2:
        return False, 1, (x.stride(0), 0, x.stride(1))
    if x.dim() == 3:
        return True, 1, (x.stride(0), 0, x.stride(1))
    if x.dim() == 4:
        return True, x.shape[1], (x.stride(0), x.stride(1), x.stride(2))
    raise ValueError(f"B/C must be 2-D, 3-D or 4-D, got shape {tuple(x.shape)}")


def _unit_last(x: Tensor) -> Tensor:
    return x if x.stride(-1) == 1 or x.shape[-1] == 1 else x.contiguous()


def _prep(u, delta, A, B, C, D, z, delta_bias):
    if u.dim() != 3:
        raise ValueError(f"u must be (batch, dim, seqlen), got {tuple(u.shape)}")
    batch, dim, seqlen = u.shape
    if delta.shape != u.shape or (z is not None and z.shape != u.shape):
        raise ValueError("u, delta and z must all be (batch, dim, seqlen)")
    if A.shape[0] != dim:
        raise ValueError(f"A must be (dim={dim}, dstate), got {tuple(A.shape)}")
    dstate = A.shape[1]
    if dstate > 256:
        raise ValueError(f"dstate={dstate} > 256 is not supported")
    u, delta = _unit_last(u), _unit_last(delta)
    z = _unit_last(z) if z is not None else None
    B = _unit_last(B) if B.dim() >= 3 else B
    C = _unit_last(C) if C.dim() >= 3 else C
    if B.dim() >= 3 and B.dtype != u.dtype:
        B = B.to(u.dtype)
    if C.dim() >= 3 and C.dtype != u.dtype:
        C = C.to(u.dtype)
    bvar, bg, _ = _bc_layout(B, dim)
    cvar, cg, _ = _bc_layout(C, dim)
    groups = max(bg, cg)
    if bvar and cvar and bg != cg:
        raise ValueError("B and C must have the same number of groups")
    if dim % groups != 0:
        raise ValueError(f"dim={dim} is not divisible by the number of B/C groups ({groups})")
    A = A.float()
    D = D.float().contiguous() if D is not None else None
    delta_bias = delta_bias.float().contiguous() if delta_bias is not None else None
    return u, delta, A, B, C, D, z, delta_bias, groups


def _v3_config(dim: int, dstate: int, seqlen: int, batch: int, elem: int) -> dict[str, int]:
    """Launch parameters of the sequential (v3) kernels: warps, lanes per channel, time tiles, chunk.

    FWD_TT is one 16-byte vector of time steps per thread (8 bf16/fp16, 4 fp32).  The backward keeps
    TT + 1 states per register slot, so it uses 4, and one warp per program (8 channels x 4 lanes: no
    cross-warp sums) capped at 128 registers (16 resident warps per SM).  CHUNK (steps between saved
    states) sets the memory kept for the backward, dstate * 4 / CHUNK bytes per (batch, channel, step).
    Below ``split_rows`` (batch, channel) rows both kernels cut time into segments, enough for
    ``split_target`` row-segments (``split_lanes`` lanes then; at 12288 rows a 2-way split was
    slower, at 4096 a 4-way one 1.7x faster).  ``lane_reduce`` sums dB/dC with a shuffle
    reduce-scatter (GPU, 4 lanes x 8 channels).  ``prefetch`` (the forward issues the next tile's loads
    before this tile's recurrence) and ``bwd_maxnreg`` (the backward's register cap; 0: none) are -1,
    "auto": chosen per grid by the wave model (:func:`pick_by_waves`).  ``fwd_split_rows``, if given,
    replaces ``split_rows`` for the forward.
    Sweeps behind these values (scripts/sweep_v3.py): docs/benchmarks.md, "Session 3" and "Session 5".
    """
    rows = batch * dim
    bwd_lanes = 4 if rows >= V3_FWD_MIN_ROWS else 8  # few rows: more threads per channel
    cfg = {"fwd_warps": 1, "lanes": 4, "prefetch": -1,
           "FWD_TT": 16 // elem if elem < 4 else 4, "CHUNK": 128,
           "bwd_warps": 1, "bwd_lanes": bwd_lanes, "BWD_TT": 4, "bwd_maxnreg": -1,
           "split_rows": V3_FWD_MIN_ROWS, "split_target": 32768, "split_lanes": 4, "lane_reduce": 1}
    return {**cfg, **_env_v3_config(cfg)}


def _env_v3_config(defaults: dict[str, int]) -> dict[str, int]:
    """``MAMBABENCH_V3_CONFIG="prefetch=1,bwd_maxnreg=160"``: override v3 launch parameters for a whole
    run (e.g. a training-step benchmark) without editing code; keys are those of :func:`_v3_config`
    plus ``fwd_split_rows`` and ``stages``."""
    spec = os.environ.get("MAMBABENCH_V3_CONFIG", "").strip()
    if not spec:
        return {}
    known = {*defaults, "fwd_split_rows", "stages"}
    out = {}
    for item in spec.split(","):
        key, _, value = item.partition("=")
        key = key.strip()
        if key not in known or not value.strip().lstrip("-").isdigit():
            raise ValueError(f"MAMBABENCH_V3_CONFIG: {item!r} is not KEY=INT with a known key; known: "
                             f"{', '.join(sorted(known))}")
        out[key] = int(value)
    return out


# Kernel family: "auto" (default) runs the v3 backward whenever dstate <= 16 and the v3 forward for
# training and most no-grad row counts (see _v3_forward); "2" / "3" force one family
# (MAMBABENCH_SCAN_VARIANT).
SCAN_VARIANT = os.environ.get("MAMBABENCH_SCAN_VARIANT", "auto")
V3_OVERRIDE: dict[str, int] | None = None
# below this many (batch, channel) rows the v3 kernels split time into segments (``split_rows``) and the
# unsplit backward uses 8 lanes per channel. H100, N = 16 (docs/benchmarks.md, "Session 3"):
# (8, 2048, 2048) bf16 training forward v3 0.542 ms vs v2 0.867, fp32 0.747 vs 1.609.
V3_FWD_MIN_ROWS = 8192
# no-grad forwards with at least this many rows run v3; v2 serves [V2_NOGRAD_MIN_ROWS, this). H100 run 15:
# 6144 rows v3 0.666 ms vs v2 0.744 at (3, 2048, 4096), 0.657 vs 0.747 at (4, 1536, 4096)
V3_NOGRAD_MIN_ROWS = 6144
# below this many rows the no-grad forward is v3 (time-split) too: H100 run 15, (1, 2048, 65536) 3.306 ms
# vs v2 5.715, (1, 1536, 16384) 0.649 vs 1.402, (2, 1536, 8192) 0.637 vs 0.804; at 4096 rows v2 stays
# faster: (1, 4096, 4096) 0.389 vs 0.438, (2, 2048, 8192) 0.769 vs 0.844
V2_NOGRAD_MIN_ROWS = 4096
# Wave model of the one-warp v3 programs.  A grid of P programs with R resident per SM on n SMs runs in
# ceil(P / (R n)) waves, of which the fraction P / (R n) / ceil(...) of the slots is busy.  Prefetching
# in the forward (168 registers per thread: 12 resident warps per SM against 18 at 110) and the
# backward's 160-register cap (12 against 16 at 128, and no spills) are each a few percent faster per
# program at equal waves (``*_GAIN``), so "auto" (-1 in :func:`_v3_config`) takes them unless their
# last wave is emptier by more than that.  H100 run 15 (docs/benchmarks.md, "Session 5"):
# (16, 1536, 2048), 3072 programs: prefetch fwd 0.775 ms vs 1.031, cap 160 bwd 2.597 vs 3.193;
# (8, 2048, 2048), 2048 programs: 0.645 vs 0.554 and 2.142 vs 1.855, the other way round.
# Register counts: sm_90, Triton 3.6 (scripts/kernel_resources.py).
FWD_RESIDENT = {0: 18, 1: 12}  # prefetch -> resident one-warp forward programs per SM
BWD_RESIDENT = {128: 16, 160: 12}  # maxnreg -> resident one-warp backward programs per SM
PREFETCH_GAIN = 1.04
MAXNREG_GAIN = 1.06
_SM_COUNT: dict[str, int] = {}
# MAMBABENCH_SCAN_AUTOTUNE=1: time the candidates of kernels/scan_autotune.py per tuning key (None: off)
TUNER = scan_autotune.tuner_from_env()


def _sm_count(device: torch.device) -> int:
    """Streaming multiprocessors of a CUDA device (132 elsewhere: the H100's, for the interpreter)."""
    if device.type != "cuda":
        return 132
    key = str(device)
    if key not in _SM_COUNT:
        _SM_COUNT[key] = torch.cuda.get_device_properties(device).multi_processor_count
    return _SM_COUNT[key]


def busy_fraction(programs: int, per_sm: int, sms: int) -> float:
    """The fraction of resident-program slots busy over the waves that ``programs`` one-warp programs need."""
    slots = per_sm * sms
    return programs / (cdiv(programs, slots) * slots)


def pick_by_waves(programs: int, sms: int, resident: dict[int, int], preferred: int, gain: float) -> int:
    """``preferred`` (a key of ``resident``: option -> resident programs per SM) unless the other option's
    busy fraction beats its own by more than ``gain``; see the wave model above."""
    other = next(k for k in resident if k != preferred)
    own = busy_fraction(programs, resident[preferred], sms) * gain
    return preferred if own >= busy_fraction(programs, resident[other], sms) else other


def _v3_backward(dstate: int) -> bool:
    """Whether the v3 kernels run the backward (and so take any forward's saved states)."""
    return dstate <= 16 and SCAN_VARIANT != "2"


def _v3_forward(u: Tensor, dstate: int, save_states: bool = False) -> bool:
    """Whether the v3 kernel runs the forward: training (time-split for few rows, where v2's
    state-saving forward is slow), no-grad with at least ``V3_NOGRAD_MIN_ROWS`` rows, or very few rows
    (below ``V2_NOGRAD_MIN_ROWS`` v2, which does not split time, has too few programs); v2 keeps the
    no-grad forward in between."""
    if SCAN_VARIANT != "auto":
        return SCAN_VARIANT == "3" and dstate <= 16
    rows = u.shape[0] * u.shape[1]
    return dstate <= 16 and (save_states or rows >= V3_NOGRAD_MIN_ROWS or rows < V2_NOGRAD_MIN_ROWS)


def _bc_fp32(x: Tensor) -> Tensor:
    """Variable B/C as fp32 for the v3 kernels: (batch, [groups,] dstate, seqlen) is dim / dstate times
    smaller than u, so the copy is cheap, and every thread then reads B_t / C_t without converting."""
    return x.float() if x.dim() >= 3 else x


def _forward_buffers(u: Tensor, dstate: int, n_saved: int, save_states: bool,
                     save_last: bool) -> tuple[Tensor, Tensor, Tensor]:
    """out (batch, dim, seqlen) in u's dtype; fp32 saved states (batch, dim, n_saved, dstate) and
    last state (batch, dim, dstate), or ``out`` as a placeholder pointer when not wanted."""
    batch, dim, seqlen = u.shape
    out = torch.empty((batch, dim, seqlen), device=u.device, dtype=u.dtype)
    states = (torch.empty((batch, dim, n_saved, dstate), device=u.device, dtype=torch.float32)
              if save_states else out)
    last = torch.empty((batch, dim, dstate), device=u.device, dtype=torch.float32) if save_last else out
    return out, states, last


def _v3_launch(phase: str, u: Tensor, dstate: int, has_z: bool, save_states: bool,
               trial) -> dict[str, int]:  # noqa: ANN001 - trial: Callable[[dict], object]
    """The v3 launch parameters of one call: ``V3_OVERRIDE``, else the heuristic, tuned by ``TUNER``
    (``MAMBABENCH_SCAN_AUTOTUNE=1``; not while a CUDA graph is captured) over ``scan_autotune``'s space."""
    if V3_OVERRIDE:
        return dict(V3_OVERRIDE)
    batch, dim, seqlen = u.shape
    cfg = _v3_config(dim, dstate, seqlen, batch, u.element_size())
    if TUNER is None or (u.is_cuda and torch.cuda.is_current_stream_capturing()):
        return cfg
    space = scan_autotune.FWD_SPACE if phase == "fwd" else scan_autotune.BWD_SPACE
    return TUNER.pick(scan_autotune.tuning_key(phase, u, dstate, has_z, save_states), cfg, space, trial)


def _forward_v3(u, delta, A, B, C, D, z, delta_bias, softplus, save_states, save_last, cfg=None):
    """v3 forward (time-split below ``split_rows`` (batch, channel) rows); returns out, the states saved
    every CHUNK steps, the last state and CHUNK.  ``cfg``: launch parameters (default :func:`_v3_launch`)."""
    batch, dim, seqlen = u.shape
    dstate = A.shape[1]
    groups = max(_bc_layout(B, dim)[1], _bc_layout(C, dim)[1])
    if cfg is None:
        cfg = _v3_launch("fwd", u, dstate, z is not None, save_states, lambda c: _forward_v3(
            u, delta, A, B, C, D, z, delta_bias, softplus, save_states, save_last, cfg=c))
    warps, tt = cfg["fwd_warps"], cfg["FWD_TT"]
    chunk = cfg["CHUNK"]
    lanes = min(cfg.get("lanes", 1), next_power_of_2(dstate))
    n_seg, seg_chunks = _time_segments(batch * dim, cdiv(seqlen, chunk), cfg, "fwd_split_rows")
    block_d = _block_d(dim, groups, max(1, 32 * warps // lanes))
    B, C = _bc_fp32(B), _bc_fp32(C)
    out, states, last = _forward_buffers(u, dstate, cdiv(seqlen, chunk), save_states, save_last)
    bvar, _, sB = _bc_layout(B, dim)
    cvar, _, sC = _bc_layout(C, dim)
    zz = z if z is not None else u
    dummy = A
    grid = (cdiv(dim, block_d), batch, n_seg)
    prefetch = cfg.get("prefetch", 0)
    if prefetch < 0:
        prefetch = pick_by_waves(grid[0] * batch * n_seg, _sm_count(u.device), FWD_RESIDENT, 1, PREFETCH_GAIN)
    prefetch = bool(prefetch)
    carry = dummy
    with torch.cuda.device(u.device) if u.is_cuda else nullcontext():
        if n_seg > 1:  # the state entering every time segment, so that all run at once
            carry = _segment_carries(u, delta, A, B, z, delta_bias, softplus, chunk, n_seg, seg_chunks, cfg,
                                     reverse=False)
        seq_scan_fwd_kernel[grid](
            u, delta, A, B, C, D if D is not None else dummy, zz,
            delta_bias if delta_bias is not None else dummy,
            out, states, last, carry,
            dim, seqlen, dim // groups, seg_chunks,
            u.stride(0), u.stride(1), delta.stride(0), delta.stride(1), A.stride(0), A.stride(1),
            *sB, *sC,
            zz.stride(0), zz.stride(1), out.stride(0), out.stride(1),
            *((states.stride(0), states.stride(1), states.stride(2)) if save_states else (0, 0, 0)), 1,
            HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=delta_bias is not None,
            SOFTPLUS=bool(softplus), B_VAR=bvar, C_VAR=cvar,
            SAVE_STATES=save_states, SAVE_LAST=save_last,
            BLOCK_D=block_d, DSTATE=dstate, TT=tt, CHUNK=chunk, EVEN_T=seqlen % tt == 0,
            LANES=lanes, NPT=cdiv(dstate, lanes), FAST=u.is_cuda, SPLIT=n_seg > 1,
            # time-split no-grad forwards ran slower with prefetching (H200: 0.923 vs 0.850 ms at (2, 2048, 8192))
            PREFETCH=prefetch and (save_states or n_seg == 1),
            num_warps=max(1, block_d * lanes // 32), num_stages=cfg.get("stages", 1),
        )
    return out, (states if save_states else None), (last if save_last else None), chunk


def _backward_v3(u, delta, A, B, C, D, z, delta_bias, softplus, states, chunk, dout, deterministic,
                 du_out=None, dz_out=None, cfg=None):
    """v3 backward from the states saved every ``chunk`` steps; ``cfg``: launch parameters (default
    :func:`_v3_launch`; autotuning trials write into their own buffers, never ``du_out`` / ``dz_out``)."""
    if cfg is None:
        cfg = _v3_launch("bwd", u, A.shape[1], z is not None, True, lambda c: _backward_v3(
            u, delta, A, B, C, D, z, delta_bias, softplus, states, chunk, dout, deterministic, cfg=c))
    batch, dim, seqlen = u.shape
    dstate = A.shape[1]
    dout = _unit_last(dout)
    B_in, C_in = B, C
    B, C = _bc_fp32(B), _bc_fp32(C)
    bvar, bg, sB = _bc_layout(B, dim)
    cvar, cg, sC = _bc_layout(C, dim)
    groups = max(bg, cg)
    warps, tt = cfg["bwd_warps"], cfg["BWD_TT"]
    if chunk % tt:
        tt = 4
    n_seg, seg_chunks = _time_segments(batch * dim, cdiv(seqlen, chunk), cfg)
    lanes = cfg.get("split_lanes", 4) if n_seg > 1 else cfg.get("bwd_lanes", 1)
    lanes = min(lanes, next_power_of_2(dstate))
    npt = next_power_of_2(cdiv(dstate, lanes))  # a power of two: dB/dC rows are stacked
    block_d = _block_d(dim, groups, max(1, 32 * warps // lanes))
    n_dblk = cdiv(dim, block_d)
    n_dblk_per_group = max(1, (dim // groups) // block_d) if groups > 1 else n_dblk
    dev = u.device
    du, dz, ddelta, dA, dD, dbias, dB_buf, dC_buf, bc_stacked = _grad_buffers(
        u, delta, z, D, delta_bias, dstate, bvar, cvar, groups * n_dblk_per_group if deterministic else groups,
        deterministic, du_out, dz_out)
    scratch = torch.empty((n_dblk * batch * n_seg, chunk // tt, npt, block_d * lanes), device=dev,
                          dtype=torch.float32)

    dummy = A
    zz = z if z is not None else u
    dzz = dz if dz is not None else du
    grid = (n_dblk, batch, n_seg)
    maxnreg = cfg.get("bwd_maxnreg", 0)
    if maxnreg < 0:
        maxnreg = pick_by_waves(n_dblk * batch * n_seg, _sm_count(dev), BWD_RESIDENT, 160, MAXNREG_GAIN)
    launch = {"num_warps": max(1, block_d * lanes // 32), "num_stages": 1,
              **({"maxnreg": maxnreg} if maxnreg and u.is_cuda else {})}
    consts = {"HAS_Z": z is not None, "HAS_BIAS": delta_bias is not None, "SOFTPLUS": bool(softplus),
              "C_VAR": cvar, "BLOCK_D": block_d, "DSTATE": dstate, "TT": tt, "EVEN_T": seqlen % tt == 0,
              "LANES": lanes, "NPT": npt, "FAST": u.is_cuda}
    carry = dummy
    with torch.cuda.device(dev) if u.is_cuda else nullcontext():
        if n_seg > 1:  # the reverse carry entering every time segment, so that all run at once
            carry = _segment_carries(dout, delta, A, C, z, delta_bias, softplus, chunk, n_seg, seg_chunks, cfg,
                                    reverse=True)
        seq_scan_bwd_kernel[grid](
            u, delta, A, B, C, D if D is not None else dummy, zz,
            delta_bias if delta_bias is not None else dummy, dout, states, scratch,
            du, ddelta, dA, dB_buf, dC_buf,
            dD if dD is not None else dummy, dbias if dbias is not None else dummy, dzz, carry,
            dim, seqlen, dim // groups, seg_chunks,
            u.stride(0), u.stride(1), delta.stride(0), delta.stride(1), A.stride(0), A.stride(1),
            *sB, *sC,
            zz.stride(0), zz.stride(1), dout.stride(0), dout.stride(1),
            states.stride(0), states.stride(1), states.stride(2), states.stride(3),
            du.stride(0), du.stride(1), ddelta.stride(0), ddelta.stride(1), dzz.stride(0), dzz.stride(1),
            *_bc_grad_strides(dB_buf, bvar), *_bc_grad_strides(dC_buf, cvar),
            HAS_D=D is not None, B_VAR=bvar, DETERMINISTIC=bool(deterministic), CHUNK=chunk,
            SPLIT=n_seg > 1, **consts, **launch,
            LANE_REDUCE=bool(cfg.get("lane_reduce", 1)) and u.is_cuda and bvar and cvar and lanes == 4
            and block_d == 8 and tt == 4,
        )
    dB, dC = _finish_bc((dB_buf, dC_buf), bc_stacked, (bvar, cvar), (B_in, C_in), deterministic, batch, groups,
                        n_dblk_per_group, dstate, seqlen)
    return du, ddelta, dA.to(A.dtype), dB, dC, dD, dbias, dz


def _grad_buffers(u: Tensor, delta: Tensor, z: Tensor | None, D: Tensor | None, delta_bias: Tensor | None,
                  dstate: int, bvar: bool, cvar: bool, bc_slots: int, deterministic: bool,
                  du_out: Tensor | None, dz_out: Tensor | None) -> tuple:
    """The backward's outputs: du, dz, ddelta like their inputs; fp32 dA (dim, dstate), dD and
    ddelta_bias (dim,) zeroed for atomics; dB/dC (dim, dstate) when constant, else (batch, bc_slots,
    dstate, seqlen): one slot per group for atomics (zeroed) or per program when deterministic.

    The small fp32 gradients are views of one zero-filled buffer and the variable dB/dC of one
    (2, batch, bc_slots, dstate, seqlen) buffer, so that a call launches two fills instead of up to
    five (at small shapes the scan is bound by such host work); the last value returned is that
    stacked dB/dC buffer (None when both are constant)."""
    batch, dim, seqlen = u.shape
    dev = u.device
    du, dz = _grad_outputs(u, z, du_out, dz_out)
    f32 = {"device": dev, "dtype": torch.float32}
    sizes = (dim * dstate, dim if D is not None else 0, dim if delta_bias is not None else 0,
             0 if bvar else dim * dstate, 0 if cvar else dim * dstate)
    dA, dD, dbias, dB_const, dC_const = torch.zeros(sum(sizes), **f32).split(sizes)
    var = (torch.empty if deterministic else torch.zeros)((int(bvar) + int(cvar), batch, bc_slots, dstate, seqlen),
                                                          **f32) if bvar or cvar else None
    dB = var[0] if bvar else dB_const.view(dim, dstate)
    dC = var[int(bvar)] if cvar else dC_const.view(dim, dstate)
    return (du, dz, torch.empty_like(delta), dA.view(dim, dstate), dD if D is not None else None,
            dbias if delta_bias is not None else None, dB, dC, var)


def _bc_grad_strides(x: Tensor, var: bool) -> tuple[int, int, int]:
    """(batch, slot, state) strides of a variable dB/dC buffer, or (channel, 0, state) of a constant one."""
    return (x.stride(0), x.stride(1), x.stride(2)) if var else (x.stride(0), 0, x.stride(1))


def _time_segments(rows: int, n_chunks: int, cfg: dict, key: str = "split_rows") -> tuple[int, int]:
    """(n_seg, chunks per segment): below ``cfg[key]`` (batch, channel) rows (0: never; the forward
    reads ``fwd_split_rows``, falling back to ``split_rows``) cut the time axis so that rows * n_seg
    reaches ``split_target``."""
    split_rows = cfg.get(key, cfg.get("split_rows", 0))
    if split_rows <= 0 or rows >= split_rows or n_chunks < 2:
        return 1, n_chunks
    target = max(split_rows, cfg.get("split_target", split_rows))
    seg_chunks = cdiv(n_chunks, min(n_chunks, cdiv(target, rows)))
    return cdiv(n_chunks, seg_chunks), seg_chunks


def _segment_carries(x: Tensor, delta: Tensor, A: Tensor, W: Tensor, z: Tensor | None,
                     delta_bias: Tensor | None, softplus: bool, chunk: int, n_seg: int, seg_chunks: int,
                     cfg: dict, reverse: bool) -> Tensor:
    """Every time segment's own carry and decay product, (batch, dim, n_seg, 2, dstate) fp32: the
    forward state (x = u, W = B) or, with ``reverse``, the backward's ``a_t dh_t`` (x = dout, W = C,
    gate z), each from zero (seq_scan_carry_kernel).  The full kernels fold them per segment."""
    batch, dim, seqlen = delta.shape
    dstate = A.shape[1]
    wvar, groups, sW = _bc_layout(W, dim)
    lanes = min(cfg.get("split_lanes", 4), next_power_of_2(dstate))
    block_d = _block_d(dim, groups, max(1, 32 // lanes))
    tt = 4
    carry = torch.empty((batch, dim, n_seg, 2, dstate), device=x.device, dtype=torch.float32)
    zz = z if (z is not None and reverse) else x
    seq_scan_carry_kernel[(cdiv(dim, block_d), batch, n_seg)](
        x, delta, A, W, zz, delta_bias if delta_bias is not None else A, carry,
        dim, seqlen, dim // groups, seg_chunks,
        x.stride(0), x.stride(1), delta.stride(0), delta.stride(1), A.stride(0), A.stride(1), *sW,
        zz.stride(0), zz.stride(1),
        REVERSE=reverse, HAS_Z=z is not None and reverse, HAS_BIAS=delta_bias is not None,
        SOFTPLUS=bool(softplus), W_VAR=wvar, BLOCK_D=block_d, DSTATE=dstate, TT=tt, CHUNK=chunk,
        EVEN_T=seqlen % tt == 0, LANES=lanes, NPT=cdiv(dstate, lanes), FAST=x.is_cuda,
        num_warps=max(1, block_d * lanes // 32), num_stages=1,
    )
    return carry


def _finish_bc(bufs: tuple[Tensor, Tensor], stacked: Tensor | None, vars_: tuple[bool, bool],
               likes: tuple[Tensor, Tensor], deterministic: bool, batch: int, groups: int, n_dblk_per_group: int,
               dstate: int, seqlen: int) -> tuple[Tensor, Tensor]:
    """dB and dC from their buffers (:func:`_grad_buffers`; ``stacked``: the one both variable ones
    view): the deterministic per-program partials summed, each in the shape and dtype of B / C;
    variable dB and dC of one dtype are converted together (one cast kernel)."""
    partials = deterministic  # buffers still holding per-program partials
    if vars_[0] and vars_[1] and likes[0].dtype == likes[1].dtype:  # one sum and one cast for both
        both = stacked.view(2, batch, groups, n_dblk_per_group, dstate, seqlen).sum(3) if partials else stacked
        bufs, partials = tuple(both.to(likes[0].dtype).unbind(0)), False
    out = []
    for buf, var, like in zip(bufs, vars_, likes):
        if var and partials:
            buf = buf.view(batch, groups, n_dblk_per_group, dstate, seqlen).sum(2)
        if var and like.dim() == 3:
            buf = buf.reshape(batch, dstate, seqlen)
        out.append(buf.to(like.dtype))
    return out[0], out[1]


def _forward(u, delta, A, B, C, D, z, delta_bias, softplus, save_states, save_last):
    """Forward with either kernel family; returns out, saved states, last state and their spacing."""
    batch, dim, seqlen = u.shape
    dstate = A.shape[1]
    if FWD_OVERRIDE is None and _v3_forward(u, dstate, save_states):
        return _forward_v3(u, delta, A, B, C, D, z, delta_bias, softplus, save_states, save_last)
    groups = max(_bc_layout(B, dim)[1], _bc_layout(C, dim)[1])
    cfg = dict(FWD_OVERRIDE or _fwd_config(dim, dstate, seqlen, batch, u.element_size(), save_states))
    block_d = _block_d(dim, groups, cfg.pop("BLOCK_D"))
    block_t = cfg.pop("BLOCK_T")
    block_n = max(2, next_power_of_2(dstate))
    kernel = _selective_scan_fwd_kernel_v2
    cfg.setdefault("UNROLL_N", UNROLL_STATES and block_n <= 16)
    cfg.setdefault("BC_TILE", BC_TILE)
    cfg["CARRY_W"] = _carry_width(block_n, block_t)
    out, states, last = _forward_buffers(u, dstate, cdiv(seqlen, block_t), save_states, save_last)
    bvar, _, sB = _bc_layout(B, dim)
    cvar, _, sC = _bc_layout(C, dim)
    zz = z if z is not None else u
    dummy = A
    grid = (cdiv(dim, block_d), batch)
    with torch.cuda.device(u.device) if u.is_cuda else nullcontext():
        kernel[grid](
            u, delta, A, B, C, D if D is not None else dummy, zz,
            delta_bias if delta_bias is not None else dummy,
            out, states, last,
            dim, seqlen, dstate, dim // groups,
            u.stride(0), u.stride(1), delta.stride(0), delta.stride(1), A.stride(0), A.stride(1),
            *sB, *sC,
            zz.stride(0), zz.stride(1), out.stride(0), out.stride(1),
            *((states.stride(0), states.stride(1), states.stride(2)) if save_states else (0, 0, 0)),
            HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=delta_bias is not None,
            SOFTPLUS=bool(softplus), B_VAR=bvar, C_VAR=cvar,
            SAVE_STATES=save_states, SAVE_LAST=save_last,
            BLOCK_D=block_d, BLOCK_N=block_n, BLOCK_T=block_t,
            **cfg,
        )
    return out, (states if save_states else None), (last if save_last else None), block_t


def _grad_outputs(u: Tensor, z: Tensor | None, du_out: Tensor | None,
                  dz_out: Tensor | None) -> tuple[Tensor, Tensor | None]:
    """du and dz buffers: the caller's (e.g. views into the gradient of a fused xz tensor) or new."""
    for name, out, like in (("du_out", du_out, u), ("dz_out", dz_out, z)):
        if out is not None and (like is None or out.shape != like.shape or out.stride(-1) != 1
                                or out.dtype != like.dtype):
            raise ValueError(f"{name} must match its input's shape and dtype with unit stride along seqlen")
    du = du_out if du_out is not None else torch.empty_like(u)
    dz = (dz_out if dz_out is not None else torch.empty_like(z)) if z is not None else None
    return du, dz


def _backward(u, delta, A, B, C, D, z, delta_bias, softplus, states, block_t, dout, deterministic,
              du_out=None, dz_out=None):
    """Backward from the states saved every ``block_t`` steps by either forward."""
    if BWD_OVERRIDE is None and _v3_backward(A.shape[1]) and block_t % 4 == 0:
        return _backward_v3(u, delta, A, B, C, D, z, delta_bias, softplus, states, block_t, dout,
                            deterministic, du_out, dz_out)
    batch, dim, seqlen = u.shape
    dstate = A.shape[1]
    dout = _unit_last(dout)
    bvar, bg, sB = _bc_layout(B, dim)
    cvar, cg, sC = _bc_layout(C, dim)
    groups = max(bg, cg)
    cfg = dict(BWD_OVERRIDE or _bwd_config(dim, dstate, seqlen, batch, u.element_size()))
    cfg.pop("BLOCK_T", None)
    block_n = max(2, next_power_of_2(dstate))
    kernel = _selective_scan_bwd_kernel_v2
    cfg.setdefault("UNROLL_N", UNROLL_STATES and block_n <= 16)
    cfg.setdefault("BC_TILE", BC_TILE)
    cfg["CARRY_W"] = _carry_width(block_n, block_t)
    block_d = _block_d(dim, groups, cfg.pop("BLOCK_D"))
    n_dblk = cdiv(dim, block_d)
    n_dblk_per_group = max(1, (dim // groups) // block_d) if groups > 1 else n_dblk
    dev = u.device
    du, dz, ddelta, dA, dD, dbias, dB_buf, dC_buf, bc_stacked = _grad_buffers(
        u, delta, z, D, delta_bias, dstate, bvar, cvar, groups * n_dblk_per_group if deterministic else groups,
        deterministic, du_out, dz_out)

    dummy = A
    zz = z if z is not None else u
    dzz = dz if dz is not None else du
    grid = (n_dblk, batch)
    with torch.cuda.device(dev) if u.is_cuda else nullcontext():
        kernel[grid](
            u, delta, A, B, C, D if D is not None else dummy, zz,
            delta_bias if delta_bias is not None else dummy, dout, states,
            du, ddelta, dA, dB_buf, dC_buf,
            dD if dD is not None else dummy, dbias if dbias is not None else dummy, dzz,
            dim, seqlen, dstate, dim // groups, n_dblk_per_group,
            u.stride(0), u.stride(1), delta.stride(0), delta.stride(1), A.stride(0), A.stride(1),
            *sB, *sC,
            zz.stride(0), zz.stride(1), dout.stride(0), dout.stride(1),
            states.stride(0), states.stride(1), states.stride(2),
            du.stride(0), du.stride(1), ddelta.stride(0), ddelta.stride(1), dzz.stride(0), dzz.stride(1),
            *_bc_grad_strides(dB_buf, bvar), *_bc_grad_strides(dC_buf, cvar),
            HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=delta_bias is not None,
            SOFTPLUS=bool(softplus), B_VAR=bvar, C_VAR=cvar, DETERMINISTIC=bool(deterministic),
            BLOCK_D=block_d, BLOCK_N=block_n, BLOCK_T=block_t,
            **cfg,
        )

    dB, dC = _finish_bc((dB_buf, dC_buf), bc_stacked, (bvar, cvar), (B, C), deterministic, batch, groups,
                        n_dblk_per_group, dstate, seqlen)
    return du, ddelta, dA.to(A.dtype), dB, dC, dD, dbias, dz


def selective_scan_forward(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None = None,
                           z: Tensor | None = None, delta_bias: Tensor | None = None,
                           delta_softplus: bool = False, save_states: bool = True,
                           return_last_state: bool = False) -> tuple[Tensor, tuple, Tensor | None]:
    """The Triton forward without autograd, for fused callers (``ops/mamba_inner.py``).

    Same contract as :func:`selective_scan_triton` (real A only).  Returns out (batch, dim, seqlen),
    the residual that :func:`selective_scan_backward` takes (the saved states and their spacing,
    or None without ``save_states``) and the last state (batch, dim, dstate) or None.
    """
    u, delta, A, B, C, D, z, delta_bias, _ = _prep(u, delta, A, B, C, D, z, delta_bias)
    out, states, last, spacing = _forward(u, delta, A, B, C, D, z, delta_bias, delta_softplus, save_states,
                                          return_last_state)
    return out, ((states, spacing) if save_states else None), last


def selective_scan_backward(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None,
                            z: Tensor | None, delta_bias: Tensor | None, delta_softplus: bool,
                            residual: tuple, dout: Tensor, deterministic: bool = False,
                            du_out: Tensor | None = None, dz_out: Tensor | None = None) -> tuple:
    """Gradients of :func:`selective_scan_forward` from its residual; the inputs are passed again.

    ``du_out`` / ``dz_out`` (batch, dim, seqlen, unit stride along seqlen, the dtype of u / z) receive
    du and dz in place, e.g. views into the gradient of a fused ``xz`` tensor.  Returns du, ddelta,
    dA, dB, dC, dD, ddelta_bias, dz in the dtypes of their inputs (None where an input is None).
    """
    A_dtype, B_dtype, C_dtype = A.dtype, B.dtype, C.dtype
    u, delta, A, B, C, D, z, delta_bias, _ = _prep(u, delta, A, B, C, D, z, delta_bias)
    states, spacing = residual
    du, ddelta, dA, dB, dC, dD, dbias, dz = _backward(u, delta, A, B, C, D, z, delta_bias, delta_softplus, states,
                                                      spacing, dout, deterministic, du_out, dz_out)
    return du, ddelta, dA.to(A_dtype), dB.to(B_dtype), dC.to(C_dtype), dD, dbias, dz


class SelectiveScanTriton(torch.autograd.Function):
    """autograd wrapper: forward saves the inputs and the per-tile states, backward recomputes.

    A fused caller holding this node (``out.grad_fn``, which has ``accepts_dz_out``) may set
    ``node.dz_out`` to a (batch, dim, seqlen) buffer in z's dtype with unit stride along seqlen before
    the backward runs: dz is then written there instead of into a new tensor (e.g. straight into
    its half of d(xz), saving a copy of an activation-sized tensor).
    """

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state,
                deterministic):
        need_grad = any(ctx.needs_input_grad[:8])
        out, residual, last = selective_scan_forward(u, delta, A, B, C, D, z, delta_bias, delta_softplus,
                                                     need_grad, return_last_state)
        if need_grad:
            ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias, residual[0])
            ctx.spacing = residual[1]
            ctx.softplus = delta_softplus
            ctx.deterministic = deterministic
            ctx.accepts_dz_out = z is not None
            ctx.dz_out = None
        if return_last_state:
            ctx.mark_non_differentiable(last)
            return out, last
        return out

    @staticmethod
    def backward(ctx, dout, *rest):
        u, delta, A, B, C, D, z, delta_bias, states = ctx.saved_tensors
        du, ddelta, dA, dB, dC, dD, dbias, dz = selective_scan_backward(
            u, delta, A, B, C, D, z, delta_bias, ctx.softplus, (states, ctx.spacing), dout, ctx.deterministic,
            dz_out=ctx.dz_out,
        )
        ctx.dz_out = None
        return du, ddelta, dA, dB, dC, dD, dz, dbias, None, None, None


_warned_complex = False


def selective_scan_triton(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
    deterministic: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """Triton selective scan with the official ``selective_scan_fn`` signature.

    Args:
        u, delta: (batch, dim, seqlen); z: (batch, dim, seqlen) or None (may be a strided view).
        A: (dim, dstate) real fp32 (complex A falls back to the PyTorch reference).
        B, C: (dim, dstate), (batch, dstate, seqlen) or (batch, groups, dstate, seqlen).
        D, delta_bias: (dim,) or None.
        deterministic: sum the variable dB/dC partials of the channel blocks in a second pass
            instead of fp32 atomics (bit-reproducible gradients, more memory traffic).

    Returns:
        out (batch, dim, seqlen) in u's dtype, and with ``return_last_state`` also the final
        state (batch, dim, dstate) in fp32.
    """
    if A.is_complex():
        global _warned_complex
        if not _warned_complex:
            warnings.warn("selective_scan_triton: complex A is not supported by the Triton kernel; "
                          "using the PyTorch reference scan", stacklevel=2)
            _warned_complex = True
        from mambabench.ops import selective_scan_ref

        return selective_scan_ref(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)
    return SelectiveScanTriton.apply(
        u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state, deterministic
    )


def scan_bytes(batch: int, dim: int, seqlen: int, dstate: int, elem: int, has_z: bool = True) -> int:
    """Minimum HBM bytes of the forward: read u, delta, (z), B, C once, write out once."""
    per_token = (3 + int(has_z)) * elem * dim + 2 * dstate * elem
    return batch * seqlen * per_token

