"""What ``src/train.py`` and ``src/eval.py`` do, kept out of the thin entry points so tests can call it."""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only
from omegaconf import DictConfig, OmegaConf, open_dict

from mambabench.tasks.lm import LanguageModelingTask, scaling_summary
from mambabench.utils.build import (
    build_callbacks,
    build_datamodule,
    build_loggers,
    build_task,
    build_trainer,
    check_config,
    count_parameters,
)
from mambabench.utils.callbacks import PreemptionCheckpoint, TokensPerSecond
from mambabench.utils.checkpoint import checkpoint_file
from mambabench.utils.errors import ConfigError
from mambabench.utils.reporting import print_config, print_metrics
from mambabench.utils.resume import CONFIG_FILE, keep_csv_history, resolve_resume
from mambabench.utils.resume import cli_overrides as _cli_overrides
from mambabench.utils.threads import configure_cpu_threads
from mambabench.utils.wandb import remember_wandb_id

SUMMARY_FILE = "summary.json"
LAST_CKPT = Path("checkpoints") / "last.ckpt"


def _final_metrics(trainer: L.Trainer) -> dict[str, float]:
    return {k: float(v) for k, v in trainer.callback_metrics.items() if torch.is_tensor(v) and v.numel() == 1}


def _choices() -> dict[str, Any]:
    if not HydraConfig.initialized():
        return {}
    return {k: v for k, v in HydraConfig.get().runtime.choices.items() if not k.startswith("hydra")}


def _save_final_last(trainer: L.Trainer, output_dir: Path) -> None:
    """Make ``last.ckpt`` hold the final step even when training stopped between validations."""
    callback = trainer.checkpoint_callback
    if callback is None or not getattr(callback, "save_last", False) or trainer.fast_dev_run:
        return
    if getattr(callback, "_last_global_step_saved", None) != trainer.global_step:
        trainer.save_checkpoint(output_dir / LAST_CKPT)


@rank_zero_only
def write_summary(path: Path, payload: dict[str, Any]) -> None:
    """Write ``summary.json`` (once per run: on rank 0 only)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=str))
    tmp.replace(path)


def _finish_wandb() -> None:
    try:
        import wandb

        if wandb.run is not None:
            wandb.finish()
    except ImportError:
        pass


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit (and test) the task described by ``cfg``; leaves config, checkpoints, metrics and summary.json
    in ``cfg.paths.output_dir``. Returns the final metrics."""
    cfg = resolve_resume(cfg)
    check_config(cfg)
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    configure_cpu_threads(cfg.get("cpu_threads", "auto"), cfg.trainer)
    if cfg.get("print_config", True):
        rank_zero_only(print_config)(cfg)
    if cfg.get("seed") is not None:
        L.seed_everything(int(cfg.seed), workers=True)

    datamodule = build_datamodule(cfg)
    task = build_task(cfg, datamodule)
    callbacks = build_callbacks(cfg)
    loggers = build_loggers(cfg)
    trainer = build_trainer(cfg, callbacks, loggers)

    params = count_parameters(task.network)
    if rank_zero_only.rank == 0:
        OmegaConf.save(cfg, output_dir / CONFIG_FILE, resolve=True)
    for logger in loggers:
        logger.log_hyperparams(
            {
                **OmegaConf.to_container(cfg, resolve=True),
                "params/total": params["total"],
                "params/trainable": params["trainable"],
                "choices": _choices(),
            }
        )
    rank_zero_only(remember_wandb_id)(loggers, str(output_dir))
    keep_csv_history(loggers, cfg.get("ckpt_path"), output_dir)

    started = time.time()
    if cfg.get("train", True):
        trainer.fit(task, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
        preempted = next((c for c in callbacks if isinstance(c, PreemptionCheckpoint) and c.stopped_by), None)
        if preempted is not None:
            rank_zero_info(
                f"stopped by {preempted.stopped_by} at step {trainer.global_step}; checkpoint "
                f"{preempted.saved_path}. Run the same command again to continue."
            )
            return _final_metrics(trainer)
        _save_final_last(trainer, output_dir)
    metrics = _final_metrics(trainer)
    if cfg.get("test", True):
        best = (
            getattr(trainer.checkpoint_callback, "best_model_path", "") if trainer.checkpoint_callback else ""
        )
        if cfg.get("train", True) and not best and not trainer.fast_dev_run:
            warnings.warn(
                "no best checkpoint was saved (no validation ran, or checkpointing is off); "
                "testing the current weights",
                stacklevel=2,
            )
        trainer.test(task, datamodule=datamodule, ckpt_path=best or None, weights_only=False, verbose=False)
        metrics.update(_final_metrics(trainer))
    wall = time.time() - started

    throughput = next((c for c in callbacks if isinstance(c, TokensPerSecond)), None)
    checkpoint = trainer.checkpoint_callback
    summary = {
        "run_dir": str(output_dir),
        "choices": _choices(),
        "model": OmegaConf.to_container(cfg.model, resolve=True),
        "data": OmegaConf.to_container(cfg.data, resolve=True),
        "optimizer": OmegaConf.to_container(cfg.optimizer, resolve=True),
        "seed": cfg.get("seed"),
        "params": params,
        "global_step": trainer.global_step,
        "metrics": metrics,
        "wall_time_s": round(wall, 2),
        "train_tokens": throughput.train_tokens if throughput else None,
        # training steps only, after warm-up (what trainer/tokens_per_sec logs); the second figure is over
        # the wall clock of training, validation and checkpoints included
        "tokens_per_s": round(throughput.tokens_per_sec, 1) if throughput else None,
        "tokens_per_s_wall": round(throughput.tokens_per_sec_wall, 1) if throughput else None,
        "train_step_time_s": round(throughput.train_time, 2) if throughput else None,
        "best_ckpt": getattr(checkpoint, "best_model_path", None) or None,
        "last_ckpt": str(output_dir / LAST_CKPT) if (output_dir / LAST_CKPT).exists() else None,
    }
    summary.update(getattr(task, "summary_items", dict)())  # task-specific results (e.g. ICL curves)
    summary["preset"] = _choices().get("experiment")
    if isinstance(task, LanguageModelingTask):
        summary.update(
            scaling_summary(
                task.network,
                cfg.data.get("seq_len"),
                summary["train_tokens"],
                summary["tokens_per_s"],
                metrics,
            )
        )
    write_summary(output_dir / SUMMARY_FILE, summary)
    rank_zero_only(print_metrics)(metrics, output_dir, wall)
    _finish_wandb()
    return metrics


def _saved_run_config(ckpt_path: Path) -> DictConfig | None:
    for parent in ckpt_path.resolve().parents[:3]:
        if (parent / CONFIG_FILE).exists():
            return OmegaConf.load(parent / CONFIG_FILE)
    return None


def _with_saved_run(cfg: DictConfig) -> DictConfig:
    """``cfg`` with the model and (unless overridden) the data of the run that saved ``cfg.ckpt_path``."""
    ckpt = None if OmegaConf.is_missing(cfg, "ckpt_path") else cfg.get("ckpt_path")
    saved = _saved_run_config(Path(ckpt)) if ckpt and Path(ckpt).exists() else None
    if saved is None:
        return cfg
    data_overridden = any(o.split("=", 1)[0].lstrip("+~").split(".")[0] == "data" for o in _cli_overrides())
    merged = cfg.copy()
    with open_dict(merged):
        merged["model"] = saved.get("model")
        if not data_overridden:
            merged["data"] = saved.data
    return merged


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Test a checkpoint. The network, task and (unless overridden) data come from the run's saved
    config next to the checkpoint, so ``ckpt_path=...`` alone is enough."""
    if cfg.get("zeroshot"):
        from mambabench.eval.zeroshot import evaluate_zeroshot

        return evaluate_zeroshot(_with_saved_run(cfg))
    if not cfg.get("ckpt_path"):
        raise ConfigError("eval needs ckpt_path=<run dir>/checkpoints/last.ckpt")
    ckpt = checkpoint_file(cfg.ckpt_path)  # a run directory is accepted: its last.ckpt
    if ckpt != Path(cfg.ckpt_path):
        rank_zero_info(f"evaluating {ckpt}")
    saved = _saved_run_config(ckpt)
    if saved is not None:
        data_overridden = any(
            o.split("=", 1)[0].lstrip("+~").split(".")[0] == "data" for o in _cli_overrides()
        )
        merged = cfg.copy()
        with open_dict(merged):
            for key in ("model", "task", "optimizer", "scheduler"):
                merged[key] = saved.get(key)
            if not data_overridden:
                merged["data"] = saved.data
        cfg = merged
    check_config(cfg)
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    datamodule = build_datamodule(cfg)
    task = build_task(cfg, datamodule)
    loggers = build_loggers(cfg)
    trainer = build_trainer(cfg, build_callbacks(cfg), loggers)
    OmegaConf.save(cfg, output_dir / CONFIG_FILE, resolve=True)
    started = time.time()
    with warnings.catch_warnings():
        # Testing reads the weights only; the training callbacks whose state the checkpoint also holds
        # (ModelCheckpoint, ...) are irrelevant here, so Lightning's reminder to pass them is not for us.
        warnings.filterwarnings("ignore", message=r"Be aware that when using `ckpt_path`, callbacks used")
        trainer.test(task, datamodule=datamodule, ckpt_path=str(ckpt), weights_only=False, verbose=False)
    metrics = _final_metrics(trainer)
    write_summary(
        output_dir / SUMMARY_FILE,
        {
            "ckpt_path": str(ckpt),
            "choices": _choices(),
            "metrics": metrics,
            "params": count_parameters(task.network),
            "wall_time_s": round(time.time() - started, 2),
            **getattr(task, "summary_items", dict)(),
        },
    )
    print_metrics(metrics, output_dir, time.time() - started)
    _finish_wandb()
    return metrics
