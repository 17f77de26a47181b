"""In-context regression report: model and baseline error curves, probes, figures.

    python scripts/icl_report.py outputs/ --out reports/icl
    python scripts/icl_report.py RUN_DIR [RUN_DIR ...] --out DIR [--baselines least_squares 3_nn] [--no-probe]

Finds every run directory under the given paths whose config uses data=icl_regression, rebuilds its
test prompts, and writes ``curves.csv`` (model and baselines: error vs number of in-context examples, per
evaluation set), ``probes.csv`` (linear probe error per layer and position), the figures
``icl_<family>_error_vs_examples.{png,svg}`` and ``icl_<family>_probe_vs_layer.{png,svg}`` and a
Markdown table ``icl_summary.md``.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

from mambabench.eval.icl import CURVE_FIELDS, PROBE_FIELDS, evaluate_runs, write_rows
from mambabench.eval.icl_figures import plot_error_curves, plot_probe_errors


def find_icl_runs(paths: list[Path]) -> list[Path]:
    """Run directories (holding config.yaml with an ICL data module) under ``paths``."""
    runs = []
    for path in paths:
        candidates = (
            [path] if (path / "config.yaml").exists() else sorted(p.parent for p in path.rglob("config.yaml"))
        )
        for run in candidates:
            text = (run / "config.yaml").read_text()
            if "ICLRegressionDataModule" in text and (run / "checkpoints").exists():
                runs.append(run)
    return runs


def summary_markdown(rows: list[dict], points: tuple[int, ...]) -> str:
    """Error at a few numbers of in-context examples, per family, evaluation set and method."""
    table: dict[tuple[str, str, str, str], dict[int, float]] = defaultdict(dict)
    for row in rows:
        row = row if isinstance(row, dict) else row.__dict__
        table[(row["family"], row["loader"], row["kind"], row["name"])][int(row["examples"])] = float(
            row["error"]
        )
    lines = [
        "| family | eval set | kind | method | " + " | ".join(f"k={k}" for k in points) + " |",
        "|---|---|---|---|" + "---|" * len(points),
    ]
    for (family, loader, kind, name), curve in sorted(table.items()):
        cells = [f"{curve[k]:.3f}" if k in curve else "–" for k in points]
        lines.append(f"| {family} | {loader} | {kind} | {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("paths", nargs="+", type=Path, help="run directories or folders holding them")
    parser.add_argument("--out", type=Path, default=Path("reports/icl"))
    parser.add_argument("--baselines", nargs="*", default=None, help="default: the family's usual baselines")
    parser.add_argument("--num-prompts", type=int, default=512)
    parser.add_argument("--per-prompt-limit", type=int, default=64, help="prompts for the tree baselines")
    parser.add_argument("--no-probe", action="store_true")
    parser.add_argument("--probe-prompts", type=int, default=1024, help="prompts the probes are fitted on")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--points", type=int, nargs="*", default=[0, 1, 2, 5, 10, 20, 40, 80])
    args = parser.parse_args()

    runs = find_icl_runs(args.paths)
    if not runs:
        raise SystemExit(
            f"no in-context regression runs (config.yaml with data=icl_regression and checkpoints/) "
            f"under {', '.join(map(str, args.paths))}"
        )
    print(f"evaluating {len(runs)} run(s): " + ", ".join(map(str, runs)))
    rows, probes = evaluate_runs(
        runs,
        args.baselines,
        args.num_prompts,
        args.per_prompt_limit,
        probe=not args.no_probe,
        probe_prompts=args.probe_prompts,
        device=args.device,
    )
    args.out.mkdir(parents=True, exist_ok=True)
    written = [write_rows(rows, args.out / "curves.csv", CURVE_FIELDS)]
    curve_dicts = [r.__dict__ for r in rows]
    written += plot_error_curves(curve_dicts, args.out)
    if probes:
        written.append(write_rows(probes, args.out / "probes.csv", PROBE_FIELDS))
        written += plot_probe_errors(probes, args.out)
    summary = summary_markdown(curve_dicts, tuple(args.points))
    (args.out / "icl_summary.md").write_text(summary)
    written.append(args.out / "icl_summary.md")
    print(summary)
    print("wrote:\n  " + "\n  ".join(map(str, written)))


if __name__ == "__main__":
    main()
