"""Triton cross-entropy over a large vocabulary that never materialises an fp32 (tokens, vocab) tensor.

    loss_i         = logsumexp(logits_i) - logits_i[target_i]        (0 where target_i == ignore_index)
    dlogits_i[v]   = (softmax(logits_i)[v] - [v == target_i]) * dloss_i    (0 for ignored rows)

``F.cross_entropy(logits.float(), ...)`` on the Mamba-130M step (32768 tokens x 50277, bf16 logits)
keeps an fp32 copy of the logits, the fp32 log-softmax for the backward and writes an fp32 gradient:
~13 GB of the step's peak. Here the forward reads the logits once in their own dtype (fp32, bf16 or
fp16) with an online max / log-sum-exp in fp32 registers, and writes two fp32 numbers per row; the
backward re-reads the logits once and writes the gradient directly in the logits' dtype. Saved for the
backward: the logits themselves (no copy), the targets and the row statistics (tokens,) x 2.

The logits may have any row stride as long as columns are contiguous, so the column view
``padded_logits[:, :vocab]`` of the padded head GEMM is read in place (kernels/head.py).
Row offsets are 64-bit (tokens * row_stride exceeds 2^31 at the 130M step).

Targets outside [0, vocab) that are not ``ignore_index`` raise a ValueError for CPU tensors; for CUDA
tensors the check would cost a device synchronisation in the middle of every step, so the kernels
never read out of bounds and give that row a NaN loss (and NaN gradient) instead, which the training
loop's non-finite loss guard reports.
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

__all__ = ["CrossEntropyTriton", "cross_entropy_triton", "mark_zero_padded", "zero_padded_base"]

REDUCTIONS = ("mean", "sum", "none")

# columns per loop step of the forward (one program per row) and per program of the backward (a 2-D
# grid over rows x column blocks); capped at the vocabulary's next power of two. The tests lower them
# to exercise several blocks and a ragged tail on small vocabularies.
FWD_BLOCK = 8192
BWD_BLOCK = 4096


@triton.jit
def _ce_fwd_kernel(
    logits_ptr,
    targets_ptr,
    loss_ptr,
    max_ptr,
    logsum_ptr,
    n_cols,
    stride_row,
    ignore_index,
    BLOCK: tl.constexpr,
):
    """Grid (rows,). logits (rows, n_cols) with row stride ``stride_row`` and unit column stride;
    targets (rows,) int64. Writes loss (rows,) fp32 (0 for ignored rows, NaN for an out-of-range
    target), the row max and log(sum(exp(logits - max))) (rows,) fp32, for every row."""
    row = tl.program_id(0).to(tl.int64)
    base = logits_ptr + row * stride_row
    cols = tl.arange(0, BLOCK)
    # online log-sum-exp: running max m and sum s of exp(x - m), rescaled when m grows
    m = tl.full([], float("-inf"), tl.float32)
    s = tl.zeros([], dtype=tl.float32)
    for start in range(0, n_cols, BLOCK):
        c = start + cols
        x = tl.load(base + c, mask=c < n_cols, other=float("-inf")).to(tl.float32)
        m_new = tl.maximum(m, tl.max(x, axis=0))
        s = s * tl.exp(m - m_new) + tl.sum(tl.exp(x - m_new), axis=0)
        m = m_new
    logsum = tl.log(s)
    tl.store(max_ptr + row, m)
    tl.store(logsum_ptr + row, logsum)

    t = tl.load(targets_ptr + row)
    in_range = (t >= 0) & (t < n_cols)
    x_t = tl.load(base + tl.where(in_range, t, 0)).to(tl.float32)
    loss = (m - x_t) + logsum  # = lse - x_t, with the large terms cancelling first
    loss = tl.where(in_range, loss, float("nan"))
    loss = tl.where(t == ignore_index, 0.0, loss)
    tl.store(loss_ptr + row, loss)


@triton.jit
def _ce_bwd_kernel(
    logits_ptr,
    targets_ptr,
    max_ptr,
    logsum_ptr,
    dloss_ptr,
    dlogits_ptr,
    n_cols,
    n_out_cols,
    stride_row,
    stride_dloss,
    ignore_index,
    BLOCK: tl.constexpr,
):
    """Grid (rows, cdiv(n_out_cols, BLOCK)). dlogits (rows, n_out_cols) contiguous, in its own dtype:
    the gradient in the first n_cols columns, zeros in the rest (the head's pad columns);
    dloss (rows,) with stride ``stride_dloss`` (0 when it is a broadcast scalar, as after a sum)."""
    row = tl.program_id(0).to(tl.int64)
    c = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = c < n_cols
    t = tl.load(targets_ptr + row)
    ignored = t == ignore_index
    in_range = (t >= 0) & (t < n_cols)
    g = tl.load(dloss_ptr + row * stride_dloss).to(tl.float32)
    m = tl.load(max_ptr + row)
    logsum = tl.load(logsum_ptr + row)
    # ignored rows only write zeros: their logits are not read
    x = tl.load(logits_ptr + row * stride_row + c, mask=mask & (t != ignore_index), other=0.0).to(tl.float32)
    # the exponent is <= 0 for every real row; the clamp only keeps ignored rows' zeros from overflowing
    p = tl.exp(tl.minimum((x - m) - logsum, 0.0))
    d = (p - tl.where(c == t, 1.0, 0.0)) * g
    d = tl.where(in_range, d, float("nan"))
    d = tl.where(ignored | (c >= n_cols), 0.0, d)
    tl.store(dlogits_ptr + row * n_out_cols + c, d.to(dlogits_ptr.dtype.element_ty), mask=c < n_out_cols)


def _block(n_cols: int, cap: int) -> int:
    return max(16, min(cap, next_power_of_2(n_cols)))


def _warps(block: int, max_warps: int) -> int:
    """Warps for ``block`` columns: about 16 elements per thread (two 16-byte bf16 loads)."""
    return max(1, min(max_warps, block // 512))


# a column view at most this many columns narrower than its rows (the head's padded vocabulary: a
# multiple of 8 or 64) gets its gradient in the padded layout, zeros in the pad columns
MAX_PAD_COLS = 256
ZERO_PAD_ATTR = "_mambabench_zero_padded_cols"


def _padded_width(logits: Tensor) -> int:
    """Width of the gradient buffer: the logits' row stride when they are a slightly narrower column
    view of a padded buffer (``padded[:, :vocab]``), else their own width."""
    n_cols, stride = logits.shape[1], logits.stride(0)
    return stride if logits.shape[0] > 1 and n_cols < stride <= n_cols + MAX_PAD_COLS else n_cols


def mark_zero_padded(full: Tensor, n_cols: int) -> None:
    """Record on a (rows, padded) gradient buffer that its columns past ``n_cols`` hold zeros, so that a
    consumer of the ``full[:, :n_cols]`` view (:class:`mambabench.kernels.head.SlicedHead`) may use the
    buffer itself instead of padding the gradient again."""
    setattr(full, ZERO_PAD_ATTR, n_cols)


def zero_padded_base(grad: Tensor, padded_width: int) -> Tensor | None:
    """The marked (rows, padded_width) buffer that the 2-D column view ``grad`` starts, or None."""
    base = grad._base
    if (
        base is None
        or getattr(base, ZERO_PAD_ATTR, None) != grad.shape[-1]
        or base.dim() != 2
        or base.shape != (grad.shape[0], padded_width)
        or grad.stride() != (padded_width, 1)
        or grad.data_ptr() != base.data_ptr()
    ):
        return None
    return base


def _device(x: Tensor):  # noqa: ANN202
    return torch.cuda.device(x.device) if x.is_cuda else nullcontext()


class CrossEntropyTriton(torch.autograd.Function):
    """(logits (rows, vocab), targets (rows,) int64, ignore_index) -> per-row loss (rows,) fp32.

    Saves the logits as given (a view, no copy), the targets and two fp32 numbers per row (the max and
    the log of the shifted sum: ``exp((x - max) - logsum)`` stays accurate for logits of magnitude 1e4,
    where an fp32 lse = max + logsum would round by ~5e-4)."""

    @staticmethod
    def forward(ctx: Any, logits: Tensor, targets: Tensor, ignore_index: int) -> Tensor:
        n_rows, n_cols = logits.shape
        loss = torch.empty((n_rows,), device=logits.device, dtype=torch.float32)
        row_max = torch.empty_like(loss)
        logsum = torch.empty_like(loss)
        if n_rows > 0:
            block = _block(n_cols, FWD_BLOCK)
            with _device(logits):
                _ce_fwd_kernel[(n_rows,)](
                    logits,
                    targets,
                    loss,
                    row_max,
                    logsum,
                    n_cols,
                    logits.stride(0),
                    ignore_index,
                    BLOCK=block,
                    num_warps=_warps(block, 16),
                )
        ctx.save_for_backward(logits, targets, row_max, logsum)
        ctx.ignore_index = ignore_index
        return loss

    @staticmethod
    def backward(ctx: Any, dloss: Tensor) -> tuple[Tensor | None, None, None]:
        logits, targets, row_max, logsum = ctx.saved_tensors
        n_rows, n_cols = logits.shape
        n_out = _padded_width(logits)
        full = torch.empty((n_rows, n_out), device=logits.device, dtype=logits.dtype)
        if n_rows > 0:
            block = _block(n_cols, BWD_BLOCK)
            with _device(logits):
                _ce_bwd_kernel[(n_rows, cdiv(n_out, block))](
                    logits,
                    targets,
                    row_max,
                    logsum,
                    dloss,
                    full,
                    n_cols,
                    n_out,
                    logits.stride(0),
                    dloss.stride(0),
                    ctx.ignore_index,
                    BLOCK=block,
                    num_warps=_warps(block, 8),
                )
        if n_out == n_cols:
            return full, None, None
        mark_zero_padded(full, n_cols)
        return full[:, :n_cols], None, None


def cross_entropy_triton(
    logits: Tensor,
    targets: Tensor,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Tensor:
    """Cross-entropy with ``F.cross_entropy``'s semantics for class-index targets, without fp32 copies.

    Args:
        logits: (tokens, vocab) fp32 / bf16 / fp16, any row stride, unit column stride (else it is
            copied); flatten leading dimensions first (``logits.flatten(0, 1)`` keeps a view).
        targets: (tokens,) integer class indices in [0, vocab), or ``ignore_index`` (no loss).
        ignore_index: target value that carries no loss and no gradient.
        reduction: "mean" (over the non-ignored targets; NaN if all are ignored, as in PyTorch),
            "sum", or "none" (per-token losses (tokens,), 0 where ignored).

    Returns:
        fp32 loss: a scalar, or (tokens,) for reduction="none". The gradient reaching ``logits`` has
        the logits' dtype; for a column view of a slightly wider buffer (the padded head's logits) it
        is the same view of a gradient buffer of that width with zeros in the extra columns (marked
        with :func:`mark_zero_padded`), else contiguous.
    """
    if reduction not in REDUCTIONS:
        raise ValueError(
            f"cross_entropy: unknown reduction {reduction!r}; choose one of {', '.join(REDUCTIONS)}"
        )
    if logits.dim() != 2:
        raise ValueError(
            f"cross_entropy: logits must be 2-D (tokens, vocab), got {tuple(logits.shape)}; "
            "flatten the leading dimensions first, e.g. logits.flatten(0, 1)"
        )
    if logits.dtype not in (torch.float32, torch.bfloat16, torch.float16):
        raise ValueError(f"cross_entropy: logits dtype {logits.dtype} not supported; use fp32, bf16 or fp16")
    if targets.shape != logits.shape[:1]:
        raise ValueError(
            f"cross_entropy: targets {tuple(targets.shape)} must be (tokens,) = "
            f"({logits.shape[0]},) for logits {tuple(logits.shape)}; flatten them the same way"
        )
    if targets.dtype.is_floating_point or targets.dtype.is_complex or targets.dtype == torch.bool:
        raise ValueError(
            f"cross_entropy: targets must be integer class indices, got {targets.dtype} "
            "(probability targets are not supported)"
        )
    if targets.device != logits.device:
        raise ValueError(f"cross_entropy: targets on {targets.device}, logits on {logits.device}")
    n_cols = logits.shape[1]
    if n_cols == 0:
        raise ValueError("cross_entropy: logits have no columns (vocab size 0)")
    if logits.stride(1) != 1:
        logits = logits.contiguous()
    targets = targets.to(torch.int64).contiguous()
    kept = targets != ignore_index
    if not targets.is_cuda:  # a GPU check would synchronise every step; there a bad target gives NaN
        bad = kept & ((targets < 0) | (targets >= n_cols))
        if bool(bad.any()):
            raise ValueError(
                f"cross_entropy: target {int(targets[bad][0])} out of range for vocab size "
                f"{n_cols} (targets must be in [0, {n_cols}) or ignore_index={ignore_index})"
            )
    loss = CrossEntropyTriton.apply(logits, targets, ignore_index)
    if reduction == "none":
        return loss
    total = loss.sum()
    if reduction == "sum":
        return total
    return total / kept.sum()
