"""Automated metrics of unconditional speech generation (Table 4 of the Mamba paper, SaShiMi's protocol).

All metrics read a classifier's outputs on a set of clips: ``probs`` (n, classes) softmax outputs and
``features`` (n, dim) penultimate activations (mamba-paper.md §5.3, "How the SC09 metrics are computed"):

- FID: Fréchet distance between Gaussians fitted to the training set's features and the samples'.
- IS (Inception Score): exp(E_x KL(p(y|x) || p(y))), p(y) the samples' mean prediction.
- mIS (modified IS): exp(E_{x, x'} KL(p(y|x) || p(y|x'))) over pairs of samples (diversity within class).
- AM score: KL(mean p_train || mean p_gen) + E_x H(p(y|x)).

Known answers (tested): a perfectly confident classifier spread uniformly over k classes gives IS = k;
FID of a set with itself is 0; AM of confident outputs matching the training label frequencies is 0.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

EPS = 1e-12


def _as_probs(probs: Tensor) -> Tensor:
    probs = torch.as_tensor(probs, dtype=torch.float64)
    if probs.dim() != 2 or probs.shape[0] < 1:
        raise ValueError(
            f"probs must be (samples, classes) with samples >= 1, got shape {tuple(probs.shape)}"
        )
    return probs.clamp_min(EPS) / probs.clamp_min(EPS).sum(-1, keepdim=True)


def inception_score(probs: Tensor, splits: int = 1) -> float:
    """exp(E KL(p(y|x) || p(y))), averaged over ``splits`` equal parts of the samples."""
    probs = _as_probs(probs)
    scores = []
    for part in probs.chunk(splits):
        marginal = part.mean(0, keepdim=True)
        kl = (part * (part.log() - marginal.log())).sum(-1).mean()
        scores.append(math.exp(float(kl)))
    return sum(scores) / len(scores)


def modified_inception_score(probs: Tensor, max_pairs: int = 10_000, seed: int = 0) -> float:
    """exp(E KL(p_i || p_j)) over ordered pairs i != j: all pairs when there are at most ``max_pairs``,
    else ``max_pairs`` random pairs (seeded), as SaShiMi's evaluation samples 10,000."""
    probs = _as_probs(probs)
    n = probs.shape[0]
    if n < 2:
        raise ValueError("the modified Inception Score needs at least 2 samples")
    log_p = probs.log()
    if n * (n - 1) <= max_pairs:
        i, j = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
        keep = i != j
        i, j = i[keep], j[keep]
    else:
        g = torch.Generator().manual_seed(seed)
        i = torch.randint(0, n, (max_pairs,), generator=g)
        j = (i + torch.randint(1, n, (max_pairs,), generator=g)) % n
    kl = (probs[i] * (log_p[i] - log_p[j])).sum(-1)
    return math.exp(float(kl.mean()))


def am_score(probs_train: Tensor, probs_gen: Tensor) -> float:
    """KL(mean p_train || mean p_gen) + mean entropy of p_gen (lower is better)."""
    p_train, p_gen = _as_probs(probs_train).mean(0), _as_probs(probs_gen)
    mean_gen = p_gen.mean(0)
    kl = (p_train * (p_train.log() - mean_gen.log())).sum()
    entropy = -(p_gen * p_gen.log()).sum(-1).mean()
    return float(kl + entropy)


def _sqrt_psd(matrix: Tensor) -> Tensor:
    values, vectors = torch.linalg.eigh(matrix)
    return (vectors * values.clamp_min(0).sqrt()) @ vectors.T


def frechet_distance(features_a: Tensor, features_b: Tensor) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^{1/2}) of Gaussians fitted to (n, dim) features.

    Tr((S_a S_b)^{1/2}) is computed as Tr((S_a^{1/2} S_b S_a^{1/2})^{1/2}), whose argument is symmetric
    positive semi-definite, so only symmetric eigendecompositions (float64) are needed.
    """
    a = torch.as_tensor(features_a, dtype=torch.float64)
    b = torch.as_tensor(features_b, dtype=torch.float64)
    if a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(
            f"features must be (n, dim) with the same dim, got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    if a.shape[0] < 2 or b.shape[0] < 2:
        raise ValueError("the Fréchet distance needs at least 2 feature vectors per set")
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = torch.cov(a.T), torch.cov(b.T)
    root_a = _sqrt_psd(cov_a)
    cross = torch.linalg.eigvalsh(root_a @ cov_b @ root_a).clamp_min(0).sqrt().sum()
    value = (mu_a - mu_b).pow(2).sum() + cov_a.trace() + cov_b.trace() - 2 * cross
    return max(float(value), 0.0)


def sample_metrics(
    probs: Tensor, features: Tensor, train_probs: Tensor, train_features: Tensor
) -> dict[str, float]:
    """FID, IS, mIS and AM of one set of clips against the training set's classifier outputs."""
    return {
        "fid": frechet_distance(train_features, features),
        "is": inception_score(probs),
        "mis": modified_inception_score(probs),
        "am": am_score(train_probs, probs),
    }
