"""FSDP (``trainer=fsdp``, here ``trainer=fsdp_cpu`` with gloo) trains like one plain process at the same
global batch: same validation losses and final weights, with gradient-norm clipping active (FSDP clips
through its root module; Lightning alone refuses norm clipping with FSDP)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch.distributed as dist

from mambabench.utils.run import train
from tests.conftest import ROOT
from tests.distributed.test_ddp_matches_one_process import COMMON, _assert_same_training

DIST_ENV = ("MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "RANK", "LOCAL_RANK", "NODE_RANK")


@pytest.fixture(autouse=True)
def _no_process_group_left():
    """An FSDP run in this process leaves its one-process group and its MASTER_PORT behind; later tests
    (and the processes they start) must not inherit them."""
    before = {key: os.environ.get(key) for key in DIST_ENV}
    yield
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    for key, value in before.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


# a clip value small enough that every step is clipped, so the FSDP clipping path is compared
CLIPPED = [*COMMON, "cpu_threads=1", "trainer.gradient_clip_val=0.05"]


@pytest.mark.parametrize(
    "model",
    ["mamba", pytest.param("transformerpp", marks=pytest.mark.slow)],
)
def test_fsdp_in_one_process_trains_like_plain_training(make_config, model) -> None:
    plain = make_config([*CLIPPED, f"model={model}"], subdir="plain")
    train(plain)
    fsdp = make_config([*CLIPPED, f"model={model}", "trainer=fsdp_cpu", "trainer.devices=1"], subdir="fsdp")
    train(fsdp)
    _assert_same_training(Path(plain.paths.output_dir), Path(fsdp.paths.output_dir))


def test_fsdp_presets_keep_fp32_parameters_and_wrap_each_block(make_config) -> None:
    from hydra.utils import instantiate

    from mambabench.models.block import Block
    from mambabench.utils.fsdp import FSDPStrategyAnyDevice

    for preset in ("fsdp", "fsdp_cpu"):
        strategy = instantiate(make_config([f"trainer={preset}"]).trainer.strategy)
        assert isinstance(strategy, FSDPStrategyAnyDevice)
        mp = strategy.mixed_precision  # no FSDP casts: bf16 comes from autocast, as with one device
        assert (mp.param_dtype, mp.reduce_dtype, mp.buffer_dtype) == (None, None, None)
        assert strategy.kwargs["auto_wrap_policy"]._module_classes == {Block}


@pytest.mark.slow
@pytest.mark.parametrize("model", ["mamba", "transformerpp"])
def test_command_line_fsdp_cpu_with_two_processes_matches_one_process(make_config, tmp_path, model) -> None:
    """``python src/train.py trainer=fsdp_cpu``: two ranks, each holding half of every block's parameters."""
    one = make_config([*CLIPPED, f"model={model}"], subdir="one")
    train(one)
    run_dir = tmp_path / "cli"
    env = {k: v for k, v in os.environ.items() if k not in DIST_ENV}
    env.update(PROJECT_ROOT=str(ROOT), WANDB_MODE="offline")
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "src" / "train.py"),
            *CLIPPED,
            f"model={model}",
            "trainer=fsdp_cpu",
            f"run_dir={run_dir}",
            "print_config=false",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    _assert_same_training(Path(one.paths.output_dir), run_dir)


def test_optimizer_groups_and_flops_follow_the_built_shape_of_flattened_parameters() -> None:
    """FSDP gives the optimizer 1-D shards; a matrix must stay in the weight-decay group and count in
    full towards the model FLOPs (MFU)."""
    from torch import nn

    from mambabench.models.flops import forward_flops_per_token
    from mambabench.tasks.optim import build_param_groups
    from mambabench.utils.built_shapes import built_shape, record_built_shapes

    layer = nn.Linear(4, 3)
    record_built_shapes(layer)
    for param in layer.parameters():
        param.data = param.data.flatten()  # what a sharded FSDP parameter looks like
    groups = {g["group_name"]: g["params"] for g in build_param_groups(layer, 0.1)}
    assert groups["decay"] == [layer.weight] and groups["no_decay"] == [layer.bias]
    assert built_shape(layer.weight) == (3, 4) and built_shape(nn.Linear(2, 5).weight) == (5, 2)
    layer.weight.data = layer.weight.data[:5]  # this rank's shard
    assert forward_flops_per_token(layer, seq_len=8) == 2 * 4 * 3
