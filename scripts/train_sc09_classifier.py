"""Train the SC09 digit classifier that the sample metrics use (a small ResNet on log-mel features).

``python scripts/train_sc09_classifier.py [--root data/sc09] [--epochs 10]`` writes ``<root>/classifier.pt``
(and ``classifier.json`` with its validation and test accuracy), where ``src/eval.py task=sc09_samples``
looks for it.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    default_root = Path(os.environ.get("MAMBABENCH_DATA", str(ROOT / "data"))) / "sc09"
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--root", type=Path, default=default_root, help=f"SC09 folder (default {default_root})"
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="checkpoint path (default <root>/classifier.pt)"
    )
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--width", type=int, default=32, help="channels of the first ResNet stage")
    parser.add_argument(
        "--max-train-clips", type=int, default=None, help="random subset of the training split"
    )
    parser.add_argument("--device", default="cuda" if _cuda() else "cpu")
    args = parser.parse_args(argv)
    from mambabench.eval.sc09_classifier import train_classifier
    from mambabench.utils.errors import ConfigError

    try:
        train_classifier(
            args.root,
            args.out or args.root / "classifier.pt",
            args.epochs,
            args.batch_size,
            args.lr,
            args.width,
            args.max_train_clips,
            args.device,
        )
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


if __name__ == "__main__":
    sys.exit(main())
