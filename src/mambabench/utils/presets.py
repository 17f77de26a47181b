"""Build a network from a model preset of ``configs/model`` outside a Hydra run (benchmark scripts)."""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import open_dict
from torch import nn


def compose_model(spec: str, vocab_size: int, config_dir: Path) -> nn.Module:
    """Instantiate a model preset for ``vocab_size`` tokens. ``spec`` is a model choice, optionally
    followed by comma-separated Hydra overrides: ``transformerpp,+model/size=transformerpp_125m``."""
    name, *overrides = spec.split(",")
    with initialize_config_dir(version_base="1.3", config_dir=str(config_dir)):
        cfg = compose(config_name="train.yaml", overrides=[f"model={name}", *overrides])
    with open_dict(cfg):
        cfg.model.vocab_size = vocab_size
    return instantiate(cfg.model, _convert_="all")
