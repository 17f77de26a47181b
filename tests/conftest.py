"""Shared fixtures: compose Hydra configs the way the entry points do, shrunk for CPU tests."""

from __future__ import annotations

import os
from pathlib import Path

# Triton decides between compiling and interpreting when a kernel is decorated, i.e. when a kernel
# module is first imported, which any test module may trigger during collection: set it first.
if os.environ.get("MAMBABENCH_KERNEL_DEVICE", "cpu") == "cpu":
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = ROOT / "configs"
os.environ.setdefault("PROJECT_ROOT", str(ROOT))
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")

import mambabench.utils.resolvers  # noqa: E402,F401

torch.set_num_threads(min(2, torch.get_num_threads()))


# a tiny selective-copying job shared by the resume, fault and DDP tests
TINY_JOB = [
    "data.seq_len=32",
    "data.num_tokens_memorize=4",
    "data.batch_size=4",
    "data.num_val_samples=8",
    "data.num_test_samples=8",
    "model.d_model=16",
    "trainer.val_check_interval=3",
    "logger=csv",
]


def checkpoint_weights(path: Path | str) -> dict[str, torch.Tensor]:
    """The model weights (Lightning ``state_dict``) stored in a checkpoint file."""
    return torch.load(path, map_location="cpu", weights_only=False)["state_dict"]


def compose_config(
    overrides: list[str], output_dir: Path, config_name: str = "train.yaml", quiet: bool = True
) -> DictConfig:
    """Compose ``configs/<config_name>`` with ``overrides`` as `python src/train.py` would, with the run
    directory at ``output_dir``, no loggers and no progress bar unless asked for."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR)):
        cfg = compose(config_name=config_name, overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(output_dir)
        cfg.hydra.job.num = 0
        if quiet:
            cfg.print_config = False
            if "callbacks" in cfg and cfg.callbacks and "progress_bar" in cfg.callbacks:
                cfg.callbacks.progress_bar = None
            if "trainer" in cfg:
                cfg.trainer.enable_progress_bar = False
                cfg.trainer.enable_model_summary = False
    HydraConfig().set_config(cfg)
    return cfg


@pytest.fixture
def one_thread():
    """One intra-op thread for tests of tiny models: on a shared CPU, two threads per op are several
    times slower. Use with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def make_config(tmp_path: Path):
    """``make_config(overrides, name="train.yaml")`` -> composed config writing into tmp_path."""

    def _make(overrides: list[str], config_name: str = "train.yaml", subdir: str = "run") -> DictConfig:
        return compose_config(overrides, tmp_path / subdir, config_name)

    yield _make
    GlobalHydra.instance().clear()


def config_options(group: str) -> list[str]:
    """Names of the yaml files of a config group (e.g. "model" -> ["mamba", ...])."""
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))


def experiment_names() -> list[str]:
    base = CONFIG_DIR / "experiment"
    return sorted(str(p.relative_to(base).with_suffix("")) for p in base.rglob("*.yaml"))


# ------------------------------------------------------------------------- shipped real test data
DATASETS_DIR = ROOT / "tests" / "data" / "datasets"


@pytest.fixture(scope="session", autouse=True)
def dataset_dir(tmp_path_factory: pytest.TempPathFactory):
    """A data folder (``MAMBABENCH_DATA``) holding a copy of ``tests/data/datasets/*``: small slices of the
    real datasets in the layout ``scripts/prepare_data.py`` writes, so every data config runs in tests
    without preparing anything. Copied so that indexes (``.fai``) written on first use stay out of the repo."""
    import shutil

    target = tmp_path_factory.mktemp("data")
    for folder in DATASETS_DIR.iterdir():
        if folder.is_dir():
            shutil.copytree(folder, target / folder.name)
    previous = os.environ.get("MAMBABENCH_DATA")
    os.environ["MAMBABENCH_DATA"] = str(target)
    yield target
    if previous is None:
        os.environ.pop("MAMBABENCH_DATA", None)
    else:
        os.environ["MAMBABENCH_DATA"] = previous
