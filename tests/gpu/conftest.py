"""GPU-only tests (``pytest tests/gpu -q`` on a machine with CUDA): compiled Triton kernels, CUDA graphs.

The top-level conftest turns on Triton's interpreter for the CPU kernel tests; these tests need the
compiled kernels, so on a CUDA machine the setting is taken back here, before any kernel module is
imported. Run this folder on its own (in one run with the CPU kernel tests the kernels would already
be interpreted; the tests then skip and say so).
"""

from __future__ import annotations

import os

import pytest
import torch

if torch.cuda.is_available() and os.environ.get("MAMBABENCH_KERNEL_DEVICE", "cpu") == "cpu":
    os.environ.pop("TRITON_INTERPRET", None)


@pytest.fixture(autouse=True)
def compiled_kernels() -> None:
    """Skip without CUDA, or when the kernels were imported under the interpreter."""
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    from triton.runtime.interpreter import InterpretedFunction

    from mambabench.kernels import state_update

    if isinstance(state_update._state_update_kernel, InterpretedFunction):
        pytest.skip(
            "Triton kernels were imported under TRITON_INTERPRET=1; run `pytest tests/gpu` on its own"
        )
