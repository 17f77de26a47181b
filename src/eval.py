"""Evaluate a checkpoint on the test split: ``python src/eval.py ckpt_path=<run>/checkpoints/last.ckpt``."""

import os
from pathlib import Path

os.environ.setdefault("PROJECT_ROOT", str(Path(__file__).resolve().parents[1]))

from omegaconf import DictConfig  # noqa: E402

import mambabench.utils.resolvers  # noqa: E402,F401
from mambabench.utils.cli import entry_point  # noqa: E402
from mambabench.utils.run import evaluate  # noqa: E402


@entry_point("eval.yaml")
def main(cfg: DictConfig) -> None:
    evaluate(cfg)


if __name__ == "__main__":
    main()
