"""Training throughput (summary.json ``tokens_per_s``) counts training-step time after warm-up only;
validation and the other time between steps go to the wall-clock figure ``tokens_per_s_wall``."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from mambabench.utils import callbacks as callbacks_module
from mambabench.utils.callbacks import TokensPerSecond


class _Clock:
    """A stand-in for ``time.perf_counter`` that moves only when told to."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class _Module:
    device = torch.device("cpu")

    def __init__(self) -> None:
        self.logged: list[tuple[str, float]] = []

    def log(self, name: str, value: float, **_: object) -> None:
        self.logged.append((name, value))


def _fit(
    meter: TokensPerSecond,
    clock: _Clock,
    module: _Module,
    step_seconds: list[float],
    between: float,
    tokens: int = 64,
) -> None:
    """One fit: steps of ``step_seconds`` each, ``between`` seconds (validation, data) after every step."""
    trainer = SimpleNamespace(world_size=1)
    batch = {"input_ids": torch.zeros(tokens // 8, 8, dtype=torch.long)}
    meter.on_train_start(trainer, module)
    for index, seconds in enumerate(step_seconds):
        meter.on_train_batch_start(trainer, module, batch, index)
        clock.now += seconds
        meter.on_train_batch_end(trainer, module, None, batch, index)
        clock.now += between
    meter.on_train_end(trainer, module)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> _Clock:
    fake = _Clock()
    monkeypatch.setattr(callbacks_module.time, "perf_counter", fake)
    return fake


def test_rate_counts_training_steps_after_warm_up_only(clock: _Clock) -> None:
    meter, module = TokensPerSecond(log_every_n_steps=4, warmup_steps=2), _Module()
    # two slow warm-up steps (compilation), six steps of 0.5 s, and 3 s of validation after every step
    _fit(meter, clock, module, [10.0, 6.0] + [0.5] * 6, between=3.0)
    assert meter.tokens_per_sec == pytest.approx(6 * 64 / 3.0)  # 128 tokens/s
    assert meter.train_tokens == 8 * 64 and meter.train_time == pytest.approx(19.0)
    assert meter.tokens_per_sec_wall == pytest.approx(8 * 64 / (19.0 + 8 * 3.0))
    # the logged window (steps 3 and 4, the first after warm-up) shows the same quantity
    assert module.logged[0] == ("trainer/tokens_per_sec", pytest.approx(128.0))


def test_each_fit_warms_up_again_and_short_runs_still_get_a_rate(clock: _Clock) -> None:
    meter, module = TokensPerSecond(log_every_n_steps=100, warmup_steps=1), _Module()
    _fit(meter, clock, module, [4.0, 1.0], between=0.0)
    _fit(meter, clock, module, [8.0, 1.0], between=0.0)  # a resumed fit compiles again
    assert meter.tokens_per_sec == pytest.approx(2 * 64 / 2.0)
    short = TokensPerSecond(warmup_steps=5)
    _fit(short, clock, _Module(), [2.0, 2.0], between=1.0)
    assert short.tokens_per_sec == pytest.approx(2 * 64 / 4.0)  # shorter than the warm-up: every step
    assert short.tokens_per_sec_wall == pytest.approx(2 * 64 / 6.0)


def test_negative_warm_up_is_refused() -> None:
    with pytest.raises(ValueError, match="warmup_steps must be >= 0"):
        TokensPerSecond(warmup_steps=-1)


def test_logged_mfu_counts_training_steps_only(monkeypatch: pytest.MonkeyPatch) -> None:
    from mambabench.tasks import lm as lm_module
    from mambabench.tasks.lm import LanguageModelingTask

    fake = _Clock()
    monkeypatch.setattr(lm_module.time, "perf_counter", fake)
    task = LanguageModelingTask(
        torch.nn.Linear(2, 2), torch.optim.SGD, peak_flops=1e6, log_throughput_every=2
    )
    task._trainer = SimpleNamespace(world_size=1)
    task.flops_per_token = 1000
    logged: list[tuple[str, float]] = []
    monkeypatch.setattr(task, "log", lambda name, value, **_: logged.append((name, value)))
    batch = {"input_ids": torch.zeros(4, 8, dtype=torch.long)}  # 32 tokens
    for index in range(4):
        task.on_train_batch_start(batch, index)
        fake.now += 0.5  # the step
        task.on_train_batch_end(None, batch, index)
        fake.now += 10.0  # validation between the steps: not training time
    # each window: 64 tokens in 1 s of steps -> 64 tokens/s x 1000 FLOPs / 1e6 FLOP/s
    assert logged == [("trainer/mfu", pytest.approx(0.064)), ("trainer/mfu", pytest.approx(0.064))]
