"""Loggers that cannot kill a run: an experiment tracker that raises (network down, quota, a bug in a
logger) costs its logs, not the training.

:func:`guard_logger` wraps the writing methods of one logger instance in place (its class, and so every
``isinstance`` check of Lightning and of W&B code, stays the same): the first failure is reported with
the logger's name and the exception; after ``max_failures`` failures the logger is switched off for the
rest of the run.
"""

from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Callable
from typing import Any

from lightning.pytorch.loggers import Logger

_GUARDED = ("log_metrics", "log_hyperparams", "log_graph", "save", "finalize", "after_save_checkpoint")
#: seconds W&B may take to start its run before it gives up (its default waits much longer)
WANDB_INIT_TIMEOUT_S = "60"


def bound_wandb_waits() -> None:
    """Make W&B give up instead of hanging on a network that does not answer (unless the user chose)."""
    os.environ.setdefault("WANDB_INIT_TIMEOUT", WANDB_INIT_TIMEOUT_S)


def guard_logger(logger: Logger, max_failures: int = 3) -> Logger:
    """Catch and report exceptions of ``logger``'s writing methods; returns the same instance."""
    state = {"failures": 0}
    name = type(logger).__name__

    def wrap(method: Callable[..., Any], method_name: str) -> Callable[..., Any]:
        @functools.wraps(method)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            if state["failures"] >= max_failures:
                return None
            try:
                return method(*args, **kwargs)
            except Exception as err:  # any logger failure; training must go on
                state["failures"] += 1
                off = state["failures"] >= max_failures
                warnings.warn(
                    f"logger {name}.{method_name} failed ({type(err).__name__}: {err}); training continues"
                    + (f"; {name} is switched off after {max_failures} failures" if off else ""),
                    stacklevel=2,
                )
                return None

        return guarded

    for method_name in _GUARDED:
        method = getattr(logger, method_name, None)
        if method is not None:
            setattr(logger, method_name, wrap(method, method_name))
    return logger
