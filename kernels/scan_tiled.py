"""Tiled selective scan kernels: ``BLOCK_D`` channels x ``BLOCK_T`` time steps per tile.

One program handles ``BLOCK_D`` channels of one batch row and walks the time axis in tiles of
``BLOCK_T`` steps.  Per state n, the tile's recurrence ``h_t = exp(delta_t A_n) h_{t-1} + delta_t u_t
B_{n,t}`` is one ``tl.associative_scan`` over time on a ``[BLOCK_D, BLOCK_T]`` tile (like the official
kernel, but several channels per program), and the state at the end of a tile is carried into the
next, so the (seqlen, dstate) state never reaches HBM.  Each thread owns a few consecutive time steps,
so most of the scan is sequential inside a thread; the B_n / C_n rows are loaded once per program.
The state entering the tile for every n is carried in a register tile (column n read and written with
a mask; see :func:`~mambabench.kernels.scan_launch.carry_width`).

The forward saves the state entering every tile when gradients are needed; the backward walks the tiles
last to first, recomputes each tile's states from its saved state, runs the reverse recurrence with a
reversed associative scan and forms every gradient in registers.  This family serves dstate > 16 and
the no-grad forwards for which :mod:`scan_launch` picks it; :mod:`scan_sequential` is the other family.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch
import triton
import triton.language as tl
from torch import Tensor

from mambabench.kernels._host import cdiv, next_power_of_2
from mambabench.kernels.scan_buffers import (
    bc_grad_strides,
    bc_layout,
    finish_bc,
    forward_buffers,
    grad_buffers,
    unit_stride_last,
)
from mambabench.kernels.scan_common import add_or_store
from mambabench.kernels.scan_common import softplus as _softplus
from mambabench.kernels.scan_launch import block_d_for, carry_width

__all__ = [
    "scan_combine",
    "tiled_backward",
    "tiled_forward",
    "tiled_scan_bwd_kernel",
    "tiled_scan_fwd_kernel",
]


@triton.jit
def scan_combine(a_l, b_l, a_r, b_r):
    """Compose two steps of h <- a * h + b (left is earlier): (a_l a_r, a_r b_l + b_r)."""
    return a_l * a_r, a_r * b_l + b_r


@triton.jit
def _fwd_state(
    n,
    h_all,
    y,
    dl,
    du,
    offs_n,
    offs_t,
    mask_d,
    mask_t,
    A_ptr,
    B_ptr,
    C_ptr,
    offs_d64,
    s_Ad,
    s_An,
    s_Bb,
    s_Bn,
    s_Cb,
    s_Cn,
    B_row,
    C_row,
    dstate,
    B_VAR: tl.constexpr,
    C_VAR: tl.constexpr,
    BLOCK_T: tl.constexpr,
):
    """Advance state n over one time tile; returns (h_all, y) updated.  B_row / C_row: [BLOCK_T] pointers."""
    ok_n = n < dstate
    A2 = tl.load(A_ptr + offs_d64 * s_Ad + n * s_An, mask=mask_d & ok_n, other=0.0).to(tl.float32)
    A2 = A2 * 1.4426950408889634
    a = tl.exp2(dl * A2[:, None])
    if B_VAR:
        Bn = tl.load(B_row + n * s_Bn, mask=mask_t & ok_n, other=0.0).to(tl.float32)
        b = du * Bn[None, :]
    else:
        Bn = tl.load(B_ptr + offs_d64 * s_Bb + n * s_Bn, mask=mask_d & ok_n, other=0.0).to(tl.float32)
        b = du * Bn[:, None]
    a_c, b_c = tl.associative_scan((a, b), axis=1, combine_fn=scan_combine)
    sel_n = offs_n[None, :] == n
    h0 = tl.sum(tl.where(sel_n, h_all, 0.0), axis=1)
    hs = a_c * h0[:, None] + b_c
    if C_VAR:
        Cn = tl.load(C_row + n * s_Cn, mask=mask_t & ok_n, other=0.0).to(tl.float32)
        y += hs * Cn[None, :]
    else:
        Cn = tl.load(C_ptr + offs_d64 * s_Cb + n * s_Cn, mask=mask_d & ok_n, other=0.0).to(tl.float32)
        y += hs * Cn[:, None]
    h_end = tl.sum(tl.where(offs_t[None, :] == BLOCK_T - 1, hs, 0.0), axis=1)
    h_all = tl.where(sel_n, h_end[:, None], h_all)
    return h_all, y


@triton.jit
def tiled_scan_fwd_kernel(
    u_ptr,
    delta_ptr,
    A_ptr,
    B_ptr,
    C_ptr,
    D_ptr,
    z_ptr,
    bias_ptr,
    out_ptr,
    states_ptr,
    last_ptr,
    dim,
    seqlen,
    dstate,
    dim_per_group,
    s_ub,
    s_ud,
    s_db,
    s_dd,
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
    s_sb,
    s_sd,
    s_sc,
    HAS_D: tl.constexpr,
    HAS_Z: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    SOFTPLUS: tl.constexpr,
    B_VAR: tl.constexpr,
    C_VAR: tl.constexpr,
    SAVE_STATES: tl.constexpr,
    SAVE_LAST: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_T: tl.constexpr,
    UNROLL_N: tl.constexpr,
    CARRY_W: tl.constexpr,
):
    """Grid (cdiv(dim, BLOCK_D), batch).  Writes out (batch, dim, seqlen); optionally the state entering
    every tile to states (batch, dim, n_tiles, dstate) and h_L to last (batch, dim, dstate)."""
    pid_d = tl.program_id(0)
    pid_b = tl.program_id(1).to(tl.int64)
    offs_d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    offs_n = tl.arange(0, CARRY_W)  # carry column n holds state n (see carry_width)
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
        B_row = B_base + t
        C_row = C_base + t
        if UNROLL_N:
            for n in tl.static_range(BLOCK_N):
                h_all, y = _fwd_state(
                    n,
                    h_all,
                    y,
                    dl,
                    du,
                    offs_n,
                    offs_t,
                    mask_d,
                    mask_t,
                    A_ptr,
                    B_ptr,
                    C_ptr,
                    offs_d64,
                    s_Ad,
                    s_An,
                    s_Bb,
                    s_Bn,
                    s_Cb,
                    s_Cn,
                    B_row,
                    C_row,
                    dstate,
                    B_VAR,
                    C_VAR,
                    BLOCK_T,
                )
        else:
            for n in range(0, dstate):
                h_all, y = _fwd_state(
                    n,
                    h_all,
                    y,
                    dl,
                    du,
                    offs_n,
                    offs_t,
                    mask_d,
                    mask_t,
                    A_ptr,
                    B_ptr,
                    C_ptr,
                    offs_d64,
                    s_Ad,
                    s_An,
                    s_Bb,
                    s_Bn,
                    s_Cb,
                    s_Cn,
                    B_row,
                    C_row,
                    dstate,
                    B_VAR,
                    C_VAR,
                    BLOCK_T,
                )
        if HAS_Z:
            zz = tl.load(z_base + t[None, :], mask=mask_dt, other=0.0).to(tl.float32)
            y = y * zz * tl.sigmoid(zz)
        tl.store(o_base + t[None, :], y.to(out_ptr.dtype.element_ty), mask=mask_dt)
    if SAVE_LAST:
        tl.store(
            last_ptr + pid_b * dim * dstate + offs_d64[:, None] * dstate + offs_n[None, :],
            h_all,
            mask=mask_dn,
        )


@triton.jit
def _bwd_state(
    n,
    dh_all,
    dA_all,
    dBc_all,
    dCc_all,
    y,
    dhB,
    ddl_acc,
    dl,
    dl1,
    du,
    g,
    offs_n,
    offs_t,
    mask_d,
    mask_t,
    A_ptr,
    B_ptr,
    C_ptr,
    offs_d64,
    s_Ad,
    s_An,
    s_Bb,
    s_Bn,
    s_Cb,
    s_Cn,
    B_row,
    C_row,
    dB_row,
    dC_row,
    s_dBn,
    s_dCn,
    st_tile,
    dstate,
    HAS_Z: tl.constexpr,
    B_VAR: tl.constexpr,
    C_VAR: tl.constexpr,
    DETERMINISTIC: tl.constexpr,
):
    """Recompute state n over the tile, reverse-scan its gradient and accumulate all gradients."""
    ok_n = n < dstate
    A = tl.load(A_ptr + offs_d64 * s_Ad + n * s_An, mask=mask_d & ok_n, other=0.0).to(tl.float32)
    A2 = A * 1.4426950408889634
    if B_VAR:
        Bn = tl.load(B_row + n * s_Bn, mask=mask_t & ok_n, other=0.0).to(tl.float32)[None, :]
    else:
        Bn = tl.load(B_ptr + offs_d64 * s_Bb + n * s_Bn, mask=mask_d & ok_n, other=0.0).to(tl.float32)[
            :, None
        ]
    if C_VAR:
        Cn = tl.load(C_row + n * s_Cn, mask=mask_t & ok_n, other=0.0).to(tl.float32)[None, :]
    else:
        Cn = tl.load(C_ptr + offs_d64 * s_Cb + n * s_Cn, mask=mask_d & ok_n, other=0.0).to(tl.float32)[
            :, None
        ]
    h0 = tl.load(st_tile + n, mask=mask_d & ok_n, other=0.0)
    # forward recompute
    b = du * Bn
    a_c, b_c = tl.associative_scan((tl.exp2(dl * A2[:, None]), b), axis=1, combine_fn=scan_combine)
    hs = a_c * h0[:, None] + b_c
    if HAS_Z:
        y += hs * Cn
    # reverse scan dh_t = C_t g_t + a_{t+1} dh_{t+1}
    ra, rb = tl.associative_scan(
        (tl.exp2(dl1 * A2[:, None]), g * Cn), axis=1, combine_fn=scan_combine, reverse=True
    )
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
def tiled_scan_bwd_kernel(
    u_ptr,
    delta_ptr,
    A_ptr,
    B_ptr,
    C_ptr,
    D_ptr,
    z_ptr,
    bias_ptr,
    dout_ptr,
    states_ptr,
    du_ptr,
    ddelta_ptr,
    dA_ptr,
    dB_ptr,
    dC_ptr,
    dD_ptr,
    dbias_ptr,
    dz_ptr,
    dim,
    seqlen,
    dstate,
    dim_per_group,
    n_dblk_per_group,
    s_ub,
    s_ud,
    s_db,
    s_dd,
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
    s_gb,
    s_gd,
    s_sb,
    s_sd,
    s_sc,
    s_dub,
    s_dud,
    s_ddb,
    s_ddd,
    s_dzb,
    s_dzd,
    s_dBb,
    s_dBg,
    s_dBn,
    s_dCb,
    s_dCg,
    s_dCn,
    HAS_D: tl.constexpr,
    HAS_Z: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    SOFTPLUS: tl.constexpr,
    B_VAR: tl.constexpr,
    C_VAR: tl.constexpr,
    DETERMINISTIC: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_T: tl.constexpr,
    UNROLL_N: tl.constexpr,
    CARRY_W: tl.constexpr,
):
    """Grid (cdiv(dim, BLOCK_D), batch).  Tiles are walked last to first.

    Writes du, ddelta, dz (batch, dim, seqlen) in the input dtype; adds into fp32 dA (dim, dstate),
    dD, dbias (dim,), dB/dC (variable: (batch, groups, dstate, seqlen) with atomics, or
    (batch, groups * n_dblk_per_group, dstate, seqlen) partials when DETERMINISTIC; constant:
    (dim, dstate))."""
    pid_d = tl.program_id(0)
    pid_b = tl.program_id(1).to(tl.int64)
    offs_d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    offs_n = tl.arange(0, CARRY_W)  # carry column n holds state n (see carry_width)
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
        B_row = B_base + t
        C_row = C_base + t
        dB_row = dB_base + t
        dC_row = dC_base + t
        st_tile = st_base + tile * s_sc
        if UNROLL_N:
            for n in tl.static_range(BLOCK_N):
                dh_all, dA_all, dBc_all, dCc_all, y, dhB, ddl_acc = _bwd_state(
                    n,
                    dh_all,
                    dA_all,
                    dBc_all,
                    dCc_all,
                    y,
                    dhB,
                    ddl_acc,
                    dl,
                    dl1,
                    du,
                    g,
                    offs_n,
                    offs_t,
                    mask_d,
                    mask_t,
                    A_ptr,
                    B_ptr,
                    C_ptr,
                    offs_d64,
                    s_Ad,
                    s_An,
                    s_Bb,
                    s_Bn,
                    s_Cb,
                    s_Cn,
                    B_row,
                    C_row,
                    dB_row,
                    dC_row,
                    s_dBn,
                    s_dCn,
                    st_tile,
                    dstate,
                    HAS_Z,
                    B_VAR,
                    C_VAR,
                    DETERMINISTIC,
                )
        else:
            for n in range(0, dstate):
                dh_all, dA_all, dBc_all, dCc_all, y, dhB, ddl_acc = _bwd_state(
                    n,
                    dh_all,
                    dA_all,
                    dBc_all,
                    dCc_all,
                    y,
                    dhB,
                    ddl_acc,
                    dl,
                    dl1,
                    du,
                    g,
                    offs_n,
                    offs_t,
                    mask_d,
                    mask_t,
                    A_ptr,
                    B_ptr,
                    C_ptr,
                    offs_d64,
                    s_Ad,
                    s_An,
                    s_Bb,
                    s_Bn,
                    s_Cb,
                    s_Cn,
                    B_row,
                    C_row,
                    dB_row,
                    dC_row,
                    s_dBn,
                    s_dCn,
                    st_tile,
                    dstate,
                    HAS_Z,
                    B_VAR,
                    C_VAR,
                    DETERMINISTIC,
                )
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
# host side


def tiled_forward(
    u, delta, A, B, C, D, z, delta_bias, softplus, save_states, save_last, cfg: dict[str, int]
) -> tuple[Tensor, Tensor | None, Tensor | None, int]:
    """Tiled forward with launch parameters ``cfg`` (``BLOCK_D``, ``BLOCK_T``, ``num_warps``, ...);
    returns out, the states saved every ``BLOCK_T`` steps (or None), the last state (or None), BLOCK_T."""
    batch, dim, seqlen = u.shape
    dstate = A.shape[1]
    groups = max(bc_layout(B, dim)[1], bc_layout(C, dim)[1])
    cfg = dict(cfg)
    block_d = block_d_for(dim, groups, cfg.pop("BLOCK_D"))
    block_t = cfg.pop("BLOCK_T")
    block_n = max(2, next_power_of_2(dstate))
    cfg.setdefault("UNROLL_N", block_n <= 16)
    cfg["CARRY_W"] = carry_width(block_n, block_t)
    out, states, last = forward_buffers(u, dstate, cdiv(seqlen, block_t), save_states, save_last)
    bvar, _, sB = bc_layout(B, dim)
    cvar, _, sC = bc_layout(C, dim)
    zz = z if z is not None else u
    dummy = A
    grid = (cdiv(dim, block_d), batch)
    with torch.cuda.device(u.device) if u.is_cuda else nullcontext():
        tiled_scan_fwd_kernel[grid](
            u,
            delta,
            A,
            B,
            C,
            D if D is not None else dummy,
            zz,
            delta_bias if delta_bias is not None else dummy,
            out,
            states,
            last,
            dim,
            seqlen,
            dstate,
            dim // groups,
            u.stride(0),
            u.stride(1),
            delta.stride(0),
            delta.stride(1),
            A.stride(0),
            A.stride(1),
            *sB,
            *sC,
            zz.stride(0),
            zz.stride(1),
            out.stride(0),
            out.stride(1),
            *((states.stride(0), states.stride(1), states.stride(2)) if save_states else (0, 0, 0)),
            HAS_D=D is not None,
            HAS_Z=z is not None,
            HAS_BIAS=delta_bias is not None,
            SOFTPLUS=bool(softplus),
            B_VAR=bvar,
            C_VAR=cvar,
            SAVE_STATES=save_states,
            SAVE_LAST=save_last,
            BLOCK_D=block_d,
            BLOCK_N=block_n,
            BLOCK_T=block_t,
            **cfg,
        )
    return out, (states if save_states else None), (last if save_last else None), block_t


def tiled_backward(
    u,
    delta,
    A,
    B,
    C,
    D,
    z,
    delta_bias,
    softplus,
    states,
    block_t,
    dout,
    deterministic,
    du_out,
    dz_out,
    cfg: dict[str, int],
) -> tuple:
    """Tiled backward from the states saved every ``block_t`` steps by either forward, with launch
    parameters ``cfg`` (``BLOCK_D``, ``num_warps``, ...); returns du, ddelta, dA, dB, dC, dD, dbias, dz."""
    batch, dim, seqlen = u.shape
    dstate = A.shape[1]
    dout = unit_stride_last(dout)
    bvar, bg, sB = bc_layout(B, dim)
    cvar, cg, sC = bc_layout(C, dim)
    groups = max(bg, cg)
    cfg = dict(cfg)
    cfg.pop("BLOCK_T", None)
    block_n = max(2, next_power_of_2(dstate))
    cfg.setdefault("UNROLL_N", block_n <= 16)
    cfg["CARRY_W"] = carry_width(block_n, block_t)
    block_d = block_d_for(dim, groups, cfg.pop("BLOCK_D"))
    n_dblk = cdiv(dim, block_d)
    n_dblk_per_group = max(1, (dim // groups) // block_d) if groups > 1 else n_dblk
    dev = u.device
    du, dz, ddelta, dA, dD, dbias, dB_buf, dC_buf, bc_stacked = grad_buffers(
        u,
        delta,
        z,
        D,
        delta_bias,
        dstate,
        bvar,
        cvar,
        groups * n_dblk_per_group if deterministic else groups,
        deterministic,
        du_out,
        dz_out,
    )

    dummy = A
    zz = z if z is not None else u
    dzz = dz if dz is not None else du
    grid = (n_dblk, batch)
    with torch.cuda.device(dev) if u.is_cuda else nullcontext():
        tiled_scan_bwd_kernel[grid](
            u,
            delta,
            A,
            B,
            C,
            D if D is not None else dummy,
            zz,
            delta_bias if delta_bias is not None else dummy,
            dout,
            states,
            du,
            ddelta,
            dA,
            dB_buf,
            dC_buf,
            dD if dD is not None else dummy,
            dbias if dbias is not None else dummy,
            dzz,
            dim,
            seqlen,
            dstate,
            dim // groups,
            n_dblk_per_group,
            u.stride(0),
            u.stride(1),
            delta.stride(0),
            delta.stride(1),
            A.stride(0),
            A.stride(1),
            *sB,
            *sC,
            zz.stride(0),
            zz.stride(1),
            dout.stride(0),
            dout.stride(1),
            states.stride(0),
            states.stride(1),
            states.stride(2),
            du.stride(0),
            du.stride(1),
            ddelta.stride(0),
            ddelta.stride(1),
            dzz.stride(0),
            dzz.stride(1),
            *bc_grad_strides(dB_buf, bvar),
            *bc_grad_strides(dC_buf, cvar),
            HAS_D=D is not None,
            HAS_Z=z is not None,
            HAS_BIAS=delta_bias is not None,
            SOFTPLUS=bool(softplus),
            B_VAR=bvar,
            C_VAR=cvar,
            DETERMINISTIC=bool(deterministic),
            BLOCK_D=block_d,
            BLOCK_N=block_n,
            BLOCK_T=block_t,
            **cfg,
        )

    dB, dC = finish_bc(
        (dB_buf, dC_buf),
        bc_stacked,
        (bvar, cvar),
        (B, C),
        deterministic,
        batch,
        groups,
        n_dblk_per_group,
        dstate,
        seqlen,
    )
    return du, ddelta, dA.to(A.dtype), dB, dC, dD, dbias, dz
