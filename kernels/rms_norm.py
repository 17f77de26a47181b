"""Triton residual add + RMSNorm (forward and backward), the pre-norm step of every residual block.

    residual_out = residual + hidden            (fp32 when residual_in_fp32; hidden alone if no residual)
    out          = residual_out * rstd * weight,  rstd = 1 / sqrt(mean(residual_out ** 2) + eps)

One kernel reads hidden and residual once and writes residual_out and out (out directly in the dtype
of the next matmul, e.g. bf16 under autocast); the backward reads residual_out, the gradient of out
and the gradient that reaches residual_out from later layers, and writes the gradients of residual
(fp32) and of hidden (its dtype) in one pass, with per-program partial sums of dweight. PyTorch would
run about 6 kernels forward and 12 backward on (batch * seqlen, d_model) fp32 tensors for the same.
Saved for the backward: residual_out and rstd (rows,) only.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

import torch
import triton
import triton.language as tl
from torch import Tensor

from mambabench.kernels import _interpret_compat
from mambabench.kernels._host import cdiv, next_power_of_2

_interpret_compat.patch()

__all__ = ["add_rms_norm_triton", "rms_norm_recompute", "AddRMSNormTriton"]


@triton.jit
def _add_rms_fwd_kernel(
    h_ptr,
    r_ptr,
    w_ptr,
    res_ptr,
    out_ptr,
    rstd_ptr,
    n_rows,
    n_cols,
    eps,
    HAS_RES: tl.constexpr,
    BLOCK: tl.constexpr,
    ROWS: tl.constexpr,
):
    """Grid (cdiv(n_rows, ROWS),); rows are contiguous, n_cols <= BLOCK."""
    cols = tl.arange(0, BLOCK)
    mask_c = cols < n_cols
    w = tl.load(w_ptr + cols, mask=mask_c, other=0.0).to(tl.float32)
    for i in range(ROWS):
        row = tl.program_id(0) * ROWS + i
        if row < n_rows:
            off = row.to(tl.int64) * n_cols + cols
            x = tl.load(h_ptr + off, mask=mask_c, other=0.0).to(tl.float32)
            if HAS_RES:
                x += tl.load(r_ptr + off, mask=mask_c, other=0.0).to(tl.float32)
            x = x.to(res_ptr.dtype.element_ty).to(tl.float32)  # what the residual stream keeps
            tl.store(res_ptr + off, x.to(res_ptr.dtype.element_ty), mask=mask_c)
            rstd = 1.0 / tl.sqrt(tl.sum(x * x, axis=0) / n_cols + eps)
            tl.store(rstd_ptr + row, rstd)
            tl.store(out_ptr + off, (x * rstd * w).to(out_ptr.dtype.element_ty), mask=mask_c)


@triton.jit
def _rms_out_kernel(
    res_ptr, rstd_ptr, w_ptr, out_ptr, n_rows, n_cols, BLOCK: tl.constexpr, ROWS: tl.constexpr
):
    """out = res * rstd * w (the forward's normalised output, bit for bit). Grid (cdiv(n_rows, ROWS),)."""
    cols = tl.arange(0, BLOCK)
    mask_c = cols < n_cols
    w = tl.load(w_ptr + cols, mask=mask_c, other=0.0).to(tl.float32)
    for i in range(ROWS):
        row = tl.program_id(0) * ROWS + i
        if row < n_rows:
            off = row.to(tl.int64) * n_cols + cols
            x = tl.load(res_ptr + off, mask=mask_c, other=0.0).to(tl.float32)
            rstd = tl.load(rstd_ptr + row)
            tl.store(out_ptr + off, (x * rstd * w).to(out_ptr.dtype.element_ty), mask=mask_c)


@triton.jit
def _add_rms_bwd_kernel(
    x_ptr,
    w_ptr,
    rstd_ptr,
    dy_ptr,
    dres_ptr,
    dx_ptr,
    dh_ptr,
    dw_ptr,
    n_rows,
    n_cols,
    HAS_DRES: tl.constexpr,
    HAS_DH: tl.constexpr,
    BLOCK: tl.constexpr,
    ROWS: tl.constexpr,
):
    """Grid (cdiv(n_rows, ROWS),). x = residual_out; dres = gradient reaching residual_out from later
    layers; dx = gradient of residual_out in total (to the residual input), dh = the same in hidden's
    dtype; dw (n_programs, n_cols) fp32 partial sums of dweight."""
    cols = tl.arange(0, BLOCK)
    mask_c = cols < n_cols
    w = tl.load(w_ptr + cols, mask=mask_c, other=0.0).to(tl.float32)
    dw = tl.zeros([BLOCK], dtype=tl.float32)
    for i in range(ROWS):
        row = tl.program_id(0) * ROWS + i
        if row < n_rows:
            off = row.to(tl.int64) * n_cols + cols
            x = tl.load(x_ptr + off, mask=mask_c, other=0.0).to(tl.float32)
            dy = tl.load(dy_ptr + off, mask=mask_c, other=0.0).to(tl.float32)
            rstd = tl.load(rstd_ptr + row)
            xhat = x * rstd
            gw = dy * w
            dw += dy * xhat
            dx = rstd * (gw - xhat * (tl.sum(gw * xhat, axis=0) / n_cols))
            if HAS_DRES:
                dx += tl.load(dres_ptr + off, mask=mask_c, other=0.0).to(tl.float32)
            tl.store(dx_ptr + off, dx.to(dx_ptr.dtype.element_ty), mask=mask_c)
            if HAS_DH:
                tl.store(dh_ptr + off, dx.to(dh_ptr.dtype.element_ty), mask=mask_c)
    tl.store(dw_ptr + tl.program_id(0).to(tl.int64) * n_cols + cols, dw, mask=mask_c)


# the backward runs about this many programs (rows per program = n_rows / this), each keeping one
# fp32 partial row of dweight: 32768 rows (16 x 2048 tokens) -> 8 rows per program, 12.6 MB of partials
BWD_PROGRAMS = 4096


def _cfg(n_cols: int) -> tuple[int, int]:
    """(BLOCK, num_warps) for one row per loop step."""
    block = next_power_of_2(n_cols)
    return block, max(1, min(8, block // 256))


def _device(x: Tensor):  # noqa: ANN202
    return torch.cuda.device(x.device) if x.is_cuda else nullcontext()


class AddRMSNormTriton(torch.autograd.Function):
    """(hidden, residual or None, weight) -> (out, residual_out); see the module docstring."""

    @staticmethod
    def forward(
        ctx: Any,
        hidden: Tensor,
        residual: Tensor | None,
        weight: Tensor,
        eps: float,
        res_dtype: torch.dtype,
        out_dtype: torch.dtype,
    ) -> tuple[Tensor, Tensor]:
        shape = hidden.shape
        n_cols = shape[-1]
        h = hidden.reshape(-1, n_cols).contiguous()
        r = residual.reshape(-1, n_cols).contiguous() if residual is not None else None
        n_rows = h.shape[0]
        res = torch.empty(shape, device=h.device, dtype=res_dtype)
        out = torch.empty(shape, device=h.device, dtype=out_dtype)
        rstd = torch.empty((n_rows,), device=h.device, dtype=torch.float32)
        block, warps = _cfg(n_cols)
        rows = 4
        with _device(h):
            _add_rms_fwd_kernel[(cdiv(n_rows, rows),)](
                h,
                r if r is not None else h,
                weight,
                res,
                out,
                rstd,
                n_rows,
                n_cols,
                eps,
                HAS_RES=r is not None,
                BLOCK=block,
                ROWS=rows,
                num_warps=warps,
            )
        ctx.save_for_backward(res, weight, rstd)
        ctx.set_materialize_grads(False)  # an unused residual_out (the final norm) sends no zeros tensor
        ctx.h_dtype = hidden.dtype
        ctx.shape = shape
        ctx.has_res = residual is not None
        ctx.res_in_dtype = residual.dtype if residual is not None else None
        # how to remake ``out`` from what this Function saves anyway (see rms_norm_recompute): a consumer
        # that would save ``out`` for its own backward (the fused block's in_proj) can save this instead
        out._rms_recipe = (res, rstd, weight)
        return out, res

    @staticmethod
    def backward(ctx: Any, dout: Tensor, dres: Tensor | None) -> tuple[Tensor | None, ...]:
        res, weight, rstd = ctx.saved_tensors
        if dout is None:
            dout = torch.zeros(res.shape, device=res.device, dtype=torch.float32)
        shape = ctx.shape
        n_cols = shape[-1]
        n_rows = res.numel() // n_cols
        dy = dout.reshape(-1, n_cols).contiguous()
        dr = dres.reshape(-1, n_cols).contiguous() if dres is not None else None
        # gradient to the residual input (its dtype) and a separate one to hidden (its dtype)
        dx_dtype = ctx.res_in_dtype if ctx.has_res else ctx.h_dtype
        dx = torch.empty((n_rows, n_cols), device=res.device, dtype=dx_dtype)
        need_dh = ctx.has_res
        dh = torch.empty((n_rows, n_cols), device=res.device, dtype=ctx.h_dtype) if need_dh else dx
        block, warps = _cfg(n_cols)
        rows = max(1, min(128, cdiv(n_rows, BWD_PROGRAMS)))
        n_prog = cdiv(n_rows, rows)
        dw = torch.empty((n_prog, n_cols), device=res.device, dtype=torch.float32)
        with _device(res):
            _add_rms_bwd_kernel[(n_prog,)](
                res,
                weight,
                rstd,
                dy,
                dr if dr is not None else dy,
                dx,
                dh,
                dw,
                n_rows,
                n_cols,
                HAS_DRES=dr is not None,
                HAS_DH=need_dh,
                BLOCK=block,
                ROWS=rows,
                num_warps=warps,
            )
        dweight = dw.sum(0).to(weight.dtype)
        if not ctx.has_res:
            return dx.view(shape), None, dweight, None, None, None
        return dh.view(shape), dx.view(shape), dweight, None, None, None


def rms_norm_recompute(recipe: tuple[Tensor, Tensor, Tensor], out_dtype: torch.dtype) -> Tensor:
    """Remake the normalised output of :class:`AddRMSNormTriton` from its ``_rms_recipe`` (residual_out
    (..., d_model), rstd (rows,), weight (d_model,)): the same values, in ``out_dtype``."""
    res, rstd, weight = recipe
    n_cols = res.shape[-1]
    n_rows = res.numel() // n_cols
    out = torch.empty(res.shape, device=res.device, dtype=out_dtype)
    block, warps = _cfg(n_cols)
    rows = 4
    with _device(res):
        _rms_out_kernel[(cdiv(n_rows, rows),)](
            res, rstd, weight, out, n_rows, n_cols, BLOCK=block, ROWS=rows, num_warps=warps
        )
    return out


@torch.compiler.disable  # a Triton kernel: torch.compile runs it as one opaque call
def add_rms_norm_triton(
    hidden: Tensor,
    residual: Tensor | None,
    weight: Tensor,
    eps: float,
    residual_in_fp32: bool = True,
    out_dtype: torch.dtype | None = None,
) -> tuple[Tensor, Tensor]:
    """Fused residual add + RMSNorm.

    Args:
        hidden: (..., d_model) the previous layer's output (or the embedding).
        residual: (..., d_model) the residual stream, or None (first layer: the residual is hidden).
        weight: (d_model,); eps: the norm's epsilon.
        residual_in_fp32: keep the new residual in fp32 (else in residual's / hidden's dtype).
        out_dtype: dtype of the normalised output (default: the new residual's dtype).

    Returns:
        (out (..., d_model) in out_dtype, new residual (..., d_model)).
    """
    if hidden.shape[-1] != weight.shape[0] or (residual is not None and residual.shape != hidden.shape):
        raise ValueError(
            f"add_rms_norm: hidden {tuple(hidden.shape)}, residual "
            f"{None if residual is None else tuple(residual.shape)}, weight {tuple(weight.shape)}"
        )
    res_dtype = (
        torch.float32 if residual_in_fp32 else (residual.dtype if residual is not None else hidden.dtype)
    )
    return AddRMSNormTriton.apply(hidden, residual, weight, eps, res_dtype, out_dtype or res_dtype)
