"""Baselines on in-context regression prompts, as Garg et al. (arXiv 2208.01066) compare against.

Every baseline maps ``xs (batch, n, d)``, ``ys (batch, n)`` to predictions ``(batch, n)`` where the
prediction at position ``i`` uses only the examples ``0..i-1`` (position 0 predicts 0), exactly what a
causal model sees at ``x_i``. Least squares, ridge, LASSO, k-nearest neighbours and averaging are batched
torch (CPU or GPU); the decision-tree and gradient-boosting baselines use scikit-learn
(``pip install "mambabench[icl]"``) one prompt at a time.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
from torch import Tensor

from mambabench.utils.errors import MissingPackageError

Baseline = Callable[[Tensor, Tensor], Tensor]


def _prefix_fits(xs: Tensor, ys: Tensor, fit: Callable[[Tensor, Tensor], Tensor]) -> Tensor:
    """Predictions (batch, n) of ``fit(X (batch, i, d), y (batch, i)) -> w (batch, d)`` at each x_i."""
    predictions = torch.zeros_like(ys)
    for i in range(1, xs.shape[1]):
        w = fit(xs[:, :i], ys[:, :i])
        predictions[:, i] = (xs[:, i] * w).sum(-1)
    return predictions


def least_squares(xs: Tensor, ys: Tensor) -> Tensor:
    """Minimum-norm least squares (pseudo-inverse): exact once i >= d on noiseless linear data."""
    xs64, ys64 = xs.double(), ys.double()
    return _prefix_fits(xs64, ys64, lambda x, y: (torch.linalg.pinv(x) @ y[..., None])[..., 0]).to(ys.dtype)


def ridge(xs: Tensor, ys: Tensor, alpha: float = 0.1) -> Tensor:
    """Ridge regression ``(X^T X + alpha I)^-1 X^T y``."""
    eye = torch.eye(xs.shape[-1], dtype=torch.float64, device=xs.device)

    def fit(x: Tensor, y: Tensor) -> Tensor:
        gram = x.transpose(1, 2) @ x + alpha * eye
        return torch.linalg.solve(gram, (x.transpose(1, 2) @ y[..., None]))[..., 0]

    return _prefix_fits(xs.double(), ys.double(), fit).to(ys.dtype)


def lasso_fit(x: Tensor, y: Tensor, alpha: float, iterations: int = 500) -> Tensor:
    """Batched LASSO by FISTA: argmin_w 1/(2i) ||X w - y||^2 + alpha ||w||_1 (scikit-learn's objective).

    x (batch, i, d), y (batch, i) -> w (batch, d).
    """
    n = x.shape[1]
    gram = x.transpose(1, 2) @ x / n
    xty = (x.transpose(1, 2) @ y[..., None])[..., 0] / n
    lipschitz = torch.linalg.eigvalsh(gram)[:, -1].clamp(min=1e-12)[:, None]
    step = 1.0 / lipschitz
    w = torch.zeros_like(xty)
    z, t = w.clone(), 1.0
    for _ in range(iterations):
        grad = (gram @ z[..., None])[..., 0] - xty
        w_next = z - step * grad
        w_next = w_next.sign() * (w_next.abs() - step * alpha).clamp(min=0)
        t_next = (1 + (1 + 4 * t * t) ** 0.5) / 2
        z = w_next + ((t - 1) / t_next) * (w_next - w)
        w, t = w_next, t_next
    return w


def lasso(xs: Tensor, ys: Tensor, alpha: float = 0.01, iterations: int = 500) -> Tensor:
    """LASSO at every prefix (Garg et al. pick the best alpha; 0.01 suits noiseless sparse prompts)."""
    fit = partial(lasso_fit, alpha=alpha, iterations=iterations)
    return _prefix_fits(xs.double(), ys.double(), fit).to(ys.dtype)


def averaging(xs: Tensor, ys: Tensor) -> Tensor:
    """``w = mean_j y_j x_j`` (the estimator one step of gradient descent from zero gives)."""
    return _prefix_fits(xs, ys, lambda x, y: (x * y[..., None]).mean(1))


def nearest_neighbours(xs: Tensor, ys: Tensor, k: int = 3) -> Tensor:
    """Mean y of the ``k`` nearest earlier x (fewer while fewer exist)."""
    predictions = torch.zeros_like(ys)
    for i in range(1, xs.shape[1]):
        dist = torch.cdist(xs[:, i : i + 1], xs[:, :i])[:, 0]
        nearest = dist.topk(min(k, i), largest=False).indices
        predictions[:, i] = ys[:, :i].gather(1, nearest).mean(1)
    return predictions


def _sklearn_baseline(make_model: Callable[[], object], xs: Tensor, ys: Tensor) -> Tensor:
    predictions = torch.zeros_like(ys)
    x_np, y_np = xs.double().cpu().numpy(), ys.double().cpu().numpy()
    for b in range(xs.shape[0]):
        for i in range(1, xs.shape[1]):
            model = make_model()
            model.fit(x_np[b, :i], y_np[b, :i])
            predictions[b, i] = float(model.predict(x_np[b, i : i + 1])[0])
    return predictions


def _sklearn():
    try:
        import sklearn.ensemble
        import sklearn.tree
    except ImportError as err:
        raise MissingPackageError(
            'the tree baselines need scikit-learn: pip install "mambabench[icl]"'
        ) from err
    return sklearn


def decision_tree(xs: Tensor, ys: Tensor, max_depth: int | None = 4) -> Tensor:
    """Greedy regression tree (CART) fitted on each prefix."""
    sk = _sklearn()
    return _sklearn_baseline(lambda: sk.tree.DecisionTreeRegressor(max_depth=max_depth), xs, ys)


def gradient_boosting(
    xs: Tensor, ys: Tensor, n_estimators: int = 50, max_depth: int = 4, learning_rate: float = 0.1
) -> Tensor:
    """Gradient-boosted trees fitted on each prefix (scikit-learn's, in place of XGBoost)."""
    sk = _sklearn()
    return _sklearn_baseline(
        lambda: sk.ensemble.GradientBoostingRegressor(
            n_estimators=n_estimators, max_depth=max_depth, learning_rate=learning_rate
        ),
        xs,
        ys,
    )


BASELINES: dict[str, Baseline] = {
    "least_squares": least_squares,
    "ridge": ridge,
    "lasso": lasso,
    "averaging": averaging,
    "3_nn": nearest_neighbours,
    "decision_tree": decision_tree,
    "gradient_boosting": gradient_boosting,
}

#: baselines that fit one prompt at a time (slow): evaluated on a subset of the prompts
PER_PROMPT_BASELINES = ("decision_tree", "gradient_boosting")

#: the baselines Garg et al. plot for each function family
FAMILY_BASELINES: dict[str, tuple[str, ...]] = {
    "linear": ("least_squares", "averaging", "3_nn"),
    "noisy_linear": ("least_squares", "ridge", "averaging", "3_nn"),
    "sparse_linear": ("least_squares", "lasso", "averaging", "3_nn"),
    "relu2nn": ("least_squares", "3_nn", "averaging"),
    "tree": ("decision_tree", "gradient_boosting", "3_nn", "averaging", "least_squares"),
}


def baseline(name: str) -> Baseline:
    """The baseline called ``name``; the error lists the known names."""
    if name not in BASELINES:
        raise KeyError(f"unknown baseline {name!r}; known: {', '.join(BASELINES)}")
    return BASELINES[name]
