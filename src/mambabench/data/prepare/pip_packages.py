"""Install a preparer's PyPI packages on first use, so that ``scripts/prepare_data.py NAME`` works on a fresh
machine without a separate install step."""

from __future__ import annotations

import importlib
import logging
import subprocess
import sys
from types import ModuleType

from mambabench.data.prepare.common import PrepareError

log = logging.getLogger(__name__)


def ensure_package(module: str, requirement: str, no_deps: bool = False) -> ModuleType:
    """Import ``module``; if it is missing, ``pip install [--no-deps] requirement`` into this interpreter first.

    ``no_deps`` is for wheels whose declared dependencies are not needed here (tinysoundfont pulls in
    PyAudio, an sdist that needs PortAudio headers to build, for live playback only).
    """
    try:
        return importlib.import_module(module)
    except ImportError:
        pass
    command = [sys.executable, "-m", "pip", "install", *(["--no-deps"] if no_deps else []), requirement]
    log.info(f"installing {requirement} (needed to prepare this dataset): {' '.join(command[2:])}")
    try:
        subprocess.run(command, check=True, capture_output=True, text=True)
    except subprocess.CalledProcessError as err:
        raise PrepareError(
            f"'pip {' '.join(command[3:])}' failed: {err.stderr.strip()[-400:]}. Install it by hand "
            f"(pip install 'mambabench[audio]') and retry"
        ) from None
    importlib.invalidate_caches()
    return importlib.import_module(module)
