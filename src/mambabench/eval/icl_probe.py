"""Linear probes on every layer at every prompt position (Grazzi et al., arXiv 2402.03170, RQ2).

For layer ``l`` and position ``i`` (the x_i token, after ``i`` examples) a ridge regression is fitted from
the residual stream ``h_l(x_i)`` (d_model) to the target ``f(x_i)`` on one set of prompts and scored on
another. If a model solves in-context regression by refining its estimate layer after layer, the probed
prediction's error falls with depth, reaching the model's own error at the last layer.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def fit_linear_probe(features: Tensor, targets: Tensor, ridge: float = 1e-3) -> Tensor:
    """Ridge regression with a bias: features (..., samples, dim), targets (..., samples) -> weights
    (..., dim + 1), the last entry the bias. Features are used as given (fit in float64)."""
    x = torch.cat([features.double(), torch.ones_like(features[..., :1], dtype=torch.float64)], dim=-1)
    gram = x.transpose(-1, -2) @ x
    scale = gram.diagonal(dim1=-2, dim2=-1).mean(-1, keepdim=True)[..., None].clamp(min=1e-12)
    eye = torch.eye(x.shape[-1], dtype=torch.float64, device=x.device)
    rhs = x.transpose(-1, -2) @ targets.double()[..., None]
    return torch.linalg.solve(gram + ridge * scale * eye, rhs)[..., 0]


def apply_linear_probe(weights: Tensor, features: Tensor) -> Tensor:
    """features (..., samples, dim) -> predictions (..., samples)."""
    return (features.double() * weights[..., None, :-1]).sum(-1) + weights[..., None, -1]


@torch.no_grad()
def layer_states(network: nn.Module, inputs: Tensor, batch_size: int = 256) -> Tensor:
    """Residual stream at the x positions: (n_layer + 1, prompts, n, d_model), from a
    :class:`~mambabench.models.regression_head.VectorSequenceModel` (``return_layers=True``)."""
    chunks = []
    for start in range(0, inputs.shape[0], batch_size):
        _, layers = network(inputs[start : start + batch_size], return_layers=True)
        chunks.append(torch.stack([h[:, 0::2].float().cpu() for h in layers]))
    return torch.cat(chunks, dim=1)


def probe_errors(
    network: nn.Module,
    fit_inputs: Tensor,
    fit_targets: Tensor,
    test_inputs: Tensor,
    test_targets: Tensor,
    n_dims: int,
    ridge: float = 1e-3,
) -> Tensor:
    """Normalised squared error (n_layer + 1, n) of a probe per layer and position, fitted on the
    ``fit`` prompts (inputs (P, 2n, d), targets (P, n)) and scored on the ``test`` prompts."""
    fit_states = layer_states(network, fit_inputs).transpose(1, 2)  # (layers, n, P, d_model)
    test_states = layer_states(network, test_inputs).transpose(1, 2)
    fit_y = fit_targets.T.expand(fit_states.shape[0], -1, -1).cpu()  # (layers, n, P)
    test_y = test_targets.T.expand(test_states.shape[0], -1, -1).cpu()
    weights = fit_linear_probe(fit_states, fit_y, ridge)
    predictions = apply_linear_probe(weights, test_states)
    return ((predictions - test_y.double()).square().mean(-1) / n_dims).float()
