"""Learning-rate schedules as LambdaLR factories; the task passes ``total_steps`` (optimizer steps)."""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


def _warmup_steps(total_steps: int, warmup_steps: int | None, warmup_fraction: float) -> int:
    return int(warmup_steps) if warmup_steps is not None else int(round(warmup_fraction * total_steps))


def cosine_with_warmup(
    optimizer: Optimizer,
    total_steps: int,
    warmup_steps: int | None = None,
    warmup_fraction: float = 0.1,
    min_lr: float = 1e-5,
) -> LambdaLR:
    """Linear warmup from 0 to the peak LR, then cosine decay to ``min_lr`` at ``total_steps``
    (the paper's "improved recipe" decays to 1e-5)."""
    warmup = _warmup_steps(total_steps, warmup_steps, warmup_fraction)
    peaks = [group["lr"] for group in optimizer.param_groups]

    def factor(peak: float):
        floor = min(min_lr / peak, 1.0) if peak > 0 else 0.0

        def f(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

        return f

    return LambdaLR(optimizer, [factor(p) for p in peaks])


def constant_with_warmup(
    optimizer: Optimizer, total_steps: int, warmup_steps: int | None = None, warmup_fraction: float = 0.0
) -> LambdaLR:
    """Linear warmup, then the constant peak LR (the synthetic tasks use a constant LR)."""
    warmup = _warmup_steps(total_steps, warmup_steps, warmup_fraction)
    return LambdaLR(optimizer, lambda step: (step + 1) / warmup if step < warmup else 1.0)
