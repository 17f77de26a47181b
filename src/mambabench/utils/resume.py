"""Where a run continues from: ``run_dir=`` + ``resume=auto`` (the same command again), or ``resume_dir=``.

``python src/train.py run_dir=outputs/my_run [overrides]`` writes the run into ``outputs/my_run``. Run
the same command again after a crash, ``kill -9`` or preemption and, with ``resume=auto`` (the default),
it continues from the newest good checkpoint in ``outputs/my_run/checkpoints`` (damaged ones are
skipped) with the same data order and random state; a finished run stays finished. ``resume=never``
refuses a directory that already holds a run. ``resume_dir=<run dir>`` continues a run from its saved
``config.yaml`` instead, so only dotted overrides (``trainer.max_steps=...``) need to be given.
"""

from __future__ import annotations

import csv
import os
import warnings
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only
from omegaconf import DictConfig, OmegaConf, open_dict

from mambabench.utils.checkpoint import newest_good_checkpoint, read_checkpoint
from mambabench.utils.errors import ConfigError

CONFIG_FILE = "config.yaml"
RESUME_MODES = ("auto", "never")
_DECISION_ENV = "MAMBABENCH_RESUME_FROM"
# config sections that must not change when a run continues (they shape the weights or the data)
_FIXED_SECTIONS = ("model", "data", "task")


def cli_overrides() -> list[str]:
    """The command line's overrides (empty outside a Hydra app)."""
    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def _dotted(overrides: list[str], skip: tuple[str, ...]) -> list[str]:
    """Plain ``a.b=c`` overrides (no group choices, no hydra.*), minus those starting with ``skip``."""
    keep = []
    for item in overrides:
        key = item.split("=", 1)[0].lstrip("+~")
        if key.startswith(skip) or key.startswith("hydra."):
            continue
        if "." not in key and key not in ("seed", "ckpt_path", "global_batch_size", "train", "test", "tags"):
            raise ConfigError(
                f"override '{item}' changes a config group, which a resumed/evaluated run cannot do; "
                "start a new run instead"
            )
        keep.append(item.lstrip("+"))
    return keep


def _flat(node: Any, prefix: str) -> dict[str, Any]:
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            out.update(_flat(value, f"{prefix}.{key}"))
        return out
    return {prefix: node}


def config_differences(
    saved: DictConfig, current: DictConfig, sections: tuple[str, ...] = _FIXED_SECTIONS
) -> list[str]:
    """``key: saved -> current`` for every leaf of ``sections`` that differs between two configs."""
    lines = []
    for section in sections:
        old = _flat(OmegaConf.to_container(saved.get(section) or {}, resolve=True), section)
        new = _flat(OmegaConf.to_container(current.get(section) or {}, resolve=True), section)
        for key in sorted(set(old) | set(new)):
            if old.get(key, "<absent>") != new.get(key, "<absent>"):
                lines.append(f"{key}: {old.get(key, '<absent>')} -> {new.get(key, '<absent>')}")
    return lines


def _resume_dir(cfg: DictConfig) -> DictConfig:
    run_dir = Path(cfg.resume_dir)
    saved = run_dir / CONFIG_FILE
    if not saved.exists():
        raise ConfigError(
            f"resume_dir '{run_dir}' has no {CONFIG_FILE}; point it at a mambabench run directory"
        )
    base = OmegaConf.load(saved)
    overrides = _dotted(cli_overrides(), skip=("resume_dir",))
    base = OmegaConf.merge(base, OmegaConf.from_dotlist(overrides))
    with open_dict(base):
        base.resume_dir = str(run_dir)
        if not base.get("ckpt_path"):
            last = newest_good_checkpoint(run_dir)
            if last is not None:
                base.ckpt_path = str(last)
            else:
                warnings.warn(
                    f"{run_dir} has no checkpoint yet; starting the run there from scratch", stacklevel=3
                )
    return base


def _run_dir(cfg: DictConfig) -> DictConfig:
    run_dir = Path(cfg.run_dir)
    mode = cfg.get("resume", "auto")
    if mode not in RESUME_MODES:
        raise ConfigError(f"resume={mode!r} is not one of {', '.join(RESUME_MODES)}")
    cfg = cfg.copy()
    with open_dict(cfg):
        cfg.paths.output_dir = str(run_dir)
    if rank_zero_only.rank > 0:  # the other ranks of a launch follow rank 0's decision
        decided = os.environ.get(_DECISION_ENV)
        if decided:
            with open_dict(cfg):
                cfg.ckpt_path = decided
        return cfg if decided is not None else _decide(cfg, run_dir, "auto")
    return _decide(cfg, run_dir, mode)


def _decide(cfg: DictConfig, run_dir: Path, mode: str) -> DictConfig:
    """Rank 0's choice for ``run_dir``: new run, or resume from its newest good checkpoint. It is left in
    the environment, which the processes that Lightning launches for the other ranks inherit."""
    cfg = _checked_run_dir(cfg, run_dir, mode)
    os.environ[_DECISION_ENV] = str(cfg.get("ckpt_path") or "")
    return cfg


def _checked_run_dir(cfg: DictConfig, run_dir: Path, mode: str) -> DictConfig:
    saved = run_dir / CONFIG_FILE
    if not saved.exists():
        return cfg
    if mode == "never":
        raise ConfigError(
            f"run_dir '{run_dir}' already holds a run; continue it with resume=auto or choose another run_dir"
        )
    differences = config_differences(OmegaConf.load(saved), cfg)
    if differences:
        raise ConfigError(
            f"run_dir '{run_dir}' holds a run with a different config, so it cannot be continued:\n  "
            + "\n  ".join(differences[:20])
            + "\nrun the original command again, or choose another run_dir for the new config"
        )
    if cfg.get("ckpt_path"):
        return cfg
    last = newest_good_checkpoint(run_dir)
    if last is None:
        rank_zero_info(f"{run_dir} has no checkpoint yet; starting the run there from scratch")
        return cfg
    with open_dict(cfg):
        cfg.ckpt_path = str(last)
    rank_zero_info(f"resuming the run in {run_dir} from {last}")
    return cfg


def resolve_resume(cfg: DictConfig) -> DictConfig:
    """The config to train with: unchanged for a new run; with ``run_dir=`` and ``resume=auto``, with
    ``ckpt_path`` at the newest good checkpoint of that directory; with ``resume_dir=``, the saved config
    of that run plus the command line's dotted overrides."""
    if cfg.get("resume_dir"):
        return _resume_dir(cfg)
    if cfg.get("run_dir"):
        return _run_dir(cfg)
    return cfg


@rank_zero_only
def keep_csv_history(loggers: list[Any], ckpt_path: str | None, output_dir: str | Path) -> None:
    """Keep the rows of ``csv/metrics.csv`` logged before ``ckpt_path``'s step when a run continues in
    its own directory (Lightning's CSV logger would start the file afresh and lose them)."""
    if not ckpt_path or Path(output_dir).resolve() not in Path(ckpt_path).resolve().parents:
        return
    step = int(read_checkpoint(ckpt_path, mmap=True).get("global_step", 0))
    for logger in loggers:
        if not isinstance(logger, CSVLogger):
            continue
        path = Path(logger.log_dir) / "metrics.csv"
        if not path.is_file():
            continue
        with open(path, newline="") as handle:
            reader = csv.DictReader(handle)
            header = list(reader.fieldnames or [])
            rows = [row for row in reader if row.get("step", "").isdigit() and int(row["step"]) < step]
        writer = logger.experiment  # creating it removes the old file
        with open(path, "w", newline="") as handle:
            out = csv.DictWriter(handle, fieldnames=header)
            out.writeheader()
            out.writerows(rows)
        writer.metrics_keys = header
