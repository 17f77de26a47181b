"""Host-side tensor layouts and buffers shared by the two scan kernel families.

B and C come constant (dim, dstate), variable (batch, dstate, seqlen) or grouped (batch, groups, dstate,
seqlen); :func:`bc_layout` turns any of them into the (variable?, groups, strides) the kernels take.
The forward's outputs and the backward's gradient buffers are allocated here, in the layouts both
families write (atomics into zeroed buffers, or per-program partials when deterministic).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "bc_fp32",
    "bc_grad_strides",
    "bc_layout",
    "finish_bc",
    "forward_buffers",
    "grad_buffers",
    "unit_stride_last",
]


def bc_layout(x: Tensor, dim: int) -> tuple[bool, int, tuple[int, int, int]]:
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


def unit_stride_last(x: Tensor) -> Tensor:
    """x, or a copy with unit stride along its last axis (the kernels read time rows as vectors)."""
    return x if x.stride(-1) == 1 or x.shape[-1] == 1 else x.contiguous()


def bc_fp32(x: Tensor) -> Tensor:
    """Variable B/C as fp32 for the sequential kernels: (batch, [groups,] dstate, seqlen) is dim / dstate times
    smaller than u, so the copy is cheap, and every thread then reads B_t / C_t without converting."""
    return x.float() if x.dim() >= 3 else x


def forward_buffers(
    u: Tensor, dstate: int, n_saved: int, save_states: bool, save_last: bool
) -> tuple[Tensor, Tensor, Tensor]:
    """out (batch, dim, seqlen) in u's dtype; fp32 saved states (batch, dim, n_saved, dstate) and
    last state (batch, dim, dstate), or ``out`` as a placeholder pointer when not wanted."""
    batch, dim, seqlen = u.shape
    out = torch.empty((batch, dim, seqlen), device=u.device, dtype=u.dtype)
    states = (
        torch.empty((batch, dim, n_saved, dstate), device=u.device, dtype=torch.float32)
        if save_states
        else out
    )
    last = torch.empty((batch, dim, dstate), device=u.device, dtype=torch.float32) if save_last else out
    return out, states, last


def _grad_outputs(
    u: Tensor, z: Tensor | None, du_out: Tensor | None, dz_out: Tensor | None
) -> tuple[Tensor, Tensor | None]:
    """du and dz buffers: the caller's (e.g. views into the gradient of a fused xz tensor) or new."""
    for name, out, like in (("du_out", du_out, u), ("dz_out", dz_out, z)):
        if out is not None and (
            like is None or out.shape != like.shape or out.stride(-1) != 1 or out.dtype != like.dtype
        ):
            raise ValueError(f"{name} must match its input's shape and dtype with unit stride along seqlen")
    du = du_out if du_out is not None else torch.empty_like(u)
    dz = (dz_out if dz_out is not None else torch.empty_like(z)) if z is not None else None
    return du, dz


def grad_buffers(
    u: Tensor,
    delta: Tensor,
    z: Tensor | None,
    D: Tensor | None,
    delta_bias: Tensor | None,
    dstate: int,
    bvar: bool,
    cvar: bool,
    bc_slots: int,
    deterministic: bool,
    du_out: Tensor | None,
    dz_out: Tensor | None,
) -> tuple:
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
    sizes = (
        dim * dstate,
        dim if D is not None else 0,
        dim if delta_bias is not None else 0,
        0 if bvar else dim * dstate,
        0 if cvar else dim * dstate,
    )
    dA, dD, dbias, dB_const, dC_const = torch.zeros(sum(sizes), **f32).split(sizes)
    var = (
        (torch.empty if deterministic else torch.zeros)(
            (int(bvar) + int(cvar), batch, bc_slots, dstate, seqlen), **f32
        )
        if bvar or cvar
        else None
    )
    dB = var[0] if bvar else dB_const.view(dim, dstate)
    dC = var[int(bvar)] if cvar else dC_const.view(dim, dstate)
    return (
        du,
        dz,
        torch.empty_like(delta),
        dA.view(dim, dstate),
        dD if D is not None else None,
        dbias if delta_bias is not None else None,
        dB,
        dC,
        var,
    )


def bc_grad_strides(x: Tensor, var: bool) -> tuple[int, int, int]:
    """(batch, slot, state) strides of a variable dB/dC buffer, or (channel, 0, state) of a constant one."""
    return (x.stride(0), x.stride(1), x.stride(2)) if var else (x.stride(0), 0, x.stride(1))


def finish_bc(
    bufs: tuple[Tensor, Tensor],
    stacked: Tensor | None,
    vars_: tuple[bool, bool],
    likes: tuple[Tensor, Tensor],
    deterministic: bool,
    batch: int,
    groups: int,
    n_dblk_per_group: int,
    dstate: int,
    seqlen: int,
) -> tuple[Tensor, Tensor]:
    """dB and dC from their buffers (:func:`grad_buffers`; ``stacked``: the one both variable ones
    view): the deterministic per-program partials summed, each in the shape and dtype of B / C;
    variable dB and dC of one dtype are converted together (one cast kernel)."""
    partials = deterministic  # buffers still holding per-program partials
    if vars_[0] and vars_[1] and likes[0].dtype == likes[1].dtype:  # one sum and one cast for both
        both = (
            stacked.view(2, batch, groups, n_dblk_per_group, dstate, seqlen).sum(3) if partials else stacked
        )
        bufs, partials = tuple(both.to(likes[0].dtype).unbind(0)), False
    out = []
    for buf, var, like in zip(bufs, vars_, likes):
        if var and partials:
            buf = buf.view(batch, groups, n_dblk_per_group, dstate, seqlen).sum(2)
        if var and like.dim() == 3:
            buf = buf.reshape(batch, dstate, seqlen)
        out.append(buf.to(like.dtype))
    return out[0], out[1]
