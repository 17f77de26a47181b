"""Triton selective scan, v3: every thread runs the recurrence of whole channels step by step.

Layout: a program owns ``BLOCK_D`` channels of one batch row, one channel per thread (lanes and warps
along the channels), and *all* ``BLOCK_N`` states of its channel live in that thread's registers as
a ``[BLOCK_D, BLOCK_N]`` tile.  Time is walked in tiles of ``TT`` steps (one 16-byte vector per
thread: 8 bf16/fp16 or 4 fp32); :mod:`scan_columns` peels a tile into its TT columns and the
recurrence ``h = exp2(dl * A2) * h + dl * u * B_t`` advances one column at a time.  So:

* no cross-thread work in the forward: ``y_t = sum_n C_t h_t`` is an in-thread sum over n;
* one exp2 and about six other instructions per (channel, step, state), against 24-40 for the
  associative-scan kernels (v2) it replaces on the GPU;
* B_t / C_t rows are loaded as zero-stride ``[BLOCK_D, BLOCK_N, TT]`` tiles, i.e. straight into the
  state layout (the repeated addresses are served by L1), so nothing passes through shared memory.

The forward saves the state entering every ``CHUNK`` steps for the backward.  The backward walks the
chunks last to first; for each it recomputes the forward once to store the state entering every
TT-tile in a small scratch buffer (L2-resident), then walks the tiles backwards: recompute the TT
states of the tile in registers, run the reverse recurrence ``dh_t = C_t g_t + a_{t+1} dh_{t+1}`` and
form all gradients.  dB/dC (variable) are summed over the program's channels with warp shuffles and
added with fp32 atomics, or stored as per-program partials (``DETERMINISTIC``).
"""

from __future__ import annotations

import triton
import triton.language as tl

from mambabench.kernels.scan_columns import join_cols, split_cols
from mambabench.kernels.scan_common import add_or_store
from mambabench.kernels.scan_common import softplus as _softplus

__all__ = ["seq_scan_fwd_kernel", "seq_scan_bwd_kernel"]


@triton.jit
def _tile_inputs(u_base, dl_base, t0, seqlen, mask_d, offs_k, tile, bias,
                 HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, EVEN_T: tl.constexpr):
    """The time tile at t0: masks ([BLOCK_D, TT] data, [BLOCK_D, TT] B/C rows), fp32 u, delta + bias,
    and delta after softplus with zeros past seqlen (so those steps leave the state unchanged)."""
    if EVEN_T:
        mask_dt = mask_d[:, None] & (tile >= 0)
        mask_t2 = tile >= 0  # constant along time: keeps the loads vectorised
    else:
        mask_dt = mask_d[:, None] & ((t0 + offs_k) < seqlen)[None, :]
        mask_t2 = (t0 + tile) < seqlen
    u = tl.load(u_base + t0, mask=mask_dt, other=0.0).to(tl.float32)
    dl_raw = tl.load(dl_base + t0, mask=mask_dt, other=0.0).to(tl.float32)
    if HAS_BIAS:
        dl_raw = dl_raw + bias[:, None]
    if SOFTPLUS:
        dl = _softplus(dl_raw)
    else:
        dl = dl_raw
    dl = tl.where(mask_dt, dl, 0.0)
    return mask_dt, mask_t2, u, dl_raw, dl


# A's and the saved states' dstate strides are run-time values (never specialised to 1): a dstate axis
# known to be contiguous would make Triton spread it over lanes (16-byte vectors), and every tile
# would then be converted between that layout and the one-channel-per-thread layout.
@triton.jit(do_not_specialize=["s_An", "s_sn"])
def seq_scan_fwd_kernel(
    u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr,
    out_ptr, states_ptr, last_ptr,
    dim, seqlen, dim_per_group,
    s_ub, s_ud, s_db, s_dd, s_Ad, s_An,
    s_Bb, s_Bg, s_Bn, s_Cb, s_Cg, s_Cn,
    s_zb, s_zd, s_ob, s_od,
    s_sb, s_sd, s_sc, s_sn,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    B_VAR: tl.constexpr, C_VAR: tl.constexpr, SAVE_STATES: tl.constexpr, SAVE_LAST: tl.constexpr,
    BLOCK_D: tl.constexpr, DSTATE: tl.constexpr, TT: tl.constexpr, CHUNK: tl.constexpr,
    EVEN_T: tl.constexpr, LANES: tl.constexpr, NPT: tl.constexpr,
):
    """Grid (cdiv(dim, BLOCK_D), batch).  The states of a channel are spread over LANES threads, NPT =
    cdiv(DSTATE, LANES) each (state n = g * NPT + j for lane g, register j): LANES > 1 gives more
    threads to hide latency with, for one cross-lane sum of y per tile.  EVEN_T: seqlen % TT == 0 (no
    time masks, so the tiles load as 16-byte vectors).  Writes out (batch, dim, seqlen); with
    SAVE_STATES the state entering every CHUNK steps to states (batch, dim, n_chunks, DSTATE); with
    SAVE_LAST h_L to last (batch, dim, DSTATE)."""
    pid_d = tl.program_id(0)
    pid_b = tl.program_id(1).to(tl.int64)
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
        h = h + (tl.zeros([BLOCK_D, LANES], dtype=tl.float32),)
    if HAS_D:
        Dv = tl.load(D_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)

    # [BLOCK_D, LANES, TT] tiles; the LANES axis has zero stride (the lanes of a channel read the same
    # u / delta / z vector, and all channels the same B / C row: L1 serves the repeats)
    tile = (d64 * 0)[:, None, None] + (offs_g * 0)[None, :, None] + offs_k[None, None, :]
    row3 = d64[:, None, None]
    u_base = u_ptr + pid_b * s_ub + row3 * s_ud + tile
    dl_base = delta_ptr + pid_b * s_db + row3 * s_dd + tile
    if HAS_Z:
        z_base = z_ptr + pid_b * s_zb + row3 * s_zd + tile
    o_base = out_ptr + pid_b * s_ob + d2 * s_od + offs_k[None, :]
    if B_VAR:
        B_base = B_ptr + pid_b * s_Bb + group * s_Bg + tile
    if C_VAR:
        C_base = C_ptr + pid_b * s_Cb + group * s_Cg + tile
    st_base = states_ptr + pid_b * s_sb + d2 * s_sd

    for t0 in range(0, seqlen, TT):
        if SAVE_STATES:
            if t0 % CHUNK == 0:
                for j in tl.static_range(NPT):
                    n_j = offs_g * NPT + j
                    tl.store(st_base + (t0 // CHUNK) * s_sc + n_j[None, :] * s_sn, h[j],
                             mask=mask_d[:, None] & (n_j < DSTATE)[None, :])
        if EVEN_T:
            mask3 = mask_d[:, None, None] & (tile >= 0)
            mask_t3 = tile >= 0  # constant along time: keeps the loads vectorised
            mask_out = mask_d[:, None] & (offs_k >= 0)[None, :]
        else:
            mask3 = mask_d[:, None, None] & ((t0 + tile) < seqlen)
            mask_t3 = (t0 + tile) < seqlen
            mask_out = mask_d[:, None] & ((t0 + offs_k) < seqlen)[None, :]
        u = tl.load(u_base + t0, mask=mask3, other=0.0).to(tl.float32)
        dl = tl.load(dl_base + t0, mask=mask3, other=0.0).to(tl.float32)
        if HAS_BIAS:
            dl = dl + bias[:, None, None]
        if SOFTPLUS:
            dl = _softplus(dl)
        dl = tl.where(mask3, dl, 0.0)
        dl_c = split_cols(dl, TT)
        du_c = split_cols(dl * u, TT)
        if HAS_D:  # added on lane 0 only: the lanes' partial outputs are summed below
            y = tl.where(offs_g[None, :, None] == 0, Dv[:, None, None] * u, 0.0)
        else:
            y = tl.zeros([BLOCK_D, LANES, TT], dtype=tl.float32)
        h_new = ()
        for j in tl.static_range(NPT):
            n_j = offs_g * NPT + j
            ok_n3 = (n_j < DSTATE)[None, :, None]
            if B_VAR:
                B_j = split_cols(tl.load(B_base + n_j[None, :, None] * s_Bn + t0, mask=mask_t3 & ok_n3,
                                         other=0.0), TT)
            else:
                Bc_j = tl.load(B_ptr + d2 * s_Bb + n_j[None, :] * s_Bn,
                               mask=mask_d[:, None] & (n_j < DSTATE)[None, :], other=0.0).to(tl.float32)
            if C_VAR:
                C_j = split_cols(tl.load(C_base + n_j[None, :, None] * s_Cn + t0, mask=mask_t3 & ok_n3,
                                         other=0.0), TT)
            else:
                Cc_j = tl.load(C_ptr + d2 * s_Cb + n_j[None, :] * s_Cn,
                               mask=mask_d[:, None] & (n_j < DSTATE)[None, :], other=0.0).to(tl.float32)
            h_j = h[j]
            contrib = ()
            for k in tl.static_range(TT):
                if B_VAR:
                    b = du_c[k] * B_j[k].to(tl.float32)
                else:
                    b = du_c[k] * Bc_j
                h_j = tl.exp2(dl_c[k] * A2[j]) * h_j + b
                if C_VAR:
                    contrib = contrib + (C_j[k].to(tl.float32) * h_j,)
                else:
                    contrib = contrib + (Cc_j * h_j,)
            y += join_cols(contrib, TT)
            h_new = h_new + (h_j,)
        h = h_new
        if HAS_Z:  # the gate is linear in y: apply it to the lanes' partials
            zz = tl.load(z_base + t0, mask=mask3, other=0.0).to(tl.float32)
            y = y * zz * tl.sigmoid(zz)
        tl.store(o_base + t0, tl.sum(y, axis=1).to(out_ptr.dtype.element_ty), mask=mask_out)
    if SAVE_LAST:
        for j in tl.static_range(NPT):
            n_j = offs_g * NPT + j
            tl.store(last_ptr + pid_b * dim * DSTATE + d2 * DSTATE + n_j[None, :] * s_sn, h[j],
                     mask=mask_d[:, None] & (n_j < DSTATE)[None, :])


@triton.jit(do_not_specialize=["s_An"])
def seq_scan_bwd_kernel(
    u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, dout_ptr, states_ptr, scratch_ptr,
    du_ptr, ddelta_ptr, dA_ptr, dB_ptr, dC_ptr, dD_ptr, dbias_ptr, dz_ptr,
    dim, seqlen, dim_per_group,
    s_ub, s_ud, s_db, s_dd, s_Ad, s_An,
    s_Bb, s_Bg, s_Bn, s_Cb, s_Cg, s_Cn,
    s_zb, s_zd, s_gb, s_gd,
    s_sb, s_sd, s_sc, s_sn,
    s_dub, s_dud, s_ddb, s_ddd, s_dzb, s_dzd,
    s_dBb, s_dBg, s_dBn, s_dCb, s_dCg, s_dCn,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    B_VAR: tl.constexpr, C_VAR: tl.constexpr, DETERMINISTIC: tl.constexpr,
    BLOCK_D: tl.constexpr, DSTATE: tl.constexpr, TT: tl.constexpr, CHUNK: tl.constexpr,
    EVEN_T: tl.constexpr,
):
    """Grid (cdiv(dim, BLOCK_D), batch).  ``scratch``: fp32 (grid, CHUNK // TT, DSTATE, BLOCK_D).

    Writes du, ddelta, dz (batch, dim, seqlen) in the input dtype; adds into fp32 dA (dim, DSTATE),
    dD, dbias (dim,); variable dB/dC: atomics into (batch, groups, DSTATE, seqlen), or with
    DETERMINISTIC one partial slot per program, (batch, n_programs_d, DSTATE, seqlen); constant dB/dC:
    atomics into (dim, DSTATE)."""
    pid_d = tl.program_id(0)
    pid_b = tl.program_id(1).to(tl.int64)
    offs_d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    offs_k = tl.arange(0, TT)
    mask_d = offs_d < dim
    d64 = offs_d.to(tl.int64)
    group = ((pid_d * BLOCK_D) // dim_per_group).to(tl.int64)
    A2 = ()
    q = ()  # a_{t+1} dh_{t+1} per state, carried backwards
    dA_acc = ()
    dBc_acc = ()
    dCc_acc = ()
    for n in tl.static_range(DSTATE):
        a_n = tl.load(A_ptr + d64 * s_Ad + n * s_An, mask=mask_d, other=0.0).to(tl.float32)
        A2 = A2 + (a_n * 1.4426950408889634,)
        q = q + (tl.zeros([BLOCK_D], dtype=tl.float32),)
        dA_acc = dA_acc + (tl.zeros([BLOCK_D], dtype=tl.float32),)
        if not B_VAR:
            dBc_acc = dBc_acc + (tl.zeros([BLOCK_D], dtype=tl.float32),)
        if not C_VAR:
            dCc_acc = dCc_acc + (tl.zeros([BLOCK_D], dtype=tl.float32),)
    if HAS_D:
        Dv = tl.load(D_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)
    else:
        bias = tl.zeros([BLOCK_D], dtype=tl.float32)  # unused: _tile_inputs adds it only if HAS_BIAS

    tile = d64[:, None] * 0 + offs_k[None, :]
    row_d = d64[:, None]
    u_base = u_ptr + pid_b * s_ub + row_d * s_ud + offs_k[None, :]
    dl_base = delta_ptr + pid_b * s_db + row_d * s_dd + offs_k[None, :]
    g_base = dout_ptr + pid_b * s_gb + row_d * s_gd + offs_k[None, :]
    du_base = du_ptr + pid_b * s_dub + row_d * s_dud + offs_k[None, :]
    ddl_base = ddelta_ptr + pid_b * s_ddb + row_d * s_ddd + offs_k[None, :]
    if HAS_Z:
        z_base = z_ptr + pid_b * s_zb + row_d * s_zd + offs_k[None, :]
        dz_base = dz_ptr + pid_b * s_dzb + row_d * s_dzd + offs_k[None, :]
    if B_VAR:
        B_base = B_ptr + pid_b * s_Bb + group * s_Bg + tile
    else:
        B_base = B_ptr + d64 * s_Bb
    if C_VAR:
        C_base = C_ptr + pid_b * s_Cb + group * s_Cg + tile
    else:
        C_base = C_ptr + d64 * s_Cb
    if DETERMINISTIC:
        slot = pid_d.to(tl.int64)
    else:
        slot = group
    dB_base = dB_ptr + pid_b * s_dBb + slot * s_dBg
    dC_base = dC_ptr + pid_b * s_dCb + slot * s_dCg
    st_base = states_ptr + pid_b * s_sb + d64 * s_sd
    pid_lin = pid_b * tl.num_programs(0) + pid_d
    sc_base = scratch_ptr + pid_lin * (CHUNK // TT) * DSTATE * BLOCK_D + tl.arange(0, BLOCK_D)

    dD_acc = tl.zeros([BLOCK_D], dtype=tl.float32)
    dbias_acc = tl.zeros([BLOCK_D], dtype=tl.float32)
    n_chunks = tl.cdiv(seqlen, CHUNK)
    for ci in range(0, n_chunks):
        c0 = (n_chunks - 1 - ci) * CHUNK
        n_tiles = tl.minimum(CHUNK, seqlen - c0 + TT - 1) // TT
        # ---- pass 1: recompute the chunk forward, keep the state entering every tile in scratch
        h = ()
        for n in tl.static_range(DSTATE):
            h = h + (tl.load(st_base + (c0 // CHUNK) * s_sc + n * s_sn, mask=mask_d, other=0.0),)
        for j in range(0, n_tiles):
            t0 = c0 + j * TT
            mask_dt, mask_t2, u, _, dl = _tile_inputs(u_base, dl_base, t0, seqlen, mask_d, offs_k, tile, bias,
                                                       HAS_BIAS, SOFTPLUS, EVEN_T)
            dl_c = split_cols(dl, TT)
            du_c = split_cols(dl * u, TT)
            h_new = ()
            for n in tl.static_range(DSTATE):
                h_n = h[n]
                tl.store(sc_base + (j * DSTATE + n) * BLOCK_D, h_n)
                if B_VAR:
                    B_n = split_cols(tl.load(B_base + n * s_Bn + t0, mask=mask_t2, other=0.0), TT)
                else:
                    Bc_n = tl.load(B_base + n * s_Bn, mask=mask_d, other=0.0).to(tl.float32)
                for k in tl.static_range(TT):
                    if B_VAR:
                        b = du_c[k] * B_n[k].to(tl.float32)
                    else:
                        b = du_c[k] * Bc_n
                    h_n = tl.exp2(dl_c[k] * A2[n]) * h_n + b
                h_new = h_new + (h_n,)
            h = h_new
        tl.debug_barrier()
        # ---- pass 2: tiles last to first
        for jj in range(0, n_tiles):
            j = n_tiles - 1 - jj
            t0 = c0 + j * TT
            mask_dt, mask_t2, u, dl_raw, dl = _tile_inputs(u_base, dl_base, t0, seqlen, mask_d, offs_k, tile,
                                                            bias, HAS_BIAS, SOFTPLUS, EVEN_T)
            dout = tl.load(g_base + t0, mask=mask_dt, other=0.0).to(tl.float32)
            du = dl * u
            if HAS_Z:
                zz = tl.load(z_base + t0, mask=mask_dt, other=0.0).to(tl.float32)
                sz = tl.sigmoid(zz)
                g = dout * zz * sz
            else:
                g = dout
            if HAS_D:
                dD_acc += tl.sum(g * u, axis=1)
                y = Dv[:, None] * u
            else:
                y = tl.zeros([BLOCK_D, TT], dtype=tl.float32)
            dl_c = split_cols(dl, TT)
            du_c = split_cols(du, TT)
            g_c = split_cols(g, TT)
            dhB = tl.zeros([BLOCK_D, TT], dtype=tl.float32)
            xA = tl.zeros([BLOCK_D, TT], dtype=tl.float32)
            q_new = ()
            dA_new = ()
            dBc_new = ()
            dCc_new = ()
            for n in tl.static_range(DSTATE):
                if B_VAR:
                    B_n = split_cols(tl.load(B_base + n * s_Bn + t0, mask=mask_t2, other=0.0), TT)
                else:
                    Bc_n = tl.load(B_base + n * s_Bn, mask=mask_d, other=0.0).to(tl.float32)
                if C_VAR:
                    C_n = split_cols(tl.load(C_base + n * s_Cn + t0, mask=mask_t2, other=0.0), TT)
                else:
                    Cc_n = tl.load(C_base + n * s_Cn, mask=mask_d, other=0.0).to(tl.float32)
                # recompute the TT states of the tile, and a_t
                h_n = tl.load(sc_base + (j * DSTATE + n) * BLOCK_D)
                hs = (h_n,)
                As = ()
                for k in tl.static_range(TT):
                    a = tl.exp2(dl_c[k] * A2[n])
                    if B_VAR:
                        h_n = a * h_n + du_c[k] * B_n[k].to(tl.float32)
                    else:
                        h_n = a * h_n + du_c[k] * Bc_n
                    hs = hs + (h_n,)
                    As = As + (a,)
                # reverse recurrence, last step first
                q_n = q[n]
                dA_n = dA_acc[n]
                if not B_VAR:
                    dBc_n = dBc_acc[n]
                if not C_VAR:
                    dCc_n = dCc_acc[n]
                dhB_k = ()
                x_k = ()
                y_k = ()
                for k in tl.static_range(TT - 1, -1, -1):
                    if C_VAR:
                        Ck = C_n[k].to(tl.float32)
                    else:
                        Ck = Cc_n
                    if B_VAR:
                        Bk = B_n[k].to(tl.float32)
                    else:
                        Bk = Bc_n
                    dh = Ck * g_c[k] + q_n
                    q_n = As[k] * dh
                    x = q_n * hs[k]  # dh_t * a_t * h_{t-1}
                    dA_n += x * dl_c[k]
                    dhB_k = (dh * Bk,) + dhB_k
                    x_k = (x,) + x_k
                    y_k = (Ck * hs[k + 1],) + y_k
                    wB = dh * du_c[k]
                    wC = hs[k + 1] * g_c[k]
                    ok_k = t0 + k < seqlen
                    if B_VAR:
                        add_or_store(dB_base + n * s_dBn + t0 + k, tl.sum(wB, axis=0), ok_k, DETERMINISTIC)
                    else:
                        dBc_n += wB
                    if C_VAR:
                        add_or_store(dC_base + n * s_dCn + t0 + k, tl.sum(wC, axis=0), ok_k, DETERMINISTIC)
                    else:
                        dCc_n += wC
                dhB += join_cols(dhB_k, TT)
                xA += join_cols(x_k, TT) * A2[n][:, None]
                if HAS_Z:
                    y += join_cols(y_k, TT)
                q_new = q_new + (q_n,)
                dA_new = dA_new + (dA_n,)
                if not B_VAR:
                    dBc_new = dBc_new + (dBc_n,)
                if not C_VAR:
                    dCc_new = dCc_new + (dCc_n,)
            q = q_new
            dA_acc = dA_new
            if not B_VAR:
                dBc_acc = dBc_new
            if not C_VAR:
                dCc_acc = dCc_new
            ddl = dhB * u + xA * 0.6931471805599453  # sum_n x A = ln2 sum_n x A2
            du_out = dhB * dl
            if HAS_D:
                du_out += Dv[:, None] * g
            if SOFTPLUS:
                ddl = tl.where(dl_raw <= 20.0, ddl * tl.sigmoid(dl_raw), ddl)
            ddl = tl.where(mask_dt, ddl, 0.0)
            if HAS_BIAS:
                dbias_acc += tl.sum(ddl, axis=1)
            tl.store(du_base + t0, du_out.to(du_ptr.dtype.element_ty), mask=mask_dt)
            tl.store(ddl_base + t0, ddl.to(ddelta_ptr.dtype.element_ty), mask=mask_dt)
            if HAS_Z:
                dz = dout * y * sz * (1.0 + zz * (1.0 - sz))
                tl.store(dz_base + t0, dz.to(dz_ptr.dtype.element_ty), mask=mask_dt)
        tl.debug_barrier()  # pass 1 of the next chunk overwrites the scratch

    for n in tl.static_range(DSTATE):
        tl.atomic_add(dA_ptr + d64 * DSTATE + n, dA_acc[n], mask=mask_d, sem="relaxed")
        if not B_VAR:
            tl.atomic_add(dB_ptr + d64 * DSTATE + n, dBc_acc[n], mask=mask_d, sem="relaxed")
        if not C_VAR:
            tl.atomic_add(dC_ptr + d64 * DSTATE + n, dCc_acc[n], mask=mask_d, sem="relaxed")
    if HAS_D:
        tl.atomic_add(dD_ptr + offs_d, dD_acc, mask=mask_d, sem="relaxed")
    if HAS_BIAS:
        tl.atomic_add(dbias_ptr + offs_d, dbias_acc, mask=mask_d, sem="relaxed")
