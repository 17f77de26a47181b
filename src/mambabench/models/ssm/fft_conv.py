"""Causal long convolution by FFT: how S4D and Hyena apply a sequence-long kernel during training."""

from __future__ import annotations

import torch
from torch import Tensor


def fft_causal_conv(u: Tensor, kernel: Tensor) -> Tensor:
    """Causal long convolution y_t = sum_{s<=t} k_{t-s} u_s by FFT.

    u: (batch, dim, seqlen); kernel: (dim, seqlen) -> (batch, dim, seqlen), in fp32.
    """
    seqlen = u.shape[-1]
    n = 2 * seqlen
    y = torch.fft.irfft(torch.fft.rfft(u.float(), n=n) * torch.fft.rfft(kernel.float(), n=n), n=n)
    return y[..., :seqlen]
