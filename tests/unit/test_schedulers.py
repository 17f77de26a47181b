"""Learning-rate schedules."""

from __future__ import annotations

import pytest
import torch

from mambabench.tasks.schedulers import constant_with_warmup, cosine_with_warmup


def lrs(factory, steps: int, **kw) -> list[float]:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    sched = factory(opt, total_steps=steps, **kw)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_cosine_warmup_then_decay_to_min_lr() -> None:
    values = lrs(cosine_with_warmup, 100, warmup_fraction=0.1, min_lr=1e-5)
    assert values[0] == pytest.approx(1e-4) and values[9] == pytest.approx(1e-3)
    assert max(values) == pytest.approx(1e-3)
    assert values[-1] == pytest.approx(1e-5, rel=0.05)
    assert all(a >= b for a, b in zip(values[10:], values[11:]))


def test_constant_with_warmup() -> None:
    values = lrs(constant_with_warmup, 20, warmup_steps=4)
    assert values[:4] == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3]) and values[4:] == pytest.approx(
        [1e-3] * 16
    )
