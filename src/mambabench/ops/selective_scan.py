"""Pure-PyTorch selective scan: the numerical oracle for the Triton kernels and the CPU path.

The recurrence (Mamba paper, Algorithm 2, with the official code's discretisation) is, per batch b,
channel d and state n::

    delta_t = softplus(delta_t + delta_bias)            (when delta_softplus)
    h_t     = exp(delta_t * A) * h_{t-1} + delta_t * B_t * u_t
    y_t     = sum_n C_t[n] * h_t[n] + D * u_t
    out_t   = y_t * silu(z_t)                          (when z is given)

All state math runs in fp32 (complex64 for complex A) whatever the input dtype; the output takes
the dtype of ``u``. Two forms are provided: :func:`selective_scan_ref`, sequential over time (the
oracle, also the fastest CPU path for short sequences), and :func:`selective_scan_chunked`, which
scans chunks in parallel with a masked segment-sum and carries the state between chunks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "selective_scan_ref",
    "selective_scan_chunked",
    "selective_state_update_ref",
    "prepare_scan_inputs",
]


def _upcast(x: Tensor) -> Tensor:
    """fp32 for the state math; float64 inputs stay float64 (so gradcheck can test the reference)."""
    return x if x.dtype in (torch.float64, torch.complex128) else x.float()


def _expand_groups(x: Tensor, dim: int) -> Tensor:
    """(batch, groups, dstate, seqlen) -> (batch, dim, dstate, seqlen); channel d reads group d // (dim/groups)."""
    groups = x.shape[1]
    if dim % groups != 0:
        raise ValueError(f"dim={dim} is not divisible by the number of B/C groups ({groups})")
    return x.repeat_interleave(dim // groups, dim=1)


def _as_state_matrix(x: Tensor, A: Tensor, dim: int) -> tuple[Tensor, bool]:
    """Bring B or C to a common layout and say whether it varies with time.

    Returns ``(x, is_variable)`` with x either (dim, dstate) (constant) or (batch, dim, dstate, seqlen)
    (variable), in fp32, or complex64 when A is complex (variable complex B/C arrive as real tensors
    whose last axis interleaves real and imaginary parts: (..., 2 * seqlen)).
    """
    is_variable = x.dim() >= 3
    if not is_variable:
        return (x.to(torch.complex64) if A.is_complex() else _upcast(x)), False
    if A.is_complex() and not x.is_complex():
        x = torch.view_as_complex(_upcast(x).unflatten(-1, (-1, 2)).contiguous())
    elif not A.is_complex():
        x = _upcast(x)
    if x.dim() == 3:  # (batch, dstate, seqlen) -> one group
        x = x.unsqueeze(1)
    return _expand_groups(x, dim), True


def prepare_scan_inputs(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    delta_bias: Tensor | None,
    delta_softplus: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor, bool, Tensor, bool]:
    """Cast to fp32, apply bias and softplus to delta, and bring B/C to (batch, dim, dstate, seqlen).

    Returns ``(u, delta, deltaA, deltaB_u, b_variable, C, c_variable)``: u and delta in fp32
    (batch, dim, seqlen); deltaA = exp(delta * A) and deltaB_u = delta * B * u, both
    (batch, dim, seqlen, dstate); C as described in :func:`_as_state_matrix`.
    """
    dim = A.shape[0]
    u = _upcast(u)
    delta = _upcast(delta)
    if delta_bias is not None:
        delta = delta + _upcast(delta_bias[..., None])
    if delta_softplus:
        delta = F.softplus(delta)
    B, b_variable = _as_state_matrix(B, A, dim)
    C, c_variable = _as_state_matrix(C, A, dim)
    deltaA = torch.exp(torch.einsum("bdl,dn->bdln", delta, A if A.is_complex() else _upcast(A)))
    if b_variable:
        deltaB_u = torch.einsum("bdl,bdnl,bdl->bdln", delta, B, u)
    else:
        deltaB_u = torch.einsum("bdl,dn,bdl->bdln", delta, B, u)
    return u, delta, deltaA, deltaB_u, b_variable, C, c_variable


def _readout(h: Tensor, C: Tensor, c_variable: bool) -> Tensor:
    """y = C . h for states h (batch, dim, seqlen, dstate); the real part is doubled for complex A."""
    y = torch.einsum("bdln,bdnl->bdl", h, C) if c_variable else torch.einsum("bdln,dn->bdl", h, C)
    return y.real * 2 if y.is_complex() else y


def _finish(y: Tensor, u: Tensor, D: Tensor | None, z: Tensor | None, out_dtype: torch.dtype) -> Tensor:
    out = y if D is None else y + u * _upcast(D[..., None])
    if z is not None:
        out = out * F.silu(_upcast(z))
    return out.to(out_dtype)


def selective_scan_ref(
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
    initial_state: Tensor | None = None,
) -> Tensor | tuple[Tensor, Tensor]:
    """Sequential selective scan with the signature of the official ``selective_scan_fn``.

    Args:
        u: (batch, dim, seqlen) input.
        delta: (batch, dim, seqlen) step sizes before bias/softplus.
        A: (dim, dstate) fp32 (negative real part for stability) or complex64.
        B, C: (dim, dstate) constant, (batch, dstate, seqlen) variable, or
            (batch, groups, dstate, seqlen) grouped; complex variable B/C interleave re/im on the last axis.
        D: (dim,) skip connection.
        z: (batch, dim, seqlen) gate; the output is multiplied by silu(z).
        delta_bias: (dim,) added to delta before softplus.
        delta_softplus: apply softplus to delta.
        return_last_state: also return the final state h_L, (batch, dim, dstate).
        initial_state: optional h_0, (batch, dim, dstate) (not in the official API; used by chunked
            callers and generation).

    Returns:
        out (batch, dim, seqlen) in u's dtype, and the last state in fp32 (or complex64) if asked.
    """
    out_dtype = u.dtype
    u, _, deltaA, deltaB_u, _, C, c_variable = prepare_scan_inputs(
        u, delta, A, B, C, delta_bias, delta_softplus
    )
    batch, dim, seqlen, dstate = deltaA.shape
    h = initial_state.to(deltaA.dtype) if initial_state is not None else deltaA.new_zeros(batch, dim, dstate)
    states = []
    # unbind once: indexing deltaA[:, :, t] in the loop would make each step's backward allocate a
    # full (batch, dim, seqlen, dstate) gradient, i.e. O(seqlen^2) work.
    for decay, x in zip(deltaA.unbind(2), deltaB_u.unbind(2)):
        h = decay * h + x
        states.append(h)
    hs = torch.stack(states, dim=2) if states else deltaA.new_zeros(batch, dim, 0, dstate)
    out = _finish(_readout(hs, C, c_variable), u, D, z, out_dtype)
    return (out, h) if return_last_state else out


def selective_scan_chunked(
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
    initial_state: Tensor | None = None,
    chunk_size: int = 32,
) -> Tensor | tuple[Tensor, Tensor]:
    """Chunked parallel selective scan; same contract as :func:`selective_scan_ref`.

    Inside a chunk of T steps the states are h_t = sum_{s<=t} exp(S_t - S_s) * x_s + exp(S_t) * h_in
    with S the running sum of delta*A; the decay matrix exp(S_t - S_s) is built only for s <= t, so
    every exponent is <= 0 and nothing overflows. Chunks are chained by their end states. Work per
    chunk is O(T^2) instead of O(T), but the Python loop runs seqlen/T times instead of seqlen.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    out_dtype = u.dtype
    u, delta, _, deltaB_u, _, C, c_variable = prepare_scan_inputs(
        u, delta, A, B, C, delta_bias, delta_softplus
    )
    log_decay = torch.einsum("bdl,dn->bdln", delta, A if A.is_complex() else _upcast(A))
    batch, dim, seqlen, dstate = log_decay.shape
    h = (
        initial_state.to(deltaB_u.dtype)
        if initial_state is not None
        else deltaB_u.new_zeros(batch, dim, dstate)
    )
    causal = torch.ones(chunk_size, chunk_size, dtype=torch.bool, device=u.device).tril()
    chunks = []
    for start in range(0, seqlen, chunk_size):
        a = log_decay[:, :, start : start + chunk_size]  # (b, d, T, n)
        x = deltaB_u[:, :, start : start + chunk_size]
        T = a.shape[2]
        S = a.cumsum(dim=2)
        seg = S.unsqueeze(3) - S.unsqueeze(2)  # (b, d, T_t, T_s, n): S_t - S_s
        mask = causal[:T, :T, None]
        decay = torch.where(mask, torch.exp(torch.where(mask, seg, torch.zeros_like(seg))), 0)
        hs = torch.einsum("bdtsn,bdsn->bdtn", decay, x) + torch.exp(S) * h.unsqueeze(2)
        h = hs[:, :, -1]
        chunks.append(hs)
    hs = torch.cat(chunks, dim=2) if chunks else deltaB_u.new_zeros(batch, dim, 0, dstate)
    out = _finish(_readout(hs, C, c_variable), u, D, z, out_dtype)
    return (out, h) if return_last_state else out


def selective_state_update_ref(
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
    """One recurrent step for decoding; updates ``state`` in place.

    Args:
        state: (batch, dim, dstate) fp32 state, modified in place.
        x, dt: (batch, dim) input and step size of this token.
        A: (dim, dstate).
        B, C: (batch, dstate) or grouped (batch, groups, dstate).
        D, dt_bias: (dim,); z: (batch, dim) gate.

    Returns:
        out (batch, dim) in x's dtype.
    """
    dim = A.shape[0]
    dt = _upcast(dt)
    if dt_bias is not None:
        dt = dt + _upcast(dt_bias)
    if dt_softplus:
        dt = F.softplus(dt)
    if B.dim() == 3:
        B = B.repeat_interleave(dim // B.shape[1], dim=1)
        C = C.repeat_interleave(dim // C.shape[1], dim=1)
    else:
        B, C = B.unsqueeze(1), C.unsqueeze(1)
    dA = torch.exp(dt.unsqueeze(-1) * _upcast(A))
    dBx = dt.unsqueeze(-1) * _upcast(B) * _upcast(x).unsqueeze(-1)
    state.copy_(state * dA + dBx)
    out = (state * _upcast(C)).sum(-1)
    if D is not None:
        out = out + _upcast(x) * _upcast(D)
    if z is not None:
        out = out * F.silu(_upcast(z))
    return out.to(x.dtype)


def selective_state_update_fused_ref(
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
    """The Mamba decode step after x_proj, unfused: dt = dt_low @ dt_proj_weight^T (in x's dtype, as
    the GEMM; ``dt`` is used as is when ``dt_proj_weight`` is None), then
    :func:`selective_state_update_ref` with A = -exp(A_log), the bias and softplus.

    state (batch, dim, dstate) fp32 in place; x, z (batch, dim); dt (batch, dt_rank) or (batch, dim);
    dt_proj_weight (dim, dt_rank); dt_bias, D (dim,); A_log (dim, dstate); B, C (batch, dstate).
    """
    if dt_proj_weight is not None:
        dt = F.linear(dt, dt_proj_weight).to(x.dtype)
    A = -torch.exp(A_log.float())
    return selective_state_update_ref(state, x, dt, A, B, C, D, z, dt_bias, True)
