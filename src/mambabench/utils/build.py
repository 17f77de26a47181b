"""Turn a composed config into objects: data module -> network -> task -> trainer.

The network is sized from the data module (``vocab_size``; ``num_classes`` for the task), so model
configs stay independent of data. Incompatible pairs fail here, before training starts.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from lightning.pytorch.callbacks import LearningRateMonitor
from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities import rank_zero_info
from omegaconf import DictConfig, OmegaConf, open_dict
from torch import nn

from mambabench.models.mixers.mamba import MAX_D_STATE
from mambabench.utils.errors import ConfigError
from mambabench.utils.logger_guard import bound_wandb_waits, guard_logger

_DATA_FILLED_KEYS = ("vocab_size", "num_classes", "n_dims")


def _fill_from_data(node: DictConfig, datamodule: L.LightningDataModule, what: str) -> DictConfig:
    """Copy of ``node`` whose null ``vocab_size``/``num_classes``/``n_dims`` take the data module's values."""
    node = node.copy()
    with open_dict(node):
        for key in _DATA_FILLED_KEYS:
            if key in node and node[key] is None:
                value = getattr(datamodule, key, None)
                if value is None:
                    raise ConfigError(
                        f"{what} needs '{key}', but data module {type(datamodule).__name__} provides none; "
                        f"pair it with a data config that has {key} (or set {what}.{key} explicitly)"
                    )
                node[key] = value
    return node


def check_config(cfg: DictConfig) -> None:
    """Fail fast, in one line, on settings that cannot work together."""
    mixer = cfg.model.get("mixer") or {}
    d_state = mixer.get("d_state") if hasattr(mixer, "get") else None
    if d_state is not None and not 1 <= int(d_state) <= MAX_D_STATE:
        raise ConfigError(
            f"model.mixer.d_state={d_state} is not supported: the selective scan takes 1..{MAX_D_STATE}"
        )
    max_len = cfg.model.get("max_seq_len")
    data_len = cfg.data.get("seq_len") or cfg.data.get("train_seq_len")
    if max_len is not None and data_len is not None and int(data_len) > int(max_len):
        raise ConfigError(
            f"data sequence length {data_len} exceeds model.max_seq_len={max_len}; "
            f"raise model.max_seq_len or shorten the data"
        )
    task_target = str(cfg.task.get("_target_", ""))
    if (
        str(cfg.data.get("_target_", "")).endswith("SpeciesDataModule")
        and not cfg.data.get("lm_targets")
        and "num_classes" not in cfg.task
    ):
        from mambabench.data.dna import SPECIES_NEEDS_CLASSIFICATION

        raise ConfigError(SPECIES_NEEDS_CLASSIFICATION)
    if (
        task_target.endswith("ClassificationTask")
        and cfg.data.get("_target_")
        and "num_classes" not in cfg.task
    ):
        raise ConfigError("task=classification needs task.num_classes (null = from the data module)")


def _instantiate_plainly(node: DictConfig) -> Any:
    """``instantiate(node)``, re-raising a constructor's own error (which names the bad value) instead of
    Hydra's wrapper around it."""
    try:
        return instantiate(node, _convert_="all")
    except InstantiationException as err:
        if err.__cause__ is not None:
            raise err.__cause__ from err
        raise


def build_datamodule(cfg: DictConfig) -> L.LightningDataModule:
    return _instantiate_plainly(cfg.data)


def build_network(cfg: DictConfig, datamodule: L.LightningDataModule) -> nn.Module:
    """Instantiate ``cfg.model`` with ``vocab_size`` from the data module when the config leaves it null."""
    return _instantiate_plainly(_fill_from_data(cfg.model, datamodule, "model"))


def build_task(
    cfg: DictConfig, datamodule: L.LightningDataModule, network: nn.Module | None = None
) -> L.LightningModule:
    """The LightningModule: network + loss/metrics + optimizer/scheduler partials."""
    network = network if network is not None else build_network(cfg, datamodule)
    task_cfg = _fill_from_data(cfg.task, datamodule, "task")
    scheduler = instantiate(cfg.scheduler) if cfg.get("scheduler") else None
    try:
        return instantiate(
            task_cfg, network=network, optimizer=instantiate(cfg.optimizer), scheduler=scheduler
        )
    except Exception as err:  # hydra wraps constructor errors; surface the cause in one line
        cause = err.__cause__ or err
        raise ConfigError(f"cannot build task {task_cfg.get('_target_')}: {cause}") from err


def build_callbacks(cfg: DictConfig) -> list[L.Callback]:
    return [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c and "_target_" in c]


def run_dir_of_checkpoint(ckpt_path: str | None) -> Path | None:
    """``<run>/checkpoints/x.ckpt`` -> ``<run>`` (None without a checkpoint)."""
    return Path(ckpt_path).resolve().parent.parent if ckpt_path else None


def build_loggers(cfg: DictConfig) -> list[Logger]:
    """Loggers of ``cfg.logger``; W&B goes offline without a login, waits a bounded time and continues a
    resumed run's id; a logger that raises is reported and does not stop training."""
    loggers = []
    for node in (cfg.get("logger") or {}).values():
        if not node or "_target_" not in node:
            continue
        if "Wandb" in str(node["_target_"]):
            from mambabench.utils.wandb import comparison_fields, prepare_wandb

            choices = dict(HydraConfig.get().runtime.choices) if HydraConfig.initialized() else {}
            node = prepare_wandb(
                node, run_dir_of_checkpoint(cfg.get("ckpt_path")), comparison_fields(cfg, choices)
            )
            bound_wandb_waits()
        loggers.append(guard_logger(instantiate(node)))
    return loggers


def accumulation_for(global_batch_size: int | None, micro_batch_size: int, world_size: int) -> int:
    """Gradient-accumulation steps so that micro_batch * world_size * steps == global_batch_size."""
    if not global_batch_size:
        return 1
    per_step = micro_batch_size * world_size
    if global_batch_size % per_step:
        raise ConfigError(
            f"global_batch_size={global_batch_size} is not a multiple of data.batch_size x devices = {per_step}; "
            f"choose a data.batch_size that divides it"
        )
    return global_batch_size // per_step


def _world_size(trainer_cfg: DictConfig) -> int:
    devices = trainer_cfg.get("devices", 1)
    if isinstance(devices, int):
        count = devices
    elif isinstance(devices, (list, tuple)) or OmegaConf.is_list(devices):
        count = len(devices)
    else:
        count = 1
    return max(1, count) * int(trainer_cfg.get("num_nodes", 1) or 1)


def build_trainer(cfg: DictConfig, callbacks: list[L.Callback], loggers: list[Logger]) -> L.Trainer:
    """Instantiate ``cfg.trainer``; ``global_batch_size`` (if set) becomes gradient accumulation, and an
    integer ``trainer.val_check_interval`` then counts optimizer steps (the same on any device count)."""
    extra: dict[str, Any] = {}
    if cfg.get("global_batch_size"):
        accumulation = accumulation_for(
            int(cfg.global_batch_size), int(cfg.data.batch_size), _world_size(cfg.trainer)
        )
        extra["accumulate_grad_batches"] = accumulation
        interval = cfg.trainer.get("val_check_interval")
        if isinstance(interval, int) and not isinstance(interval, bool):
            # Lightning counts micro-batches; keep validation every N optimizer steps on any device count
            extra["val_check_interval"] = interval * accumulation
    os.makedirs(cfg.paths.output_dir, exist_ok=True)
    if not loggers:  # the LR monitor refuses to run without a logger (s4 drops it the same way)
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False, **extra)
    if trainer.overfit_batches:
        _explain_overfit(trainer.overfit_batches)
    return trainer


def _explain_overfit(batches: int | float) -> None:
    """Say what ``trainer.overfit_batches`` does, in place of Lightning's warning that "shuffling" is turned
    off: our training loaders do not shuffle, they draw fresh samples each epoch, and Lightning swaps their
    sampler for a sequential one (the same first batches every epoch), which is what overfitting wants."""
    warnings.filterwarnings(
        "ignore", message="You requested to overfit but enabled train dataloader shuffling"
    )
    share = f"{batches:.0%} of the" if isinstance(batches, float) and batches < 1 else f"{int(batches)}"
    rank_zero_info(
        f"overfit_batches={batches}: every epoch trains on the same first {share} training batch(es), in "
        f"order; validation uses the first {share} batch(es) of each validation set"
    )


def count_parameters(module: nn.Module) -> dict[str, int]:
    """Total and trainable parameters, tied weights counted once."""
    unique = {id(p): p for p in module.parameters()}.values()
    return {
        "total": sum(p.numel() for p in unique),
        "trainable": sum(p.numel() for p in unique if p.requires_grad),
    }
