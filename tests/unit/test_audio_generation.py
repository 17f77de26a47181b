"""Audio generation options: a time limit that returns what was sampled so far."""

from __future__ import annotations

from functools import partial

import torch

from mambabench.models.generation import generate
from mambabench.models.mixers import Mamba
from mambabench.models.sashimi import SaShiMi

MAMBA = partial(Mamba, d_state=4, scan_backend="reference")


def _model() -> SaShiMi:
    torch.manual_seed(0)
    return SaShiMi(256, 8, 1, MAMBA, MAMBA, pool=[2, 2]).eval()


def test_time_limit_stops_generation_early() -> None:
    prompt = torch.full((2, 1), 128)
    assert generate(_model(), prompt, 30, max_seconds=0.0).shape == (2, 1)
    assert generate(_model(), prompt, 30, max_seconds=60.0).shape == (2, 31)
