"""Finding and reading runs: every ``summary.json`` under the given folders (single runs and Hydra
multirun sweeps alike), grouped by the experiment preset that produced them.

A training run leaves ``<run>/summary.json`` (see :func:`mambabench.utils.run.train`): its config
choices (``choices.experiment`` is the preset, e.g. ``ablations/table1/mini``), the model and data
configs, parameter counts, steps and final metrics. An evaluation of a checkpoint (``src/eval.py``)
leaves a summary with ``ckpt_path``; its metrics are merged into the run that checkpoint came from,
so re-testing a model (e.g. at longer lengths) updates that run's cells.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SUMMARY_FILE = "summary.json"


@dataclass
class Run:
    """One training run as the report sees it."""

    run_dir: Path
    summary: dict[str, Any]
    metrics: dict[str, float] = field(default_factory=dict)
    out_of_memory_lengths: set[int] = field(default_factory=set)
    beyond_positions_lengths: set[int] = field(default_factory=set)  # past the learned positions

    @property
    def choices(self) -> dict[str, Any]:
        return self.summary.get("choices") or {}

    @property
    def experiment(self) -> str | None:
        """The preset, e.g. ``ablations/table1/mini`` (None for runs composed without one)."""
        return self.choices.get("experiment")

    @property
    def topic(self) -> str | None:
        """The preset without its scale: ``ablations/table1/mini`` -> ``ablations/table1``."""
        return None if self.experiment is None else self.experiment.rpartition("/")[0] or self.experiment

    @property
    def scale(self) -> str | None:
        """The preset's scale: ``ablations/table1/mini`` -> ``mini``."""
        return None if self.experiment is None else self.experiment.rpartition("/")[2]

    @property
    def model_name(self) -> str | None:
        """The model config chosen (``model=...``), e.g. ``mamba`` or ``table1/h3_s4``."""
        return self.choices.get("model")

    @property
    def mtime(self) -> float:
        return (self.run_dir / SUMMARY_FILE).stat().st_mtime

    def config(self, dotted: str, default: Any = None) -> Any:
        """A value of the run's summarised config: ``config("model.mixer.d_state")``."""
        node: Any = self.summary
        for key in dotted.split("."):
            if not isinstance(node, dict) or key not in node:
                return default
            node = node[key]
        return node

    def metric(self, *names: str) -> float | None:
        """The first of ``names`` that the run logged (None if none)."""
        return next((float(self.metrics[n]) for n in names if n in self.metrics), None)


def find_summaries(paths: Iterable[Path]) -> list[Path]:
    """Every summary.json in or below ``paths`` (files are taken as they are)."""
    found: set[Path] = set()
    for path in map(Path, paths):
        if not path.exists():
            raise FileNotFoundError(f"run folder '{path}' does not exist")
        if path.is_file():
            found.add(path.resolve())
        else:
            found.update(p.resolve() for p in path.rglob(SUMMARY_FILE))
    return sorted(found)


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        log.warning("skipping %s: %s", path, err)
        return None
    return data if isinstance(data, dict) else None


def _checkpoint_run(ckpt_path: str) -> Path:
    """``<run>/checkpoints/x.ckpt`` -> ``<run>``."""
    return Path(ckpt_path).resolve().parent.parent


def collect_runs(paths: Iterable[Path]) -> list[Run]:
    """Read every run below ``paths``; evaluations are folded into the run their checkpoint came from.

    Evaluations (summaries with ``ckpt_path`` and no ``run_dir``) are applied oldest first, so the
    newest evaluation of a metric wins; their ``out_of_memory_lengths`` and ``beyond_positions_lengths``
    are kept on the run.
    """
    runs: dict[Path, Run] = {}
    evaluations: list[tuple[float, dict[str, Any]]] = []
    for path in find_summaries(paths):
        summary = _read(path)
        if summary is None:
            continue
        if "run_dir" not in summary and summary.get("ckpt_path"):
            evaluations.append((path.stat().st_mtime, summary))
            continue
        run_dir = path.parent
        runs[run_dir] = Run(run_dir, summary, dict(summary.get("metrics") or {}))
    for _, summary in sorted(evaluations, key=lambda item: item[0]):
        run = runs.get(_checkpoint_run(summary["ckpt_path"]))
        if run is None:
            log.info("evaluation of %s: its training run is not among the folders read", summary["ckpt_path"])
            continue
        run.metrics.update(summary.get("metrics") or {})
        run.out_of_memory_lengths.update(int(n) for n in summary.get("out_of_memory_lengths") or [])
        run.beyond_positions_lengths.update(int(n) for n in summary.get("beyond_positions_lengths") or [])
    return sorted(runs.values(), key=lambda r: (r.experiment or "", r.mtime))


def runs_of(runs: Iterable[Run], topic: str) -> dict[str, list[Run]]:
    """The runs of one preset topic, by scale: ``{"mini": [...], "paper": [...]}`` (oldest first)."""
    by_scale: dict[str, list[Run]] = {}
    for run in runs:
        if run.topic == topic:
            by_scale.setdefault(run.scale or "", []).append(run)
    return by_scale


def latest(runs: Iterable[Run]) -> Run | None:
    """The most recent of ``runs`` (what a cell shows when a setting was run more than once)."""
    return max(runs, key=lambda r: r.mtime, default=None)
