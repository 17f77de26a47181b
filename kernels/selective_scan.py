"""Triton selective scan (Mamba-1 S6): input preparation, dispatch, the autograd Function and the public API.

Contract (same as the official ``selective_scan_fn``)::

    u, delta, z : (batch, dim, seqlen)   fp32 / bf16 / fp16, unit stride along seqlen only
    A           : (dim, dstate)          fp32 (real)
    B, C        : (dim, dstate) constant, (batch, dstate, seqlen) variable
                  or (batch, groups, dstate, seqlen) grouped
    D, delta_bias : (dim,)               fp32
    out         : (batch, dim, seqlen)   dtype of u;  last_state (batch, dim, dstate) fp32

The work is split by job, as state-spaces/mamba splits its SSD kernels into one file per stage:

* :mod:`scan_sequential`: the sequential family (a channel's states on 1-8 lanes, the recurrence step
  by step in registers; time-split for few rows) and its host launchers;
* :mod:`scan_tiled`: the tiled family (``tl.associative_scan`` over ``[BLOCK_D, BLOCK_T]`` tiles) and
  its host launchers;
* :mod:`scan_launch`: which family runs and with which launch parameters (thresholds, wave model,
  the ``MAMBABENCH_SCAN_LAUNCH`` override, the autotuning hook), owned by one settings object;
* :mod:`scan_buffers`: B/C layouts and the output and gradient buffers both families write;
* this module: checks and normalises the inputs, picks the family per call and ties forward and
  backward together.

Numerics shared by both families: ``exp(delta * A)`` is ``exp2(delta * A * log2(e))`` with log2(e)
folded into A once (approximate ftz ``ex2`` on the GPU, as the official build's ``--use_fast_math``).
With gradients needed the forward saves the state entering every chunk (sequential: 128 steps,
tiled: its tile): ``4 * dstate / CHUNK`` bytes per (b, d, t), a quarter of a bf16 u at CHUNK = 128,
N = 16.  The backward walks the chunks last to first, recomputes the forward inside each from its
saved state, runs the reverse recurrence ``dh_t = C_t g_t + a_{t+1} dh_{t+1}`` and forms every
gradient in registers.  Variable dB and dC are summed over the program's channels before fp32
atomics, or written as per-program partials and summed afterwards (``deterministic=True``).

Complex A is not supported by the kernels; :func:`selective_scan_triton` falls back to the PyTorch
reference for it (with a one-time warning).
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor

from mambabench.kernels import _interpret_compat
from mambabench.kernels.scan_buffers import bc_layout, unit_stride_last
from mambabench.kernels.scan_launch import (
    current_launch,
    sequential_backward_runs,
    sequential_forward_runs,
    tiled_bwd_config,
    tiled_fwd_config,
)
from mambabench.kernels.scan_sequential import sequential_backward, sequential_forward
from mambabench.kernels.scan_tiled import tiled_backward, tiled_forward

_interpret_compat.patch()

__all__ = [
    "SelectiveScanTriton",
    "scan_bytes",
    "selective_scan_backward",
    "selective_scan_forward",
    "selective_scan_triton",
]


def _prep(u, delta, A, B, C, D, z, delta_bias):  # noqa: ANN001, ANN202
    """Check shapes, give time rows unit stride, cast B/C (variable) to u's dtype and A, D, delta_bias
    to fp32; returns the inputs and the number of B/C groups."""
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
    u, delta = unit_stride_last(u), unit_stride_last(delta)
    z = unit_stride_last(z) if z is not None else None
    B = unit_stride_last(B) if B.dim() >= 3 else B
    C = unit_stride_last(C) if C.dim() >= 3 else C
    if B.dim() >= 3 and B.dtype != u.dtype:
        B = B.to(u.dtype)
    if C.dim() >= 3 and C.dtype != u.dtype:
        C = C.to(u.dtype)
    bvar, bg, _ = bc_layout(B, dim)
    cvar, cg, _ = bc_layout(C, dim)
    groups = max(bg, cg)
    if bvar and cvar and bg != cg:
        raise ValueError("B and C must have the same number of groups")
    if dim % groups != 0:
        raise ValueError(f"dim={dim} is not divisible by the number of B/C groups ({groups})")
    A = A.float()
    D = D.float().contiguous() if D is not None else None
    delta_bias = delta_bias.float().contiguous() if delta_bias is not None else None
    return u, delta, A, B, C, D, z, delta_bias, groups


def _forward(u, delta, A, B, C, D, z, delta_bias, softplus, save_states, save_last):  # noqa: ANN001, ANN202
    """Forward with the family that :mod:`scan_launch` picks; returns out, the saved states (or None),
    the last state (or None) and the states' spacing in time steps."""
    launch = current_launch()
    dstate = A.shape[1]
    if sequential_forward_runs(u, dstate, save_states, launch):
        return sequential_forward(
            u, delta, A, B, C, D, z, delta_bias, softplus, save_states, save_last, launch
        )
    batch, dim, seqlen = u.shape
    cfg = launch.tiled_fwd or tiled_fwd_config(dim, dstate, seqlen, batch, u.element_size(), save_states)
    return tiled_forward(u, delta, A, B, C, D, z, delta_bias, softplus, save_states, save_last, cfg)


def _backward(
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
    spacing,
    dout,
    deterministic,  # noqa: ANN001, ANN202
    du_out=None,
    dz_out=None,
):
    """Backward from the states saved every ``spacing`` steps by either forward."""
    launch = current_launch()
    dstate = A.shape[1]
    if sequential_backward_runs(dstate, launch) and spacing % 4 == 0:
        return sequential_backward(
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
            spacing,
            dout,
            deterministic,
            du_out,
            dz_out,
            launch,
        )
    batch, dim, seqlen = u.shape
    cfg = launch.tiled_bwd or tiled_bwd_config(dim, dstate, seqlen, batch, u.element_size())
    return tiled_backward(
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
        spacing,
        dout,
        deterministic,
        du_out,
        dz_out,
        cfg,
    )


def selective_scan_forward(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = False,
    save_states: bool = True,
    return_last_state: bool = False,
) -> tuple[Tensor, tuple, Tensor | None]:
    """The Triton forward without autograd, for fused callers (``models/mixers/mamba_fused.py``).

    Same contract as :func:`selective_scan_triton` (real A only).  Returns out (batch, dim, seqlen),
    the residual that :func:`selective_scan_backward` takes (the saved states and their spacing,
    or None without ``save_states``) and the last state (batch, dim, dstate) or None.
    """
    u, delta, A, B, C, D, z, delta_bias, _ = _prep(u, delta, A, B, C, D, z, delta_bias)
    out, states, last, spacing = _forward(
        u, delta, A, B, C, D, z, delta_bias, delta_softplus, save_states, return_last_state
    )
    return out, ((states, spacing) if save_states else None), last


def selective_scan_backward(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None,
    z: Tensor | None,
    delta_bias: Tensor | None,
    delta_softplus: bool,
    residual: tuple,
    dout: Tensor,
    deterministic: bool = False,
    du_out: Tensor | None = None,
    dz_out: Tensor | None = None,
) -> tuple:
    """Gradients of :func:`selective_scan_forward` from its residual; the inputs are passed again.

    ``du_out`` / ``dz_out`` (batch, dim, seqlen, unit stride along seqlen, the dtype of u / z) receive
    du and dz in place, e.g. views into the gradient of a fused ``xz`` tensor.  Returns du, ddelta,
    dA, dB, dC, dD, ddelta_bias, dz in the dtypes of their inputs (None where an input is None).
    """
    A_dtype, B_dtype, C_dtype = A.dtype, B.dtype, C.dtype
    u, delta, A, B, C, D, z, delta_bias, _ = _prep(u, delta, A, B, C, D, z, delta_bias)
    states, spacing = residual
    du, ddelta, dA, dB, dC, dD, dbias, dz = _backward(
        u,
        delta,
        A,
        B,
        C,
        D,
        z,
        delta_bias,
        delta_softplus,
        states,
        spacing,
        dout,
        deterministic,
        du_out,
        dz_out,
    )
    return du, ddelta, dA.to(A_dtype), dB.to(B_dtype), dC.to(C_dtype), dD, dbias, dz


class SelectiveScanTriton(torch.autograd.Function):
    """autograd wrapper: forward saves the inputs and the per-tile states, backward recomputes.

    A fused caller holding this node (``out.grad_fn``, which has ``accepts_dz_out``) may set
    ``node.dz_out`` to a (batch, dim, seqlen) buffer in z's dtype with unit stride along seqlen before
    the backward runs: dz is then written there instead of into a new tensor (e.g. straight into
    its half of d(xz), saving a copy of an activation-sized tensor).
    """

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state, deterministic):
        need_grad = any(ctx.needs_input_grad[:8])
        out, residual, last = selective_scan_forward(
            u, delta, A, B, C, D, z, delta_bias, delta_softplus, need_grad, return_last_state
        )
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
            u,
            delta,
            A,
            B,
            C,
            D,
            z,
            delta_bias,
            ctx.softplus,
            (states, ctx.spacing),
            dout,
            ctx.deterministic,
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
            warnings.warn(
                "selective_scan_triton: complex A is not supported by the Triton kernel; "
                "using the PyTorch reference scan",
                stacklevel=2,
            )
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
