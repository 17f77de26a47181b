"""Evaluate a checkpoint on the test split: ``python src/eval.py ckpt_path=<run>/checkpoints/last.ckpt``;
score generated SC09 clips: ``python src/eval.py task=sc09_samples samples_dir=<folder>``."""

import os
from pathlib import Path

os.environ.setdefault("PROJECT_ROOT", str(Path(__file__).resolve().parents[1]))

from omegaconf import DictConfig  # noqa: E402

import mambabench.utils.resolvers  # noqa: E402,F401
from mambabench.utils.cli import entry_point  # noqa: E402
from mambabench.utils.run import evaluate  # noqa: E402


@entry_point("eval.yaml")
def main(cfg: DictConfig) -> None:
    if "classifier_ckpt" in cfg:  # task=sc09_samples
        from mambabench.eval.sc09_samples import score_samples

        score_samples(
            cfg.samples_dir,
            cfg.classifier_ckpt,
            cfg.sc09_root,
            cfg.paths.output_dir,
            cfg.max_real_clips,
            cfg.nll_bits,
            cfg.model_name,
            str(cfg.params),
            cfg.sample_rate,
            cfg.length,
            cfg.device,
        )
        return
    evaluate(cfg)


if __name__ == "__main__":
    main()
