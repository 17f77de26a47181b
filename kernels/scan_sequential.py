"""Sequential selective scan kernels: threads run the recurrence of their channel step by step.

Layout: a program owns ``BLOCK_D`` channels of one batch row; the states of a channel are spread over
``LANES`` threads, ``NPT`` states each (state n = g * NPT + j for lane g, register slot j), kept in
registers as one ``[BLOCK_D, LANES]`` tile per slot (``[LANES, BLOCK_D]`` in the backward, so that
Triton keeps a channel's lanes inside one warp).  Time is walked in tiles of ``TT`` steps (one 16-byte
vector per thread in the forward); :mod:`scan_columns` peels a tile into its TT columns and the
recurrence ``h = exp2(dl * A2) * h + dl * u * B_t`` advances one column at a time.  So:

* in the forward the only cross-thread work is one sum of y over the LANES lanes per tile;
* one exp2 and a few other instructions per (channel, step, state);
* u / delta / z and the B_t / C_t rows are loaded as zero-stride tiles straight into the state
  layout (the repeated addresses are served by L1), so nothing passes through shared memory.

The forward saves the state entering every ``CHUNK`` steps.  The backward walks the chunks last to
first; for each it recomputes the forward once to store the state entering every TT-tile in a small
scratch buffer (L2-resident), then walks the tiles backwards: recompute the TT states of the tile in
registers, run the reverse recurrence ``dh_t = C_t g_t + a_{t+1} dh_{t+1}`` and form all gradients.
dB/dC (variable) are summed over the program's channels (on the GPU with a shuffle reduce-scatter,
``halve_across_lanes``) and added with fp32 atomics, or stored as per-program partials
(``DETERMINISTIC``).  With few (batch, channel) rows both kernels split time into segments that run
at once from carries computed by :func:`seq_scan_carry_kernel`.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch
import triton
import triton.language as tl
from torch import Tensor

from mambabench.kernels._host import cdiv, next_power_of_2
from mambabench.kernels.scan_buffers import (
    bc_fp32,
    bc_grad_strides,
    bc_layout,
    finish_bc,
    forward_buffers,
    grad_buffers,
    unit_stride_last,
)
from mambabench.kernels.scan_columns import join_cols, split_cols, stack_cols
from mambabench.kernels.scan_common import add_or_store, exp2, halve_across_lanes, sigmoid
from mambabench.kernels.scan_common import softplus as _softplus
from mambabench.kernels.scan_launch import (
    BWD_RESIDENT,
    FWD_RESIDENT,
    MAXNREG_GAIN,
    PREFETCH_GAIN,
    ScanLaunch,
    block_d_for,
    pick_by_waves,
    sequential_launch,
    sm_count,
    time_segments,
)

__all__ = [
    "segment_carries",
    "seq_scan_bwd_kernel",
    "seq_scan_carry_kernel",
    "seq_scan_fwd_kernel",
    "sequential_backward",
    "sequential_forward",
]


@triton.jit
def _tile_masks(t0, seqlen, mask_d3, tile, EVEN_T: tl.constexpr):
    """The data mask (channels and time) and the B/C-row mask (time only) of the 3-D time tile at t0."""
    if EVEN_T:
        mask3 = mask_d3 & (tile >= 0)
        mask_t3 = tile >= 0  # constant along time: keeps the loads vectorised
    else:
        mask3 = mask_d3 & ((t0 + tile) < seqlen)
        mask_t3 = (t0 + tile) < seqlen
    return mask3, mask_t3


@triton.jit
def _tile_inputs(
    u_base,
    dl_base,
    t0,
    seqlen,
    mask_d3,
    tile,
    bias3,
    HAS_BIAS: tl.constexpr,
    SOFTPLUS: tl.constexpr,
    EVEN_T: tl.constexpr,
    FAST: tl.constexpr,
):
    """The 3-D time tile at t0 (``tile``: the in-tile step on the last axis, zero stride elsewhere;
    ``mask_d3`` / ``bias3``: the channel mask and delta bias broadcastable to it): the data mask, the
    B/C-row mask, fp32 u, delta + bias, and delta after softplus with zeros past seqlen (so those
    steps leave the state unchanged)."""
    mask3, mask_t3 = _tile_masks(t0, seqlen, mask_d3, tile, EVEN_T)
    u = tl.load(u_base + t0, mask=mask3, other=0.0)
    dl_raw = tl.load(dl_base + t0, mask=mask3, other=0.0)
    u, dl_raw, dl = _tile_math(u, dl_raw, mask3, bias3, HAS_BIAS, SOFTPLUS, FAST)
    return mask3, mask_t3, u, dl_raw, dl


@triton.jit
def _tile_math(u, dl_raw, mask3, bias3, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, FAST: tl.constexpr):
    """fp32 u, delta + bias, and delta after softplus with zeros outside ``mask3``, from the loaded tiles."""
    u = u.to(tl.float32)
    dl_raw = dl_raw.to(tl.float32)
    if HAS_BIAS:
        dl_raw = dl_raw + bias3
    if SOFTPLUS:
        dl = _softplus(dl_raw, FAST)
    else:
        dl = dl_raw
    dl = tl.where(mask3, dl, 0.0)
    return u, dl_raw, dl


@triton.jit
def _fwd_loads(
    u_base,
    dl_base,
    z_base,
    B_base,
    C_base,
    t0,
    seqlen,
    mask_d3,
    tile,
    offs_g,
    s_Bn,
    s_Cn,
    HAS_Z: tl.constexpr,
    B_VAR: tl.constexpr,
    C_VAR: tl.constexpr,
    EVEN_T: tl.constexpr,
    NPT: tl.constexpr,
    DSTATE: tl.constexpr,
):
    """The forward's loads for the time tile at t0, as stored: u, delta, z ``[BLOCK_D, LANES, TT]`` (z = u
    without HAS_Z) and, per register slot j, the variable B / C rows ``[BLOCK_D, LANES, TT]`` (tuples of
    NPT; a single dummy when constant)."""
    mask3, mask_t3 = _tile_masks(t0, seqlen, mask_d3, tile, EVEN_T)
    u = tl.load(u_base + t0, mask=mask3, other=0.0)
    dl = tl.load(dl_base + t0, mask=mask3, other=0.0)
    if HAS_Z:
        zz = tl.load(z_base + t0, mask=mask3, other=0.0)
    else:
        zz = u
    Bs = ()
    Cs = ()
    for j in tl.static_range(NPT):
        ok_n3 = ((offs_g * NPT + j) < DSTATE)[None, :, None]
        if B_VAR:
            Bs = Bs + (
                tl.load(
                    B_base + ((offs_g * NPT + j) * s_Bn)[None, :, None] + t0, mask=mask_t3 & ok_n3, other=0.0
                ),
            )
        if C_VAR:
            Cs = Cs + (
                tl.load(
                    C_base + ((offs_g * NPT + j) * s_Cn)[None, :, None] + t0, mask=mask_t3 & ok_n3, other=0.0
                ),
            )
    if not B_VAR:
        Bs = (u,)
    if not C_VAR:
        Cs = (u,)
    return u, dl, zz, Bs, Cs


# A's and the saved states' dstate strides are run-time values (never specialised to 1): a dstate axis
# known to be contiguous would make Triton spread it over lanes (16-byte vectors), and every tile
# would then be converted between that layout and the one-channel-per-thread layout.
@triton.jit(do_not_specialize=["s_An", "s_sn"])
def seq_scan_fwd_kernel(
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
    carry_ptr,
    dim,
    seqlen,
    dim_per_group,
    seg_chunks,
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
    s_sn,
    HAS_D: tl.constexpr,
    HAS_Z: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    SOFTPLUS: tl.constexpr,
    B_VAR: tl.constexpr,
    C_VAR: tl.constexpr,
    SAVE_STATES: tl.constexpr,
    SAVE_LAST: tl.constexpr,
    BLOCK_D: tl.constexpr,
    DSTATE: tl.constexpr,
    TT: tl.constexpr,
    CHUNK: tl.constexpr,
    EVEN_T: tl.constexpr,
    LANES: tl.constexpr,
    NPT: tl.constexpr,
    FAST: tl.constexpr,
    SPLIT: tl.constexpr,
    PREFETCH: tl.constexpr = False,
):
    """Grid (cdiv(dim, BLOCK_D), batch, n_seg): program (., ., s) runs chunks [s * seg_chunks,
    (s + 1) * seg_chunks) of CHUNK steps, from zero or, with SPLIT, from the state entering segment s,
    folded from the earlier segments' carries (:func:`seq_scan_carry_kernel`).
    The states of a channel are spread over LANES threads, NPT =
    cdiv(DSTATE, LANES) each (state n = g * NPT + j for lane g, register j): LANES > 1 gives more
    threads to hide latency with, for one cross-lane sum of y per tile.  EVEN_T: seqlen % TT == 0 (no
    time masks, so the tiles load as 16-byte vectors).  Writes out (batch, dim, seqlen); with
    SAVE_STATES the state entering every CHUNK steps to states (batch, dim, n_chunks, DSTATE); with
    SAVE_LAST h_L to last (batch, dim, DSTATE).  PREFETCH: issue the next tile's loads before this tile's
    recurrence (register double-buffering, for few rows, where too few warps hide the load latency)."""
    pid_d = tl.program_id(0)
    pid_b = tl.program_id(1).to(tl.int64)
    pid_s = tl.program_id(2)
    n_seg = tl.num_programs(2)
    offs_d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    offs_g = tl.arange(0, LANES)
    offs_k = tl.arange(0, TT)
    mask_d = offs_d < dim
    d64 = offs_d.to(tl.int64)
    d2 = d64[:, None]
    group = ((pid_d * BLOCK_D) // dim_per_group).to(tl.int64)
    # per-register-slot [BLOCK_D, LANES] tiles: one value per thread
    A2 = ()
    h = ()
    for j in tl.static_range(NPT):
        n_j = offs_g * NPT + j
        ok_j = mask_d[:, None] & (n_j < DSTATE)[None, :]
        a_j = tl.load(A_ptr + d2 * s_Ad + n_j[None, :] * s_An, mask=ok_j, other=0.0).to(tl.float32)
        A2 = A2 + (a_j * 1.4426950408889634,)
        h_j = tl.zeros([BLOCK_D, LANES], dtype=tl.float32)
        if SPLIT:  # fold the earlier segments' (end state, decay product): h <- P[r] h + h_loc[r]
            c_j = carry_ptr + (pid_b * dim + d2) * n_seg * (2 * DSTATE) + n_j[None, :]
            for r in range(0, pid_s):
                h_loc = tl.load(c_j + r * (2 * DSTATE), mask=ok_j, other=0.0)
                h_j = tl.load(c_j + r * (2 * DSTATE) + DSTATE, mask=ok_j, other=0.0) * h_j + h_loc
        h = h + (h_j,)
    if HAS_D:
        Dv = tl.load(D_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)
    else:
        bias = tl.zeros([BLOCK_D], dtype=tl.float32)  # unused: _tile_inputs adds it only if HAS_BIAS

    # [BLOCK_D, LANES, TT] tiles; the LANES axis has zero stride (the lanes of a channel read the same
    # u / delta / z vector, and all channels the same B / C row: L1 serves the repeats)
    tile = (d64 * 0)[:, None, None] + (offs_g * 0)[None, :, None] + offs_k[None, None, :]
    row3 = d64[:, None, None]
    u_base = u_ptr + pid_b * s_ub + row3 * s_ud + tile
    dl_base = delta_ptr + pid_b * s_db + row3 * s_dd + tile
    z_base = u_base
    if HAS_Z:
        z_base = z_ptr + pid_b * s_zb + row3 * s_zd + tile
    o_base = out_ptr + pid_b * s_ob + d2 * s_od + offs_k[None, :]
    B_base = u_base
    C_base = u_base
    if B_VAR:
        B_base = B_ptr + pid_b * s_Bb + group * s_Bg + tile
    if C_VAR:
        C_base = C_ptr + pid_b * s_Cb + group * s_Cg + tile
    st_base = states_ptr + pid_b * s_sb + d2 * s_sd

    mask_d3 = mask_d[:, None, None]
    t_lo = pid_s * seg_chunks * CHUNK
    t_hi = tl.minimum(seqlen, t_lo + seg_chunks * CHUNK)
    if PREFETCH:
        t_last = t_lo + ((t_hi - t_lo - 1) // TT) * TT  # the last tile: prefetches past it reload it
        nxt = _fwd_loads(
            u_base,
            dl_base,
            z_base,
            B_base,
            C_base,
            t_lo,
            seqlen,
            mask_d3,
            tile,
            offs_g,
            s_Bn,
            s_Cn,
            HAS_Z,
            B_VAR,
            C_VAR,
            EVEN_T,
            NPT,
            DSTATE,
        )
    for t0 in range(t_lo, t_hi, TT):
        if SAVE_STATES:
            if t0 % CHUNK == 0:
                for j in tl.static_range(NPT):
                    n_j = offs_g * NPT + j
                    tl.store(
                        st_base + (t0 // CHUNK) * s_sc + n_j[None, :] * s_sn,
                        h[j],
                        mask=mask_d[:, None] & (n_j < DSTATE)[None, :],
                    )
        if PREFETCH:
            cur = nxt
            nxt = _fwd_loads(
                u_base,
                dl_base,
                z_base,
                B_base,
                C_base,
                tl.minimum(t0 + TT, t_last),
                seqlen,
                mask_d3,
                tile,
                offs_g,
                s_Bn,
                s_Cn,
                HAS_Z,
                B_VAR,
                C_VAR,
                EVEN_T,
                NPT,
                DSTATE,
            )
        else:
            cur = _fwd_loads(
                u_base,
                dl_base,
                z_base,
                B_base,
                C_base,
                t0,
                seqlen,
                mask_d3,
                tile,
                offs_g,
                s_Bn,
                s_Cn,
                HAS_Z,
                B_VAR,
                C_VAR,
                EVEN_T,
                NPT,
                DSTATE,
            )
        u_raw, dl_raw, z_raw, Bs, Cs = cur
        mask3, _ = _tile_masks(t0, seqlen, mask_d3, tile, EVEN_T)
        if EVEN_T:
            mask_out = mask_d[:, None] & (offs_k >= 0)[None, :]
        else:
            mask_out = mask_d[:, None] & ((t0 + offs_k) < seqlen)[None, :]
        u, _, dl = _tile_math(u_raw, dl_raw, mask3, bias[:, None, None], HAS_BIAS, SOFTPLUS, FAST)
        dl_c = split_cols(dl, TT)
        du_c = split_cols(dl * u, TT)
        if HAS_D:  # added on lane 0 only: the lanes' partial outputs are summed below
            y = tl.where(offs_g[None, :, None] == 0, Dv[:, None, None] * u, 0.0)
        else:
            y = tl.zeros([BLOCK_D, LANES, TT], dtype=tl.float32)
        h_new = ()
        for j in tl.static_range(NPT):
            n_j = offs_g * NPT + j
            if B_VAR:
                B_j = split_cols(Bs[j], TT)
            else:
                Bc_j = tl.load(
                    B_ptr + d2 * s_Bb + n_j[None, :] * s_Bn,
                    mask=mask_d[:, None] & (n_j < DSTATE)[None, :],
                    other=0.0,
                ).to(tl.float32)
            if C_VAR:
                C_j = split_cols(Cs[j], TT)
            else:
                Cc_j = tl.load(
                    C_ptr + d2 * s_Cb + n_j[None, :] * s_Cn,
                    mask=mask_d[:, None] & (n_j < DSTATE)[None, :],
                    other=0.0,
                ).to(tl.float32)
            h_j = h[j]
            contrib = ()
            for k in tl.static_range(TT):
                if B_VAR:
                    b = du_c[k] * B_j[k].to(tl.float32)
                else:
                    b = du_c[k] * Bc_j
                h_j = exp2(dl_c[k] * A2[j], FAST) * h_j + b
                if C_VAR:
                    contrib = contrib + (C_j[k].to(tl.float32) * h_j,)
                else:
                    contrib = contrib + (Cc_j * h_j,)
            y += join_cols(contrib, TT)
            h_new = h_new + (h_j,)
        h = h_new
        if HAS_Z:  # the gate is linear in y: apply it to the lanes' partials
            zz = z_raw.to(tl.float32)
            y = y * zz * sigmoid(zz, FAST)
        tl.store(o_base + t0, tl.sum(y, axis=1).to(out_ptr.dtype.element_ty), mask=mask_out)
    if SAVE_LAST:
        for j in tl.static_range(NPT):
            n_j = offs_g * NPT + j
            tl.store(
                last_ptr + pid_b * dim * DSTATE + d2 * DSTATE + n_j[None, :] * s_sn,
                h[j],
                mask=mask_d[:, None] & (n_j < DSTATE)[None, :] & (pid_s == n_seg - 1),
            )


@triton.jit
def _lane_program(
    A_ptr,
    s_Ad,
    s_An,
    dim,
    dim_per_group,
    BLOCK_D: tl.constexpr,
    LANES: tl.constexpr,
    TT: tl.constexpr,
    NPT: tl.constexpr,
    DSTATE: tl.constexpr,
):
    """Indices of a ``[LANES, BLOCK_D]`` program of grid (cdiv(dim, BLOCK_D), batch, n_seg) and its
    channels' A * log2(e), one [LANES, BLOCK_D] tile per register slot j (state n = g * NPT + j)."""
    pid_d = tl.program_id(0)
    pid_b = tl.program_id(1).to(tl.int64)
    pid_s = tl.program_id(2)
    offs_d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    offs_g = tl.arange(0, LANES)
    offs_k = tl.arange(0, TT)
    mask_d = offs_d < dim
    d64 = offs_d.to(tl.int64)
    group = ((pid_d * BLOCK_D) // dim_per_group).to(tl.int64)
    A2 = ()
    for j in tl.static_range(NPT):
        n_j = offs_g * NPT + j
        ok_j = mask_d[None, :] & (n_j < DSTATE)[:, None]
        a_j = tl.load(A_ptr + d64[None, :] * s_Ad + n_j[:, None] * s_An, mask=ok_j, other=0.0).to(tl.float32)
        A2 = A2 + (a_j * 1.4426950408889634,)
    return pid_d, pid_b, pid_s, offs_d, offs_g, offs_k, mask_d, d64, group, A2


@triton.jit(do_not_specialize=["s_An", "s_sn"])
def seq_scan_bwd_kernel(
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
    scratch_ptr,
    du_ptr,
    ddelta_ptr,
    dA_ptr,
    dB_ptr,
    dC_ptr,
    dD_ptr,
    dbias_ptr,
    dz_ptr,
    carry_ptr,
    dim,
    seqlen,
    dim_per_group,
    seg_chunks,
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
    s_sn,
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
    DSTATE: tl.constexpr,
    TT: tl.constexpr,
    CHUNK: tl.constexpr,
    EVEN_T: tl.constexpr,
    LANES: tl.constexpr,
    NPT: tl.constexpr,
    FAST: tl.constexpr,
    SPLIT: tl.constexpr,
    LANE_REDUCE: tl.constexpr = False,
):
    """Grid (cdiv(dim, BLOCK_D), batch, n_seg); states spread over LANES threads per channel as in the
    forward.  Program (., ., s) walks chunks [s * seg_chunks, (s + 1) * seg_chunks) last to first; with
    SPLIT it starts from the reverse carry that the later segments pass in, folded from their carries
    (:func:`seq_scan_carry_kernel` with REVERSE), otherwise from zero.

    Tiles are ``[LANES, BLOCK_D, ...]`` (lanes first): with several warps, Triton's coalescing then
    keeps the lanes of a channel inside one warp and spreads channels over threads and warps (with
    ``[BLOCK_D, LANES, ...]`` it puts the lanes on different warps, and every tile would be converted
    through shared memory).

    ``scratch``: fp32 (grid, CHUNK // TT, NPT, BLOCK_D * LANES), the state entering every tile of the
    chunk being walked.  Writes du, ddelta, dz (batch, dim, seqlen) in the input dtype (lane 0 of each
    channel stores; the lanes' partial sums over states are combined first); adds into fp32 dA
    (dim, DSTATE), dD, dbias (dim,); variable dB/dC: per tile one ``[LANES, TT]`` sum over the
    program's channels per state slot, added with fp32 atomics into (batch, groups, DSTATE, seqlen) or
    with DETERMINISTIC stored in the program's own partial slot (batch, n_programs_d, DSTATE, seqlen);
    constant dB/dC: atomics into (dim, DSTATE)."""
    pid_d, pid_b, pid_s, offs_d, offs_g, offs_k, mask_d, d64, group, A2 = _lane_program(
        A_ptr, s_Ad, s_An, dim, dim_per_group, BLOCK_D, LANES, TT, NPT, DSTATE
    )
    d2 = d64[None, :]
    lane0 = (offs_g == 0)[:, None]
    n_seg = tl.num_programs(2)
    # per-register-slot [LANES, BLOCK_D] tiles (state n = g * NPT + j): one value per thread
    q = ()  # a_{t+1} dh_{t+1}, carried backwards
    dA_acc = ()
    dBc_acc = ()
    dCc_acc = ()
    for j in tl.static_range(NPT):
        n_j = offs_g * NPT + j
        ok_j = mask_d[None, :] & (n_j < DSTATE)[:, None]
        q_j = tl.zeros([LANES, BLOCK_D], dtype=tl.float32)
        if SPLIT:  # fold the later segments' (carry, decay product), last first: q <- P[r] q + q_loc[r]
            c_j = carry_ptr + (pid_b * dim + d2) * n_seg * (2 * DSTATE) + n_j[:, None]
            for rr in range(0, n_seg - 1 - pid_s):
                r = n_seg - 1 - rr
                q_loc = tl.load(c_j + r * (2 * DSTATE), mask=ok_j, other=0.0)
                q_j = tl.load(c_j + r * (2 * DSTATE) + DSTATE, mask=ok_j, other=0.0) * q_j + q_loc
        q = q + (q_j,)
        dA_acc = dA_acc + (tl.zeros([LANES, BLOCK_D], dtype=tl.float32),)
        if not B_VAR:
            dBc_acc = dBc_acc + (tl.zeros([LANES, BLOCK_D], dtype=tl.float32),)
        if not C_VAR:
            dCc_acc = dCc_acc + (tl.zeros([LANES, BLOCK_D], dtype=tl.float32),)
    if HAS_D:
        Dv = tl.load(D_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)[None, :, None]
    if HAS_BIAS:
        bias = tl.load(bias_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)
    else:
        bias = tl.zeros([BLOCK_D], dtype=tl.float32)  # unused: _tile_inputs adds it only if HAS_BIAS
    bias3 = bias[None, :, None]
    mask_d3 = mask_d[None, :, None]

    # [LANES, BLOCK_D, TT] tiles, zero stride along LANES (and along channels for B / C rows)
    tile = (offs_g * 0)[:, None, None] + (d64 * 0)[None, :, None] + offs_k[None, None, :]
    row3 = d64[None, :, None]
    u_base = u_ptr + pid_b * s_ub + row3 * s_ud + tile
    dl_base = delta_ptr + pid_b * s_db + row3 * s_dd + tile
    g_base = dout_ptr + pid_b * s_gb + row3 * s_gd + tile
    du_base = du_ptr + pid_b * s_dub + row3 * s_dud + tile
    ddl_base = ddelta_ptr + pid_b * s_ddb + row3 * s_ddd + tile
    if HAS_Z:
        z_base = z_ptr + pid_b * s_zb + row3 * s_zd + tile
        dz_base = dz_ptr + pid_b * s_dzb + row3 * s_dzd + tile
    if B_VAR:
        B_base = B_ptr + pid_b * s_Bb + group * s_Bg + tile
    if C_VAR:
        C_base = C_ptr + pid_b * s_Cb + group * s_Cg + tile
    if DETERMINISTIC:
        slot = pid_d.to(tl.int64)
    else:
        slot = group
    if B_VAR and C_VAR:
        # [LANES, TT, NPT, 2] tiles of every state slot's dB (last index 0) and dC (1) rows
        n4 = offs_g[:, None, None, None] * NPT + tl.arange(0, NPT)[None, None, :, None]
        k4 = offs_k[None, :, None, None]
        bc_sel = tl.arange(0, 2)[None, None, None, :]
        bc_ok = (n4 < DSTATE) & (bc_sel >= 0)
        dB_base = dB_ptr + pid_b * s_dBb + slot * s_dBg + n4 * s_dBn + k4
        dC_base = dC_ptr + pid_b * s_dCb + slot * s_dCg + n4 * s_dCn + k4
        # LANE_REDUCE: [LANES, BLOCK_D] views of the channel index bits and the rows each lane writes
        c_loc = tl.arange(0, BLOCK_D)[None, :] + offs_g[:, None] * 0
        c_bit0 = (c_loc & 1) != 0
        c_bit1 = (c_loc & 2) != 0
        c_bit2 = (c_loc & 4) != 0
        k_of_c = (c_loc & 1) * 2 + (c_loc & 2) // 2
        dB_rows = dB_ptr + pid_b * s_dBb + slot * s_dBg
        dC_rows = dC_ptr + pid_b * s_dCb + slot * s_dCg
    else:
        # [LANES, TT] tiles of one state slot's dB / dC rows
        dB_base = dB_ptr + pid_b * s_dBb + slot * s_dBg + offs_k[None, :]
        dC_base = dC_ptr + pid_b * s_dCb + slot * s_dCg + offs_k[None, :]
    st_base = states_ptr + pid_b * s_sb + d2 * s_sd
    pid_lin = (pid_b * n_seg + pid_s) * tl.num_programs(0) + pid_d
    thread = tl.arange(0, BLOCK_D)[None, :] * LANES + offs_g[:, None]
    sc_base = scratch_ptr + pid_lin * (CHUNK // TT) * NPT * (BLOCK_D * LANES) + thread

    dD_acc = tl.zeros([LANES, BLOCK_D], dtype=tl.float32)
    dbias_acc = tl.zeros([LANES, BLOCK_D], dtype=tl.float32)
    ci_lo = pid_s * seg_chunks
    n_chunks = tl.minimum(tl.cdiv(seqlen, CHUNK) - ci_lo, seg_chunks)
    for ci in range(0, n_chunks):
        c0 = (ci_lo + n_chunks - 1 - ci) * CHUNK
        n_tiles = tl.minimum(CHUNK, seqlen - c0 + TT - 1) // TT
        # ---- pass 1: recompute the chunk forward, keep the state entering every tile in scratch
        h = ()
        for j in tl.static_range(NPT):
            n_j = offs_g * NPT + j
            h = h + (
                tl.load(
                    st_base + (c0 // CHUNK) * s_sc + n_j[:, None] * s_sn,
                    mask=mask_d[None, :] & (n_j < DSTATE)[:, None],
                    other=0.0,
                ),
            )
        for jt in range(0, n_tiles):
            t0 = c0 + jt * TT
            mask3, mask_t3, u, _, dl = _tile_inputs(
                u_base, dl_base, t0, seqlen, mask_d3, tile, bias3, HAS_BIAS, SOFTPLUS, EVEN_T, FAST
            )
            dl_c = split_cols(dl, TT)
            du_c = split_cols(dl * u, TT)
            h_new = ()
            for j in tl.static_range(NPT):
                n_j = offs_g * NPT + j
                h_j = h[j]
                tl.store(sc_base + (jt * NPT + j) * (BLOCK_D * LANES), h_j)
                if B_VAR:
                    B_j = split_cols(
                        tl.load(
                            B_base + n_j[:, None, None] * s_Bn + t0,
                            mask=mask_t3 & (n_j < DSTATE)[:, None, None],
                            other=0.0,
                        ),
                        TT,
                    )
                else:
                    Bc_j = tl.load(
                        B_ptr + d2 * s_Bb + n_j[:, None] * s_Bn,
                        mask=mask_d[None, :] & (n_j < DSTATE)[:, None],
                        other=0.0,
                    ).to(tl.float32)
                for k in tl.static_range(TT):
                    if B_VAR:
                        b = du_c[k] * B_j[k].to(tl.float32)
                    else:
                        b = du_c[k] * Bc_j
                    h_j = exp2(dl_c[k] * A2[j], FAST) * h_j + b
                h_new = h_new + (h_j,)
            h = h_new
        # ---- pass 2: tiles last to first
        for jj in range(0, n_tiles):
            jt = n_tiles - 1 - jj
            t0 = c0 + jt * TT
            mask3, mask_t3, u, dl_raw, dl = _tile_inputs(
                u_base, dl_base, t0, seqlen, mask_d3, tile, bias3, HAS_BIAS, SOFTPLUS, EVEN_T, FAST
            )
            dout = tl.load(g_base + t0, mask=mask3, other=0.0).to(tl.float32)
            if HAS_Z:
                zz = tl.load(z_base + t0, mask=mask3, other=0.0).to(tl.float32)
                sz = sigmoid(zz, FAST)
                g = dout * zz * sz
            else:
                g = dout
            if EVEN_T:
                ok_t = offs_k >= 0
            else:
                ok_t = (t0 + offs_k) < seqlen
            dl_c = split_cols(dl, TT)
            du_c = split_cols(dl * u, TT)
            g_c = split_cols(g, TT)
            # the lanes' partial sums over their states, [LANES, BLOCK_D, TT]
            # (per step k; first state slot stores, later ones accumulate with one FMA each)
            dhB_c = ()
            xA_c = ()
            y_c = ()
            q_new = ()
            dA_new = ()
            dBc_new = ()
            dCc_new = ()
            wB_all = ()
            wC_all = ()
            for j in tl.static_range(NPT):
                n_j = offs_g * NPT + j
                ok_n3 = (n_j < DSTATE)[:, None, None]
                if B_VAR:
                    B_j = split_cols(
                        tl.load(B_base + n_j[:, None, None] * s_Bn + t0, mask=mask_t3 & ok_n3, other=0.0), TT
                    )
                else:
                    Bc_j = tl.load(
                        B_ptr + d2 * s_Bb + n_j[:, None] * s_Bn,
                        mask=mask_d[None, :] & (n_j < DSTATE)[:, None],
                        other=0.0,
                    ).to(tl.float32)
                if C_VAR:
                    C_j = split_cols(
                        tl.load(C_base + n_j[:, None, None] * s_Cn + t0, mask=mask_t3 & ok_n3, other=0.0), TT
                    )
                else:
                    Cc_j = tl.load(
                        C_ptr + d2 * s_Cb + n_j[:, None] * s_Cn,
                        mask=mask_d[None, :] & (n_j < DSTATE)[:, None],
                        other=0.0,
                    ).to(tl.float32)
                # recompute the TT states of the tile, and a_t
                h_j = tl.load(sc_base + (jt * NPT + j) * (BLOCK_D * LANES))
                hs = (h_j,)
                As = ()
                for k in tl.static_range(TT):
                    a = exp2(dl_c[k] * A2[j], FAST)
                    if B_VAR:
                        h_j = a * h_j + du_c[k] * B_j[k].to(tl.float32)
                    else:
                        h_j = a * h_j + du_c[k] * Bc_j
                    hs = hs + (h_j,)
                    As = As + (a,)
                # reverse recurrence, last step first
                q_j = q[j]
                dA_j = dA_acc[j]
                if not B_VAR:
                    dBc_j = dBc_acc[j]
                if not C_VAR:
                    dCc_j = dCc_acc[j]
                dhB_k = ()
                xA_k = ()
                y_k = ()
                wB_k = ()
                wC_k = ()
                for k in tl.static_range(TT - 1, -1, -1):
                    if C_VAR:
                        Ck = C_j[k].to(tl.float32)
                    else:
                        Ck = Cc_j
                    if B_VAR:
                        Bk = B_j[k].to(tl.float32)
                    else:
                        Bk = Bc_j
                    dh = Ck * g_c[k] + q_j
                    q_j = As[k] * dh
                    x = q_j * hs[k]  # dh_t * a_t * h_{t-1}
                    dA_j += x * dl_c[k]
                    if j == 0:
                        dhB_k = (dh * Bk,) + dhB_k
                        xA_k = (x * A2[j],) + xA_k
                        if HAS_Z:
                            y_k = (Ck * hs[k + 1],) + y_k
                    else:
                        dhB_k = (dh * Bk + dhB_c[k],) + dhB_k
                        xA_k = (x * A2[j] + xA_c[k],) + xA_k
                        if HAS_Z:
                            y_k = (Ck * hs[k + 1] + y_c[k],) + y_k
                    if B_VAR:
                        wB_k = (dh * du_c[k],) + wB_k
                    else:
                        dBc_j += dh * du_c[k]
                    if C_VAR:
                        wC_k = (hs[k + 1] * g_c[k],) + wC_k
                    else:
                        dCc_j += hs[k + 1] * g_c[k]
                dhB_c = dhB_k
                xA_c = xA_k
                y_c = y_k
                if B_VAR and C_VAR:
                    wB_all = wB_all + (join_cols(wB_k, TT),)
                    wC_all = wC_all + (join_cols(wC_k, TT),)
                else:
                    ok_nt = (n_j < DSTATE)[:, None] & ok_t[None, :]
                    if B_VAR:
                        add_or_store(
                            dB_base + n_j[:, None] * s_dBn + t0,
                            tl.sum(join_cols(wB_k, TT), axis=1),
                            ok_nt,
                            DETERMINISTIC,
                        )
                    if C_VAR:
                        add_or_store(
                            dC_base + n_j[:, None] * s_dCn + t0,
                            tl.sum(join_cols(wC_k, TT), axis=1),
                            ok_nt,
                            DETERMINISTIC,
                        )
                q_new = q_new + (q_j,)
                dA_new = dA_new + (dA_j,)
                if not B_VAR:
                    dBc_new = dBc_new + (dBc_j,)
                if not C_VAR:
                    dCc_new = dCc_new + (dCc_j,)
            if B_VAR and C_VAR and LANE_REDUCE:
                # one warp = 4 lanes x 8 channels, TT = 4: reduce-scatter each state slot's 8 values
                # (dB/dC x 4 steps) over the 8 channels; channel c ends with the sum for B or C by its
                # bit 2 and step k = 2 * bit0 + bit1 (7 shuffles per slot instead of 24)
                for j in tl.static_range(NPT):
                    v = tl.join(
                        tl.reshape(wB_all[j], [LANES, BLOCK_D, 2, 2]),
                        tl.reshape(wC_all[j], [LANES, BLOCK_D, 2, 2]),
                    )
                    v = halve_across_lanes(v, c_bit2[:, :, None, None], 16)
                    v = halve_across_lanes(v, c_bit1[:, :, None], 8)
                    v = halve_across_lanes(v, c_bit0, 4)
                    n_2 = offs_g[:, None] * NPT + j
                    ptr = tl.where(c_bit2, dC_rows + n_2 * s_dCn, dB_rows + n_2 * s_dBn) + t0 + k_of_c
                    add_or_store(ptr, v, (n_2 < DSTATE) & (t0 + k_of_c < seqlen), DETERMINISTIC)
            elif B_VAR and C_VAR:
                # one cross-channel sum per tile for every (lane, step, state slot, B or C)
                w = tl.sum(tl.join(stack_cols(wB_all, NPT), stack_cols(wC_all, NPT)), axis=1)
                add_or_store(
                    tl.where(bc_sel == 0, dB_base + t0, dC_base + t0),
                    w,
                    bc_ok & ok_t[None, :, None, None],
                    DETERMINISTIC,
                )
            q = q_new
            dA_acc = dA_new
            if not B_VAR:
                dBc_acc = dBc_new
            if not C_VAR:
                dCc_acc = dCc_new
            # every lane now gets the channel's sums over all states; lane 0 stores
            dhB = tl.sum(join_cols(dhB_c, TT), axis=0)[None, :, :]
            ddl = (
                dhB * u + tl.sum(join_cols(xA_c, TT), axis=0)[None, :, :] * 0.6931471805599453
            )  # ln2 sum_n x A2
            du_out = dhB * dl
            if HAS_D:
                du_out += Dv * g
                dD_acc += tl.sum(g * u, axis=2)
            if SOFTPLUS:
                ddl = tl.where(dl_raw <= 20.0, ddl * sigmoid(dl_raw, FAST), ddl)
            ddl = tl.where(mask3, ddl, 0.0)
            if HAS_BIAS:
                dbias_acc += tl.sum(ddl, axis=2)
            mask_st = mask3 & lane0[:, :, None]
            tl.store(du_base + t0, du_out.to(du_ptr.dtype.element_ty), mask=mask_st)
            tl.store(ddl_base + t0, ddl.to(ddelta_ptr.dtype.element_ty), mask=mask_st)
            if HAS_Z:
                y = tl.sum(join_cols(y_c, TT), axis=0)[None, :, :]
                if HAS_D:
                    y += Dv * u
                dz = dout * y * sz * (1.0 + zz * (1.0 - sz))
                tl.store(dz_base + t0, dz.to(dz_ptr.dtype.element_ty), mask=mask_st)

    for j in tl.static_range(NPT):
        n_j = offs_g * NPT + j
        ok_j = mask_d[None, :] & (n_j < DSTATE)[:, None]
        tl.atomic_add(dA_ptr + d2 * DSTATE + n_j[:, None], dA_acc[j], mask=ok_j, sem="relaxed")
        if not B_VAR:
            tl.atomic_add(dB_ptr + d2 * DSTATE + n_j[:, None], dBc_acc[j], mask=ok_j, sem="relaxed")
        if not C_VAR:
            tl.atomic_add(dC_ptr + d2 * DSTATE + n_j[:, None], dCc_acc[j], mask=ok_j, sem="relaxed")
    ok_d0 = mask_d[None, :] & lane0
    if HAS_D:
        tl.atomic_add(dD_ptr + d2 + offs_g[:, None] * 0, dD_acc, mask=ok_d0, sem="relaxed")
    if HAS_BIAS:
        tl.atomic_add(dbias_ptr + d2 + offs_g[:, None] * 0, dbias_acc, mask=ok_d0, sem="relaxed")


@triton.jit(do_not_specialize=["s_An"])
def seq_scan_carry_kernel(
    x_ptr,
    delta_ptr,
    A_ptr,
    W_ptr,
    z_ptr,
    bias_ptr,
    carry_ptr,
    dim,
    seqlen,
    dim_per_group,
    seg_chunks,
    s_xb,
    s_xd,
    s_db,
    s_dd,
    s_Ad,
    s_An,
    s_Wb,
    s_Wg,
    s_Wn,
    s_zb,
    s_zd,
    REVERSE: tl.constexpr,
    HAS_Z: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    SOFTPLUS: tl.constexpr,
    W_VAR: tl.constexpr,
    BLOCK_D: tl.constexpr,
    DSTATE: tl.constexpr,
    TT: tl.constexpr,
    CHUNK: tl.constexpr,
    EVEN_T: tl.constexpr,
    LANES: tl.constexpr,
    NPT: tl.constexpr,
    FAST: tl.constexpr,
):
    """First pass of a time-split scan (few (batch, channel) rows): grid (cdiv(dim, BLOCK_D), batch,
    n_seg).  Segment s is chunks [s * seg_chunks, (s + 1) * seg_chunks) of CHUNK steps.  It runs only
    the segment's own linear recurrence from zero and writes carry (batch, dim, n_seg, 2, DSTATE) fp32:
    [..., 0, :] the carry it produces, [..., 1, :] the product P of its decays a_t = exp(delta_t A).

    * forward (x = u, W = B): ``h = a_t h + delta_t u_t B_t`` over the segment; the state entering
      segment s is h_in[s] = P[s-1] h_in[s-1] + h_loc[s-1], h_in[0] = 0;
    * REVERSE (x = dout, W = C, gate z): ``q = a_t (C_t g_t + q)`` last step first, the backward's
      carry ``a_t dh_t``; q_in[s] = P[s+1] q_in[s+1] + q_loc[s+1], zero for the last segment.

    No states are stored and no outputs or gradients formed.  The full kernel (SPLIT) then runs every
    segment at once, each program folding the carries of the segments before it (after it, REVERSE)."""
    pid_d, pid_b, pid_s, offs_d, offs_g, offs_k, mask_d, d64, group, A2 = _lane_program(
        A_ptr, s_Ad, s_An, dim, dim_per_group, BLOCK_D, LANES, TT, NPT, DSTATE
    )
    d2 = d64[None, :]
    h = ()
    for _j in tl.static_range(NPT):
        h = h + (tl.zeros([LANES, BLOCK_D], dtype=tl.float32),)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)
    else:
        bias = tl.zeros([BLOCK_D], dtype=tl.float32)
    tile = (offs_g * 0)[:, None, None] + (d64 * 0)[None, :, None] + offs_k[None, None, :]
    row3 = d64[None, :, None]
    dl_base = delta_ptr + pid_b * s_db + row3 * s_dd + tile
    x_base = x_ptr + pid_b * s_xb + row3 * s_xd + tile
    if HAS_Z:
        z_base = z_ptr + pid_b * s_zb + row3 * s_zd + tile
    if W_VAR:
        W_base = W_ptr + pid_b * s_Wb + group * s_Wg + tile
    dl_sum = tl.zeros([LANES, BLOCK_D], dtype=tl.float32)
    s0 = pid_s * seg_chunks * CHUNK  # a multiple of CHUNK, so the tiles load as aligned vectors
    n_tiles = (tl.minimum(seg_chunks * CHUNK, seqlen - s0) + TT - 1) // TT
    for jj in range(0, n_tiles):
        if REVERSE:
            t0 = s0 + (n_tiles - 1 - jj) * TT
        else:
            t0 = s0 + jj * TT
        mask3, mask_t3, x, _, dl = _tile_inputs(
            x_base,
            dl_base,
            t0,
            seqlen,
            mask_d[None, :, None],
            tile,
            bias[None, :, None],
            HAS_BIAS,
            SOFTPLUS,
            EVEN_T,
            FAST,
        )
        if HAS_Z:
            zz = tl.load(z_base + t0, mask=mask3, other=0.0).to(tl.float32)
            x = x * zz * sigmoid(zz, FAST)
        if not REVERSE:
            x = x * dl
        dl_sum += tl.sum(dl, axis=2)
        dl_c = split_cols(dl, TT)
        x_c = split_cols(x, TT)
        h_new = ()
        for j in tl.static_range(NPT):
            n_j = offs_g * NPT + j
            if W_VAR:
                W_j = split_cols(
                    tl.load(
                        W_base + n_j[:, None, None] * s_Wn + t0,
                        mask=mask_t3 & (n_j < DSTATE)[:, None, None],
                        other=0.0,
                    ),
                    TT,
                )
            else:
                Wc_j = tl.load(
                    W_ptr + d2 * s_Wb + n_j[:, None] * s_Wn,
                    mask=mask_d[None, :] & (n_j < DSTATE)[:, None],
                    other=0.0,
                ).to(tl.float32)
            if not W_VAR:
                W_j = (Wc_j,) * TT
            h_j = h[j]
            if REVERSE:
                for k in tl.static_range(TT - 1, -1, -1):
                    h_j = exp2(dl_c[k] * A2[j], FAST) * (W_j[k].to(tl.float32) * x_c[k] + h_j)
            else:
                for k in tl.static_range(TT):
                    h_j = exp2(dl_c[k] * A2[j], FAST) * h_j + x_c[k] * W_j[k].to(tl.float32)
            h_new = h_new + (h_j,)
        h = h_new
    out = carry_ptr + ((pid_b * dim + d2) * tl.num_programs(2) + pid_s) * (2 * DSTATE)
    for j in tl.static_range(NPT):
        n_j = offs_g * NPT + j
        ok_j = mask_d[None, :] & (n_j < DSTATE)[:, None]
        tl.store(out + n_j[:, None], h[j], mask=ok_j)
        tl.store(out + DSTATE + n_j[:, None], exp2(dl_sum * A2[j], FAST), mask=ok_j)


# ------------------------------------------------------------------------------------------------
# host side


def segment_carries(
    x: Tensor,
    delta: Tensor,
    A: Tensor,
    W: Tensor,
    z: Tensor | None,
    delta_bias: Tensor | None,
    softplus: bool,
    chunk: int,
    n_seg: int,
    seg_chunks: int,
    cfg: dict,
    reverse: bool,
) -> Tensor:
    """Every time segment's own carry and decay product, (batch, dim, n_seg, 2, dstate) fp32: the
    forward state (x = u, W = B) or, with ``reverse``, the backward's ``a_t dh_t`` (x = dout, W = C,
    gate z), each from zero (:func:`seq_scan_carry_kernel`).  The full kernels fold them per segment."""
    batch, dim, seqlen = delta.shape
    dstate = A.shape[1]
    wvar, groups, sW = bc_layout(W, dim)
    lanes = min(cfg.get("split_lanes", 4), next_power_of_2(dstate))
    block_d = block_d_for(dim, groups, max(1, 32 // lanes))
    tt = 4
    carry = torch.empty((batch, dim, n_seg, 2, dstate), device=x.device, dtype=torch.float32)
    zz = z if (z is not None and reverse) else x
    seq_scan_carry_kernel[(cdiv(dim, block_d), batch, n_seg)](
        x,
        delta,
        A,
        W,
        zz,
        delta_bias if delta_bias is not None else A,
        carry,
        dim,
        seqlen,
        dim // groups,
        seg_chunks,
        x.stride(0),
        x.stride(1),
        delta.stride(0),
        delta.stride(1),
        A.stride(0),
        A.stride(1),
        *sW,
        zz.stride(0),
        zz.stride(1),
        REVERSE=reverse,
        HAS_Z=z is not None and reverse,
        HAS_BIAS=delta_bias is not None,
        SOFTPLUS=bool(softplus),
        W_VAR=wvar,
        BLOCK_D=block_d,
        DSTATE=dstate,
        TT=tt,
        CHUNK=chunk,
        EVEN_T=seqlen % tt == 0,
        LANES=lanes,
        NPT=cdiv(dstate, lanes),
        FAST=x.is_cuda,
        num_warps=max(1, block_d * lanes // 32),
        num_stages=1,
    )
    return carry


def sequential_forward(
    u,
    delta,
    A,
    B,
    C,
    D,
    z,
    delta_bias,
    softplus,
    save_states,
    save_last,
    launch: ScanLaunch,
    cfg: dict[str, int] | None = None,
) -> tuple:
    """Sequential forward (time-split below ``split_rows`` (batch, channel) rows); returns out, the states
    saved every CHUNK steps (or None), the last state (or None) and CHUNK.  ``cfg``: launch parameters
    (default: :func:`~mambabench.kernels.scan_launch.sequential_launch` under ``launch``)."""
    batch, dim, seqlen = u.shape
    dstate = A.shape[1]
    groups = max(bc_layout(B, dim)[1], bc_layout(C, dim)[1])
    if cfg is None:
        cfg = sequential_launch(
            "fwd",
            u,
            dstate,
            z is not None,
            save_states,
            lambda c: sequential_forward(
                u, delta, A, B, C, D, z, delta_bias, softplus, save_states, save_last, launch, cfg=c
            ),
            launch,
        )
    warps, tt = cfg["fwd_warps"], cfg["FWD_TT"]
    chunk = cfg["CHUNK"]
    lanes = min(cfg.get("lanes", 1), next_power_of_2(dstate))
    n_seg, seg_chunks = time_segments(batch * dim, cdiv(seqlen, chunk), cfg, "fwd_split_rows")
    block_d = block_d_for(dim, groups, max(1, 32 * warps // lanes))
    B, C = bc_fp32(B), bc_fp32(C)
    out, states, last = forward_buffers(u, dstate, cdiv(seqlen, chunk), save_states, save_last)
    bvar, _, sB = bc_layout(B, dim)
    cvar, _, sC = bc_layout(C, dim)
    zz = z if z is not None else u
    dummy = A
    grid = (cdiv(dim, block_d), batch, n_seg)
    prefetch = cfg.get("prefetch", 0)
    if prefetch < 0:
        prefetch = pick_by_waves(grid[0] * batch * n_seg, sm_count(u.device), FWD_RESIDENT, 1, PREFETCH_GAIN)
    prefetch = bool(prefetch)
    carry = dummy
    with torch.cuda.device(u.device) if u.is_cuda else nullcontext():
        if n_seg > 1:  # the state entering every time segment, so that all run at once
            carry = segment_carries(
                u, delta, A, B, z, delta_bias, softplus, chunk, n_seg, seg_chunks, cfg, reverse=False
            )
        seq_scan_fwd_kernel[grid](
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
            carry,
            dim,
            seqlen,
            dim // groups,
            seg_chunks,
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
            1,
            HAS_D=D is not None,
            HAS_Z=z is not None,
            HAS_BIAS=delta_bias is not None,
            SOFTPLUS=bool(softplus),
            B_VAR=bvar,
            C_VAR=cvar,
            SAVE_STATES=save_states,
            SAVE_LAST=save_last,
            BLOCK_D=block_d,
            DSTATE=dstate,
            TT=tt,
            CHUNK=chunk,
            EVEN_T=seqlen % tt == 0,
            LANES=lanes,
            NPT=cdiv(dstate, lanes),
            FAST=u.is_cuda,
            SPLIT=n_seg > 1,
            # time-split no-grad forwards ran slower with prefetching (measured on an H200)
            PREFETCH=prefetch and (save_states or n_seg == 1),
            num_warps=max(1, block_d * lanes // 32),
            num_stages=cfg.get("stages", 1),
        )
    return out, (states if save_states else None), (last if save_last else None), chunk


def sequential_backward(
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
    chunk,
    dout,
    deterministic,
    du_out,
    dz_out,
    launch: ScanLaunch,
    cfg: dict[str, int] | None = None,
) -> tuple:
    """Sequential backward from the states saved every ``chunk`` steps by either forward; returns du,
    ddelta, dA, dB, dC, dD, dbias, dz.  ``cfg``: launch parameters (default: ``sequential_launch`` under
    ``launch``; autotuning trials write into their own buffers, never ``du_out`` / ``dz_out``)."""
    if cfg is None:
        cfg = sequential_launch(
            "bwd",
            u,
            A.shape[1],
            z is not None,
            True,
            lambda c: sequential_backward(
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
                chunk,
                dout,
                deterministic,
                None,
                None,
                launch,
                cfg=c,
            ),
            launch,
        )
    batch, dim, seqlen = u.shape
    dstate = A.shape[1]
    dout = unit_stride_last(dout)
    B_in, C_in = B, C
    B, C = bc_fp32(B), bc_fp32(C)
    bvar, bg, sB = bc_layout(B, dim)
    cvar, cg, sC = bc_layout(C, dim)
    groups = max(bg, cg)
    warps, tt = cfg["bwd_warps"], cfg["BWD_TT"]
    if chunk % tt:
        tt = 4
    n_seg, seg_chunks = time_segments(batch * dim, cdiv(seqlen, chunk), cfg)
    lanes = cfg.get("split_lanes", 4) if n_seg > 1 else cfg.get("bwd_lanes", 1)
    lanes = min(lanes, next_power_of_2(dstate))
    npt = next_power_of_2(cdiv(dstate, lanes))  # a power of two: dB/dC rows are stacked
    block_d = block_d_for(dim, groups, max(1, 32 * warps // lanes))
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
    scratch = torch.empty(
        (n_dblk * batch * n_seg, chunk // tt, npt, block_d * lanes), device=dev, dtype=torch.float32
    )

    dummy = A
    zz = z if z is not None else u
    dzz = dz if dz is not None else du
    grid = (n_dblk, batch, n_seg)
    maxnreg = cfg.get("bwd_maxnreg", 0)
    if maxnreg < 0:
        maxnreg = pick_by_waves(n_dblk * batch * n_seg, sm_count(dev), BWD_RESIDENT, 160, MAXNREG_GAIN)
    launch = {
        "num_warps": max(1, block_d * lanes // 32),
        "num_stages": 1,
        **({"maxnreg": maxnreg} if maxnreg and u.is_cuda else {}),
    }
    consts = {
        "HAS_Z": z is not None,
        "HAS_BIAS": delta_bias is not None,
        "SOFTPLUS": bool(softplus),
        "C_VAR": cvar,
        "BLOCK_D": block_d,
        "DSTATE": dstate,
        "TT": tt,
        "EVEN_T": seqlen % tt == 0,
        "LANES": lanes,
        "NPT": npt,
        "FAST": u.is_cuda,
    }
    carry = dummy
    with torch.cuda.device(dev) if u.is_cuda else nullcontext():
        if n_seg > 1:  # the reverse carry entering every time segment, so that all run at once
            carry = segment_carries(
                dout, delta, A, C, z, delta_bias, softplus, chunk, n_seg, seg_chunks, cfg, reverse=True
            )
        seq_scan_bwd_kernel[grid](
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
            scratch,
            du,
            ddelta,
            dA,
            dB_buf,
            dC_buf,
            dD if dD is not None else dummy,
            dbias if dbias is not None else dummy,
            dzz,
            carry,
            dim,
            seqlen,
            dim // groups,
            seg_chunks,
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
            states.stride(3),
            du.stride(0),
            du.stride(1),
            ddelta.stride(0),
            ddelta.stride(1),
            dzz.stride(0),
            dzz.stride(1),
            *bc_grad_strides(dB_buf, bvar),
            *bc_grad_strides(dC_buf, cvar),
            HAS_D=D is not None,
            B_VAR=bvar,
            DETERMINISTIC=bool(deterministic),
            CHUNK=chunk,
            SPLIT=n_seg > 1,
            **consts,
            **launch,
            LANE_REDUCE=bool(cfg.get("lane_reduce", 1))
            and u.is_cuda
            and bvar
            and cvar
            and lanes == 4
            and block_d == 8
            and tt == 4,
        )
    dB, dC = finish_bc(
        (dB_buf, dC_buf),
        bc_stacked,
        (bvar, cvar),
        (B_in, C_in),
        deterministic,
        batch,
        groups,
        n_dblk_per_group,
        dstate,
        seqlen,
    )
    return du, ddelta, dA.to(A.dtype), dB, dC, dD, dbias, dz
