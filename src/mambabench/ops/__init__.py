"""Pure-PyTorch reference operators: the oracle for `mambabench.kernels` and the CPU path."""

from mambabench.ops.causal_conv1d import causal_conv1d_ref, causal_conv1d_update_ref
from mambabench.ops.selective_scan import (
    selective_scan_chunked,
    selective_scan_ref,
    selective_state_update_fused_ref,
    selective_state_update_ref,
)

__all__ = [
    "causal_conv1d_ref",
    "causal_conv1d_update_ref",
    "selective_scan_chunked",
    "selective_scan_ref",
    "selective_state_update_fused_ref",
    "selective_state_update_ref",
]
