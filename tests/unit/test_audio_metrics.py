"""SC09 sample metrics on cases with known answers."""

from __future__ import annotations

import math

import pytest
import torch

from mambabench.eval.audio_metrics import (
    am_score,
    frechet_distance,
    inception_score,
    modified_inception_score,
)


def _confident_uniform(classes: int, per_class: int) -> torch.Tensor:
    return torch.eye(classes).repeat(per_class, 1)


@pytest.mark.parametrize("classes", [2, 10])
def test_inception_score_of_confident_uniform_outputs_is_the_class_count(classes: int) -> None:
    assert inception_score(_confident_uniform(classes, 5)) == pytest.approx(classes, rel=1e-6)


def test_inception_score_of_identical_outputs_is_one() -> None:
    probs = torch.softmax(torch.randn(1, 10), -1).repeat(50, 1)
    assert inception_score(probs) == pytest.approx(1.0)
    assert modified_inception_score(probs) == pytest.approx(1.0)


def test_modified_inception_score_of_two_known_distributions() -> None:
    p, q = torch.tensor([0.9, 0.1]), torch.tensor([0.1, 0.9])
    kl = float((p * (p / q).log()).sum())  # KL(p||q) = KL(q||p) here
    assert modified_inception_score(torch.stack([p, q])) == pytest.approx(math.exp(kl))
    sampled = modified_inception_score(torch.stack([p, q] * 200), max_pairs=5000)
    assert sampled > 1.0  # random pairs mix equal and different pairs


def test_am_score() -> None:
    train = _confident_uniform(10, 3)
    assert am_score(train, _confident_uniform(10, 2)) == pytest.approx(0.0, abs=1e-6)
    q = torch.softmax(torch.linspace(0, 2, 10, dtype=torch.float64), 0)
    expected = float((0.1 * (0.1 / q).log()).sum() - (q * q.log()).sum())  # KL(uniform || q) + H(q)
    assert am_score(train, q.repeat(20, 1)) == pytest.approx(expected, rel=1e-9)
    uncertain = torch.full((20, 10), 0.1)
    assert am_score(train, uncertain) == pytest.approx(math.log(10), rel=1e-6)  # entropy of uniform outputs


def test_frechet_distance() -> None:
    torch.manual_seed(0)
    x = torch.randn(500, 8)
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-8)
    shift = torch.tensor([3.0] + [0.0] * 7)
    assert frechet_distance(x, x + shift) == pytest.approx(
        9.0, rel=1e-6
    )  # same covariance: ||mu_a - mu_b||^2
    scaled = frechet_distance(x, 2 * x)  # Tr(S + 4S - 2 * 2S) = Tr(S) for (mu ~ 0)
    assert scaled == pytest.approx(float(torch.cov(x.T).trace()) + float((x.mean(0)).pow(2).sum()), rel=1e-4)
