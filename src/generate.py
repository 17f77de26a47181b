"""Sample from a trained language model with its recurrent state:
``python src/generate.py ckpt_path=<run>/checkpoints/last.ckpt max_new_tokens=64 temperature=0.8``."""

import os
from pathlib import Path

os.environ.setdefault("PROJECT_ROOT", str(Path(__file__).resolve().parents[1]))

from omegaconf import DictConfig  # noqa: E402

import mambabench.utils.resolvers  # noqa: E402,F401
from mambabench.utils.cli import entry_point  # noqa: E402
from mambabench.utils.sampling import sample_from_checkpoint  # noqa: E402


@entry_point("generate.yaml")
def main(cfg: DictConfig) -> None:
    sample_from_checkpoint(cfg)


if __name__ == "__main__":
    main()
