"""Finding and reading the benchmark CSVs that Figure 8 and Table 15 are drawn from.

Three kinds, told apart by file name (and, for the scan benchmark's ``results.csv``, by its columns):

- ``scan``: ``scripts/bench_scan.py`` (``results.csv`` or ``bench_scan.csv``): section, impl, batch,
  seqlen, ms (a number, ``OOM`` or ``ERR...``); the Figure 8 (left) rows have ``section == "fig8"``;
- ``generate``: ``bench_generate.csv``: model, impl, batch, prompt_len, gen_len, seconds, tokens_per_s,
  peak_mem_gb, device, cuda_graph (Figure 8 right);
- ``memory``: ``bench_memory.csv``: model, batch, seqlen, peak_mem_gb, paper_gb, device (Table 15).

Every CSV of a kind found below the given folders is read, oldest first, so a newer measurement of the
same setting wins when a table keeps one value per cell.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Iterable
from pathlib import Path

log = logging.getLogger(__name__)

FILE_NAMES = {"bench_scan.csv": "scan", "bench_generate.csv": "generate", "bench_memory.csv": "memory"}
SCAN_COLUMNS = {"section", "impl", "seqlen", "ms"}  # what marks bench_scan.py's results.csv
KINDS = ("scan", "generate", "memory")


def _kind(path: Path) -> str | None:
    if path.name in FILE_NAMES:
        return FILE_NAMES[path.name]
    if path.name == "results.csv":
        with open(path, newline="") as f:
            header = set(next(csv.reader(f), []))
        return "scan" if SCAN_COLUMNS <= header else None
    return None


def find_bench_csvs(paths: Iterable[Path]) -> dict[str, list[Path]]:
    """``{"scan": [...], "generate": [...], "memory": [...]}``: the benchmark CSVs in or below ``paths``
    (a file is taken by its name), oldest first."""
    found: dict[str, set[Path]] = {kind: set() for kind in KINDS}
    for path in map(Path, paths):
        if not path.exists():
            raise FileNotFoundError(f"benchmark folder '{path}' does not exist")
        candidates = [path] if path.is_file() else [p for p in path.rglob("*.csv") if p.is_file()]
        for candidate in candidates:
            kind = _kind(candidate)
            if kind is not None:
                found[kind].add(candidate.resolve())
    return {kind: sorted(files, key=lambda p: p.stat().st_mtime) for kind, files in found.items()}


def read_rows(files: Iterable[Path]) -> list[dict[str, str]]:
    """The rows of ``files`` in order, each with ``source`` (its file) added."""
    rows: list[dict[str, str]] = []
    for path in files:
        try:
            with open(path, newline="") as f:
                rows += [{**row, "source": str(path)} for row in csv.DictReader(f)]
        except (OSError, csv.Error) as err:
            log.warning("skipping %s: %s", path, err)
    return rows


def number(text: str | None) -> float | str | None:
    """A measured value: a float, ``"oom"`` (out of memory) or None (missing, failed or skipped)."""
    if text is None or not str(text).strip():
        return None
    try:
        return float(text)
    except ValueError:
        return "oom" if "oom" in str(text).lower() or "out of memory" in str(text).lower() else None
