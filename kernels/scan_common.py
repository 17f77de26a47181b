"""Small Triton helpers shared by the v2 (selective_scan.py) and v3 (scan_sequential.py) scan kernels."""

from __future__ import annotations

import triton
import triton.language as tl

__all__ = ["softplus", "add_or_store"]


@triton.jit
def softplus(x):
    """log(1 + e^x), linear above 20 as in the official kernel."""
    return tl.where(x <= 20.0, tl.log(1.0 + tl.exp(x)), x)


@triton.jit
def add_or_store(ptr, value, mask, DETERMINISTIC: tl.constexpr):
    """Write one program's dB/dC contribution: its own partial slot (DETERMINISTIC, summed on the
    host afterwards) or an fp32 atomic add into the shared gradient."""
    if DETERMINISTIC:
        tl.store(ptr, value, mask=mask)
    else:
        tl.atomic_add(ptr, value, mask=mask, sem="relaxed")
