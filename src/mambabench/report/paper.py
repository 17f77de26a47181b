"""The paper's numbers, read from ``paper_values.yaml`` (one file, each entry with its table or figure)."""

from __future__ import annotations

from functools import cache
from importlib.resources import files
from typing import Any

import yaml

PAPER = "Gu & Dao, arXiv:2312.00752"


@cache
def paper_values() -> dict[str, Any]:
    """``{"table1": {"source": ..., "rows": {...}}, ...}`` as in paper_values.yaml."""
    return yaml.safe_load(files("mambabench.report").joinpath("paper_values.yaml").read_text())


def paper_number(value: Any) -> float | str | None:
    """A paper cell: a number, ``"oom"`` (out of memory) or None (not reported)."""
    if value is None or isinstance(value, str):
        return value
    return float(value)
