"""Train a model on a dataset: ``python src/train.py model=mamba data=selective_copying [key=value ...]``."""

import os
from pathlib import Path

os.environ.setdefault("PROJECT_ROOT", str(Path(__file__).resolve().parents[1]))

from omegaconf import DictConfig  # noqa: E402

import mambabench.utils.resolvers  # noqa: E402,F401  (registers ${mb.*} before Hydra resolves)
from mambabench.utils.cli import entry_point  # noqa: E402
from mambabench.utils.run import train  # noqa: E402


@entry_point("train.yaml")
def main(cfg: DictConfig) -> float | None:
    metrics = train(cfg)
    return metrics.get(cfg.get("optimized_metric") or "")


if __name__ == "__main__":
    main()
