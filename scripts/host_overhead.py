"""Host (Python) cost of one selective-scan call on a GPU, next to the GPU time it launches.

At small shapes (batch 1, L <= 2K) the scan's fwd+bwd is bound by the host, not by the GPU: every
kernel launch, allocation and autograd step costs microseconds of Python. This script shows where they
go, for the autograd path (``selective_scan_triton`` + ``torch.autograd.grad``, what a model runs) and
for the forward and backward host functions and, when ``selective_scan_cuda`` is importable,
the official kernel's calls:

    python scripts/host_overhead.py                       # (1, 4096, 512) bf16, the Figure 8 setup
    python scripts/host_overhead.py --shape 1,4096,2048 --top 40

Per path it prints: wall ms per call with the GPU pipelined (the host-bound time), the GPU's busy ms
per call (sum of kernel times from torch.profiler), the number of kernels launched per call, and the
top functions of a cProfile run by own time. Writes ``host_overhead.txt`` under ``--out`` too.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import time
from collections.abc import Callable
from pathlib import Path

import torch

from mambabench.kernels import benchmark as bm
from mambabench.kernels.scan_launch import current_launch


def wall_ms(fn: Callable[[], object], iters: int) -> float:
    """Wall milliseconds per call of ``fn`` run back to back (GPU work overlaps the next call's host work)."""
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(iters):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) * 1e3 / iters


def gpu_ms_and_kernels(fn: Callable[[], object], iters: int) -> tuple[float, float]:
    """(GPU busy ms per call, kernels per call) from torch.profiler's device events."""
    from torch.profiler import ProfilerActivity, profile

    fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(iters):
            fn()
        torch.cuda.synchronize()
    kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    busy_us = sum(e.device_time for e in kernels)
    return busy_us / 1e3 / iters, len(kernels) / iters


def top_functions(fn: Callable[[], object], iters: int, top: int) -> str:
    """cProfile of ``iters`` calls, sorted by own time."""
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(iters):
        fn()
    torch.cuda.synchronize()
    prof.disable()
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(top)
    return buf.getvalue()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shape", default="1,4096,512", help="batch,dim,seqlen")
    p.add_argument("--dtype", default="bf16", choices=["bf16", "fp32"])
    p.add_argument("--iters", type=int, default=50)
    p.add_argument("--top", type=int, default=30)
    p.add_argument("--out", type=Path, default=Path("outputs/host_overhead"))
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        raise SystemExit("host_overhead.py measures GPU launches; no CUDA device is visible")
    batch, dim, seqlen = (int(v) for v in args.shape.split(","))
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    x = bm.make_scan_inputs(batch, dim, seqlen, 16, dtype)
    paths = {
        "fwd+bwd (autograd)": bm.ours_fwdbwd(x),
        "fwd (no grad)": bm.ours_fwd(x, save_states=False),
        "fwd (training)": bm.ours_fwd(x, save_states=True),
        "bwd (host function)": bm.ours_bwd(x),
    }
    if bm.selective_scan_cuda is not None:  # the official extension's fwd + bwd calls, for scale
        paths["official fwd+bwd"] = bm.official_fwdbwd(x)
    lines = [
        f"shape {args.shape} {args.dtype}, N = 16, z / D / delta_bias / softplus, variable B/C; "
        f"scan family {current_launch().family}"
    ]
    print(lines[0], flush=True)
    report = []
    for name, fn in paths.items():
        wall = wall_ms(fn, args.iters)
        gpu, n_kernels = gpu_ms_and_kernels(fn, 10)
        row = f"{name:22s} wall {wall:7.3f} ms/call   GPU busy {gpu:7.3f} ms   kernels {n_kernels:5.1f}"
        print(row, flush=True)
        lines.append(row)
        report.append(f"==== {name}\n" + top_functions(fn, args.iters, args.top))
    text = "\n".join(lines) + "\n\n" + "\n".join(report)
    print("\n".join(report))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "host_overhead.txt").write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
