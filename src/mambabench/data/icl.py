"""In-context regression prompts (Garg et al., arXiv 2208.01066; Grazzi et al., arXiv 2402.03170).

A prompt is ``(x_1, f(x_1), x_2, f(x_2), ..., x_n, f(x_n))`` with a function ``f`` drawn fresh for every
prompt from a function family, laid out as ``2n`` real vectors of width ``n_dims``: ``x_i`` as is and
``f(x_i)`` as ``(f(x_i), 0, ..., 0)``. A model reads the sequence causally and predicts ``f(x_i)`` at the
position of ``x_i``, so position ``i`` measures the error after ``i`` in-context examples (``i = 0..n-1``).

Families: ``linear``, ``sparse_linear``, ``noisy_linear``, ``relu2nn`` (2-layer ReLU networks) and
``tree`` (depth-``tree_depth`` decision trees on the signs of coordinates). Input distributions:
``gaussian`` (N(0, I)), ``skewed`` (N(0, S) with eigenvalues proportional to 1/i^2, scaled to trace
``n_dims``, a fixed random basis per seed) and ``orthant`` (all points of a prompt lie in one random
orthant, after Garg et al.'s random-quadrant prompts). Garg et al.'s curriculum grows the active
dimensions (the rest are zero) and the number of points during training.

Every sample is a pure function of (seed, split, sample id), so training resumes exactly and evaluation
sets are fixed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from mambabench.data.base import ResumableLoader, SequenceDataModule
from mambabench.utils.errors import ConfigError

FAMILIES = ("linear", "sparse_linear", "noisy_linear", "relu2nn", "tree")
INPUT_DISTRIBUTIONS = ("gaussian", "skewed", "orthant")
_SPLIT_SALT = {"train": 0, "val": 1, "test": 2, "probe": 3}


def _generator(seed: int, split: str, index: int, extra: int = 0) -> torch.Generator:
    key = hash((seed, _SPLIT_SALT[split], index, extra, "icl")) & 0x7FFF_FFFF_FFFF_FFFF
    return torch.Generator().manual_seed(key)


@dataclass(frozen=True)
class Curriculum:
    """A value growing from ``start`` by ``inc`` every ``interval`` training steps, capped at ``end``
    (Garg et al.: dimensions 5 -> 20 by 1 and points 11 -> 41 by 2, every 2000 steps)."""

    start: int
    end: int
    inc: int = 1
    interval: int = 2000

    def at(self, step: int) -> int:
        return min(self.end, self.start + self.inc * (step // max(1, self.interval)))


@dataclass(frozen=True)
class FunctionFamily:
    """How prompts are drawn; see the module docstring. ``noise_std`` adds N(0, noise_std^2) to every y
    (the noisy family's default 1.0 when left None; 0 otherwise)."""

    name: str = "linear"
    n_dims: int = 20
    inputs: str = "gaussian"
    noise_std: float | None = None
    sparsity: int = 3
    hidden_size: int = 100
    tree_depth: int = 4

    def __post_init__(self) -> None:
        if self.name not in FAMILIES:
            raise ConfigError(
                f"unknown function family data.family={self.name!r}; known: {', '.join(FAMILIES)}"
            )
        if self.inputs not in INPUT_DISTRIBUTIONS:
            raise ConfigError(
                f"unknown input distribution data.inputs={self.inputs!r}; known: {', '.join(INPUT_DISTRIBUTIONS)}"
            )
        if self.n_dims < 1:
            raise ConfigError(f"data.n_dims must be >= 1, got {self.n_dims}")
        if self.name == "sparse_linear" and not 1 <= self.sparsity <= self.n_dims:
            raise ConfigError(f"data.sparsity={self.sparsity} must lie in 1..data.n_dims={self.n_dims}")

    @property
    def noise(self) -> float:
        if self.noise_std is not None:
            return float(self.noise_std)
        return 1.0 if self.name == "noisy_linear" else 0.0


def skewed_covariance_sqrt(n_dims: int, seed: int) -> Tensor:
    """(n_dims, n_dims) matrix ``M`` with ``M M^T`` = a covariance whose eigenvalues are proportional to
    1/i^2 with trace ``n_dims``, in a random orthonormal basis fixed by ``seed`` (Garg et al. §4)."""
    g = torch.Generator().manual_seed(seed + 7919)
    eig = 1.0 / torch.arange(1, n_dims + 1, dtype=torch.float64) ** 2
    eig = eig * n_dims / eig.sum()
    basis, _ = torch.linalg.qr(torch.randn(n_dims, n_dims, generator=g, dtype=torch.float64))
    return (basis * eig.sqrt()).float()


def sample_inputs(
    n_points: int,
    n_dims: int,
    active_dims: int,
    distribution: str,
    generator: torch.Generator,
    skew: Tensor | None = None,
) -> Tensor:
    """Inputs (n_points, n_dims); dimensions past ``active_dims`` are zero (curriculum)."""
    xs = torch.randn(n_points, n_dims, generator=generator)
    if distribution == "skewed":
        if skew is None:
            raise ValueError("skewed inputs need the covariance factor (skewed_covariance_sqrt)")
        xs = xs @ skew.T
    elif distribution == "orthant":
        signs = torch.randint(0, 2, (n_dims,), generator=generator).float() * 2 - 1
        xs = xs.abs() * signs
    if active_dims < n_dims:
        xs[:, active_dims:] = 0
    return xs


def sample_function(
    family: FunctionFamily, active_dims: int, generator: torch.Generator
) -> dict[str, Tensor]:
    """Parameters of one function of ``family`` acting on the first ``active_dims`` coordinates."""
    d = active_dims
    if family.name in ("linear", "noisy_linear"):
        return {"w": torch.randn(d, generator=generator)}
    if family.name == "sparse_linear":
        w = torch.zeros(d)
        keep = torch.randperm(d, generator=generator)[: min(family.sparsity, d)]
        w[keep] = torch.randn(len(keep), generator=generator)
        return {"w": w}
    if family.name == "relu2nn":
        hidden = family.hidden_size
        return {
            "W": torch.randn(hidden, d, generator=generator),
            "a": torch.randn(hidden, generator=generator) * math.sqrt(2.0 / hidden),
        }
    nodes = 2**family.tree_depth - 1
    return {
        "coords": torch.randint(0, d, (nodes,), generator=generator),
        "leaves": torch.randn(2**family.tree_depth, generator=generator),
    }


def evaluate_function(family: FunctionFamily, params: dict[str, Tensor], xs: Tensor) -> Tensor:
    """f(xs) for xs (n_points, n_dims) -> (n_points,), noise-free."""
    if family.name in ("linear", "noisy_linear", "sparse_linear"):
        return xs[:, : params["w"].shape[0]] @ params["w"]
    if family.name == "relu2nn":
        d = params["W"].shape[1]
        return torch.relu(xs[:, :d] @ params["W"].T) @ params["a"]
    node = torch.zeros(xs.shape[0], dtype=torch.long)  # heap order: children of k are 2k+1, 2k+2
    for _ in range(family.tree_depth):
        go_right = (xs.gather(1, params["coords"][node][:, None])[:, 0] > 0).long()
        node = 2 * node + 1 + go_right
    return params["leaves"][node - (2**family.tree_depth - 1)]


def interleave(xs: Tensor, ys: Tensor) -> Tensor:
    """xs (..., n, d), ys (..., n) -> the prompt (..., 2n, d): x_1, (y_1, 0, ..., 0), x_2, ..."""
    y_tokens = torch.zeros_like(xs)
    y_tokens[..., 0] = ys
    return torch.stack([xs, y_tokens], dim=-2).flatten(-3, -2)


def regression_prompt(
    family: FunctionFamily,
    n_points: int,
    generator: torch.Generator,
    active_dims: int | None = None,
    skew: Tensor | None = None,
) -> dict[str, Tensor]:
    """One prompt: inputs (2n, n_dims), targets (n,) (the noisy values the model sees), xs (n, n_dims)."""
    active = family.n_dims if active_dims is None else active_dims
    xs = sample_inputs(n_points, family.n_dims, active, family.inputs, generator, skew)
    params = sample_function(family, active, generator)
    ys = evaluate_function(family, params, xs)
    if family.noise > 0:
        ys = ys + family.noise * torch.randn(n_points, generator=generator)
    return {"inputs": interleave(xs, ys), "targets": ys, "xs": xs}


class _PromptDataset(Dataset):
    """Item ``i`` is a prompt drawn from ``generator(seed, split, i)``; in training the curricula read
    the step from the sample id (consecutive ids of a batch share a step, so a batch has one shape)."""

    def __init__(
        self,
        family: FunctionFamily,
        n_points: int,
        num_samples: int,
        seed: int,
        split: str,
        extra: int = 0,
        skew: Tensor | None = None,
        batch_size: int = 1,
        dims: Curriculum | None = None,
        points: Curriculum | None = None,
    ) -> None:
        self.family, self.n_points, self.num_samples = family, n_points, num_samples
        self.seed, self.split, self.extra, self.skew = seed, split, extra, skew
        self.batch_size, self.dims, self.points = batch_size, dims, points

    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        step = int(index) // self.batch_size
        active = self.dims.at(step) if self.dims else None
        n_points = self.points.at(step) if self.points else self.n_points
        g = _generator(self.seed, self.split, int(index), self.extra)
        prompt = regression_prompt(self.family, n_points, g, active, self.skew)
        del prompt["xs"]
        return prompt


class ICLRegressionDataModule(SequenceDataModule):
    """Function-regression prompts for in-context learning (``data=icl_regression``).

    Paper values (Garg et al.; Grazzi et al. train the same way): n_dims 20, n_points 41 (2d + 1),
    batch 64, curriculum dims 5 -> 20 and points 11 -> 41 every 2000 steps, 500K steps.

    Evaluation loaders (names in ``val_names``/``test_names``): ``in_dist`` at ``n_points``;
    ``extrapolation`` at ``extrapolation_points`` (more examples than in training; skipped when null);
    one ``ood_<inputs>`` per entry of ``ood_inputs`` (same functions, shifted inputs, e.g. ``orthant``).

    Args:
        family: one of ``FAMILIES``. inputs: the training input distribution.
        noise_std: output noise (None: 1.0 for ``noisy_linear``, else 0). sparsity, hidden_size,
            tree_depth: the sparse-linear, ReLU-network and tree family sizes.
        curriculum_dims, curriculum_points: ``{start, end, inc, interval}`` or None (no curriculum).
    """

    def __init__(
        self,
        family: str = "linear",
        n_dims: int = 20,
        n_points: int = 41,
        inputs: str = "gaussian",
        noise_std: float | None = None,
        sparsity: int = 3,
        hidden_size: int = 100,
        tree_depth: int = 4,
        curriculum_dims: dict[str, int] | None = None,
        curriculum_points: dict[str, int] | None = None,
        extrapolation_points: int | None = None,
        ood_inputs: list[str] | tuple[str, ...] = ("orthant",),
        batch_size: int = 64,
        train_batches_per_epoch: int = 1000,
        num_eval_samples: int = 1280,
        eval_batch_size: int | None = None,
        seed: int = 0,
        num_workers: int = 0,
        pin_memory: bool = False,
    ) -> None:
        super().__init__(batch_size, num_workers, pin_memory, eval_batch_size)
        self.family = FunctionFamily(family, n_dims, inputs, noise_std, sparsity, hidden_size, tree_depth)
        if n_points < 1:
            raise ConfigError(f"data.n_points must be >= 1, got {n_points}")
        self.n_dims, self.n_points = n_dims, n_points
        self.dims_curriculum = Curriculum(**curriculum_dims) if curriculum_dims else None
        self.points_curriculum = Curriculum(**curriculum_points) if curriculum_points else None
        for name, cur, cap in (
            ("dims", self.dims_curriculum, n_dims),
            ("points", self.points_curriculum, n_points),
        ):
            if cur is not None and not 1 <= cur.start <= cur.end <= cap:
                raise ConfigError(
                    f"data.curriculum_{name} must satisfy 1 <= start <= end <= {cap} "
                    f"(data.n_{name}), got start={cur.start}, end={cur.end}"
                )
        if extrapolation_points is not None and extrapolation_points <= n_points:
            raise ConfigError(
                f"data.extrapolation_points={extrapolation_points} must exceed data.n_points={n_points} (or be null)"
            )
        bad = [o for o in ood_inputs if o not in INPUT_DISTRIBUTIONS]
        if bad:
            raise ConfigError(f"data.ood_inputs {bad} unknown; known: {', '.join(INPUT_DISTRIBUTIONS)}")
        self.extrapolation_points = extrapolation_points
        self.ood_inputs = [o for o in ood_inputs if o != inputs]
        self.train_samples = train_batches_per_epoch * batch_size
        self.num_eval_samples = num_eval_samples
        self.seed = seed
        self.skew = skewed_covariance_sqrt(n_dims, seed)

    @property
    def max_points(self) -> int:
        """Most points in any prompt of this module (sizes a model's learned positions: 2x tokens)."""
        return max(self.n_points, self.extrapolation_points or 0)

    def eval_settings(self) -> list[tuple[str, FunctionFamily, int]]:
        """(loader name, family with its input distribution, points) of every evaluation loader."""
        settings = [("in_dist", self.family, self.n_points)]
        if self.extrapolation_points:
            settings.append(("extrapolation", self.family, self.extrapolation_points))
        settings += [(f"ood_{o}", replace(self.family, inputs=o), self.n_points) for o in self.ood_inputs]
        return settings

    @property
    def val_names(self) -> list[str]:
        return [name for name, _, _ in self.eval_settings()]

    def eval_dataset(self, split: str, name: str, num_samples: int | None = None) -> Dataset:
        """The fixed prompts of one evaluation loader (also read by the baselines and the probes)."""
        for index, (loader, family, points) in enumerate(self.eval_settings()):
            if loader == name:
                return _PromptDataset(
                    family,
                    points,
                    num_samples or self.num_eval_samples,
                    self.seed,
                    split,
                    extra=index,
                    skew=self.skew,
                )
        raise KeyError(f"no evaluation set {name!r}; known: {', '.join(self.val_names)}")

    def train_dataloader(self) -> DataLoader:
        dataset = _PromptDataset(
            self.family,
            self.n_points,
            self.train_samples,
            self.seed,
            "train",
            skew=self.skew,
            batch_size=self.batch_size,
            dims=self.dims_curriculum,
            points=self.points_curriculum,
        )
        return ResumableLoader(dataset, self.batch_size, self.train_samples, **self._loader_kwargs())

    def _eval_loaders(self, split: str) -> list[DataLoader]:
        return [self._eval_loader(self.eval_dataset(split, name)) for name in self.val_names]

    def val_dataloader(self) -> list[DataLoader]:
        return self._eval_loaders("val")

    def test_dataloader(self) -> list[DataLoader]:
        return self._eval_loaders("test")
