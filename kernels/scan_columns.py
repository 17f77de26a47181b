"""Split a tile into its time columns and join columns back, without moving data between threads.

The sequential scan kernels load ``[..., TT]`` tiles whose last axis (TT consecutive time steps, one 16-byte
vector) lives inside one thread.  ``tl.reshape`` + ``tl.split`` peel that axis into TT separate
tensors (pure register renaming), so the recurrence can run step by step inside the thread; the
``_join`` helpers put TT per-step results back into one ``[..., TT]`` tile for a vector store.
"""

from __future__ import annotations

import triton
import triton.language as tl

__all__ = ["split_cols", "join_cols", "stack_cols"]


@triton.jit
def split4(x):
    """[..., 4] -> 4 tensors [...]: columns 0, 1, 2, 3."""
    e, o = tl.split(tl.reshape(x, x.shape[:-1] + [2, 2]))
    c0, c2 = tl.split(e)
    c1, c3 = tl.split(o)
    return c0, c1, c2, c3


@triton.jit
def join4(c0, c1, c2, c3):
    """Inverse of :func:`split4`: 4 tensors [...] -> [..., 4]."""
    e = tl.join(c0, c2)
    o = tl.join(c1, c3)
    x = tl.join(e, o)
    return tl.reshape(x, x.shape[:-2] + [4])


@triton.jit
def split8(x):
    """[..., 8] -> 8 tensors [...]: columns 0..7."""
    e, o = tl.split(tl.reshape(x, x.shape[:-1] + [4, 2]))
    e0, e1 = tl.split(tl.reshape(e, e.shape[:-1] + [2, 2]))
    o0, o1 = tl.split(tl.reshape(o, o.shape[:-1] + [2, 2]))
    c0, c4 = tl.split(e0)
    c2, c6 = tl.split(e1)
    c1, c5 = tl.split(o0)
    c3, c7 = tl.split(o1)
    return c0, c1, c2, c3, c4, c5, c6, c7


@triton.jit
def join8(c0, c1, c2, c3, c4, c5, c6, c7):
    """Inverse of :func:`split8`: 8 tensors [...] -> [..., 8]."""
    e = tl.join(tl.join(c0, c4), tl.join(c2, c6))
    e = tl.reshape(e, e.shape[:-2] + [4])
    o = tl.join(tl.join(c1, c5), tl.join(c3, c7))
    o = tl.reshape(o, o.shape[:-2] + [4])
    x = tl.join(e, o)
    return tl.reshape(x, x.shape[:-2] + [8])


@triton.jit
def split_cols(x, TT: tl.constexpr):
    """Columns of a [..., TT] tile as a tuple (TT in {4, 8})."""
    if TT == 8:
        return split8(x)
    else:
        return split4(x)


@triton.jit
def join_cols(cols, TT: tl.constexpr):
    """Inverse of :func:`split_cols`."""
    if TT == 8:
        return join8(cols[0], cols[1], cols[2], cols[3], cols[4], cols[5], cols[6], cols[7])
    else:
        return join4(cols[0], cols[1], cols[2], cols[3])


@triton.jit
def stack_cols(cols, K: tl.constexpr):
    """K tensors [...] (a tuple, K in {1, 2, 4, 8}) -> one [..., K] tensor with cols[i] at index i."""
    if K == 8:
        return join8(cols[0], cols[1], cols[2], cols[3], cols[4], cols[5], cols[6], cols[7])
    elif K == 4:
        return join4(cols[0], cols[1], cols[2], cols[3])
    elif K == 2:
        return tl.join(cols[0], cols[1])
    else:
        return tl.reshape(cols[0], cols[0].shape + [1])
