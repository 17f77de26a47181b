"""tl.associative_scan(reverse=True) with a tuple combine, as the tiled backward kernel uses it (Triton 3.6).

Triton issues #4362 / #8412 reported wrong reverse scans in earlier versions; this pins the behaviour
the backward relies on: h_t = a_t * h_{t+1} + b_t along the last axis of a 2-D tile.
"""

from __future__ import annotations

import pytest
import torch
import triton
import triton.language as tl

from mambabench.kernels import _interpret_compat
from mambabench.kernels.scan_tiled import scan_combine

_interpret_compat.patch()


@triton.jit
def _reverse_scan_kernel(
    a_ptr, b_ptr, out_ptr, ROWS: tl.constexpr, COLS: tl.constexpr, REVERSE: tl.constexpr
):
    offs = tl.arange(0, ROWS)[:, None] * COLS + tl.arange(0, COLS)[None, :]
    a = tl.load(a_ptr + offs)
    b = tl.load(b_ptr + offs)
    _, h = tl.associative_scan((a, b), axis=1, combine_fn=scan_combine, reverse=REVERSE)
    tl.store(out_ptr + offs, h)


@pytest.mark.parametrize("reverse", [False, True])
def test_tuple_scan_direction(device: str, reverse: bool) -> None:
    g = torch.Generator().manual_seed(0)
    a = torch.rand(4, 64, generator=g).to(device)
    b = torch.randn(4, 64, generator=g).to(device)
    out = torch.empty_like(a)
    _reverse_scan_kernel[(1,)](a, b, out, ROWS=4, COLS=64, REVERSE=reverse)
    ref = torch.empty_like(a)
    h = torch.zeros(4, device=device)
    steps = range(63, -1, -1) if reverse else range(64)
    for t in steps:
        h = a[:, t] * h + b[:, t]
        ref[:, t] = h
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
