"""In-context regression: prompt generators, baselines, probes, the read-in/read-out model and the task."""

from __future__ import annotations

import pytest
import torch

from mambabench.data.icl import (
    Curriculum,
    FunctionFamily,
    ICLRegressionDataModule,
    evaluate_function,
    interleave,
    regression_prompt,
    sample_function,
    skewed_covariance_sqrt,
)
from mambabench.eval.icl_baselines import (
    averaging,
    baseline,
    lasso_fit,
    least_squares,
    nearest_neighbours,
    ridge,
)
from mambabench.eval.icl_probe import apply_linear_probe, fit_linear_probe


def _prompts(
    family: FunctionFamily, n: int, count: int = 64, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    skew = skewed_covariance_sqrt(family.n_dims, 0)
    items = [regression_prompt(family, n, g, skew=skew) for _ in range(count)]
    return torch.stack([it["xs"] for it in items]), torch.stack([it["targets"] for it in items])


def test_prompt_layout_interleaves_x_and_y() -> None:
    xs, ys = torch.randn(3, 4), torch.randn(3)
    prompt = interleave(xs, ys)
    assert prompt.shape == (6, 4)
    assert torch.equal(prompt[0::2], xs)
    assert torch.equal(prompt[1::2, 0], ys) and not prompt[1::2, 1:].any()


def test_least_squares_is_exact_once_examples_reach_the_dimension() -> None:
    d = 5
    xs, ys = _prompts(FunctionFamily("linear", d), n=12)
    error = (least_squares(xs, ys) - ys).square().mean(0) / d
    assert error[d:].max() < 1e-8  # k >= d examples determine w exactly
    assert error[1:d].min() > 1e-3  # fewer do not
    assert error[0] == pytest.approx(1.0, rel=0.35)  # predicting 0: E[y^2] / d = 1


def test_lasso_recovers_sparse_weights() -> None:
    g = torch.Generator().manual_seed(1)
    family = FunctionFamily("sparse_linear", 20, sparsity=3)
    params = [sample_function(family, 20, g) for _ in range(8)]
    w_true = torch.stack([p["w"] for p in params]).double()
    assert ((w_true != 0).sum(1) == 3).all()
    xs = torch.randn(8, 12, 20, generator=g, dtype=torch.float64)  # 12 examples < 20 dims
    ys = (xs * w_true[:, None]).sum(-1)
    w_lasso = lasso_fit(xs, ys, alpha=1e-3, iterations=3000)
    assert (w_lasso - w_true).abs().max() < 0.05
    w_min_norm = (torch.linalg.pinv(xs) @ ys[..., None])[..., 0]
    assert (w_min_norm - w_true).abs().max() > 0.2  # least squares cannot, below d examples


def test_baselines_use_only_earlier_examples() -> None:
    xs, ys = _prompts(FunctionFamily("linear", 4), n=9, count=6)
    for name in ("least_squares", "ridge", "lasso", "averaging", "3_nn"):
        first = baseline(name)(xs, ys)
        changed = ys.clone()
        changed[:, 5:] += 100.0  # future targets must not move predictions at positions <= 5
        second = baseline(name)(xs, changed)
        assert torch.allclose(first[:, :6], second[:, :6]), name
        assert (first[:, 0] == 0).all(), name


def test_ridge_shrinks_towards_zero_and_knn_averages_neighbours() -> None:
    xs, ys = _prompts(FunctionFamily("linear", 3), n=8, count=4)
    assert ridge(xs, ys, alpha=1e6).abs().max() < 1e-3
    assert torch.allclose(ridge(xs, ys, alpha=1e-9)[:, 4:], least_squares(xs, ys)[:, 4:], atol=1e-4)
    predictions = nearest_neighbours(xs, ys, k=1)
    nearest = torch.cdist(xs[:, 5:6], xs[:, :5])[:, 0].argmin(1)
    assert torch.allclose(predictions[:, 5], ys[:, :5].gather(1, nearest[:, None])[:, 0])
    w_after_one = xs[:, 0] * ys[:, :1]  # mean of y_j x_j over the one example seen
    assert torch.allclose(averaging(xs, ys)[:, 1], (w_after_one * xs[:, 1]).sum(-1))


def test_families_and_input_distributions() -> None:
    g = torch.Generator().manual_seed(0)
    noisy = FunctionFamily("noisy_linear", 6)
    assert noisy.noise == 1.0 and FunctionFamily("linear", 6).noise == 0.0
    tree = FunctionFamily("tree", 6, tree_depth=3)
    params = sample_function(tree, 6, g)
    xs = torch.randn(50, 6, generator=g)
    ys = evaluate_function(tree, params, xs)
    assert set(ys.tolist()) <= set(params["leaves"].tolist())
    relu = FunctionFamily("relu2nn", 6, hidden_size=10)
    assert evaluate_function(relu, sample_function(relu, 6, g), xs).shape == (50,)
    orthant = regression_prompt(FunctionFamily("linear", 6, inputs="orthant"), 20, g)["xs"]
    signs = orthant.sign()
    assert (signs == signs[0]).all()  # all points share one orthant
    skew = skewed_covariance_sqrt(6, 0)
    cov = skew @ skew.T
    eig = torch.linalg.eigvalsh(cov).flip(0)
    assert cov.trace() == pytest.approx(6.0, rel=1e-4)
    assert eig[0] / eig[1] == pytest.approx(4.0, rel=1e-3)  # eigenvalues ~ 1 / i^2
    with pytest.raises(ValueError, match="known: linear"):
        FunctionFamily("cubic", 3)


def test_curriculum_grows_dimensions_and_points_in_training_batches() -> None:
    dm = ICLRegressionDataModule(
        n_dims=6,
        n_points=9,
        batch_size=2,
        train_batches_per_epoch=10,
        curriculum_dims={"start": 2, "end": 6, "inc": 2, "interval": 3},
        curriculum_points={"start": 3, "end": 9, "inc": 3, "interval": 3},
        ood_inputs=["orthant"],
        extrapolation_points=12,
    )
    assert (
        Curriculum(2, 6, 2, 3).at(0) == 2
        and Curriculum(2, 6, 2, 3).at(3) == 4
        and Curriculum(2, 6, 2, 3).at(99) == 6
    )
    batches = list(dm.train_dataloader())
    first, later = batches[0], batches[6]
    assert first["inputs"].shape == (2, 6, 6) and not first["inputs"][:, 0::2, 2:].any()
    assert later["inputs"].shape == (2, 18, 6) and first["targets"].shape == (2, 3)
    assert dm.val_names == ["in_dist", "extrapolation", "ood_orthant"]
    shapes = [next(iter(loader))["inputs"].shape[1] for loader in dm.test_dataloader()]
    assert shapes == [18, 24, 18]
    again = ICLRegressionDataModule(n_dims=6, n_points=9, ood_inputs=["orthant"], extrapolation_points=12)
    assert torch.equal(
        dm.eval_dataset("test", "in_dist")[3]["inputs"], again.eval_dataset("test", "in_dist")[3]["inputs"]
    )
    with pytest.raises(ValueError, match="extrapolation_points"):
        ICLRegressionDataModule(n_points=9, extrapolation_points=5)


def test_linear_probe_recovers_a_linear_readout() -> None:
    g = torch.Generator().manual_seed(0)
    features = torch.randn(2, 200, 8, generator=g)
    true = torch.randn(2, 8, generator=g)
    targets = (features * true[:, None]).sum(-1) + 0.5
    weights = fit_linear_probe(features, targets, ridge=1e-8)
    assert torch.allclose(weights[:, :-1], true.double(), atol=1e-4)
    assert torch.allclose(apply_linear_probe(weights, features), targets.double(), atol=1e-4)
