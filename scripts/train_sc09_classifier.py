"""Train the SC09 digit classifier that the sample metrics use (a small ResNet on log-mel features).

``python scripts/train_sc09_classifier.py [--root data/sc09] [--steps 3000] [--max-seconds S]`` writes
``<root>/classifier.pt`` (and ``classifier.json`` with its train, validation and test accuracy), where
``src/eval.py task=sc09_samples`` looks for it.

The classifier needs a few thousand optimizer steps on a few thousand clips to be a useful judge: on
the synthetic set of ``prepare_data.py sc09`` (defaults: 4,800 training clips) 3,000 steps reach high
held-out accuracy in minutes on a GPU. With a few hundred clips or a few dozen steps it stays near
chance, and FID/IS/mIS/AM computed with it mean nothing; check ``test_accuracy`` in the .json.
"""

from __future__ import annotations

import argparse
import logging
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
    parser.add_argument("--steps", type=int, default=3000, help="optimizer steps (default 3000)")
    parser.add_argument(
        "--max-seconds", type=float, default=None, help="stop (annealed) after this much training time"
    )
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--workers", type=int, default=0, help="processes reading the clips")
    parser.add_argument("--width", type=int, default=32, help="channels of the first ResNet stage")
    parser.add_argument(
        "--max-train-clips", type=int, default=None, help="random subset of the training split"
    )
    parser.add_argument("--device", default="cuda" if _cuda() else "cpu")
    args = parser.parse_args(argv)
    from mambabench.data.audio_io import AudioFileError
    from mambabench.eval.sc09_classifier import train_classifier
    from mambabench.utils.errors import ConfigError

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.device == "cpu":  # all cores per op stall on a shared machine (mambabench.utils.threads)
        import torch

        from mambabench.utils.threads import auto_cpu_threads

        torch.set_num_threads(auto_cpu_threads())
    try:
        train_classifier(
            args.root,
            args.out or args.root / "classifier.pt",
            steps=args.steps,
            batch_size=args.batch_size,
            lr=args.lr,
            width=args.width,
            max_train_clips=args.max_train_clips,
            device=args.device,
            max_seconds=args.max_seconds,
            num_workers=args.workers,
        )
    except (ConfigError, AudioFileError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


if __name__ == "__main__":
    sys.exit(main())
