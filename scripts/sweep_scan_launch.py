"""Sweep the sequential scan kernels' launch parameters on the GPU and print fwd / bwd / fwd+bwd times.

Every combination of the ``--set`` values is run as sequential launch settings over the heuristic's
(``sequential_config`` in kernels/scan_launch.py), with the official kernel timed once per shape beside
it when it is importable. This is how the sequential defaults were chosen (docs/benchmarks.md):

    python scripts/sweep_scan_launch.py --shapes 8,2048,2048 --set bwd_lanes=4,8 --set bwd_warps=1,2,4 \\
        --set bwd_maxnreg=0,128 --set CHUNK=64,128
    python scripts/sweep_scan_launch.py --shapes 2,2048,8192 1,4096,4096 --set split_rows=0,16384,32768

Keys: fwd_warps, lanes, FWD_TT, CHUNK, bwd_warps, bwd_lanes, BWD_TT, bwd_maxnreg (0 = no cap, -1 = auto),
prefetch (-1 = auto), split_rows (0 = no time split), fwd_split_rows, split_target, split_lanes, lane_reduce,
stages. Writes CSV to --out. The winning values can be tried in a whole run with
``MAMBABENCH_SCAN_LAUNCH=KEY=VALUE,...`` before they become the defaults in kernels/scan_launch.py.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import sys
from pathlib import Path

import torch

from mambabench.kernels import benchmark as bm
from mambabench.kernels.scan_launch import ScanLaunch, scan_launch


def parse_set(items: list[str]) -> dict[str, list[int]]:
    """``["bwd_lanes=4,8", "CHUNK=128"]`` -> ``{"bwd_lanes": [4, 8], "CHUNK": [128]}``."""
    out: dict[str, list[int]] = {}
    for item in items:
        key, _, values = item.partition("=")
        if not values:
            raise SystemExit(f"--set {item!r}: expected KEY=V1,V2,...")
        out[key] = [int(v) for v in values.split(",")]
    try:
        ScanLaunch(sequential={k: v[0] for k, v in out.items()})
    except ValueError as e:
        raise SystemExit(f"--set: {e}") from e
    return out


def time_or_error(fn_maker, x: dict, **kw) -> float | str:  # noqa: ANN001
    try:
        return round(bm.bench(fn_maker(x, **kw), 100), 3)
    except Exception as e:  # noqa: BLE001 - a failing config is a result, not a crash
        return f"{type(e).__name__}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shapes", nargs="+", default=["8,2048,2048"], help="batch,dim,seqlen (N = 16)")
    p.add_argument("--set", action="append", default=[], help="KEY=V1,V2,... (repeatable)")
    p.add_argument("--dtype", default="bf16", choices=["bf16", "fp32"])
    p.add_argument("--deterministic", action="store_true", help="time the deterministic dB/dC backward")
    p.add_argument("--out", type=Path, default=Path("outputs/sweep_scan_launch.csv"))
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        raise SystemExit("sweep_scan_launch.py needs a CUDA GPU")
    grid = parse_set(args.set)
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    rows = []
    for shape in args.shapes:
        batch, dim, seqlen = (int(v) for v in shape.split(","))
        x = bm.make_scan_inputs(batch, dim, seqlen, 16, dtype)
        if bm.selective_scan_cuda is not None:
            off = {
                k: time_or_error(f, x)
                for k, f in (
                    ("fwd", bm.official_fwd),
                    ("bwd", bm.official_bwd),
                    ("fwdbwd", bm.official_fwdbwd),
                )
            }
            print(f"{shape} official: {off}", flush=True)
            rows.append({"shape": shape, "impl": "official", **off})
        for combo in itertools.product(*grid.values()):
            with scan_launch(family="sequential", sequential=dict(zip(grid, combo))):
                res = {
                    "fwd": time_or_error(bm.ours_fwd, x),
                    "fwd_nograd": time_or_error(bm.ours_fwd, x, save_states=False),
                    "bwd": time_or_error(bm.ours_bwd, x, deterministic=args.deterministic),
                    "fwdbwd": time_or_error(bm.ours_fwdbwd, x),
                }
            print(f"{shape} {dict(zip(grid, combo))}: {res}", flush=True)
            rows.append({"shape": shape, "impl": "sequential", **dict(zip(grid, combo)), **res})
        del x
        torch.cuda.empty_cache()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fields = list(dict.fromkeys(k for r in rows for k in r))
    with open(args.out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
