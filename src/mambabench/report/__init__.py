"""Paper tables and figures from runs: collect every summary.json, put ours beside the paper's values
(``paper_values.yaml``), write Markdown + CSV tables and PNG + SVG figures. Entry point:
``python scripts/report.py RUN_DIRS... --out reports/``."""

from mambabench.report.build import write_report
from mambabench.report.runs import Run, collect_runs

__all__ = ["Run", "collect_runs", "write_report"]
