"""The one dispatch point for scans, short convolutions and the LM loss: every model calls these functions.

``backend`` chooses the implementation:

- ``"auto"``: the Triton kernel for CUDA tensors when it is available, the PyTorch reference otherwise;
- ``"triton"``: the Triton kernel (on CPU it runs only under ``TRITON_INTERPRET=1``);
- ``"reference"``: the sequential PyTorch scan of :mod:`mambabench.ops` (the oracle);
- ``"chunked"``: the chunked parallel PyTorch scan (same numbers, fewer Python steps).

:func:`cross_entropy_fn` (the LM task's loss) takes ``"auto"``, ``"triton"`` and ``"reference"``
(``F.cross_entropy`` on fp32 logits) only.

The Triton implementations live in modules of this package (``selective_scan.py``, ``state_update.py``,
``causal_conv1d.py``, ``cross_entropy.py``; docs/kernels.md describes them all); no module may share a name with a function exported here,
because importing it would replace that function on the package;
until one exists, ``"auto"`` means the reference and ``"triton"`` fails with a clear message.

Under ``torch.compile`` the scan, the convolution and the loss are not traced: the Triton kernels carry
their own autograd Functions and launch logic, and the reference scan is a Python loop over the
sequence that Dynamo would unroll step by step. They run as opaque eager calls between compiled pieces.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import torch
import torch.nn.functional as F
from torch import Tensor

from mambabench.ops import (
    causal_conv1d_ref,
    causal_conv1d_update_ref,
    selective_scan_chunked,
    selective_scan_ref,
    selective_state_update_fused_ref,
    selective_state_update_ref,
)

__all__ = [
    "BACKENDS",
    "causal_conv1d_fn",
    "causal_conv1d_update",
    "cross_entropy_fn",
    "resolve_backend",
    "selective_scan_fn",
    "selective_state_update",
    "selective_state_update_fused",
]

BACKENDS = ("auto", "triton", "reference", "chunked")


def _triton_module(name: str) -> ModuleType | None:
    """Import ``mambabench.kernels.<name>`` if Triton and that module are present, else None."""
    try:
        return importlib.import_module(f"mambabench.kernels.{name}")
    except ImportError:
        return None


def resolve_backend(backend: str, x: Tensor, module: str = "selective_scan") -> str:
    """Turn ``backend`` into a concrete implementation name for tensor ``x``."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown scan backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend != "auto":
        if backend == "triton":
            if _triton_module(module) is None:
                raise RuntimeError(
                    f"backend='triton' asked for, but mambabench.kernels.{module} is not available "
                    "(is triton installed?); use backend='reference' or 'auto'"
                )
            if not x.is_cuda and os.environ.get("TRITON_INTERPRET") != "1":
                raise RuntimeError(
                    "backend='triton' on CPU tensors needs TRITON_INTERPRET=1 (slow, for tests); "
                    "use backend='auto' to run the PyTorch reference on CPU"
                )
        return backend
    if x.is_cuda and _triton_module(module) is not None:
        return "triton"
    return "reference"


@torch.compiler.disable  # see the module docstring: torch.compile runs the kernels as opaque calls
def selective_scan_fn(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
    backend: str = "auto",
) -> Tensor | tuple[Tensor, Tensor]:
    """Selective scan with the official signature; see :func:`mambabench.ops.selective_scan_ref`.

    u, delta, z: (batch, dim, seqlen); A: (dim, dstate); B, C: (dim, dstate), (batch, dstate, seqlen)
    or (batch, groups, dstate, seqlen); D, delta_bias: (dim,). Returns out (batch, dim, seqlen) and,
    with ``return_last_state``, the final state (batch, dim, dstate).
    """
    impl = resolve_backend(backend, u, "selective_scan")
    args = (u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)
    if impl == "triton":
        return _triton_module("selective_scan").selective_scan_triton(*args)
    if impl == "chunked":
        return selective_scan_chunked(*args)
    return selective_scan_ref(*args)


def selective_state_update(
    state: Tensor,
    x: Tensor,
    dt: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    dt_bias: Tensor | None = None,
    dt_softplus: bool = False,
    backend: str = "auto",
) -> Tensor:
    """One decoding step of the scan, updating ``state`` (batch, dim, dstate) in place; returns (batch, dim)."""
    impl = resolve_backend(backend, x, "state_update")
    args = (state, x, dt, A, B, C, D, z, dt_bias, dt_softplus)
    if impl == "triton":
        return _triton_module("state_update").selective_state_update_triton(*args)
    return selective_state_update_ref(*args)


@torch.compiler.disable  # see the module docstring: torch.compile runs the kernels as opaque calls
def causal_conv1d_fn(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    activation: str | None = None,
    backend: str = "auto",
) -> Tensor:
    """Causal depthwise conv1d, x (batch, dim, seqlen), weight (dim, width); optional fused SiLU."""
    impl = resolve_backend(backend, x, "causal_conv1d")
    if impl == "triton":
        return _triton_module("causal_conv1d").causal_conv1d_triton(x, weight, bias, activation)
    return causal_conv1d_ref(x, weight, bias, activation)


def selective_state_update_fused(
    state: Tensor,
    x: Tensor,
    dt: Tensor,
    dt_proj_weight: Tensor | None,
    dt_bias: Tensor,
    A_log: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor,
    z: Tensor | None = None,
    backend: str = "auto",
) -> Tensor:
    """The Mamba decode step after x_proj in one launch: dt = softplus(dt_low @ dt_proj_weight^T +
    dt_bias) (or softplus(dt + dt_bias) for a projected dt (batch, dim) when ``dt_proj_weight`` is
    None), A = -exp(A_log), the state update (``state`` (batch, dim, dstate) fp32, in place), the D
    skip and the SiLU(z) gate. dt_low (batch, dt_rank), B, C (batch, dstate) may be column views of
    x_proj's output. Returns (batch, dim) in x's dtype."""
    impl = resolve_backend(backend, x, "state_update")
    args = (state, x, dt, dt_proj_weight, dt_bias, A_log, B, C, D, z)
    if impl == "triton":
        return _triton_module("state_update").selective_state_update_fused(*args)
    return selective_state_update_fused_ref(*args)


def causal_conv1d_update(
    x: Tensor,
    conv_state: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    activation: str | None = None,
    backend: str = "auto",
) -> Tensor:
    """One decoding step of the causal conv; shifts ``conv_state`` (batch, dim, width) in place."""
    impl = resolve_backend(backend, x, "causal_conv1d")
    if impl == "triton":
        return _triton_module("causal_conv1d").causal_conv1d_update_triton(
            x, conv_state, weight, bias, activation
        )
    return causal_conv1d_update_ref(x, conv_state, weight, bias, activation)


@torch.compiler.disable  # see the module docstring: torch.compile runs the kernels as opaque calls
def cross_entropy_fn(
    logits: Tensor,
    targets: Tensor,
    ignore_index: int = -100,
    reduction: str = "mean",
    backend: str = "auto",
) -> Tensor:
    """Cross-entropy of logits (tokens, vocab) against class indices (tokens,), in fp32.

    Same semantics as ``F.cross_entropy`` for ``reduction`` "mean" (over the targets that are not
    ``ignore_index``), "sum" and "none" ((tokens,), 0 where ignored). The Triton kernel reads fp32,
    bf16 or fp16 logits in place (any row stride, e.g. the column view of a padded head) and writes the
    gradient in the logits' dtype, with no fp32 (tokens, vocab) tensor; the reference upcasts the logits
    to fp32 and calls ``F.cross_entropy``. See :mod:`mambabench.kernels.cross_entropy`.
    """
    if backend not in ("auto", "triton", "reference"):
        raise ValueError(f"unknown cross-entropy backend {backend!r}; choose one of auto, triton, reference")
    impl = resolve_backend(backend, logits, "cross_entropy")
    if impl == "triton":
        return _triton_module("cross_entropy").cross_entropy_triton(logits, targets, ignore_index, reduction)
    return F.cross_entropy(logits.float(), targets, ignore_index=ignore_index, reduction=reduction)
