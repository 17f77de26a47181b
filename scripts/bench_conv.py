"""Time the causal conv1d kernels and one fused Mamba layer on the GPU (the Mamba-130M training shape).

    python scripts/bench_conv.py                      # (16, 1536, 2048) bf16, width 4, bias, SiLU
    python scripts/bench_conv.py --batch 8 --dim 2048 --seqlen 2048 --no-layer

Conv: x is the x half of a (batch, 2 * dim, seqlen) xz laid out as the fused block makes it (unit stride
along seqlen, channels B * L apart), dx is written into the x half of a gradient of the same layout.
Prints milliseconds and the effective bandwidth over the minimum traffic (fwd: read x, write out;
bwd: read x and dout, write dx), next to the official ``causal_conv1d`` package when it is installed.
Layer: forward + backward of one ``Mamba(d_model=dim // 2, fused=True)`` mixer under bf16 autocast.
Writes CSV to --out.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import torch
from triton.testing import do_bench


def conv_rows(batch: int, dim: int, seqlen: int, width: int) -> list[dict]:
    """Our forward/backward kernels (and the official ones if importable) at one shape."""
    from mambabench.kernels.causal_conv1d import causal_conv1d_bwd, causal_conv1d_fwd

    dev, dt = "cuda", torch.bfloat16
    xz = torch.randn(2 * dim, batch, seqlen, device=dev, dtype=dt).transpose(0, 1)  # (batch, 2 * dim, L)
    x = xz[:, :dim]
    w = torch.randn(dim, width, device=dev) * 0.3
    b = torch.randn(dim, device=dev) * 0.1
    dout = torch.randn(batch, dim, seqlen, device=dev, dtype=dt)
    dxz = torch.empty_like(xz)
    n = batch * dim * seqlen * 2  # bytes of one (batch, dim, seqlen) bf16 tensor
    rows = []

    def add(name: str, ms: float, nbytes: int) -> None:
        rows.append(
            {
                "kernel": name,
                "batch": batch,
                "dim": dim,
                "seqlen": seqlen,
                "ms": round(ms, 4),
                "GB_per_s": round(nbytes / ms / 1e6),
            }
        )

    add("ours fwd", do_bench(lambda: causal_conv1d_fwd(x, w, b, True)), 2 * n)
    add("ours bwd", do_bench(lambda: causal_conv1d_bwd(x, w, b, dout, True, dx=dxz[:, :dim])), 3 * n)
    # correctness at full size against the PyTorch reference (fp32 math on the bf16 inputs)
    from mambabench.ops import causal_conv1d_ref

    leaves = [t.detach().float().requires_grad_() for t in (x, w, b)]
    ref = causal_conv1d_ref(*leaves, activation="silu")
    ref_dx, ref_dw, _ = torch.autograd.grad(ref, leaves, dout.float())
    out = causal_conv1d_fwd(x, w, b, True)
    dx, dw, _ = causal_conv1d_bwd(x, w, b, dout, True, dx=dxz[:, :dim])
    err = {
        "fwd": (out.float() - ref).abs().max().item(),
        "dx": (dx.float() - ref_dx).abs().max().item(),
        "dw_rel": ((dw - ref_dw).abs().max() / ref_dw.abs().max()).item(),
    }
    print(f"max abs error vs reference: {err}", flush=True)
    try:
        from causal_conv1d.causal_conv1d_interface import causal_conv1d_fn

        xc, wc, bc = (t.detach().contiguous().requires_grad_() for t in (x, w, b))
        with torch.no_grad():
            add("official fwd", do_bench(lambda: causal_conv1d_fn(xc, wc, bc, activation="silu")), 2 * n)
        add(
            "official fwd+bwd",
            do_bench(
                lambda: torch.autograd.grad(
                    causal_conv1d_fn(xc, wc, bc, activation="silu"), (xc, wc, bc), dout
                )
            ),
            5 * n,
        )
    except ImportError:
        pass
    return rows


def layer_row(batch: int, d_model: int, seqlen: int) -> dict:
    """Forward + backward of one fused Mamba mixer (bf16 autocast, fp32 weights)."""
    from mambabench.models.mixers.mamba import Mamba

    torch.manual_seed(0)
    layer = Mamba(d_model, fused=True, scan_backend="triton").cuda()
    h = torch.randn(batch, seqlen, d_model, device="cuda", requires_grad=True)
    g = torch.randn(batch, seqlen, d_model, device="cuda", dtype=torch.bfloat16)

    def step() -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = layer(h)
        out.backward(g)

    ms = do_bench(step, grad_to_none=[h, *layer.parameters()])
    return {
        "kernel": "fused Mamba layer fwd+bwd",
        "batch": batch,
        "dim": 2 * d_model,
        "seqlen": seqlen,
        "ms": round(ms, 4),
        "GB_per_s": "",
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--dim", type=int, default=1536, help="conv channels (d_inner = 2 * d_model)")
    p.add_argument("--seqlen", type=int, default=2048)
    p.add_argument("--width", type=int, default=4)
    p.add_argument("--no-layer", action="store_true", help="skip the one-layer fused Mamba timing")
    p.add_argument("--out", type=Path, default=Path("outputs/bench"))
    args = p.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("bench_conv.py needs a CUDA GPU")
    rows = conv_rows(args.batch, args.dim, args.seqlen, args.width)
    if not args.no_layer:
        rows.append(layer_row(args.batch, args.dim // 2, args.seqlen))
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "conv.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"{'kernel':<28}{'shape':>20}{'ms':>10}{'GB/s':>8}")
    for r in rows:
        shape = f"({r['batch']},{r['dim']},{r['seqlen']})"
        print(f"{r['kernel']:<28}{shape:>20}{r['ms']:>10}{r['GB_per_s']!s:>8}")


if __name__ == "__main__":
    main()
