"""Memory-lean fused Mamba block path: one autograd Function from ``xz`` to the out_proj output.

The unfused mixer lets autograd keep every intermediate of the block alive until the backward: the
conv input (a contiguous copy of x), the conv output u, the delta projection, the gated scan output
and, inside the scan, u and delta once more.  :class:`MambaInnerFn` (the idea of the official
``mamba_inner_fn``, written for our kernels) keeps only

* ``xz`` (batch, 2 * d_inner, seqlen), the in_proj output (x and the gate z),
* the gated scan output y (batch, d_inner, seqlen), the input of out_proj (its weight gradient),
* the weights, and what the scan itself saves *except its u and delta*: B, C (views of x_dbl,
  (batch, N, seqlen) each), z (a view of xz), the small A, D, delta_bias and the scan's saved states,

and recomputes the cheap parts in the backward: the causal conv (u), x_dbl = x_proj(u) and
delta = dt_proj(dt).

How the scan's own backward is reused without a second scan forward: the forward builds a small
autograd graph around one :func:`mambabench.kernels.selective_scan_fn` call whose inputs are detached
stand-ins, under :func:`torch.autograd.graph.saved_tensors_hooks` that replace the scan's saved u and
delta by a marker (recognised by storage, offset, shape, stride and dtype) and hand over everything
else to the hooks that were active outside (so ``save_on_cpu``, non-reentrant checkpointing and
memory accounting still see those tensors).  The backward recomputes u and delta, gives them to the
markers, and asks autograd for the gradients of that graph through gradient-edge handles
(``torch.autograd.graph.GradientEdge``), which do not keep u or delta alive.  This works with every
scan backend; with the Triton kernel the scan's saved states (per-chunk, fp32) are reused, so the
scan forward is not run again.

Limits: the S6 of the paper (real A; selective delta, B and C; gate); no double backward and no
``retain_graph`` through this Function.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.graph import get_gradient_edge, saved_tensors_hooks

from mambabench import kernels

__all__ = ["MambaInnerFn", "mamba_in_proj", "mamba_inner_fn", "mamba_inner_project"]

# how the inner pack hook stored a tensor: dropped (recomputed in the backward), handed to the outer
# hooks, or kept as is
DROPPED, OUTER, KEPT = "dropped", "outer", "kept"


def _compute_dtype(xz: Tensor) -> torch.dtype:
    """The dtype of the block's matmuls: the autocast dtype if autocast is on for xz's device."""
    device_type = xz.device.type
    if torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    return xz.dtype


def mamba_inner_project(
    x: Tensor,
    conv_weight: Tensor,
    conv_bias: Tensor | None,
    x_proj_weight: Tensor,
    dt_proj_weight: Tensor,
    d_state: int,
    dtype: torch.dtype,
    backend: str = "auto",
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """The cheap part of the block, from xz to the scan's inputs (recomputed in the backward).

    Args:
        x: (batch, d_inner, seqlen), the x half of xz (a view; no copy needed with unit stride along seqlen).
        conv_weight: (d_inner, d_conv); conv_bias: (d_inner,) or None.
        x_proj_weight: (dt_rank + 2 * d_state, d_inner); dt_proj_weight: (d_inner, dt_rank).
        d_state: N.
        dtype: dtype of the two projections (the autocast dtype under autocast).
        backend: backend of :func:`mambabench.kernels.causal_conv1d_fn`.

    Returns:
        u = silu(conv(x)) (batch, d_inner, seqlen); delta (batch, d_inner, seqlen) before bias and
        softplus; B, C (batch, d_state, seqlen), views of x_dbl with unit stride along seqlen;
        x_dbl (batch, dt_rank + 2 * d_state, seqlen).
    """
    dt_rank = dt_proj_weight.shape[1]
    u = kernels.causal_conv1d_fn(x, conv_weight, conv_bias, activation="silu", backend=backend)
    # (R + 2N, E) @ (batch, E, L): no transposed copy of u, and every output has unit stride along L
    x_dbl = torch.matmul(x_proj_weight.to(dtype), u.to(dtype))
    delta = torch.matmul(dt_proj_weight.to(dtype), x_dbl[:, :dt_rank])
    B = x_dbl[:, dt_rank : dt_rank + d_state]
    C = x_dbl[:, dt_rank + d_state : dt_rank + 2 * d_state]
    return u, delta, B, C, x_dbl


class _InProj(torch.autograd.Function):
    """xz = W @ hidden^T (+ bias) laid out (batch, 2 * d_inner, seqlen) with unit stride along seqlen.

    Plain autograd of ``W @ hidden2d.t()`` returns the gradient of hidden as the transpose of a
    (d_model, batch * seqlen) matrix, and the next op (the residual/norm backward) copies it to rows;
    this backward computes it as ``dxz^T @ W``, row-major (batch, seqlen, d_model), with no copy.
    When hidden is the output of the fused add+norm kernel (:mod:`mambabench.kernels.rms_norm`), it is
    not saved but remade in the backward from the residual and rstd that the norm keeps anyway.
    """

    @staticmethod
    def forward(ctx: Any, hidden: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        dtype = _compute_dtype(hidden)
        batch, seqlen, d_model = hidden.shape
        with torch.autocast(hidden.device.type, enabled=False):
            h2 = hidden.reshape(batch * seqlen, d_model).to(dtype)
            w = weight.to(dtype)
            xz = (
                torch.matmul(w, h2.t())
                if bias is None
                else torch.addmm(bias.to(dtype).unsqueeze(1), w, h2.t())
            )
        # hidden straight from the fused add+norm kernel: keep its recipe (the residual and rstd, which
        # the norm saves anyway) and remake hidden in the backward instead of saving it (1.5 KB/token bf16)
        recipe = getattr(hidden, "_rms_recipe", None) if hidden.dtype == dtype else None
        ctx.recompute = recipe is not None
        ctx.save_for_backward(weight, *(recipe if recipe is not None else (h2,)))
        ctx.dtype, ctx.shape, ctx.h_dtype = dtype, (batch, seqlen, d_model), hidden.dtype
        ctx.bias_dtype = bias.dtype if bias is not None else None
        return xz.view(-1, batch, seqlen).transpose(0, 1)

    @staticmethod
    def backward(ctx: Any, dxz: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        weight, *saved = ctx.saved_tensors
        batch, seqlen, d_model = ctx.shape
        if ctx.recompute:
            from mambabench.kernels.rms_norm import rms_norm_recompute

            h2 = rms_norm_recompute(tuple(saved), ctx.dtype).view(batch * seqlen, d_model)
        else:
            (h2,) = saved
        with torch.autocast(h2.device.type, enabled=False):
            # (2E, batch * seqlen): a view when dxz has xz's layout (MambaInnerFn's dxz has)
            g = dxz.transpose(0, 1).reshape(-1, batch * seqlen).to(ctx.dtype)
            dh = torch.mm(g.t(), weight.to(ctx.dtype)).view(batch, seqlen, d_model).to(ctx.h_dtype)
            dw = torch.mm(g, h2).to(weight.dtype)
            db = g.sum(1).to(ctx.bias_dtype) if ctx.bias_dtype is not None else None
        return dh, dw, db


def mamba_in_proj(hidden: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """in_proj of the fused block: hidden (batch, seqlen, d_model), weight (2 * d_inner, d_model),
    bias (2 * d_inner,) or None -> xz (batch, 2 * d_inner, seqlen), unit stride along seqlen, in the
    autocast dtype under autocast; the gradient of hidden comes back row-major (see :class:`_InProj`)."""
    return _InProj.apply(hidden, weight, bias)


class _Attach(torch.autograd.Function):
    """Return ``t`` (no copy) as the output of a graph node hanging off a tiny ``anchor`` leaf.

    A leaf created with ``t.detach().requires_grad_()`` would be held by its AccumulateGrad node
    (and so by the scan's graph) until the backward; this node holds nothing, and the gradient that
    reaches it is read through its :class:`GradientEdge` (the node itself is never run).
    """

    @staticmethod
    def forward(ctx: Any, anchor: Tensor, t: Tensor) -> Tensor:
        return t.view_as(t)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[None, None]:
        return None, None


def _key(t: Tensor) -> tuple:
    """Identity of a tensor's view of memory: (storage address, offset, shape, stride, dtype)."""
    return (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), t.stride(), t.dtype)


@dataclass
class _Recompute:
    """Pack/unpack hooks for the inner scan graph: drop u and delta, pass the rest to the outer hooks.

    keys: name -> :func:`_key` of the tensors to drop (filled in the forward).
    values: name -> the recomputed tensor (filled in the backward before the scan's backward runs).
    outer: the saved-tensor hooks that were active around the Function (or None).
    """

    keys: dict[str, tuple] = field(default_factory=dict)
    values: dict[str, Tensor] = field(default_factory=dict)
    outer: tuple[Any, Any] | None = None

    def pack(self, t: Tensor) -> Any:
        key = _key(t)
        for name, k in self.keys.items():
            if k == key:
                return (DROPPED, name)
        if self.outer is not None:
            return (OUTER, self.outer[0](t))
        return (KEPT, t)

    def unpack(self, packed: Any) -> Tensor:
        kind, obj = packed
        if kind == DROPPED:
            if obj not in self.values:
                raise RuntimeError(f"mamba_inner_fn: the scan's {obj} was asked for before it was recomputed")
            return self.values[obj]
        if kind == OUTER:
            return self.outer[1](obj)
        return obj


def _hooks_enabled() -> bool:
    """False inside ``torch.autograd.graph.disable_saved_tensors_hooks`` (then nothing is dropped)."""
    is_enabled = getattr(torch._C._autograd, "_saved_tensors_hooks_is_enabled", None)
    return bool(is_enabled()) if is_enabled is not None else True


def _outer_hooks() -> tuple[Any, Any] | None:
    """The innermost saved-tensor hooks active now (torch-internal API; None if unavailable)."""
    top = getattr(torch._C._autograd, "_top_saved_tensors_default_hooks", None)
    if top is None:
        return None
    try:
        return top(True)
    except RuntimeError:
        return None


def _out_proj(y: Tensor, weight: Tensor, bias: Tensor | None, dtype: torch.dtype) -> Tensor:
    """y (batch, d_inner, seqlen) -> (batch, seqlen, d_model)."""
    return F.linear(y.transpose(1, 2), weight.to(dtype), None if bias is None else bias.to(dtype))


class MambaInnerFn(torch.autograd.Function):
    """xz -> conv -> x_proj -> dt_proj -> selective scan (gated) -> out_proj, saving only xz, y and
    the scan's non-recomputable state; see the module docstring. Call it through :func:`mamba_inner_fn`."""

    @staticmethod
    def forward(
        ctx: Any,
        xz: Tensor,
        conv_weight: Tensor,
        conv_bias: Tensor | None,
        x_proj_weight: Tensor,
        dt_proj_weight: Tensor,
        out_proj_weight: Tensor,
        out_proj_bias: Tensor | None,
        A: Tensor,
        D: Tensor,
        delta_bias: Tensor,
        d_state: int,
        backend: str,
    ) -> Tensor:
        dtype = _compute_dtype(xz)
        device_type = xz.device.type
        d_inner = conv_weight.shape[0]
        rec = _Recompute(outer=_outer_hooks())
        with torch.autocast(device_type, enabled=False):
            u, delta, B, C, _ = mamba_inner_project(
                xz[:, :d_inner],
                conv_weight,
                conv_bias,
                x_proj_weight,
                dt_proj_weight,
                d_state,
                dtype,
                backend,
            )
            rec.keys = {"u": _key(u), "delta": _key(delta)}
            with torch.enable_grad():
                anchor = torch.zeros((), device=xz.device, requires_grad=True)
                big = [_Attach.apply(anchor, t) for t in (u, delta, B, C, xz[:, d_inner:])]
                small = [t.detach().requires_grad_() for t in (A, D, delta_bias)]
                u_in, delta_in, B_in, C_in, z_in = big
                A_in, D_in, bias_in = small
                hooks = saved_tensors_hooks(rec.pack, rec.unpack) if _hooks_enabled() else nullcontext()
                with hooks:
                    y = kernels.selective_scan_fn(
                        u_in,
                        delta_in,
                        A_in,
                        B_in,
                        C_in,
                        D_in,
                        z=z_in,
                        delta_bias=bias_in,
                        delta_softplus=True,
                        backend=backend,
                    )
                ctx.y_edge = get_gradient_edge(y)
                # the Triton scan can write dz straight into d(xz) (no copy in the backward)
                ctx.scan_node = y.grad_fn if getattr(y.grad_fn, "accepts_dz_out", False) else None
                ctx.in_edges = [get_gradient_edge(t) for t in big] + small
            y = y.detach()
            del u, delta, B, C, big, u_in, delta_in, B_in, C_in, z_in
            out = _out_proj(y, out_proj_weight, out_proj_bias, dtype)
        ctx.save_for_backward(xz, conv_weight, conv_bias, x_proj_weight, dt_proj_weight, out_proj_weight, y)
        ctx.rec, ctx.dtype, ctx.d_state, ctx.backend = rec, dtype, d_state, backend
        ctx.has_out_bias = out_proj_bias is not None
        return out

    @staticmethod
    def backward(ctx: Any, dout: Tensor) -> tuple[Tensor | None, ...]:
        xz, conv_weight, conv_bias, x_proj_weight, dt_proj_weight, out_proj_weight, y = ctx.saved_tensors
        dtype = ctx.dtype
        batch, _, seqlen = xz.shape
        d_inner = conv_weight.shape[0]
        dt_rank = dt_proj_weight.shape[1]
        with torch.autocast(xz.device.type, enabled=False):
            # out_proj: dout (batch, L, d_model); dy in (d_inner, batch, L) memory = unit stride along L
            dout2 = dout.reshape(batch * seqlen, -1).to(dtype)
            w_out = out_proj_weight.to(dtype)
            dy = (w_out.t() @ dout2.t()).view(d_inner, batch, seqlen).permute(1, 0, 2)
            # d W_out = sum_b dout_b^T y_b^T: one GEMM per sequence reading y in place (no transposed copy)
            d_out_w = _batch_sum(
                torch.bmm(dout2.view(batch, seqlen, -1).transpose(1, 2), y.transpose(1, 2)),
                out_proj_weight.dtype,
            )
            d_out_b = dout2.sum(0).to(out_proj_weight.dtype) if ctx.has_out_bias else None

            # recompute u, delta, B, C (no graph: their backward is written out below)
            x = xz[:, :d_inner]
            u, delta, _, _, x_dbl = mamba_inner_project(
                x, conv_weight, conv_bias, x_proj_weight, dt_proj_weight, ctx.d_state, dtype, ctx.backend
            )
            ctx.rec.values = {"u": u, "delta": delta}
            dxz = torch.empty_like(xz)
            dz_view = dxz[:, d_inner:]
            if ctx.scan_node is not None:
                ctx.scan_node.dz_out = dz_view
            du, ddelta, dB, dC, dz, dA, dD, dbias = torch.autograd.grad(
                [ctx.y_edge], ctx.in_edges, grad_outputs=[dy.to(y.dtype)]
            )
            ctx.rec.values = {}
            ctx.y_edge = ctx.in_edges = ctx.scan_node = None  # release the inner graph now
            del delta

            # delta = W_dt @ dt, x_dbl = W_x @ u (per sequence): batched GEMMs on the (.., L) layouts
            ddelta = ddelta.to(dtype)
            dt = x_dbl[:, :dt_rank]
            ddt_proj_w = _batch_sum(torch.bmm(ddelta, dt.transpose(1, 2)), dt_proj_weight.dtype)
            d_dt = torch.matmul(dt_proj_weight.to(dtype).t(), ddelta)  # (batch, R, L)
            del ddelta
            dx_dbl = torch.cat([d_dt, dB.to(dtype), dC.to(dtype)], dim=1)  # (batch, R + 2N, L)
            ud = u.to(dtype)
            dx_proj_w = _batch_sum(torch.bmm(dx_dbl, ud.transpose(1, 2)), x_proj_weight.dtype)
            del u, ud
            # du += W_x^T @ dx_dbl, in the GEMM's epilogue (no separate add)
            wxt = x_proj_weight.to(dtype).t().expand(batch, -1, -1)
            du = du.to(dtype) if du.dtype != dtype else du
            du = du.baddbmm_(wxt, dx_dbl)

            # conv: dx straight into the x half of dxz (the Triton kernel writes strided); dz is in the other
            dconv_w, dconv_b = _conv_backward(x, conv_weight, conv_bias, du, dxz[:, :d_inner], ctx.backend)
            if dz.data_ptr() != dz_view.data_ptr():  # not written in place by the scan
                dz_view.copy_(dz)
        return (dxz, dconv_w, dconv_b, dx_proj_w, ddt_proj_w, d_out_w, d_out_b, dA, dD, dbias, None, None)


def _batch_sum(t: Tensor, dtype: torch.dtype) -> Tensor:
    """Sum per-sequence weight gradients (batch, m, n) over the batch in fp32 -> (m, n) in ``dtype``."""
    return t.sum(0, dtype=torch.float32).to(dtype)


def _conv_backward(
    x: Tensor, weight: Tensor, bias: Tensor | None, du: Tensor, dx_out: Tensor, backend: str
) -> tuple[Tensor, Tensor | None]:
    """Backward of u = silu(conv(x)): writes dx into ``dx_out`` (batch, d_inner, seqlen) and returns
    (dweight (d_inner, d_conv), dbias (d_inner,) or None). The Triton kernel recomputes the
    pre-activation from x and writes dx in place; other backends go through autograd on the reference."""
    if kernels.resolve_backend(backend, x, "causal_conv1d") == "triton":
        from mambabench.kernels.causal_conv1d import causal_conv1d_bwd

        _, dw, db = causal_conv1d_bwd(x, weight, bias, du, True, dx=dx_out)
        return dw, db
    with torch.enable_grad():
        leaves = [t.detach().requires_grad_() for t in (x, weight, bias) if t is not None]
        u = kernels.causal_conv1d_fn(
            leaves[0], leaves[1], leaves[2] if bias is not None else None, activation="silu", backend=backend
        )
        grads = torch.autograd.grad(u, leaves, du)
    dx_out.copy_(grads[0])
    return grads[1], (grads[2] if bias is not None else None)


@torch.compiler.disable  # hooks and gradient edges inside: torch.compile runs it eagerly, as one opaque call
def mamba_inner_fn(
    xz: Tensor,
    conv_weight: Tensor,
    conv_bias: Tensor | None,
    x_proj_weight: Tensor,
    dt_proj_weight: Tensor,
    out_proj_weight: Tensor,
    out_proj_bias: Tensor | None,
    A: Tensor,
    D: Tensor,
    delta_bias: Tensor,
    d_state: int,
    backend: str = "auto",
) -> Tensor:
    """The Mamba block after in_proj, with the memory-lean backward of :class:`MambaInnerFn`.

    Args:
        xz: (batch, 2 * d_inner, seqlen) in_proj output; best with unit stride along seqlen (then
            neither the conv nor the scan copies x or z).
        conv_weight: (d_inner, d_conv); conv_bias: (d_inner,) or None.
        x_proj_weight: (dt_rank + 2 * d_state, d_inner); dt_proj_weight: (d_inner, dt_rank).
        out_proj_weight: (d_model, d_inner); out_proj_bias: (d_model,) or None.
        A: (d_inner, d_state) real fp32 (= -exp(A_log)); D, delta_bias: (d_inner,) fp32.
        d_state: N.
        backend: scan/conv backend of :mod:`mambabench.kernels` ("auto", "triton", "reference", ...).

    Returns:
        (batch, seqlen, d_model), in the autocast dtype under autocast, else xz's dtype.
    """
    if A.is_complex():
        raise ValueError("mamba_inner_fn supports real A only; use the unfused Mamba path for complex A")
    tensors = (
        xz,
        conv_weight,
        conv_bias,
        x_proj_weight,
        dt_proj_weight,
        out_proj_weight,
        out_proj_bias,
        A,
        D,
        delta_bias,
    )
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors):
        return MambaInnerFn.apply(*tensors, d_state, backend)
    dtype = _compute_dtype(xz)
    d_inner = conv_weight.shape[0]
    with torch.autocast(xz.device.type, enabled=False):
        u, delta, B, C, _ = mamba_inner_project(
            xz[:, :d_inner], conv_weight, conv_bias, x_proj_weight, dt_proj_weight, d_state, dtype, backend
        )
        y = kernels.selective_scan_fn(
            u,
            delta,
            A,
            B,
            C,
            D,
            z=xz[:, d_inner:],
            delta_bias=delta_bias,
            delta_softplus=True,
            backend=backend,
        )
        return _out_proj(y, out_proj_weight, out_proj_bias, dtype)
