#!/usr/bin/env python
"""Benchmark the selective scan: ours (Triton) vs the official CUDA kernel, PyTorch scans and attention.

Writes under ``--out``: ``results.csv`` (one row per measurement), ``fig8.png`` (log-log time vs
sequence length, like Figure 8 left of the Mamba paper), ``log.txt``; prints tables.

Sections (``--sections``, comma separated):

- ``check``: correctness on the GPU (ours vs the sequential reference; ours vs official);
- ``sweep``: time launch configurations of the tiled forward and backward at one shape;
- ``train``: shapes of real Mamba models (dim 1536/2048/4096, N=16, batch*L = 16K tokens);
- ``fig8``: batch 1, scan dim 4096 vs causal SDPA attention (16 heads x 128 = dim 2048), L 512..512K.

Every scan runs in the Mamba module's configuration: variable B/C, z, D, delta_bias and softplus on,
N = 16. GB/s counts the minimum bytes (forward: read u, delta, z, B, C and write out; backward:
read u, delta, z, dout, B, C and write du, ddelta, dz, dB, dC); the floor is the larger of those
bytes over the measured copy bandwidth and the forward's exp2 count over the special-function
throughput (16/clk/SM; 132 SMs at 1.98 GHz on H100 = 4.18e12/s).

The official kernel is used when ``import selective_scan_cuda`` works (mamba-ssm built from source with
``scripts/install_official.sh``). Example::

    python scripts/bench_scan.py --out outputs/bench --sections check,train,fig8
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from mambabench.kernels import selective_scan as ss
from mambabench.kernels.benchmark import (
    bench,
    bwd_bytes,
    copy_bandwidth,
    fwd_bytes,
    official_bwd,
    official_fwd,
    official_fwdbwd,
    ours_bwd,
    ours_fwd,
    ours_fwdbwd,
    safe,
    selective_scan_cuda,
)
from mambabench.kernels.benchmark import make_scan_inputs as make
from mambabench.kernels.scan_launch import current_launch, scan_launch
from mambabench.ops import selective_scan_ref

MUFU_PER_S = 16 * 132 * 1.98e9
ROWS: list[dict] = []
LOG = None


def log(msg: str) -> None:
    print(msg, flush=True)
    if LOG is not None:
        LOG.write(msg + "\n")
        LOG.flush()


def record(**row: object) -> None:
    ROWS.append(row)


# ------------------------------------------------------------------------------------------------
# PyTorch scans and bounds


def naive_scan(u, delta, A, B, C, D, z, delta_bias):  # noqa: ANN001, ANN201
    """The paper's "standard scan" in PyTorch: materialise deltaA and deltaB*u as (b, d, L, N) fp32
    and run a Hillis-Steele parallel scan over L (log2 L full-size steps)."""
    dl = torch.nn.functional.softplus(delta.float() + delta_bias[:, None])
    a = torch.exp(dl.unsqueeze(-1) * A[:, None, :])
    b = (dl * u.float()).unsqueeze(-1) * B[:, 0].float().permute(0, 2, 1).unsqueeze(1)
    L = a.shape[2]
    step = 1
    while step < L:
        b = torch.cat([b[:, :, :step], a[:, :, step:] * b[:, :, :-step] + b[:, :, step:]], dim=2)
        a = torch.cat([a[:, :, :step], a[:, :, step:] * a[:, :, :-step]], dim=2)
        step *= 2
    y = torch.einsum("bdln,bnl->bdl", b, C[:, 0].float()) + D[:, None] * u.float()
    return (y * torch.nn.functional.silu(z.float())).to(u.dtype)


def floor_ms(nbytes: float, n_exp2: float, copy_gbs: float) -> float:
    return max(nbytes / copy_gbs / 1e6, n_exp2 / MUFU_PER_S * 1e3)


def fmt(v: object) -> str:
    return f"{v:.3f}" if isinstance(v, float) else str(v)


# ------------------------------------------------------------------------------------------------
# sections


def section_check() -> None:
    log("\n## check: correctness on the GPU")
    torch.manual_seed(0)
    for dtype, (rtol, atol) in ((torch.float32, (6e-4, 2e-3)), (torch.bfloat16, (3e-2, 5e-2))):
        x = make(2, 64, 700, 16, dtype)
        leaves = {k: v.detach().clone().requires_grad_() for k, v in x.items()}
        leaves_ref = {k: v.detach().clone().requires_grad_() for k, v in x.items()}
        out = ss.selective_scan_triton(*leaves.values(), delta_softplus=True)
        ref = selective_scan_ref(*leaves_ref.values(), delta_softplus=True)
        g = torch.randn_like(out)
        gr = torch.autograd.grad(out, list(leaves.values()), g)
        gr_ref = torch.autograd.grad(ref, list(leaves_ref.values()), g)
        errs = {"out": (out.float() - ref.float()).abs().max().item()}
        for k, a, b in zip(leaves, gr, gr_ref):
            errs["d" + k] = ((a.float() - b.float()).abs().max() / (b.float().abs().max() + 1e-6)).item()
        ok = torch.allclose(out.float(), ref.float(), rtol=rtol, atol=atol)
        log(
            f"ours vs reference {dtype}: out max abs err {errs['out']:.2e} (allclose {ok}); grads max "
            "rel-to-max err " + " ".join(f"{k}={v:.1e}" for k, v in errs.items() if k != "out")
        )
        record(section="check", impl="ours_vs_ref", dtype=str(dtype), **errs)
        if selective_scan_cuda is not None:
            res = official_fwd({k: v.detach() for k, v in x.items()})()
            off_out = res[2]
            dout = g.contiguous()
            og = selective_scan_cuda.bwd(
                *(x[k].detach() for k in ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")),
                dout,
                res[1],
                res[0],
                None,
                True,
                False,
            )
            errs2 = {"out": (out.float() - off_out.float()).abs().max().item()}
            names = ["u", "delta", "A", "B", "C", "D", "delta_bias", "z"]
            ours = dict(zip(leaves, gr))
            for k, v in zip(names, og[:8]):
                errs2["d" + k] = (
                    (ours[k].float() - v.float()).abs().max() / (v.float().abs().max() + 1e-6)
                ).item()
            log(
                f"ours vs official  {dtype}: out max abs err {errs2['out']:.2e}; grads "
                + " ".join(f"{k}={v:.1e}" for k, v in errs2.items() if k != "out")
            )
            record(section="check", impl="ours_vs_official", dtype=str(dtype), **errs2)


# (BLOCK_D, BLOCK_T, num_warps) of the tiled kernels with 8 or 16 (forward) / 4 or 8 (backward) elements
# per thread
FWD_SWEEP = [
    (e * 32 * w // bt, bt, w)
    for w in (1, 2, 4, 8)
    for bt in (32, 64, 128)
    for e in (8, 16)
    if e * 32 * w // bt >= 2
]
BWD_SWEEP = [
    (e * 32 * w // bt, bt, w)
    for w in (1, 2, 4)
    for bt in (32, 64, 128)
    for e in (4, 8)
    if e * 32 * w // bt >= 2
]
BEST: dict[str, tuple[dict, dict]] = {}


def section_sweep(
    shape: tuple[int, int, int], copy_gbs: float, shard: tuple[int, int] | None = None, name: str = "train"
) -> None:
    """Time the tiled forward and backward over launch configurations (BLOCK_D, BLOCK_T, warps) at one shape.

    The backward's tile is the forward's BLOCK_T (the chunk of saved states), so the pair is chosen
    by the smallest fwd + bwd time over BLOCK_T and stored in ``BEST[name]``. With
    ``shard=(i, n)`` only compile (run once, no timing) every n-th configuration: several such
    processes fill Triton's cache in parallel before one process times them all.
    """
    batch, dim, seqlen = shape
    if shard is None:
        log(f"\n## sweep of the tiled kernels at (batch, dim, L) = {shape}, bf16, N=16 (ms)")
    x = make(batch, dim, seqlen, 16, torch.bfloat16)
    fb = fwd_bytes(batch, dim, seqlen, 16, 2)
    best: dict = {}
    jobs = [("fwd", c) for c in FWD_SWEEP] + [("bwd", c) for c in BWD_SWEEP]
    for idx, (kind, (bd, bt, warps)) in enumerate(jobs):
        if shard is not None and idx % shard[1] != shard[0]:
            continue
        if kind == "fwd":
            launch = {"tiled_fwd": {"BLOCK_D": bd, "BLOCK_T": bt, "num_warps": warps, "num_stages": 1}}
            mk = ours_fwd
        else:
            launch = {
                "tiled_fwd": {
                    "BLOCK_D": FWD_SWEEP[0][0],
                    "BLOCK_T": bt,
                    "num_warps": FWD_SWEEP[0][2],
                    "num_stages": 1,
                },
                "tiled_bwd": {"BLOCK_D": bd, "num_warps": warps, "num_stages": 1},
            }
            mk = ours_bwd
        with scan_launch(**launch):
            if shard is not None:
                safe(lambda mk=mk: mk(x)())
                continue
            ms = safe(lambda mk=mk: bench(mk(x), rep_ms=100))
        gbs = fb / ms / 1e6 if isinstance(ms, float) and kind == "fwd" else ""
        log(f"{kind} BLOCK_D={bd:3d} BLOCK_T={bt:3d} warps={warps}: {fmt(ms)} ms {fmt(gbs)} GB/s")
        record(
            section="sweep",
            impl=f"ours_{kind}",
            batch=batch,
            dim=dim,
            seqlen=seqlen,
            block_d=bd,
            block_t=bt,
            warps=warps,
            ms=ms,
            gbs=gbs,
        )
        if isinstance(ms, float) and ms < best.get((kind, bt), (1e9,))[0]:
            best[(kind, bt)] = (ms, bd, warps)
    if shard is None:
        pairs = [
            (best[("fwd", bt)][0] + best[("bwd", bt)][0], bt)
            for bt in (32, 64, 128)
            if ("fwd", bt) in best and ("bwd", bt) in best
        ]
        if pairs:
            _, bt = min(pairs)
            f, b = best[("fwd", bt)], best[("bwd", bt)]
            BEST[name] = (
                {"BLOCK_D": f[1], "BLOCK_T": bt, "num_warps": f[2], "num_stages": 1},
                {"BLOCK_D": b[1], "num_warps": b[2], "num_stages": 1},
            )
            log(f"best for {name}: fwd {BEST[name][0]} ({f[0]:.3f} ms), bwd {BEST[name][1]} ({b[0]:.3f} ms)")
            with scan_launch(tiled_fwd=BEST[name][0], tiled_bwd=BEST[name][1]):
                ms = safe(lambda: bench(ours_bwd(x, deterministic=True), rep_ms=100))
            log(f"  same bwd config, deterministic dB/dC (partials + sum): {fmt(ms)} ms")
            record(section="sweep", impl="ours_bwd_deterministic", batch=batch, dim=dim, seqlen=seqlen, ms=ms)


def use_best(name: str):  # noqa: ANN201 - a context manager
    """Launch settings with the sweep's best tiled configs for this shape class (the defaults if none)."""
    fwd, bwd = BEST.get(name, (current_launch().tiled_fwd, current_launch().tiled_bwd))
    log(f"configs for {name}: tiled fwd {fwd or 'heuristic'}, tiled bwd {bwd or 'heuristic'}")
    return scan_launch(tiled_fwd=fwd, tiled_bwd=bwd)


def scan_row(
    section: str,
    batch: int,
    dim: int,
    seqlen: int,
    dtype: torch.dtype,
    copy_gbs: float,
    which: tuple[str, ...] = ("fwd", "bwd", "fwdbwd"),
) -> dict:
    elem = torch.finfo(dtype).bits // 8
    fb, bb = fwd_bytes(batch, dim, seqlen, 16, elem), bwd_bytes(batch, dim, seqlen, 16, elem)
    n_exp = batch * dim * seqlen * 16
    floors = {
        "fwd": floor_ms(fb, n_exp, copy_gbs),
        "bwd": floor_ms(bb, 2 * n_exp, copy_gbs),
        "fwdbwd": floor_ms(fb + bb, 3 * n_exp, copy_gbs),
    }
    nbytes = {"fwd": fb, "bwd": bb, "fwdbwd": fb + bb}
    impls = {"ours": (ours_fwd, ours_bwd, ours_fwdbwd)}
    if selective_scan_cuda is not None:
        impls["official"] = (official_fwd, official_bwd, official_fwdbwd)
    nbytes["fwd_nograd"], floors["fwd_nograd"] = fb, floors["fwd"]
    res: dict = {}
    x = None
    try:
        x = make(batch, dim, seqlen, 16, dtype)
        ms = safe(lambda: bench(ours_fwd(x, save_states=False)))
        res[("ours", "fwd_nograd")] = ms
        record(
            section=section,
            impl="ours",
            kind="fwd_nograd",
            dtype=str(dtype).replace("torch.", ""),
            batch=batch,
            dim=dim,
            seqlen=seqlen,
            ms=ms,
            gbs=fb / ms / 1e6 if isinstance(ms, float) else "",
            floor_ms=floors["fwd"],
            frac_floor=floors["fwd"] / ms if isinstance(ms, float) else "",
        )
        for impl, fns in impls.items():
            for kind, mk in zip(("fwd", "bwd", "fwdbwd"), fns):
                if kind not in which:
                    continue
                ms = safe(lambda mk=mk, x=x: bench(mk(x)))
                res[(impl, kind)] = ms
                gbs = nbytes[kind] / ms / 1e6 if isinstance(ms, float) else ""
                record(
                    section=section,
                    impl=impl,
                    kind=kind,
                    dtype=str(dtype).replace("torch.", ""),
                    batch=batch,
                    dim=dim,
                    seqlen=seqlen,
                    ms=ms,
                    gbs=gbs,
                    frac_copy=gbs / copy_gbs if gbs else "",
                    floor_ms=floors[kind],
                    frac_floor=floors[kind] / ms if isinstance(ms, float) else "",
                )
    except torch.cuda.OutOfMemoryError:
        res[("ours", "fwd")] = "OOM"
    x = None
    torch.cuda.empty_cache()
    return res


def section_train(copy_gbs: float) -> None:
    log("\n## train: Mamba training shapes, N=16, batch*L = 16K tokens (ms; GB/s; % copy bw; speedup)")
    with use_best("train"):
        _train_rows(copy_gbs)


def _train_rows(copy_gbs: float) -> None:
    shapes = [(d, L, 16384 // L, torch.bfloat16) for d in (1536, 2048, 4096) for L in (512, 2048, 8192)]
    shapes += [
        (2048, 65536, 1, torch.bfloat16),
        (2048, 2048, 8, torch.float32),
        (4096, 2048, 8, torch.float32),
    ]
    log(
        "| dtype | dim | L | batch | ours fwd | ours fwd no-grad | off fwd | fwd x | ours fwd GB/s (%copy, %floor) | "
        "ours bwd | off bwd | ours f+b | off f+b | f+b x |"
    )
    log("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for dim, L, batch, dtype in shapes:
        r = scan_row("train", batch, dim, L, dtype, copy_gbs)
        elem = torch.finfo(dtype).bits // 8
        of = r.get(("ours", "fwd"))
        gb = fwd_bytes(batch, dim, L, 16, elem) / of / 1e6 if isinstance(of, float) else 0
        fl = floor_ms(fwd_bytes(batch, dim, L, 16, elem), batch * dim * L * 16, copy_gbs)

        def x(a: object, b: object) -> str:
            return f"{b / a:.2f}" if isinstance(a, float) and isinstance(b, float) else "-"

        log(
            f"| {str(dtype)[6:]} | {dim} | {L} | {batch} | {fmt(of)} | {fmt(r.get(('ours', 'fwd_nograd')))} | "
            f"{fmt(r.get(('official', 'fwd'), '-'))} | "
            f"{x(of, r.get(('official', 'fwd')))} | {gb:.0f} ({100 * gb / copy_gbs:.0f}%, "
            f"{100 * fl / of if isinstance(of, float) else 0:.0f}%) | {fmt(r.get(('ours', 'bwd')))} | "
            f"{fmt(r.get(('official', 'bwd'), '-'))} | {fmt(r.get(('ours', 'fwdbwd')))} | "
            f"{fmt(r.get(('official', 'fwdbwd'), '-'))} | "
            f"{x(r.get(('ours', 'fwdbwd')), r.get(('official', 'fwdbwd')))} |"
        )


def section_fig8(copy_gbs: float, max_log2: int, time_cap_s: float, skip: tuple[str, ...] = ()) -> None:
    log("\n## fig8: batch 1, scan dim 4096 (N=16) vs causal SDPA attention dim 2048 (16 x 128), bf16, ms")
    with use_best("b1"):
        _fig8_rows(max_log2, time_cap_s, skip)


def _fig8_rows(max_log2: int, time_cap_s: float, skip: tuple[str, ...]) -> None:
    import torch.nn.functional as F

    Ls = [2**k for k in range(9, max_log2 + 1)]
    done: dict[str, bool] = {}
    table = []

    def run(name: str, L: int, fn: Callable[[], float]) -> float | str:
        if done.get(name) or any(name.startswith(k) for k in skip):
            return "skip"
        t0 = time.time()
        v = safe(fn)
        if v == "OOM" or (isinstance(v, str) and v.startswith("ERR")) or time.time() - t0 > time_cap_s:
            done[name] = True
        record(section="fig8", impl=name, batch=1, seqlen=L, ms=v)
        return v

    for L in Ls:
        row = {"L": L}
        x = None
        try:
            x = make(1, 4096, L, 16, torch.bfloat16)
        except torch.cuda.OutOfMemoryError:
            pass
        if x is not None:
            row["ours fwd"] = run("ours fwd", L, lambda x=x: bench(ours_fwd(x)))
            row["ours fwd ng"] = run("ours no-grad fwd", L, lambda x=x: bench(ours_fwd(x, save_states=False)))
            row["ours f+b"] = run("ours fwd+bwd", L, lambda x=x: bench(ours_fwdbwd(x)))
            if selective_scan_cuda is not None:
                row["official fwd"] = run("official fwd", L, lambda x=x: bench(official_fwd(x)))
                row["official f+b"] = run("official fwd+bwd", L, lambda x=x: bench(official_fwdbwd(x)))
            args = [x[k] for k in ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")]
            row["naive fwd"] = run("naive scan fwd", L, lambda args=args: bench(lambda: naive_scan(*args)))
            if L <= 2048:
                row["ref fwd"] = run(
                    "reference scan fwd",
                    L,
                    lambda args=args: bench(lambda: selective_scan_ref(*args, delta_softplus=True)),
                )
        x = args = None
        torch.cuda.empty_cache()

        def attn(L: int = L, grad: bool = False) -> float:
            q, k, v = (
                torch.randn(1, 16, L, 128, device="cuda", dtype=torch.bfloat16, requires_grad=grad)
                for _ in range(3)
            )
            if not grad:
                return bench(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True))
            do = torch.randn_like(q)

            def fb() -> object:
                o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
                return torch.autograd.grad(o, (q, k, v), do)

            return bench(fb)

        row["sdpa fwd"] = run("causal SDPA fwd", L, lambda: attn())
        row["sdpa f+b"] = run("causal SDPA fwd+bwd", L, lambda: attn(grad=True))
        torch.cuda.empty_cache()
        table.append(row)
        log(f"L={L}: " + ", ".join(f"{k}={fmt(v)}" for k, v in row.items() if k != "L"))


def plot(out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series: dict[str, list[tuple[int, float]]] = {}
    for r in ROWS:
        if r.get("section") == "fig8" and isinstance(r.get("ms"), float):
            series.setdefault(str(r["impl"]), []).append((int(r["seqlen"]), float(r["ms"])))
    if not series:
        return
    fig, axes = plt.subplots(1, 2, figsize=(12, 5))
    for ax, kind in zip(axes, ("fwd", "fwd+bwd")):
        for name, pts in sorted(series.items()):
            is_fb = name.endswith("fwd+bwd")
            if (kind == "fwd+bwd") != is_fb:
                continue
            pts.sort()
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=name.replace(" " + kind, ""))
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("sequence length")
        ax.set_ylabel("time (ms)")
        ax.set_title(f"{kind}, batch 1, bf16")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("selective scan (dim 4096, N=16) vs causal attention (dim 2048 = 16 x 128), H100")
    fig.tight_layout()
    fig.savefig(out / "fig8.png", dpi=120)


def write_csv(out: Path) -> None:
    keys: list[str] = []
    for r in ROWS:
        keys += [k for k in r if k not in keys]
    with open(out / "results.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(ROWS)


def main(argv: list[str] | None = None) -> int:
    global LOG
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="output folder (results.csv, fig8.png, log.txt)")
    p.add_argument("--sections", default="check,train,fig8")
    p.add_argument(
        "--sweep-shapes",
        default="8,2048,2048;1,4096,8192",
        help="batch,dim,seqlen;... for the sweep: the first is the 'train' class, the second 'b1'",
    )
    p.add_argument("--fig8-max-log2", type=int, default=19, help="largest L = 2**k in fig8")
    p.add_argument("--sweep-shard", default=None, help="i/n: only compile every n-th sweep config")
    p.add_argument(
        "--skip", default="", help="fig8 methods to skip, by name prefix (e.g. naive,reference,causal)"
    )
    p.add_argument(
        "--plot-csv",
        default="",
        help="comma-separated results.csv files: only redraw fig8.png from them (no GPU needed)",
    )
    p.add_argument(
        "--time-cap",
        type=float,
        default=20.0,
        help="stop growing L for a method once one measurement took longer (s)",
    )
    args = p.parse_args(argv)
    if args.plot_csv:
        merged: dict[tuple[str, str], dict] = {}
        for path in args.plot_csv.split(","):
            with open(path) as f:
                for r in csv.DictReader(f):
                    if r.get("section") == "fig8":
                        try:
                            r["ms"] = float(r["ms"])
                        except (TypeError, ValueError):
                            continue
                        merged[(r["impl"], r["seqlen"])] = r
        ROWS.extend(merged.values())
        args.out.mkdir(parents=True, exist_ok=True)
        plot(args.out)
        return 0
    if not torch.cuda.is_available():
        print("bench_scan.py needs a CUDA GPU", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    LOG = open(args.out / "log.txt", "a")  # noqa: SIM115
    props = torch.cuda.get_device_properties(0)
    import triton

    log(
        f"# bench_scan on {props.name} ({props.multi_processor_count} SMs), torch {torch.__version__}, "
        f"triton {triton.__version__}, official selective_scan_cuda: "
        f"{'yes' if selective_scan_cuda is not None else 'not importable'}"
    )
    copy_gbs = copy_bandwidth() if not args.sweep_shard else 3000.0
    log(f"copy bandwidth (4 GiB fp32 copy_, read+write): {copy_gbs:.0f} GB/s")
    record(section="env", impl="copy", gbs=copy_gbs, device=props.name)
    sections = args.sections.split(",")
    try:
        if "check" in sections:
            section_check()
        if "sweep" in sections:
            shard = tuple(int(v) for v in args.sweep_shard.split("/")) if args.sweep_shard else None
            for name, shp in zip(("train", "b1"), args.sweep_shapes.split(";")):
                section_sweep(tuple(int(v) for v in shp.split(",")), copy_gbs, shard, name)
        if "train" in sections:
            section_train(copy_gbs)
        if "fig8" in sections:
            section_fig8(
                copy_gbs, args.fig8_max_log2, args.time_cap, tuple(k for k in args.skip.split(",") if k)
            )
    finally:
        write_csv(args.out)
        plot(args.out)
        log(f"wrote {args.out / 'results.csv'}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
