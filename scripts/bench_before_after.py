#!/usr/bin/env python
"""Scan and Mamba-130M step timings of two checkouts of this repository, side by side.

    python scripts/bench_before_after.py --before ../mambabench-old --after . --out outputs/before_after

For each tree, ONE process imports that tree's ``mambabench`` (its ``src/mambabench`` with its top-level
``kernels/`` as ``mambabench.kernels``, laid out with symbolic links in a temporary folder put first on
``PYTHONPATH``, so neither tree needs installing) and measures:

* the selective scan at the six Mamba training shapes (batch, dim, seqlen), bf16, N = 16, in the Mamba
  block's configuration (variable B/C, z, D, delta_bias, softplus): training forward, no-grad forward
  and forward + backward through autograd (what a model runs), each the median of
  ``triton.testing.do_bench``; the official ``selective_scan_cuda`` kernel beside it when importable
  (the same in both processes: a gauge of run-to-run noise);
* the Mamba-130M training step with that tree's own ``scripts/bench_train_step.py --models mamba_130m
  --loss kernel`` (skipped without a GPU).

Only the public scan API that both trees share is used (``selective_scan_triton`` and the forward host
function), so an older tree without ``mambabench.kernels.benchmark`` can be measured too.  Results go
to ``--out`` as they come: ``<label>/scan.csv``, ``<label>/train_step.csv``, then ``before_after.csv``
and ``before_after.md`` (the side-by-side table, after / before ratios).  ``--shapes 1,8,64 --steps 0``
with ``TRITON_INTERPRET=1`` runs it tiny on a CPU.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TRAIN_SHAPES = ("16,1536,2048", "8,4096,2048", "8,2048,2048", "32,1536,512", "32,2048,512", "2,2048,8192")
KINDS = ("ours_fwd", "ours_fwd_nograd", "ours_fwdbwd", "official_fwdbwd")


def import_root(tree: Path, where: Path) -> Path:
    """A folder holding ``mambabench/``: links to every entry of ``tree/src/mambabench`` plus
    ``kernels`` -> ``tree/kernels`` (the installed package's layout, without installing)."""
    src = tree / "src" / "mambabench"
    if not (src / "__init__.py").exists() or not (tree / "kernels" / "__init__.py").exists():
        raise SystemExit(f"{tree} is not a checkout of this repository (no src/mambabench or kernels/)")
    pkg = where / "mambabench"
    pkg.mkdir(parents=True)
    for entry in src.iterdir():
        if entry.name != "kernels":
            (pkg / entry.name).symlink_to(entry.resolve())
    (pkg / "kernels").symlink_to((tree / "kernels").resolve())
    return where


# ------------------------------------------------------------------------------------------------
# the worker: runs inside one tree's process


def _inputs(batch: int, dim: int, seqlen: int, device: str):  # noqa: ANN202
    """The Mamba block's scan inputs (as ``mambabench.kernels.benchmark.make_scan_inputs``), bf16, N = 16."""
    import torch

    dtype = torch.bfloat16
    xz = torch.randn(batch, 2 * dim, seqlen, device=device, dtype=dtype)
    return [
        xz[:, :dim],
        (0.5 * torch.rand(batch, dim, seqlen, device=device) - 4.0).to(dtype),
        -torch.arange(1, 17, device=device, dtype=torch.float32).repeat(dim, 1),
        torch.randn(batch, 1, 16, seqlen, device=device, dtype=dtype),
        torch.randn(batch, 1, 16, seqlen, device=device, dtype=dtype),
        torch.ones(dim, device=device),
        xz[:, dim:],
        torch.full((dim,), -2.0, device=device),
    ]


def _median_ms(fn, cuda: bool, rep_ms: int = 100) -> float:  # noqa: ANN001
    """Median ms of ``fn``: ``triton.testing.do_bench`` on a GPU, three host-timed calls otherwise."""
    if cuda:
        import triton

        return float(triton.testing.do_bench(fn, warmup=25, rep=rep_ms, return_mode="median"))
    fn()
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return sorted(times)[1]


def _scan_calls(ss, official, x: list) -> dict:  # noqa: ANN001
    """The callables timed at one shape: our training / no-grad forward host function, our fwd+bwd
    through autograd and, when ``official`` (the selective_scan_cuda module) is given, its fwd + bwd."""
    import torch

    leaves = [t.detach().requires_grad_() for t in x]
    dout = torch.randn_like(x[0])

    def fwdbwd() -> object:
        out = ss.selective_scan_triton(*leaves, delta_softplus=True)
        return torch.autograd.grad(out, leaves, dout)

    calls = {
        "ours_fwd": lambda: ss._forward(*x, True, True, False),
        "ours_fwd_nograd": lambda: ss._forward(*x, True, False, False),
        "ours_fwdbwd": fwdbwd,
    }
    if official is not None:

        def official_fwdbwd() -> object:
            res = official.fwd(*x, True)
            return official.bwd(*x, dout, res[1], res[0], None, True, False)

        calls["official_fwdbwd"] = official_fwdbwd
    return calls


def worker(tree: Path, label: str, root: Path, out: Path, shapes: list[str], steps: int) -> None:
    """Measure one tree (imported from ``root``) and write ``out/label/scan.csv`` row by row."""
    import torch

    import mambabench
    from mambabench.kernels import selective_scan as ss

    where = {"mambabench": mambabench.__file__, "kernels": ss.__file__}
    if not all(str(p).startswith(str(root)) for p in where.values()):
        raise SystemExit(f"{label}: imported the wrong tree: {where}")
    try:
        import selective_scan_cuda  # type: ignore[import-not-found]
    except ImportError:
        selective_scan_cuda = None
    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    folder = out / label
    folder.mkdir(parents=True, exist_ok=True)
    print(
        f"[{label}] {tree}: {where['kernels']}; official kernel "
        f"{'importable' if selective_scan_cuda is not None else 'not importable'}",
        flush=True,
    )
    rows = []
    for shape in shapes:
        batch, dim, seqlen = (int(v) for v in shape.split(","))
        torch.manual_seed(0)
        for kind, fn in _scan_calls(ss, selective_scan_cuda, _inputs(batch, dim, seqlen, device)).items():
            t0 = time.time()
            ms = _median_ms(fn, cuda)
            rows.append({"tree": label, "shape": shape, "kind": kind, "ms": round(ms, 4)})
            print(
                f"[{label}] {shape} {kind}: {ms:.3f} ms ({time.time() - t0:.1f} s with compile)", flush=True
            )
            with open(folder / "scan.csv", "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=list(rows[0]))
                writer.writeheader()
                writer.writerows(rows)
        fn = None  # the last call holds this shape's tensors
        if cuda:
            torch.cuda.empty_cache()
    if steps > 0 and cuda:
        import runpy

        sys.argv = [
            str(tree / "scripts" / "bench_train_step.py"),
            "--models",
            "mamba_130m",
            "--loss",
            "kernel",
            "--steps",
            str(steps),
            "--out",
            str(folder),
        ]
        os.environ["PROJECT_ROOT"] = str(tree)
        runpy.run_path(sys.argv[0], run_name="__main__")
    elif steps > 0:
        print(f"[{label}] no GPU: the Mamba-130M step is skipped", flush=True)


# ------------------------------------------------------------------------------------------------
# the driver


def read_csv(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with open(path) as f:
        return list(csv.DictReader(f))


def side_by_side(out: Path, labels: tuple[str, str]) -> str:
    """Write before_after.csv / .md from the two trees' CSVs; returns the Markdown."""
    scans = {
        lab: {(r["shape"], r["kind"]): float(r["ms"]) for r in read_csv(out / lab / "scan.csv")}
        for lab in labels
    }
    steps = {lab: read_csv(out / lab / "train_step.csv") for lab in labels}
    rows = []
    keys = [k for k in scans[labels[0]] if k in scans[labels[1]]]
    for shape, kind in keys:
        b, a = scans[labels[0]][(shape, kind)], scans[labels[1]][(shape, kind)]
        rows.append(
            {"what": f"scan {kind}", "shape": shape, labels[0]: b, labels[1]: a, "ratio": round(a / b, 3)}
        )
    if steps[labels[0]] and steps[labels[1]]:
        for field in ("ms_per_step", "tokens_per_s", "peak_gb"):
            b, a = float(steps[labels[0]][0][field]), float(steps[labels[1]][0][field])
            rows.append(
                {
                    "what": f"mamba_130m step {field}",
                    "shape": "16,2048",
                    labels[0]: b,
                    labels[1]: a,
                    "ratio": round(a / b, 3),
                }
            )
    if rows:
        with open(out / "before_after.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    md = [
        f"| what | (batch, dim, seqlen) | {labels[0]} | {labels[1]} | {labels[1]} / {labels[0]} |",
        "|---|---|---|---|---|",
    ]
    md += [
        f"| {r['what']} | {r['shape']} | {r[labels[0]]:.3f} | {r[labels[1]]:.3f} | {r['ratio']:.3f} |"
        for r in rows
    ]
    text = "\n".join(md) + "\n\nScan columns: ms (median of triton.testing.do_bench); ratio < 1 is faster.\n"
    (out / "before_after.md").write_text(text)
    return text


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--before", type=Path, help="the older checkout (required)")
    p.add_argument(
        "--after", type=Path, default=Path(__file__).resolve().parents[1], help="the newer checkout"
    )
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--shapes", nargs="+", default=list(TRAIN_SHAPES), help="batch,dim,seqlen (N = 16, bf16)")
    p.add_argument("--steps", type=int, default=10, help="timed Mamba-130M steps (0: skip the step)")
    p.add_argument("--worker", nargs=3, metavar=("TREE", "LABEL", "ROOT"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker(Path(args.worker[0]), args.worker[1], Path(args.worker[2]), args.out, args.shapes, args.steps)
        return 0
    if args.before is None:
        p.error("--before is required: the path of the older checkout")
    args.out.mkdir(parents=True, exist_ok=True)
    labels = ("before", "after")
    meta = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, tree in zip(labels, (args.before, args.after)):
            tree = tree.resolve()
            root = import_root(tree, Path(tmp) / label)
            env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
            t0 = time.time()
            res = subprocess.run(
                [
                    sys.executable,
                    str(Path(__file__).resolve()),
                    "--worker",
                    str(tree),
                    label,
                    str(root),
                    "--out",
                    str(args.out.resolve()),
                    "--steps",
                    str(args.steps),
                    "--shapes",
                    *args.shapes,
                ],
                env=env,
                cwd=tree,
            )
            meta[label] = {
                "tree": str(tree),
                "seconds": round(time.time() - t0, 1),
                "returncode": res.returncode,
                "commit": subprocess.run(
                    ["git", "-C", str(tree), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
                ).stdout.strip()
                or "unknown",
            }
            (args.out / "trees.json").write_text(json.dumps(meta, indent=1))
            print(f"[{label}] done in {meta[label]['seconds']} s (exit {res.returncode})", flush=True)
    text = side_by_side(args.out, labels)
    print(text)
    return 0 if all(m["returncode"] == 0 for m in meta.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
