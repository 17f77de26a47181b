"""In-context regression models and presets: read-in/read-out over the framework's backbones, causal
predictions, per-layer states for probes, the task's curves, paper values and matched sizes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from omegaconf import open_dict

from mambabench.data.icl import ICLRegressionDataModule
from mambabench.eval.icl import evaluate_runs
from mambabench.eval.icl_figures import plot_error_curves, plot_probe_errors
from mambabench.utils.build import build_datamodule, build_network, count_parameters
from mambabench.utils.run import train

ARCHS = ("mamba", "transformer", "s4", "rwkv")


@pytest.mark.parametrize("arch", ARCHS)
def test_models_are_causal_and_expose_layers(make_config, arch: str) -> None:
    cfg = make_config(
        ["experiment=icl/linear/mini", f"model=icl/mini/{arch}", "model.d_model=16", "model.n_layer=2"]
    )
    dm = build_datamodule(cfg)
    net = build_network(cfg, dm).eval()
    inputs = dm.eval_dataset("test", "in_dist", 3)[0]["inputs"][None].repeat(2, 1, 1)
    inputs[1, 9:] = torch.randn_like(inputs[1, 9:])  # change the future from vector 9 on
    with torch.no_grad():
        out, layers = net(inputs, return_layers=True)
    assert out.shape == (2, 22, 1) and len(layers) == 3 and layers[0].shape == (2, 22, 16)
    assert torch.allclose(out[0, :9], out[1, :9], atol=1e-5)


def test_presets_carry_paper_values_and_matched_sizes(make_config) -> None:
    sizes = {}
    for arch in ARCHS:
        cfg = make_config(["experiment=icl/linear/paper", f"model=icl/{arch}"])
        assert (cfg.data.n_dims, cfg.data.n_points, cfg.data.batch_size) == (20, 41, 64)
        assert dict(cfg.data.curriculum_dims) == {"start": 5, "end": 20, "inc": 1, "interval": 2000}
        assert dict(cfg.data.curriculum_points) == {"start": 11, "end": 41, "inc": 2, "interval": 2000}
        assert cfg.optimizer.lr == 1e-4 and cfg.trainer.max_steps == 500_000
        sizes[arch] = count_parameters(build_network(cfg, build_datamodule(cfg)))["total"]
    assert 9.4e6 < sizes["transformer"] < 9.7e6  # Garg et al.'s GPT-2 (12 layers, 256 wide): 9.5M
    for arch, size in sizes.items():
        assert abs(size / sizes["transformer"] - 1) < 0.12, (arch, sizes)
    mini = {
        arch: count_parameters(build_network(cfg, build_datamodule(cfg)))["total"]
        for arch in ARCHS
        for cfg in [make_config(["experiment=icl/linear/mini", f"model=icl/mini/{arch}"])]
    }
    assert all(abs(size / mini["mamba"] - 1) < 0.25 for size in mini.values()), mini
    tree = make_config(["experiment=icl/tree/paper"])
    assert (tree.data.family, tree.data.n_points, tree.data.tree_depth) == ("tree", 101, 4)
    positions = make_config(["experiment=icl/relu2nn/paper", "model=icl/transformer"]).model.max_seq_len
    assert positions == 404  # learned positions cover the 202-example extrapolation prompts


def test_training_run_writes_curves_and_the_report_reads_it(make_config, tmp_path: Path) -> None:
    cfg = make_config(
        [
            "experiment=icl/sparse_linear/mini",
            "model=icl/mini/transformer",
            "logger=[]",
            "callbacks=default",
            "callbacks.progress_bar=null",
            "data.num_eval_samples=8",
            "data.batch_size=8",
            "trainer.max_steps=2",
            "trainer.val_check_interval=2",
        ]
    )
    with open_dict(cfg):
        cfg.model.d_model, cfg.model.n_layer = 16, 1
    train(cfg)
    run = Path(cfg.paths.output_dir)
    summary = json.loads((run / "summary.json").read_text())
    curves = summary["icl_curves"]["test"]
    assert set(curves) == {"in_dist", "extrapolation", "ood_orthant", "ood_skewed"}
    assert len(curves["in_dist"]) == 11 and len(curves["extrapolation"]) == 21
    assert (run / "icl" / "test_curves.csv").exists()
    rows, probes = evaluate_runs([run], num_prompts=8, probe_prompts=32)
    names = {(r.kind, r.name) for r in rows}
    assert {("baseline", "lasso"), ("baseline", "least_squares")} <= names and "model" in {
        k for k, _ in names
    }
    model_in_dist = [r.error for r in rows if r.kind == "model" and r.loader == "in_dist"]
    assert model_in_dist == pytest.approx(curves["in_dist"], rel=1e-3)  # the report and the run agree
    assert {p["layer"] for p in probes} == {0, 1}
    figures = plot_error_curves([r.__dict__ for r in rows], tmp_path) + plot_probe_errors(probes, tmp_path)
    assert all(p.exists() for p in figures) and len(figures) == 4


@pytest.mark.slow
def test_mamba_learns_linear_regression_in_context() -> None:
    """A small Mamba trained a few hundred steps predicts better with more examples (CPU, minutes)."""
    from hydra.utils import instantiate

    from mambabench.eval.icl import model_curve, stack_prompts
    from mambabench.eval.icl_baselines import least_squares
    from tests.conftest import compose_config

    torch.manual_seed(0)
    cfg = compose_config(
        ["experiment=icl/linear/mini", "data.n_dims=3", "data.n_points=7"], Path("/tmp/unused")
    )
    dm: ICLRegressionDataModule = instantiate(cfg.data, _convert_="all")
    net = build_network(cfg, dm)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    for step, batch in enumerate(dm.train_dataloader()):
        loss = (net(batch["inputs"])[:, 0::2, 0] - batch["targets"]).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step == 600:
            break
    inputs, targets = stack_prompts(dm, "in_dist", 256)
    curve = model_curve(net.eval(), inputs, targets, 3)
    ls = (least_squares(inputs[:, 0::2], targets) - targets).square().mean(0) / 3
    assert curve[-1] < 0.5 * curve[0]  # error falls with the number of examples
    assert curve[-1] < 0.35 and ls[-1] < 1e-6  # towards least squares, exact from k = d
