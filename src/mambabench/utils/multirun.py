"""One table of a multirun's runs, so that nobody has to open each ``summary.json``.

At the end of ``python src/train.py -m ...`` the table (one row per run: the overrides that differ
between runs, the final val/test metrics, steps and wall time) is printed and written beside the runs
as ``runs.md`` and ``runs.csv``. ``python -m mambabench.utils.multirun <sweep dir>`` rebuilds it for
an existing sweep.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Any

import yaml
from hydra.experimental.callback import Callback
from omegaconf import DictConfig
from rich import get_console
from rich.table import Table

SUMMARY_FILE = "summary.json"
_METRIC_PREFIXES = ("val/", "test/")


def _run_rows(sweep_dir: Path) -> list[dict[str, Any]]:
    """One dict per job folder of ``sweep_dir``: its overrides, summary metrics (or its status)."""
    rows = []
    for job_dir in sorted(
        (p for p in sweep_dir.iterdir() if (p / ".hydra" / "overrides.yaml").exists()),
        key=lambda p: (int(p.name.split("_", 1)[0]) if p.name.split("_", 1)[0].isdigit() else 0, p.name),
    ):
        overrides = yaml.safe_load((job_dir / ".hydra" / "overrides.yaml").read_text()) or []
        row: dict[str, Any] = {"run": job_dir.name, "overrides": [str(o) for o in overrides]}
        summary_path = job_dir / SUMMARY_FILE
        if summary_path.exists():
            summary = json.loads(summary_path.read_text())
            row["metrics"] = {
                k: v for k, v in (summary.get("metrics") or {}).items() if k.startswith(_METRIC_PREFIXES)
            }
            row["steps"] = summary.get("global_step")
            row["wall_time_s"] = summary.get("wall_time_s")
            row["status"] = "done"
        else:
            row["metrics"] = {}
            row["status"] = "no summary.json (failed or still running)"
        rows.append(row)
    return rows


def runs_table(sweep_dir: Path) -> tuple[list[str], list[list[str]], list[str]]:
    """Header and rows of the table of ``sweep_dir``, and the overrides shared by all runs (left out of
    the rows: they are the sweep's, not a difference between its runs)."""
    rows = _run_rows(sweep_dir)
    shared = set.intersection(*(set(r["overrides"]) for r in rows)) if rows else set()
    metric_names = sorted({name for r in rows for name in r["metrics"]})
    header = ["run", "overrides", *metric_names, "steps", "wall_time_s", "status"]
    body = []
    for r in rows:
        differing = " ".join(o for o in r["overrides"] if o not in shared) or "(none)"
        metrics = [f"{r['metrics'][m]:.4f}" if m in r["metrics"] else "" for m in metric_names]
        body.append(
            [
                r["run"].split("_", 1)[0],
                differing,
                *metrics,
                str(r.get("steps", "")),
                str(r.get("wall_time_s", "")),
                r["status"],
            ]
        )
    shared_in_order = [o for o in rows[0]["overrides"] if o in shared] if rows else []
    return header, body, shared_in_order


def write_runs_table(sweep_dir: Path) -> Path | None:
    """Print the table of ``sweep_dir`` and write ``runs.md`` and ``runs.csv`` there; returns the
    Markdown path (None when the folder holds no runs)."""
    header, body, shared = runs_table(sweep_dir)
    if not body:
        return None
    with open(sweep_dir / "runs.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(body)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in body]
    markdown = sweep_dir / "runs.md"
    common = f"Overrides of every run: `{' '.join(shared)}`\n\n" if shared else ""
    markdown.write_text(f"# Runs of {sweep_dir}\n\n{common}" + "\n".join(lines) + "\n")
    table = Table(title=f"{len(body)} runs" + (f" (each with {' '.join(shared)})" if shared else ""))
    for name in header:
        table.add_column(name, justify="left" if name in ("run", "overrides", "status") else "right")
    for row in body:
        table.add_row(*row)
    console = get_console()
    console.print(table)
    console.print(f"table of the runs: {markdown} (and runs.csv)", soft_wrap=True)
    return markdown


class MultirunTable(Callback):
    """Hydra callback: after the last job of a multirun, the table of all its runs."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if sweep_dir.is_dir():
            write_runs_table(sweep_dir)


if __name__ == "__main__":
    from mambabench.utils.console import configure_console

    configure_console()
    if len(sys.argv) != 2 or not Path(sys.argv[1]).is_dir():
        sys.exit(
            "usage: python -m mambabench.utils.multirun <multirun folder, e.g. outputs/train/multiruns/<time>>"
        )
    if write_runs_table(Path(sys.argv[1])) is None:
        sys.exit(f"'{sys.argv[1]}' holds no runs (no <n>_<overrides>/.hydra/overrides.yaml folders)")
