"""Fixed sinusoidal absolute position embeddings (Vaswani et al. 2017, arXiv:1706.03762, §3.5).

MHA-Abs of the induction-heads benchmark (Mamba paper §4.1.2, Table 11) adds absolute positions to the
token embeddings. A learned table would limit the test lengths to its size and add
max_seq_len x d_model parameters (the paper lists the same 137K parameters for MHA-Abs, -RoPE and
-xPos), so the positions are the parameter-free sinusoids, computed for any position on demand.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class SinusoidalPositions(nn.Module):
    """PE(pos, 2i) = a sin(pos / base^(2i/d)), PE(pos, 2i+1) = a cos(pos / base^(2i/d)), a = std sqrt(2).

    No parameters and no table: :meth:`forward` computes the rows asked for, with the angles in float64
    so that positions up to 2^20 and beyond keep their phase (fp32 angles would be off by ~0.06 rad
    at position 10^6).

    The sinusoids are scaled so that each coordinate has standard deviation ``std`` over positions
    (amplitude std * sqrt(2)), the scale of the token embeddings they are added to, as a learned table
    initialised like the embeddings would start. The original Transformer instead multiplies its
    token embeddings by sqrt(D); with the N(0, 0.02) embeddings used here (GPT-2 initialisation), unit
    sinusoids would outweigh the tokens about 35 to 1, which stalls learning (docs/models.md).

    Args:
        d_model: width D of the embedding (even).
        std: standard deviation of each coordinate over positions (the token embeddings' init std).
        base: the wavelength base (10000 in the original Transformer).
    """

    def __init__(self, d_model: int, std: float = 0.02, base: float = 10000.0) -> None:
        super().__init__()
        if d_model % 2:
            raise ValueError(f"sinusoidal positions need an even d_model, got {d_model}")
        self.d_model = d_model
        self.std = std
        self.base = base

    def forward(self, positions: Tensor) -> Tensor:
        """positions: (seqlen,) integer positions -> (seqlen, d_model) fp32 embeddings."""
        half = self.d_model // 2
        inv_freq = self.base ** -(torch.arange(half, dtype=torch.float64, device=positions.device) / half)
        angles = positions.to(torch.float64)[:, None] * inv_freq  # (seqlen, d_model / 2)
        table = torch.stack((angles.sin(), angles.cos()), dim=-1).flatten(-2)
        return (table * (self.std * 2**0.5)).float()

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, std={self.std}, base={self.base}"
