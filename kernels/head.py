"""LM head over a padded vocabulary whose logits are cut back to the true vocabulary, with a lean backward.

The head GEMM runs over the padded vocabulary (a multiple of 8 wide, so cuBLAS keeps its aligned fast
kernels) and the logits are a view of its first ``vocab_size`` columns. Plain autograd turns the
gradient of that view back into a padded one with ``slice_backward``: a memset of the whole padded
(tokens, padded_vocab) tensor and a strided copy. :class:`SlicedHead` writes the padded gradient in one
pass instead (``_pad_rows_kernel``: every element once, zeros in the pad columns) and runs the two
backward GEMMs on it. When the gradient already is that padded buffer (the Triton cross-entropy writes
its gradient in the logits' padded layout, zeros in the pad columns, and marks it), it is used as is:
no copy, and one (tokens, padded_vocab) tensor less at the step's memory peak.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

import torch
import triton
import triton.language as tl
from torch import Tensor

from mambabench.kernels import _interpret_compat
from mambabench.kernels._host import cdiv
from mambabench.kernels.cross_entropy import zero_padded_base

_interpret_compat.patch()

__all__ = ["SlicedHead", "pad_rows", "sliced_head_triton"]


@triton.jit
def _pad_rows_kernel(src_ptr, dst_ptr, n_cols, n_pad_cols, s_src, s_dst, BLOCK: tl.constexpr):
    """dst[row, :n_cols] = src[row, :n_cols]; dst[row, n_cols:n_pad_cols] = 0. Grid (rows, cdiv(n_pad_cols, BLOCK))."""
    row = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    v = tl.load(src_ptr + row * s_src + cols, mask=cols < n_cols, other=0.0)
    tl.store(dst_ptr + row * s_dst + cols, v.to(dst_ptr.dtype.element_ty), mask=cols < n_pad_cols)


def pad_rows(src: Tensor, n_pad_cols: int, dtype: torch.dtype | None = None) -> Tensor:
    """(rows, n_cols) with unit column stride -> (rows, n_pad_cols) contiguous, zeros past n_cols."""
    rows, n_cols = src.shape
    if src.stride(-1) != 1:
        src = src.contiguous()
    dst = torch.empty((rows, n_pad_cols), device=src.device, dtype=dtype or src.dtype)
    block = 2048
    with torch.cuda.device(src.device) if src.is_cuda else nullcontext():
        _pad_rows_kernel[(rows, cdiv(n_pad_cols, block))](
            src,
            dst,
            n_cols,
            n_pad_cols,
            src.stride(0),
            dst.stride(0),
            BLOCK=block,
            num_warps=4,
        )
    return dst


class SlicedHead(torch.autograd.Function):
    """hidden (..., d_model), weight (padded_vocab, d_model) -> logits (..., vocab_size), a view of the
    padded logits; the matmul in the autocast dtype under autocast (as ``nn.Linear`` would)."""

    @staticmethod
    def forward(ctx: Any, hidden: Tensor, weight: Tensor, vocab_size: int) -> Tensor:
        device_type = hidden.device.type
        dtype = (
            torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type) else hidden.dtype
        )
        with torch.autocast(device_type, enabled=False):
            h2 = hidden.reshape(-1, hidden.shape[-1]).to(dtype)
            logits = torch.mm(h2, weight.to(dtype).t())  # (tokens, padded_vocab)
        ctx.save_for_backward(h2, weight)
        ctx.dtype, ctx.h_shape, ctx.h_dtype = dtype, hidden.shape, hidden.dtype
        return logits.view(*hidden.shape[:-1], -1)[..., :vocab_size]

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, Tensor, None]:
        h2, weight = ctx.saved_tensors
        with torch.autocast(h2.device.type, enabled=False):
            g2 = grad.reshape(-1, grad.shape[-1])
            g = zero_padded_base(g2, weight.shape[0])  # the Triton cross-entropy's padded gradient, as is
            if g is None or g.dtype != ctx.dtype:
                g = pad_rows(g2, weight.shape[0], ctx.dtype)  # (tokens, padded_vocab)
            dh = torch.mm(g, weight.to(ctx.dtype)).view(ctx.h_shape).to(ctx.h_dtype)
            dw = torch.mm(g.t(), h2).to(weight.dtype)
        return dh, dw, None


@torch.compiler.disable  # a Triton kernel: torch.compile runs it as one opaque call
def sliced_head_triton(hidden: Tensor, weight: Tensor, vocab_size: int) -> Tensor:
    """Logits (..., vocab_size) of ``hidden @ weight.T`` over the padded rows of weight; see :class:`SlicedHead`."""
    return SlicedHead.apply(hidden, weight, vocab_size)
