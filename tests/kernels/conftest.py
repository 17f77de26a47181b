"""Kernel tests run the Triton kernels on CPU through the interpreter unless a GPU is present.

``TRITON_INTERPRET`` must be set before triton is imported anywhere, so it is set here, at the top
of the conftest. Set ``MAMBABENCH_KERNEL_DEVICE=cuda`` (and ``TRITON_INTERPRET=0``) to run the same
tests compiled on a GPU.
"""

from __future__ import annotations

import os

if os.environ.get("MAMBABENCH_KERNEL_DEVICE", "cpu") == "cpu":
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

pytest.importorskip("triton")


@pytest.fixture(scope="session")
def device() -> str:
    """Where the kernels run: 'cpu' (interpreter) or 'cuda'."""
    dev = os.environ.get("MAMBABENCH_KERNEL_DEVICE", "cpu")
    if dev == "cuda" and not torch.cuda.is_available():
        pytest.skip("MAMBABENCH_KERNEL_DEVICE=cuda but no GPU")
    return dev
