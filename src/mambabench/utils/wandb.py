"""W&B set-up that never blocks: offline unless the user is logged in, run ids reused on resume."""

from __future__ import annotations

import netrc
import os
from pathlib import Path

from omegaconf import DictConfig, open_dict

WANDB_ID_FILE = "wandb_id.txt"


def has_wandb_credentials() -> bool:
    """True when an API key is in the environment or ~/.netrc (what `wandb login` writes)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def prepare_wandb(node: DictConfig, previous_run_dir: str | Path | None = None) -> DictConfig:
    """Copy of a WandbLogger config that runs offline without credentials and resumes the W&B run of
    the output directory, or of ``previous_run_dir`` (the run a resumed checkpoint came from)."""
    node = node.copy()
    if not has_wandb_credentials() and not os.environ.get("WANDB_MODE"):
        os.environ["WANDB_MODE"] = "offline"
    with open_dict(node):
        if os.environ.get("WANDB_MODE") == "offline":
            node["offline"] = True
        candidates = [Path(node.get("save_dir") or ".")] + ([Path(previous_run_dir)] if previous_run_dir else [])
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
