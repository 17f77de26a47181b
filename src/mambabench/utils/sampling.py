"""What ``src/generate.py`` does: rebuild a run's network from its saved config, load the checkpoint,
sample continuations with the recurrent step, print them as a user reads them (decoded text, DNA bases
or the task's symbols, the prompt marked off from the continuation) and save them."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import torch
from omegaconf import DictConfig

from mambabench.models.generation import generate, keep_by_likelihood
from mambabench.utils.build import build_datamodule, build_network
from mambabench.utils.checkpoint import checkpoint_file, read_checkpoint
from mambabench.utils.errors import ConfigError
from mambabench.utils.run import _saved_run_config

log = logging.getLogger("mambabench.generate")


def decode_tokens(datamodule: object, ids: list[int]) -> str:
    """Token ids as a user reads them: the data module's ``decode`` (the task's symbols), else its
    tokenizer's (text, DNA bases), else the ids themselves separated by spaces."""
    for decoder in (
        getattr(datamodule, "decode", None),
        getattr(getattr(datamodule, "tokenizer", None), "decode", None),
    ):
        if callable(decoder):
            return str(decoder(ids))
    return " ".join(map(str, ids))


def format_sample(index: int, sample: dict, show_ids: bool = False) -> str:
    """Lines of one sample: the prompt, then the continuation, labelled (and their ids if asked)."""
    lines = [
        f"sample {index}",
        f"  prompt       ({len(sample['prompt_ids'])} tokens): {sample['prompt']}",
        f"  continuation ({len(sample['continuation_ids'])} tokens): {sample['continuation']}",
    ]
    if show_ids:
        lines += [
            f"  prompt ids:       {' '.join(map(str, sample['prompt_ids']))}",
            f"  continuation ids: {' '.join(map(str, sample['continuation_ids']))}",
        ]
    return "\n".join(lines)


def load_network(ckpt_path: Path, device: str = "cpu") -> tuple[torch.nn.Module, DictConfig, object]:
    """The trained network of a checkpoint (and its run config and data module), in eval mode."""
    run_cfg = _saved_run_config(ckpt_path)
    if run_cfg is None:
        raise ConfigError(
            f"no config.yaml found next to '{ckpt_path}'; is it a checkpoint of a mambabench run?"
        )
    datamodule = build_datamodule(run_cfg)
    network = build_network(run_cfg, datamodule)
    state = read_checkpoint(ckpt_path)["state_dict"]
    prefix = "network."
    network.load_state_dict(
        {k[len(prefix) :].replace("_orig_mod.", ""): v for k, v in state.items() if k.startswith(prefix)}
    )
    return network.to(device).eval(), run_cfg, datamodule


def sample_from_checkpoint(cfg: DictConfig) -> torch.Tensor:
    """Generate ``num_samples`` continuations; prompts are ``prompt_ids`` or test-set prefixes."""
    ckpt = checkpoint_file(cfg.ckpt_path)  # a run directory is accepted: its last.ckpt
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
    sample_rate = getattr(datamodule, "sample_rate", None)  # audio data: tokens are mu-law samples
    reject_lowest, reject_highest = float(cfg.get("reject_lowest", 0)), float(cfg.get("reject_highest", 0))
    out, logprobs = generate(
        network,
        prompt.to(cfg.device),
        cfg.max_new_tokens,
        cfg.temperature,
        cfg.top_k,
        cfg.top_p,
        generator=generator,
        progress=bool(sample_rate),
        cuda_graph=cfg.get("cuda_graph"),
        max_seconds=cfg.get("max_seconds"),
        return_logprobs=True,
    )
    new_tokens = max(out.shape[1] - prompt.shape[1], 1)
    bits = (-logprobs / math.log(2) / new_tokens).tolist()  # bits per generated token
    kept = keep_by_likelihood(logprobs, reject_lowest, reject_highest)
    if len(kept) < len(out):
        log.info(
            f"rejection by likelihood: kept {len(kept)} of {len(out)} samples (dropped the "
            f"{reject_lowest:.0%} least and {reject_highest:.0%} most likely)"
        )
        kept_rows = sorted(kept.tolist())
        out, bits = out[kept_rows], [bits[i] for i in kept_rows]
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    samples = []
    for index, row in enumerate(out.tolist()):
        prompt_ids, new_ids = row[: prompt.shape[1]], row[prompt.shape[1] :]
        samples.append(
            {
                "prompt": decode_tokens(datamodule, prompt_ids),
                "continuation": decode_tokens(datamodule, new_ids),
                "prompt_ids": prompt_ids,
                "continuation_ids": new_ids,
                "bits_per_token": bits[index],
            }
        )
        if not sample_rate:  # audio samples are written as WAV files below, not printed
            text = format_sample(index, samples[-1], show_ids=bool(cfg.get("show_ids", False)))
            print(text, flush=True)
            log.debug(text)  # the run's generate.log keeps them too
    if sample_rate:
        from mambabench.data.audio_io import write_audio_samples

        write_audio_samples(
            out[:, prompt.shape[1] :],
            output_dir / "audio",
            sample_rate,
            spectrograms=int(cfg.get("spectrograms", 4)),
            wandb_log=bool(cfg.get("wandb", False)),
        )
    (output_dir / "samples.json").write_text(
        json.dumps({"ckpt_path": str(ckpt), "samples": samples}, indent=1)
    )
    print(f"samples saved to {output_dir / 'samples.json'}", flush=True)
    return out
