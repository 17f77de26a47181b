"""The command-line layer of ``src/train.py``, ``src/eval.py`` and ``src/generate.py``.

:func:`entry_point` wraps a task function the way ``@hydra.main`` does and adds what a user meets
around the work:

* the console reads well in a log file and third-party noise is filtered (:mod:`.console`);
* a mistake on the command line ends in one line on stderr, ``error: <what> ... <the fix>``, exit
  status 2, no traceback: an unknown key, a known key at the wrong depth (where it lives, not Hydra's
  ``+key`` hint, which adds a key nothing reads), a config that does not exist, a value of the wrong
  type, a missing required value, a file that does not exist;
* such a failed run leaves no half-empty run folder behind.

Anything else is a bug and keeps its full traceback; ``HYDRA_FULL_ERROR=1`` shows the traceback of
every error.
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
import re
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import (
    ConfigCompositionException,
    InstantiationException,
    MissingConfigException,
    OverrideParseException,
)
from hydra.utils import get_object
from lightning.fabric.utilities.exceptions import MisconfigurationException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

from mambabench.utils.console import configure_console, filter_third_party_noise, route_library_logs_to_root
from mambabench.utils.errors import ConfigError, DataNotFoundError, InputError
from mambabench.utils.overrides import check_override_types, where_is

EXIT_USER_MISTAKE = 2
_EXAMPLE_VALUES = {"ckpt_path": "outputs/train/runs/<run>/checkpoints/last.ckpt"}
_RUN_RESULTS = ("summary.json", "checkpoints")
_LIGHTNING_CKPT_WORDS = ("last", "best", "hpc", "registry")  # ckpt_path values Lightning resolves itself
_show_tracebacks = False  # set from HYDRA_FULL_ERROR=1 as the user gave it


def _one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def _say(message: str) -> None:
    sys.stdout.flush()
    print(f"error: {_one_line(message)}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- mistakes found inside the job


def _without_worker_traceback(text: str) -> str:
    """The message of an error that a DataLoader worker raised: PyTorch re-raises it in the main process
    with the worker's traceback in front ("Caught X in DataLoader worker process 0. Original Traceback
    ...  X: <message>"); the user needs only the message."""
    if "in DataLoader worker process" not in text or "Original Traceback" not in text:
        return text
    last = text.rstrip().splitlines()[-1]
    return last.split(": ", 1)[1] if ": " in last else last


def _job_mistake(err: BaseException, entry: str) -> str | None:
    """The one-line explanation of an error raised while a job ran, or None for a bug."""
    if isinstance(err, (ConfigError, DataNotFoundError, FileNotFoundError, InputError)):
        return _without_worker_traceback(str(err))
    if isinstance(err, MissingMandatoryValue):
        key = getattr(err, "full_key", None) or "?"
        example = _EXAMPLE_VALUES.get(key, "...")
        return f"python src/{entry}.py needs {key}: add {key}={example} to the command line"
    if isinstance(err, InstantiationException):
        cause = err.__cause__
        if isinstance(cause, (ConfigError, FileNotFoundError, InputError)):
            return str(cause)
        where = re.search(r"full_key: (\S+)", str(err))
        target = re.search(r"call to target '([^']+)'", str(err))
        if isinstance(cause, (TypeError, ValueError, MisconfigurationException)):
            key = where.group(1) if where else "the config"
            return (
                f"cannot build {key} ({target.group(1) if target else '?'}): {str(cause).rstrip('.')}; "
                f"check the {key}.* values on the command line"
            )
        return None
    if isinstance(err, OmegaConfBaseException):
        return f"{_one_line(str(err))}; check the value of {getattr(err, 'full_key', 'this key')}"
    return None


def _check_files(cfg: DictConfig) -> None:
    """A checkpoint named on the command line must exist before anything is built."""
    ckpt = cfg.get("ckpt_path") if "ckpt_path" in cfg and not OmegaConf.is_missing(cfg, "ckpt_path") else None
    if ckpt and str(ckpt) not in _LIGHTNING_CKPT_WORDS and not Path(str(ckpt)).exists():
        raise ConfigError(
            f"checkpoint '{ckpt}' does not exist; give ckpt_path=<run dir>/checkpoints/last.ckpt "
            "of an existing run (runs are under outputs/<task_name>/runs/)"
        )


def _remove_unfinished_run_dir(cfg: DictConfig) -> None:
    """Delete the run folder Hydra made for a job that failed before producing anything (no checkpoint,
    no summary). An existing run's folder (``resume_dir=``) is never touched; a folder that a mistyped
    ``resume_dir`` made Hydra create holds only Hydra's files and goes."""
    if not HydraConfig.initialized():
        return
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    if not run_dir.is_dir():
        return
    hydra_only = {p.name for p in run_dir.iterdir()} <= {".hydra", f"{HydraConfig.get().job.name}.log"}
    resume_dir = cfg.get("resume_dir") if "resume_dir" in cfg else None
    resuming = bool(resume_dir) and Path(str(resume_dir)).resolve() == run_dir.resolve()
    if (resuming and not hydra_only) or any((run_dir / name).exists() for name in _RUN_RESULTS):
        return
    for handler in list(logging.getLogger().handlers):
        if isinstance(handler, logging.FileHandler) and Path(handler.baseFilename).is_relative_to(run_dir):
            logging.getLogger().removeHandler(handler)
            handler.close()
    shutil.rmtree(run_dir, ignore_errors=True)
    sweep_dir = run_dir.parent
    if HydraConfig.get().mode.name == "MULTIRUN" and {p.name for p in sweep_dir.iterdir()} <= {
        "multirun.yaml"
    }:
        shutil.rmtree(sweep_dir, ignore_errors=True)


def _defaults_for(overrides: list[str], config_dir: Path, config_name: str) -> DictConfig | None:
    """The config composed with the group choices of ``overrides`` only (``model=hyena``), without any
    value override: what the values on the command line replaced."""
    choices = [o for o in overrides if "=" in o and (config_dir / o.split("=", 1)[0].lstrip("+~")).is_dir()]
    hydra_state = GlobalHydra.instance().hydra
    try:
        return _compose(config_dir, config_name, choices)
    finally:  # a job keeps running after this check: give it back Hydra's state as it was
        GlobalHydra.instance().clear()
        if hydra_state is not None:
            GlobalHydra.instance().initialize(hydra_state)


def _answering_mistakes(
    task: Callable[[DictConfig], Any], entry: str, config_dir: Path, config_name: str
) -> Callable[[DictConfig], Any]:
    @functools.wraps(task)
    def job(cfg: DictConfig) -> Any:
        route_library_logs_to_root()
        try:
            overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
            values = [o for o in overrides if "=" in o and "." not in o.split("=", 1)[0]]
            defaults = _defaults_for(overrides, config_dir, config_name) if values else None
            check_override_types(cfg, overrides, defaults)
            _check_files(cfg)
            return task(cfg)
        except Exception as err:
            message = _job_mistake(err, entry)
            if message is None or _show_tracebacks:
                raise
            _remove_unfinished_run_dir(cfg)
            _say(message)
            raise SystemExit(EXIT_USER_MISTAKE) from None

    return job


# ---------------------------------------------------------------- mistakes found while composing


def _user_overrides(argv: list[str]) -> list[str]:
    return [a for a in argv if not a.startswith("-") and "=" in a]


def _compose(config_dir: Path, config_name: str, overrides: list[str]) -> DictConfig | None:
    """The composed config with ``overrides`` (or with none, if they do not compose); None if neither."""
    from hydra import compose, initialize_config_dir

    for attempt in (overrides, []):
        GlobalHydra.instance().clear()
        try:
            with initialize_config_dir(version_base="1.3", config_dir=str(config_dir)):
                return compose(config_name=config_name, overrides=attempt)
        except Exception:  # noqa: BLE001 (only used to make a suggestion)
            continue
    return None


def _misplaced_key(key: str, override: str, others: list[str], config_dir: Path, config_name: str) -> str:
    """Where the key of an override that Hydra could not apply lives, as one line."""
    cfg = _compose(config_dir, config_name, others)
    value = override.split("=", 1)[1] if "=" in override else "..."
    if cfg is None:
        return f"'{key}' is not a key of this config; `--cfg job` prints the config with every key"
    same_name, close = where_is(key, cfg)
    if same_name:
        group = same_name[0].replace(".", "/")
        if (config_dir / group).is_dir():
            return f"'{key}' is not a key here; {same_name[0]} is a config group: write {group}={value}"
        places = " or ".join(same_name)
        fixes = " or ".join(f"{k}={value}" for k in same_name)
        return (
            f"'{key}' is not a key at this depth; it lives at {places}: write {fixes} "
            f"(a '+{key}=...' would only add a key that nothing reads)"
        )
    if close:
        return f"'{key}' is not a key of this config; did you mean {' or '.join(close)}?"
    parent = key.rsplit(".", 1)[0] if "." in key else ""
    node = OmegaConf.select(cfg, parent) if parent else None
    if isinstance(node, DictConfig) and "_target_" in node:
        target = str(node._target_)
        if key.rsplit(".", 1)[-1] in _parameters(target):
            return (
                f"'{key}' is a parameter of {target} that the config does not set; add it with +{key}={value}"
            )
        return (
            f"{target} takes no '{key.rsplit('.', 1)[-1]}'; the keys of {parent}: {', '.join(map(str, node))}"
        )
    return (
        f"'{key}' is not a key of this config{f' (nothing under {parent} has that name)' if parent else ''}; "
        f"`python src/<entry>.py --cfg job` prints every key"
    )


def _parameters(target: str) -> list[str]:
    try:
        return list(inspect.signature(get_object(target)).parameters)
    except Exception:  # noqa: BLE001 (only used to make a suggestion)
        return []


def _composition_mistake(err: Exception, argv: list[str], config_dir: Path, config_name: str) -> str | None:
    """The one-line explanation of an error raised while Hydra composed the config."""
    if isinstance(err, MissingConfigException):
        missing = err.missing_cfg_file or ""
        if err.options:
            group, _, name = missing.rpartition("/")
            return f"{group}={name}: no such config; options for {group}: {', '.join(sorted(err.options))}"
        return _one_line(str(err).split("Config search path")[0])
    if isinstance(err, OverrideParseException):
        return f"cannot read the override: {_one_line(str(err))}; write key=value (quote values with spaces)"
    if not isinstance(err, ConfigCompositionException):
        return None
    text = str(err)
    found = re.search(
        r"Could not (?:override|append to config|delete from config)\W+'?([^'\s.]+(?:\.[^'\s]+)*)'", text
    )
    if found:
        key = found.group(1).rstrip(".")
        overrides = _user_overrides(argv)
        override = next((o for o in overrides if o.split("=", 1)[0].lstrip("+~") == key), f"{key}=...")
        others = [o for o in overrides if o is not override and "," not in o]
        if "already at" in text:
            return f"'{key}' already exists: write {override.lstrip('+')} without the '+'"
        return _misplaced_key(key, override, others, config_dir, config_name)
    cause = err.__cause__
    return _one_line(f"{text}{f': {cause}' if cause else ''}".split("Config search path")[0])


def entry_point(
    config_name: str, config_path: str = "../configs"
) -> Callable[[Callable[[DictConfig], Any]], Callable[[], Any]]:
    """``@entry_point("train.yaml")`` on ``main(cfg)``: Hydra's ``@hydra.main`` plus the layer above."""

    def decorate(task: Callable[[DictConfig], Any]) -> Callable[[], Any]:
        entry = Path(sys.modules[task.__module__].__file__ or "entry").stem
        config_dir = (Path(sys.modules[task.__module__].__file__ or ".").parent / config_path).resolve()
        hydra_main = hydra.main(version_base="1.3", config_path=config_path, config_name=config_name)(
            _answering_mistakes(task, entry, config_dir, config_name)
        )

        @functools.wraps(task)
        def main() -> Any:
            global _show_tracebacks
            user_setting = os.environ.get("HYDRA_FULL_ERROR")
            wants_traceback = _show_tracebacks = user_setting == "1"
            os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra re-raises instead of printing; we explain below
            configure_console()
            filter_third_party_noise()
            try:
                return hydra_main()
            except Exception as err:
                message = (
                    None
                    if wants_traceback
                    else _composition_mistake(err, sys.argv[1:], config_dir, config_name)
                )
                if message is None:
                    raise
                _say(message)
                sys.exit(EXIT_USER_MISTAKE)
            finally:
                if user_setting is None:
                    os.environ.pop("HYDRA_FULL_ERROR", None)
                else:
                    os.environ["HYDRA_FULL_ERROR"] = user_setting

        return main

    return decorate
