"""The console of the entry points: readable in a terminal and in a log file alike.

On a terminal, rich sizes its output to the window. Redirected to a file or a pipe (SLURM, ``| tee``),
rich would fall back to 80 columns and hard-wrap every longer line, splitting paths so that they
cannot be copied; there the console gets a wide page and soft wrapping instead, so each line stays
whole. Third-party notices that a user cannot act on (deprecation warnings raised inside
dependencies, product tips) are filtered here; this is called by the entry points only, so tests still
see every warning.
"""

from __future__ import annotations

import logging
import sys
import warnings

import rich

LOG_FILE_WIDTH = 200
"""Columns of rich renderings (tables, the config tree) when stdout is not a terminal; text lines are
never wrapped there, whatever their length."""

_OWN_MODULES = r"(?!mambabench|kernels|__main__)"
_NOTICES = ("💡 Tip:", "Trainer already configured with model summary callbacks")

log = logging.getLogger("mambabench")


def stdout_is_terminal() -> bool:
    """Whether a person watches stdout live (a TTY) rather than a file or a pipe."""
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):
        return False


def configure_console() -> None:
    """Give rich a wide page without hard wraps when stdout is a file or a pipe."""
    if not stdout_is_terminal():
        rich.reconfigure(width=LOG_FILE_WIDTH, soft_wrap=True, force_terminal=False)


class _DropTips(logging.Filter):
    """Drops Lightning's product tips (the LitLogger advertisement printed by every Trainer) and its
    notice that the model summary callback of our configs replaces its default one."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(_NOTICES)


def filter_third_party_noise() -> None:
    """Silence deprecation notices raised inside dependencies and Lightning's product tips.

    Warnings that our own modules trigger stay visible: they are ours to fix or to explain.
    """
    for category in (DeprecationWarning, PendingDeprecationWarning, FutureWarning):
        warnings.filterwarnings("ignore", category=category, module=_OWN_MODULES)
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning_fabric.utilities.rank_zero"):
        logging.getLogger(name).addFilter(_DropTips())


def route_library_logs_to_root() -> None:
    """Send Lightning's log lines through the root logger (console and the run's log file).

    Lightning installs its own stderr handler when it is imported before logging is configured, which
    keeps its lines (seeds, devices, the model summary, why fit stopped) out of the run's log file.
    Warnings are captured into the log as well. Nothing changes when logging has no handler (Hydra's job
    logging switched off), so that Lightning's lines are not lost.
    """
    if not logging.getLogger().handlers:
        return
    names = [
        n for n in logging.root.manager.loggerDict if n.split(".")[0] in ("lightning", "lightning_fabric")
    ]
    for name in names:
        library_log = logging.getLogger(name)
        for handler in list(library_log.handlers):
            library_log.removeHandler(handler)
        library_log.propagate = True
    logging.captureWarnings(True)
