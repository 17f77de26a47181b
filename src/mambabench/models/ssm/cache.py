"""The recurrent state of a diagonal SSM inner layer during generation."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


@dataclass
class SSMCache:
    """State of a diagonal SSM: (batch, dim, d_state), fp32 (real A) or complex64 (complex A)."""

    ssm_state: Tensor
