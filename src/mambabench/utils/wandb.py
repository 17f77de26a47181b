"""W&B set-up that never blocks: offline unless the user is logged in, run ids reused on resume; every run
carries a group (its experiment preset), a job type (the paper table or figure: the preset's topic) and
tags (model, data, size and the ablation knobs) so that W&B's group-by and parallel-coordinates views
compare baselines without editing."""

from __future__ import annotations

import netrc
import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, open_dict

WANDB_ID_FILE = "wandb_id.txt"
# mixer settings that the paper's ablations sweep (Tables 6-10), tagged when a run's mixer has them
ABLATION_KEYS = (
    "inner_layer",
    "d_state",
    "dt_rank",
    "A_init",
    "selective_delta",
    "selective_B",
    "selective_C",
)


def comparison_fields(cfg: DictConfig, choices: dict[str, Any]) -> dict[str, Any]:
    """group, job_type and tags of a run, from its config and Hydra choices.

    group: the experiment preset (``ablations/table1/mini``), else ``<model>-<data>``; job_type: the
    preset's topic, i.e. the table or figure (``ablations/table1``), else the task name; tags: the
    config's tags plus ``model=``, ``data=``, ``d_model=``, ``n_layer=`` and the ablation knobs.
    """
    experiment = choices.get("experiment")
    model, data = choices.get("model"), choices.get("data")
    tags = [str(t) for t in (cfg.get("tags") or [])] + [f"model={model}", f"data={data}"]
    net = cfg.get("model") or {}
    tags += [f"{key}={net[key]}" for key in ("d_model", "n_layer") if net.get(key) is not None]
    mixer = net.get("mixer") or {}
    tags += [
        f"{key}={mixer[key]}"
        for key in ABLATION_KEYS
        if isinstance(mixer, dict | DictConfig) and mixer.get(key) is not None
    ]
    return {
        "group": experiment or f"{model}-{data}",
        "job_type": experiment.rpartition("/")[0] or experiment
        if experiment
        else cfg.get("task_name", "train"),
        "tags": list(dict.fromkeys(tags)),
    }


def has_wandb_credentials() -> bool:
    """True when an API key is in the environment or ~/.netrc (what `wandb login` writes)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def prepare_wandb(
    node: DictConfig, previous_run_dir: str | Path | None = None, comparison: dict[str, Any] | None = None
) -> DictConfig:
    """Copy of a WandbLogger config that runs offline without credentials and resumes the W&B run of
    the output directory, or of ``previous_run_dir`` (the run a resumed checkpoint came from).
    ``comparison`` (from :func:`comparison_fields`) fills group and job_type where the config leaves
    them null and adds its tags."""
    node = node.copy()
    if not has_wandb_credentials() and not os.environ.get("WANDB_MODE"):
        os.environ["WANDB_MODE"] = "offline"
    with open_dict(node):
        if comparison:
            for key in ("group", "job_type"):
                if node.get(key) is None:
                    node[key] = comparison[key]
            node["tags"] = list(dict.fromkeys([*(node.get("tags") or []), *comparison["tags"]]))
        if os.environ.get("WANDB_MODE") == "offline":
            node["offline"] = True
        candidates = [Path(node.get("save_dir") or ".")] + (
            [Path(previous_run_dir)] if previous_run_dir else []
        )
        id_file = next((d / WANDB_ID_FILE for d in candidates if (d / WANDB_ID_FILE).exists()), None)
        if node.get("id") is None and id_file is not None:
            node["id"] = id_file.read_text().strip()
            node["resume"] = "allow"
    return node


def remember_wandb_id(loggers: list, output_dir: str) -> None:
    """Write the W&B run id next to the checkpoints so that a resumed run continues the same W&B run."""
    for logger in loggers:
        if type(logger).__name__ == "WandbLogger":
            Path(output_dir, WANDB_ID_FILE).write_text(str(logger.version))
