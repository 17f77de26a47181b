"""Evaluate a checkpoint on the test split: ``python src/eval.py ckpt_path=<run>/checkpoints/last.ckpt``."""

import os
from pathlib import Path

os.environ.setdefault("PROJECT_ROOT", str(Path(__file__).resolve().parents[1]))

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

import mambabench.utils.resolvers  # noqa: E402,F401
from mambabench.utils.run import evaluate  # noqa: E402


@hydra.main(version_base="1.3", config_path="../configs", config_name="eval.yaml")
def main(cfg: DictConfig) -> None:
    evaluate(cfg)


if __name__ == "__main__":
    main()
