"""Channel MLPs placed after a mixer in a block (Transformer-style layers, Mamba-MLP ablation)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class GatedMLP(nn.Module):
    """SwiGLU MLP: fc2(silu(gate) * value), with [value, gate] = fc1(x).

    x: (..., d_model) -> (..., d_model); hidden width ``d_intermediate`` (default 8/3 * d_model,
    rounded up to a multiple of ``multiple_of``).
    """

    def __init__(
        self, d_model: int, d_intermediate: int | None = None, bias: bool = False, multiple_of: int = 128
    ) -> None:
        super().__init__()
        hidden = d_intermediate or int(8 * d_model / 3)
        hidden = (hidden + multiple_of - 1) // multiple_of * multiple_of
        self.fc1 = nn.Linear(d_model, 2 * hidden, bias=bias)
        self.fc2 = nn.Linear(hidden, d_model, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        value, gate = self.fc1(x).chunk(2, dim=-1)
        return self.fc2(value * F.silu(gate))


ACTIVATIONS = {
    "gelu": nn.GELU,
    "gelu_tanh": lambda: nn.GELU(approximate="tanh"),
    "relu": nn.ReLU,
    "silu": nn.SiLU,
}


class MLP(nn.Module):
    """Two-layer MLP of GPT-3 / the Transformer baseline: fc2(act(fc1(x))).

    x: (..., d_model) -> (..., d_model); hidden width ``d_intermediate`` (default expand * d_model;
    GPT-3: 4, the paper's Hyena/H3++ "thin" models: 2).
    """

    def __init__(
        self,
        d_model: int,
        d_intermediate: int | None = None,
        expand: float = 4.0,
        activation: str = "gelu",
        bias: bool = True,
    ) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        hidden = d_intermediate or int(expand * d_model)
        self.fc1 = nn.Linear(d_model, hidden, bias=bias)
        self.act = ACTIVATIONS[activation]()
        self.fc2 = nn.Linear(hidden, d_model, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))
