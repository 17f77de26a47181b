"""Reading runs from, and uploading the report to, a W&B project (online only; needs `wandb login`).

Runs log their config (with the Hydra ``choices``) as W&B config and their final metrics as the W&B
summary, so a W&B run maps onto the same :class:`~mambabench.report.runs.Run` as a local folder: its
summary.json is rebuilt under ``cache_dir/<run id>/`` and the cells link there."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from typing import Any

from mambabench.report.runs import SUMMARY_FILE, Run, collect_runs
from mambabench.utils.errors import InputError, MissingPackageError

log = logging.getLogger(__name__)


def _api() -> Any:
    try:
        import wandb
    except ImportError as err:  # pragma: no cover - wandb is a core dependency
        raise MissingPackageError("reading runs from W&B needs the wandb package: pip install wandb") from err
    try:
        return wandb.Api()
    except Exception as err:  # wandb raises its own types for auth and network failures
        raise InputError(
            f"cannot reach the W&B API ({err}); run `wandb login`, or report from local run folders instead"
        ) from err


def wandb_summary(config: dict[str, Any], metrics: dict[str, Any], run_id: str, url: str) -> dict[str, Any]:
    """The summary.json a local run would have written, from a W&B run's config and summary."""
    numeric = {
        k: float(v) for k, v in metrics.items() if isinstance(v, int | float) and not k.startswith("_")
    }
    return {
        "run_dir": url,
        "wandb_id": run_id,
        "choices": config.get("choices") or {},
        "model": config.get("model") or {},
        "data": config.get("data") or {},
        "optimizer": config.get("optimizer") or {},
        "params": {"total": config.get("params/total")},
        "global_step": metrics.get("trainer/global_step"),
        "metrics": numeric,
    }


def fetch_wandb_runs(project: str, cache_dir: Path) -> list[Run]:
    """Every finished run of ``project`` ("entity/project") as a :class:`Run`."""
    api = _api()
    cache_dir.mkdir(parents=True, exist_ok=True)
    count = 0
    try:
        for wb_run in api.runs(project, filters={"state": "finished"}):
            summary = wandb_summary(dict(wb_run.config), dict(wb_run.summary), wb_run.id, wb_run.url)
            folder = cache_dir / wb_run.id
            folder.mkdir(exist_ok=True)
            (folder / SUMMARY_FILE).write_text(json.dumps(summary, indent=2, default=str))
            count += 1
    except Exception as err:  # wandb raises ValueError, CommError, ... for a missing project or a bad reply
        raise InputError(
            f"cannot read the runs of W&B project '{project}' ({err}); check ENTITY/PROJECT and `wandb login`"
        ) from err
    log.info("read %d runs from W&B project %s", count, project)
    return collect_runs([cache_dir])


def upload_report(project: str, files: list[Path]) -> None:
    """Log tables (as W&B tables) and figures (as images) to ``project`` in a run of job type "report",
    and the whole folder as an artifact."""
    import wandb

    entity, _, name = project.partition("/")
    with wandb.init(
        entity=entity or None, project=name or entity, job_type="report", name="paper-report"
    ) as run:
        for path in files:
            if path.suffix == ".csv":  # cells may hold quoted commas: read it as CSV
                with open(path, newline="") as f:
                    header, *rows = list(csv.reader(f))
                run.log({path.stem: wandb.Table(columns=header, data=rows)})
            elif path.suffix == ".png":
                run.log({path.stem: wandb.Image(str(path))})
        artifact = wandb.Artifact("paper-report", type="report")
        for path in files:
            artifact.add_file(str(path))
        run.log_artifact(artifact)
    log.info("uploaded %d files to W&B project %s", len(files), project)
