"""Paper tables and figures from runs, ours beside the paper's:

    python scripts/report.py outputs/ --out reports/
    python scripts/report.py outputs/multirun/2025-01-01/12-00-00 --out docs/results/
    python scripts/report.py --wandb ENTITY/PROJECT --out reports/ [--upload]
    python scripts/report.py outputs/ --bench outputs/bench --out reports/   # + Figure 8, Table 15

Reads every summary.json below the given folders (single runs and multirun sweeps; evaluations of a
checkpoint are folded into their run), groups them by experiment preset and writes one Markdown + CSV
file per paper table and one PNG + SVG per figure, with an index README.md. Cells without a run say
"missing". With --wandb it reads the runs of a W&B project instead (needs `wandb login`), and --upload
logs the tables and figures back to that project as a "report" run. Figure 8 and Table 15 come from
the benchmark CSVs (bench_scan.py's results.csv, bench_generate.csv, bench_memory.csv) found below
--bench folders and the run folders.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from pathlib import Path

from mambabench.report import collect_runs, write_report
from mambabench.report.bench_csv import find_bench_csvs
from mambabench.report.build import summary_lines
from mambabench.report.wandb_runs import fetch_wandb_runs, upload_report
from mambabench.utils.errors import InputError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "run_dirs",
        nargs="*",
        type=Path,
        default=[Path("outputs")],
        help="folders holding runs (searched recursively for summary.json; default outputs/)",
    )
    parser.add_argument("--out", type=Path, default=Path("reports"), help="where tables and figures go")
    parser.add_argument(
        "--wandb",
        metavar="ENTITY/PROJECT",
        default=None,
        help="read the runs of this W&B project instead of local folders",
    )
    parser.add_argument(
        "--bench",
        type=Path,
        nargs="+",
        default=[],
        metavar="DIR",
        help="folders (or files) with benchmark CSVs for Figure 8 and Table 15; run folders are searched too",
    )
    parser.add_argument(
        "--upload",
        action="store_true",
        help="with --wandb: log the written tables and figures to that project",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.upload and not args.wandb:
        print("error: --upload needs --wandb ENTITY/PROJECT", file=sys.stderr)
        return 2
    try:
        runs = (
            fetch_wandb_runs(args.wandb, args.out / "wandb_runs")
            if args.wandb
            else collect_runs(args.run_dirs)
        )
        bench = find_bench_csvs(args.bench + ([] if args.wandb else list(args.run_dirs)))
    except (FileNotFoundError, InputError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    command = "python scripts/report.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    written = write_report(runs, args.out, command, bench)
    for line in summary_lines(runs):
        print(line)
    print(f"wrote {len(written)} files; start at {args.out / 'README.md'}")
    if args.upload:
        upload_report(args.wandb, written)
    return 0


if __name__ == "__main__":
    sys.exit(main())
