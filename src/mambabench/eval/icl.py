"""Evaluate trained in-context regression runs next to the baselines, on the same prompts.

For each run directory (``config.yaml`` + a checkpoint, as ``src/train.py`` leaves them) the run's data
module rebuilds its fixed test prompts: in distribution, with more examples than trained on
(``extrapolation``) and with shifted inputs (``ood_*``). The model and every baseline give one error
curve per loader (normalised squared error vs number of in-context examples); optionally linear probes
give the error per layer and position. Rows go to ``curves.csv`` and ``probes.csv``, which
:mod:`mambabench.eval.icl_figures` draws.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn

from mambabench.data.icl import ICLRegressionDataModule
from mambabench.eval.icl_baselines import FAMILY_BASELINES, PER_PROMPT_BASELINES, baseline
from mambabench.eval.icl_probe import probe_errors
from mambabench.utils.build import build_datamodule, build_network
from mambabench.utils.errors import ConfigError

CURVE_FIELDS = ("kind", "name", "family", "preset", "loader", "examples", "train_points", "error", "run_dir")
PROBE_FIELDS = ("name", "family", "preset", "layer", "n_layer", "examples", "error", "run_dir")


@dataclass
class CurveRow:
    kind: str  # "model" or "baseline"
    name: str
    family: str
    preset: str
    loader: str
    examples: int
    train_points: int
    error: float
    run_dir: str = ""


@dataclass
class ICLRun:
    """A trained run: its config, data module, network (weights loaded, eval mode) and labels."""

    run_dir: Path
    cfg: DictConfig
    datamodule: ICLRegressionDataModule
    network: nn.Module
    name: str
    preset: str


def _architecture(summary: dict, cfg: DictConfig) -> str:
    choice = str(summary.get("choices", {}).get("model") or "")
    if choice:
        return choice.rsplit("/", 1)[-1]
    return str(cfg.model.get("mixer", {}).get("_target_", "model")).rsplit(".", 1)[-1].lower()


def load_run(run_dir: str | Path, device: str | torch.device = "cpu") -> ICLRun:
    """Rebuild a run's data module and network from ``config.yaml`` and load its best (else last) weights."""
    run_dir = Path(run_dir)
    config = run_dir / "config.yaml"
    if not config.exists():
        raise ConfigError(f"'{run_dir}' has no config.yaml; pass run directories written by src/train.py")
    cfg = OmegaConf.load(config)
    summary_path = run_dir / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    datamodule = build_datamodule(cfg)
    if not isinstance(datamodule, ICLRegressionDataModule):
        raise ConfigError(f"run '{run_dir}' trained on {type(datamodule).__name__}, not data=icl_regression")
    network = build_network(cfg, datamodule)
    ckpt = summary.get("best_ckpt") or summary.get("last_ckpt") or str(run_dir / "checkpoints" / "last.ckpt")
    if not Path(ckpt).exists():
        raise ConfigError(f"run '{run_dir}' has no checkpoint ({ckpt}); train it first")
    state = torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]
    weights = {
        k.split("network.", 1)[1].replace("_orig_mod.", ""): v
        for k, v in state.items()
        if k.startswith("network.")
    }
    network.load_state_dict(weights)
    network.to(device).eval()
    tags = [str(t) for t in cfg.get("tags") or []]
    preset = str(summary.get("choices", {}).get("experiment") or "/".join(tags))
    return ICLRun(run_dir, cfg, datamodule, network, _architecture(summary, cfg), preset)


def stack_prompts(
    datamodule: ICLRegressionDataModule, loader: str, num_prompts: int, split: str = "test"
) -> tuple[Tensor, Tensor]:
    """inputs (P, 2n, d) and targets (P, n) of the first ``num_prompts`` prompts of an evaluation set."""
    dataset = datamodule.eval_dataset(split, loader, num_prompts)
    items = [dataset[i] for i in range(len(dataset))]
    return torch.stack([it["inputs"] for it in items]), torch.stack([it["targets"] for it in items])


@torch.no_grad()
def model_curve(
    network: nn.Module, inputs: Tensor, targets: Tensor, n_dims: int, batch_size: int = 256
) -> Tensor:
    """Mean normalised squared error per position (n,) of a VectorSequenceModel on the prompts."""
    device = next(network.parameters()).device
    total = torch.zeros(targets.shape[1], dtype=torch.float64)
    for start in range(0, inputs.shape[0], batch_size):
        predictions = network(inputs[start : start + batch_size].to(device))[:, 0::2, 0].float().cpu()
        total += (predictions - targets[start : start + batch_size]).square().sum(0).double()
    return (total / inputs.shape[0] / n_dims).float()


def baseline_curve(name: str, inputs: Tensor, targets: Tensor, n_dims: int) -> Tensor:
    """Mean normalised squared error per position (n,) of a baseline on the prompts' (x, y) pairs."""
    xs = inputs[:, 0::2]
    predictions = baseline(name)(xs, targets)
    return ((predictions - targets).square().mean(0) / n_dims).float()


def evaluate_runs(
    run_dirs: Iterable[str | Path],
    baselines: Sequence[str] | None = None,
    num_prompts: int = 512,
    per_prompt_limit: int = 64,
    probe: bool = True,
    probe_prompts: int = 1024,
    device: str = "cpu",
) -> tuple[list[CurveRow], list[dict]]:
    """Curves of every run and of the baselines (each baseline once per distinct evaluation set) and,
    with ``probe``, the probe errors on the in-distribution prompts. ``baselines=None`` takes the
    family's defaults (``FAMILY_BASELINES``); slow per-prompt baselines see ``per_prompt_limit`` prompts."""
    rows: list[CurveRow] = []
    probes: list[dict] = []
    done: set[tuple] = set()
    for run_dir in run_dirs:
        run = load_run(run_dir, device)
        dm = run.datamodule
        family = dm.family.name if dm.family.inputs == "gaussian" else f"{dm.family.name}_{dm.family.inputs}"
        for loader in dm.val_names:
            inputs, targets = stack_prompts(dm, loader, num_prompts)
            curve = model_curve(run.network, inputs, targets, dm.n_dims)
            rows += [
                CurveRow(
                    "model", run.name, family, run.preset, loader, k, dm.n_points, float(e), str(run_dir)
                )
                for k, e in enumerate(curve)
            ]
            data_key = (family, loader, dm.n_dims, inputs.shape[1], dm.seed, num_prompts)
            for name in baselines if baselines is not None else FAMILY_BASELINES[dm.family.name]:
                if (name, *data_key) in done:
                    continue
                done.add((name, *data_key))
                limit = per_prompt_limit if name in PER_PROMPT_BASELINES else num_prompts
                curve = baseline_curve(name, inputs[:limit], targets[:limit], dm.n_dims)
                rows += [
                    CurveRow("baseline", name, family, run.preset, loader, k, dm.n_points, float(e))
                    for k, e in enumerate(curve)
                ]
        if probe:
            fit_inputs, fit_targets = stack_prompts(dm, "in_dist", probe_prompts, split="probe")
            test_inputs, test_targets = stack_prompts(dm, "in_dist", num_prompts)
            errors = probe_errors(
                run.network,
                fit_inputs.to(device),
                fit_targets,
                test_inputs.to(device),
                test_targets,
                dm.n_dims,
            )
            for layer in range(errors.shape[0]):
                probes += [
                    {
                        "name": run.name,
                        "family": family,
                        "preset": run.preset,
                        "layer": layer,
                        "n_layer": errors.shape[0] - 1,
                        "examples": k,
                        "error": float(e),
                        "run_dir": str(run_dir),
                    }
                    for k, e in enumerate(errors[layer])
                ]
    return rows, probes


def write_rows(rows: Sequence[CurveRow | dict], path: Path, fields: Sequence[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(fields))
        writer.writeheader()
        for row in rows:
            writer.writerow(asdict(row) if isinstance(row, CurveRow) else row)
    return path


def read_rows(path: Path) -> list[dict]:
    with Path(path).open() as f:
        return list(csv.DictReader(f))
