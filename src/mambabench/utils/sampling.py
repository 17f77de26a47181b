"""What ``src/generate.py`` does: rebuild a run's network from its saved config, load the checkpoint,
sample continuations with the recurrent step, print and save them."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from omegaconf import DictConfig

from mambabench.models.generation import generate
from mambabench.utils.build import build_datamodule, build_network
from mambabench.utils.errors import ConfigError
from mambabench.utils.run import _saved_run_config

log = logging.getLogger(__name__)


def load_network(ckpt_path: Path, device: str = "cpu") -> tuple[torch.nn.Module, DictConfig, object]:
    """The trained network of a checkpoint (and its run config and data module), in eval mode."""
    run_cfg = _saved_run_config(ckpt_path)
    if run_cfg is None:
        raise ConfigError(f"no config.yaml found next to '{ckpt_path}'; is it a checkpoint of a mambabench run?")
    datamodule = build_datamodule(run_cfg)
    network = build_network(run_cfg, datamodule)
    state = torch.load(ckpt_path, map_location="cpu", weights_only=False)["state_dict"]
    prefix = "network."
    network.load_state_dict({k[len(prefix):].replace("_orig_mod.", ""): v for k, v in state.items()
                             if k.startswith(prefix)})
    return network.to(device).eval(), run_cfg, datamodule


def sample_from_checkpoint(cfg: DictConfig) -> torch.Tensor:
    """Generate ``num_samples`` continuations; prompts are ``prompt_ids`` or test-set prefixes."""
    ckpt = Path(cfg.ckpt_path)
    if not ckpt.exists():
        raise ConfigError(f"checkpoint '{ckpt}' does not exist")
    network, _, datamodule = load_network(ckpt, cfg.device)
    if not hasattr(network, "step"):
        raise ConfigError(f"{type(network).__name__} has no recurrent step; it cannot generate")
    if cfg.get("prompt_ids"):
        prompt = torch.tensor([list(cfg.prompt_ids)] * cfg.num_samples)
    else:
        datamodule.setup("test")
        batch = next(iter(datamodule.test_dataloader()))
        batch = batch[0] if isinstance(batch, list) else batch
        prompt = batch["input_ids"][: cfg.num_samples, : cfg.prompt_len]
    generator = torch.Generator(device=cfg.device).manual_seed(int(cfg.seed))
    out = generate(network, prompt.to(cfg.device), cfg.max_new_tokens, cfg.temperature, cfg.top_k, cfg.top_p,
                   generator=generator)
    for row in out.tolist():
        log.info(" ".join(map(str, row)))
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "samples.json").write_text(json.dumps({"ckpt_path": str(ckpt), "samples": out.tolist()}))
    return out
