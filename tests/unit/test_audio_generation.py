"""Audio generation options: a time limit that returns what was sampled so far; exact log-likelihoods
of the samples and SaShiMi's rejection of the least and most likely ones."""

from __future__ import annotations

from functools import partial

import pytest
import torch

from mambabench.models.generation import generate, keep_by_likelihood
from mambabench.models.mixers import Mamba
from mambabench.models.sashimi import SaShiMi

MAMBA = partial(Mamba, d_state=4, scan_backend="reference")


pytestmark = pytest.mark.usefixtures("one_thread")


def _model() -> SaShiMi:
    torch.manual_seed(0)
    return SaShiMi(256, 8, 1, MAMBA, MAMBA, pool=[2, 2]).eval()


def test_time_limit_stops_generation_early() -> None:
    prompt = torch.full((2, 1), 128)
    assert generate(_model(), prompt, 10, max_seconds=0.0).shape == (2, 1)
    assert generate(_model(), prompt, 10, max_seconds=60.0).shape == (2, 11)


def test_logprobs_are_the_teacher_forced_likelihood() -> None:
    model = _model()
    prompt = torch.full((3, 1), 128)
    tokens, logprobs = generate(
        model, prompt, 12, generator=torch.Generator().manual_seed(0), return_logprobs=True
    )
    with torch.no_grad():
        logits = model(tokens[:, :-1]).log_softmax(-1)
    expected = logits.gather(-1, tokens[:, 1:, None]).squeeze(-1).sum(-1)
    torch.testing.assert_close(logprobs, expected, atol=1e-4, rtol=1e-4)


def test_rejection_keeps_the_middle_of_the_likelihood_ranking() -> None:
    logprobs = torch.tensor([-5.0, -1.0, -9.0, -3.0, -7.0, -2.0, -8.0, -4.0, -6.0, -10.0])
    kept = keep_by_likelihood(logprobs, reject_lowest=0.4, reject_highest=0.1)
    assert sorted(logprobs[kept].tolist()) == [-6.0, -5.0, -4.0, -3.0, -2.0]
    assert len(keep_by_likelihood(logprobs)) == 10
    with pytest.raises(ValueError, match="must be >= 0"):
        keep_by_likelihood(logprobs, 0.6, 0.5)
