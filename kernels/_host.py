"""Host-side integer helpers for kernel launches.

``triton.cdiv`` and ``triton.next_power_of_2`` are ``constexpr_function`` objects in Triton 3.6: each call
from Python unwraps its arguments through the JIT machinery (a few microseconds). A scan's fwd+bwd
computes a few dozen launch sizes, so at small shapes, where the host bounds the step, these plain
versions matter.
"""

from __future__ import annotations

__all__ = ["cdiv", "next_power_of_2"]


def cdiv(x: int, y: int) -> int:
    """Ceiling of x / y for positive integers."""
    return -(-x // y)


def next_power_of_2(n: int) -> int:
    """The smallest power of two >= n (as triton.next_power_of_2: 0 for 0)."""
    return n if n <= 1 else 1 << (n - 1).bit_length()
