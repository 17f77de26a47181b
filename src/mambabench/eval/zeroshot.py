"""``python src/eval.py task=zeroshot ckpt_path=<run>/checkpoints/last.ckpt zeroshot.tasks=[...]``: Table 3.

The network comes from a training checkpoint (its run's saved config gives the model and the
tokenizer) or, with ``model=pretrained model.pretrained=<dir>`` and ``ckpt_path=null``, from a released
checkpoint. Results are printed next to the paper's values for the Mamba size nearest in parameters and
written to ``summary.json``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from mambabench.data.tokenizers import load_text_tokenizer
from mambabench.eval.lm_harness import PAPER_METRICS, run_zeroshot
from mambabench.utils.errors import ConfigError

log = logging.getLogger(__name__)

#: mamba-paper.md §3.2, Table 3 (Mamba rows): LAMBADA ppl, then accuracies in %
PAPER_TABLE3 = {
    "mamba-130m": {
        "lambada_openai/perplexity": 16.07,
        "lambada_openai/acc": 44.3,
        "hellaswag/acc_norm": 35.3,
        "piqa/acc": 64.5,
        "arc_easy/acc": 48.0,
        "arc_challenge/acc_norm": 24.3,
        "winogrande/acc": 51.9,
    },
    "mamba-370m": {
        "lambada_openai/perplexity": 8.14,
        "lambada_openai/acc": 55.6,
        "hellaswag/acc_norm": 46.5,
        "piqa/acc": 69.5,
        "arc_easy/acc": 55.1,
        "arc_challenge/acc_norm": 28.0,
        "winogrande/acc": 55.3,
    },
    "mamba-790m": {
        "lambada_openai/perplexity": 6.02,
        "lambada_openai/acc": 62.7,
        "hellaswag/acc_norm": 55.1,
        "piqa/acc": 72.1,
        "arc_easy/acc": 61.2,
        "arc_challenge/acc_norm": 29.5,
        "winogrande/acc": 56.1,
    },
    "mamba-1.4b": {
        "lambada_openai/perplexity": 5.04,
        "lambada_openai/acc": 64.9,
        "hellaswag/acc_norm": 59.1,
        "piqa/acc": 74.2,
        "arc_easy/acc": 65.5,
        "arc_challenge/acc_norm": 32.8,
        "winogrande/acc": 61.5,
    },
    "mamba-2.8b": {
        "lambada_openai/perplexity": 4.23,
        "lambada_openai/acc": 69.2,
        "hellaswag/acc_norm": 66.1,
        "piqa/acc": 75.2,
        "arc_easy/acc": 69.7,
        "arc_challenge/acc_norm": 36.3,
        "winogrande/acc": 63.5,
    },
}
_PAPER_PARAMS = {
    "mamba-130m": 129e6,
    "mamba-370m": 372e6,
    "mamba-790m": 793e6,
    "mamba-1.4b": 1.37e9,
    "mamba-2.8b": 2.77e9,
}


def paper_row(params: int) -> str:
    """The released Mamba size nearest (in log parameters) to ``params``."""
    import math

    return min(_PAPER_PARAMS, key=lambda k: abs(math.log(_PAPER_PARAMS[k] / params)))


def _network(cfg: DictConfig) -> nn.Module:
    from mambabench.utils.build import build_datamodule, build_network

    datamodule = build_datamodule(cfg)
    network = build_network(cfg, datamodule)
    if not OmegaConf.is_missing(cfg, "ckpt_path") and cfg.ckpt_path:
        ckpt = torch.load(cfg.ckpt_path, map_location="cpu", weights_only=False)
        state = {
            k.removeprefix("network.").removeprefix("_orig_mod."): v
            for k, v in ckpt["state_dict"].items()
            if k.startswith("network.")
        }
        network.load_state_dict(state)
    elif not str(cfg.model.get("_target_", "")).endswith("load_pretrained"):
        raise ConfigError(
            "task=zeroshot needs ckpt_path=<run>/checkpoints/last.ckpt, or model=pretrained "
            "model.pretrained=<released checkpoint folder> with ckpt_path=null"
        )
    return network


def evaluate_zeroshot(cfg: DictConfig) -> dict[str, Any]:
    """Run the configured zero-shot tasks and print them next to Table 3."""
    z = cfg.zeroshot
    network = _network(cfg)
    tokenizer = load_text_tokenizer(str(cfg.data.get("tokenizer", "gpt-neox")))
    device = z.get("device") or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda":
        network = network.to(torch.bfloat16 if z.get("bf16", True) else torch.float32)
    results = run_zeroshot(
        network,
        tokenizer,
        list(z.tasks),
        int(z.batch_size),
        int(z.max_length),
        z.get("limit"),
        z.get("include_path"),
        device,
    )
    params = sum(p.numel() for p in network.parameters())
    row = paper_row(params)
    paper = PAPER_TABLE3[row]
    lines = [f"{'task':<24} {'metric':<12}{'ours':>10}{row:>14}"]
    for task, metrics in results.items():
        for metric in PAPER_METRICS.get(task, tuple(m for m in metrics if m != "sample_len")):
            if metric in metrics:
                ours = metrics[metric] * (1 if metric == "perplexity" else 100)
                ref = paper.get(f"{task}/{metric}")
                lines.append(f"{task:<24} {metric:<12}{ours:>10.2f}{'' if ref is None else f'{ref:.2f}':>14}")
    log.info("\n".join(lines))
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    summary = {
        "results": results,
        "paper_row": row,
        "paper": paper,
        "params": params,
        "ckpt_path": None if OmegaConf.is_missing(cfg, "ckpt_path") else cfg.ckpt_path,
    }
    (output_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
