"""Bytes that autograd saves for the backward, per Mamba block, unfused vs fused.

    python scripts/block_memory.py                     # 130M block shape, batch 2 x 2048, CPU
    python scripts/block_memory.py --batch 1 --seqlen 64 --d-model 64 --out /tmp/bm.csv

Builds one residual block (RMSNorm -> Mamba mixer, fp32 residual) as the LM stacks it, runs its
forward under bf16 autocast inside :func:`torch.autograd.graph.saved_tensors_hooks`, and counts every
tensor that autograd keeps for the backward, once per storage (a saved view keeps its whole storage
alive). Each storage is attributed to the code that saved it first (the innermost project frame on the
stack) and labelled with its shape in symbols (B batch, L seqlen, D d_model, E d_inner, N d_state,
R dt_rank, L/c saved scan chunks). Storages of parameters cost no extra memory and are listed apart.
Sizes that grow with the tokens are reported per token and extrapolated to --target-batch x
--target-seqlen x --layers (the Mamba-130M benchmark step: 16 x 2048 x 24); the others count once per layer.

--kernels contract (default) replaces the scan and the conv by stand-ins that save exactly what the
Triton autograd Functions (``SelectiveScanTriton``, ``CausalConv1dTriton`` in ``kernels/``) save: the
inputs after their unit-stride/dtype preparation, and the fp32 scan states every --state-chunk steps
(32 = the forward tile of the training heuristic at >= 8192 (batch, channel) rows, the 130M step).
The stand-ins do not compute the scan (its values do not change what is saved): the table is the GPU
path's memory, counted on CPU. --kernels real uses --backend (the PyTorch reference on CPU saves
per-step states, which dwarf everything else; "triton" needs CUDA or TRITON_INTERPRET=1).
Writes one CSV row per (path, site, tensor) to --out. Not a timed test.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from unittest import mock

import torch
from torch import Tensor

import mambabench.kernels as kernels
import mambabench.models.mixers.mamba as mamba_module
from mambabench.models.block import Block
from mambabench.models.mixers.mamba import Mamba
from mambabench.models.norms import RMSNorm

ROOT = Path(__file__).resolve().parents[1]
_PROJECT_DIRS = (str(ROOT / "src"), str(ROOT / "kernels"), str(ROOT / "scripts"))
_HOOK_FUNCS = {"pack", "_pack", "_site"}


# ------------------------------------------------------------------------------------------------
# stand-ins with the Triton kernels' saved-tensor contract


def _unit_last(t: Tensor) -> Tensor:
    return t if t.stride(-1) == 1 or t.shape[-1] == 1 else t.contiguous()


class ContractScan(torch.autograd.Function):
    """Saves what ``SelectiveScanTriton`` saves; returns zeros of the output's shape and dtype."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, chunk):  # noqa: ANN001
        u, delta = _unit_last(u), _unit_last(delta)
        z = _unit_last(z) if z is not None else None
        B = _unit_last(B).to(u.dtype) if B.dim() >= 3 else B
        C = _unit_last(C).to(u.dtype) if C.dim() >= 3 else C
        A = A.float()
        D = D.float().contiguous() if D is not None else None
        delta_bias = delta_bias.float().contiguous() if delta_bias is not None else None
        batch, dim, seqlen = u.shape
        states = torch.empty(
            (batch, dim, math.ceil(seqlen / chunk), A.shape[1]), dtype=torch.float32, device=u.device
        )
        ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias, states)
        return torch.zeros_like(u)

    @staticmethod
    def backward(ctx, dout):  # noqa: ANN001
        raise NotImplementedError("ContractScan only counts saved tensors")


class ContractConv(torch.autograd.Function):
    """Saves what ``CausalConv1dTriton`` saves (x with unit stride along seqlen, weight, bias)."""

    @staticmethod
    def forward(ctx, x, weight, bias, silu):  # noqa: ANN001
        x = _unit_last(x)
        ctx.save_for_backward(x, weight, bias)
        from mambabench.ops import causal_conv1d_ref

        return causal_conv1d_ref(x, weight, bias, "silu" if silu else None)

    @staticmethod
    def backward(ctx, dout):  # noqa: ANN001
        raise NotImplementedError("ContractConv only counts saved tensors")


def scan_triton_contract(
    u,
    delta,
    A,
    B,
    C,
    D=None,
    z=None,
    delta_bias=None,
    delta_softplus=False,  # noqa: ANN001
    return_last_state=False,
    backend="auto",
    *,
    chunk: int,
):
    if return_last_state:
        raise NotImplementedError("the contract scan has no last state")
    return ContractScan.apply(u, delta, A, B, C, D, z, delta_bias, chunk)


def conv_triton_contract(x, weight, bias=None, activation=None, backend="auto"):  # noqa: ANN001
    return ContractConv.apply(x, weight, bias, activation is not None)


@contextmanager
def contract_kernels(chunk: int) -> Iterator[None]:
    """Route the mixer's and the fused path's scan/conv calls to the contract stand-ins."""
    scan = partial(scan_triton_contract, chunk=chunk)
    with (
        mock.patch.object(kernels, "selective_scan_fn", scan),
        mock.patch.object(kernels, "causal_conv1d_fn", conv_triton_contract),
        mock.patch.object(mamba_module, "selective_scan_fn", scan),
        mock.patch.object(mamba_module, "causal_conv1d_fn", conv_triton_contract),
    ):
        yield


# ------------------------------------------------------------------------------------------------
# accounting


@dataclass
class Saved:
    """One storage kept for the backward."""

    site: str
    shape: str
    dtype: str
    nbytes: int
    per_token: bool
    parameter: bool
    n_saves: int = 1


@dataclass
class Ledger:
    """Saved storages of one forward, keyed by storage address."""

    symbols: dict[int, str]
    token_dims: set[str]
    params: set[int]
    storages: dict[int, Saved] = field(default_factory=dict)
    keep: list[Tensor] = field(default_factory=list)

    def _site(self) -> str:
        frame = sys._getframe(2)
        while frame is not None:
            code = frame.f_code
            if code.co_filename.startswith(_PROJECT_DIRS) and code.co_name not in _HOOK_FUNCS:
                return f"{Path(code.co_filename).stem}.{code.co_qualname}"
            frame = frame.f_back
        return "?"

    def pack(self, t: Tensor) -> Tensor:
        storage = t.untyped_storage()
        ptr = storage.data_ptr()
        if ptr in self.storages:
            self.storages[ptr].n_saves += 1
            return t
        shape = tuple(self.symbols.get(s, str(s)) for s in t.shape)
        label = "(" + ", ".join(shape) + ")"
        if t.numel() * t.element_size() < storage.nbytes():  # a view into a larger storage
            label += f" in {storage.nbytes() / (t.numel() * t.element_size()):.3g}x"
        self.storages[ptr] = Saved(
            site=self._site(),
            shape=label,
            dtype=str(t.dtype).removeprefix("torch."),
            nbytes=storage.nbytes(),
            per_token=any(s in self.token_dims for s in shape),
            parameter=ptr in self.params,
        )
        self.keep.append(t)  # keep the storage alive so that its address is not reused
        return t


def symbols_for(batch: int, seqlen: int, mixer: Mamba, chunk: int) -> dict[int, str]:
    """Dimension size -> symbol; larger/more specific meanings first (a size is named once)."""
    table = [
        (seqlen, "L"),
        (batch * seqlen, "BL"),
        (2 * mixer.d_inner, "2E"),
        (mixer.d_inner, "E"),
        (mixer.d_model, "D"),
        (mixer.dt_rank + 2 * mixer.d_state, "R+2N"),
        (mixer.dt_rank, "R"),
        (mixer.d_state, "N"),
        (math.ceil(seqlen / chunk), "L/c"),
    ] + ([(batch, "B")] if batch > 1 else [])
    out: dict[int, str] = {}
    for size, name in table:
        if size in out:
            print(f"note: {name} = {size} is labelled {out[size]} (same size)")
        out.setdefault(size, name)
    return out


def measure(fused: bool, args: argparse.Namespace) -> tuple[list[Saved], int]:
    """Saved storages of one block forward (and the number of tokens)."""
    torch.manual_seed(0)
    device = torch.device(args.device)
    mixer = Mamba(
        args.d_model,
        d_state=args.d_state,
        d_conv=args.d_conv,
        expand=args.expand,
        dt_rank=args.dt_rank if args.dt_rank == "auto" else int(args.dt_rank),
        scan_backend=args.backend,
        fused=fused,
    )
    block = Block(args.d_model, mixer, partial(RMSNorm, eps=1e-5), residual_in_fp32=True).to(device)
    dtype = getattr(torch, args.dtype)
    hidden = torch.randn(
        args.batch, args.seqlen, args.d_model, device=device, dtype=dtype, requires_grad=True
    )
    residual = torch.randn(args.batch, args.seqlen, args.d_model, device=device, requires_grad=True)
    symbols = symbols_for(args.batch, args.seqlen, mixer, args.state_chunk)
    token_dims = {"BL", "L", "L/c"}
    params = {p.untyped_storage().data_ptr() for p in block.parameters()}
    ledger = Ledger(symbols, token_dims, params)
    kern = contract_kernels(args.state_chunk) if args.kernels == "contract" else nullcontext()
    autocast = torch.autocast(device.type, dtype=dtype) if dtype != torch.float32 else nullcontext()
    with kern, autocast, torch.autograd.graph.saved_tensors_hooks(ledger.pack, lambda t: t):
        out, res = block(hidden, residual)
    del out, res
    return list(ledger.storages.values()), args.batch * args.seqlen


def rows_for(path: str, saved: list[Saved], tokens: int, args: argparse.Namespace) -> list[dict]:
    """Group storages by (site, shape, dtype) into CSV/table rows."""
    target_tokens = args.target_batch * args.target_seqlen
    groups: dict[tuple, dict] = {}
    for s in saved:
        kind = "parameter" if s.parameter else ("per-token" if s.per_token else "per-layer")
        key = (s.site, s.shape, s.dtype, kind)
        g = groups.setdefault(
            key,
            {
                "path": path,
                "site": s.site,
                "tensor": f"{s.dtype} {s.shape}",
                "kind": kind,
                "storages": 0,
                "saves": 0,
                "bytes": 0,
            },
        )
        g["storages"] += 1
        g["saves"] += s.n_saves
        g["bytes"] += s.nbytes
    rows = []
    for g in groups.values():
        per_tok = g["bytes"] / tokens if g["kind"] == "per-token" else 0.0
        const = g["bytes"] if g["kind"] == "per-layer" else 0
        g["bytes_per_token"] = round(per_tok, 1)
        g["target_gb"] = round((per_tok * target_tokens + const) * args.layers / 1e9, 3)
        rows.append(g)
    rows.sort(key=lambda r: (r["kind"] == "parameter", -r["bytes"]))
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--d-model", type=int, default=768)
    p.add_argument("--d-state", type=int, default=16)
    p.add_argument("--d-conv", type=int, default=4)
    p.add_argument("--expand", type=int, default=2)
    p.add_argument("--dt-rank", default="auto")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--seqlen", type=int, default=2048)
    p.add_argument("--target-batch", type=int, default=16)
    p.add_argument("--target-seqlen", type=int, default=2048)
    p.add_argument("--layers", type=int, default=24)
    p.add_argument(
        "--dtype",
        default="bfloat16",
        choices=["bfloat16", "float16", "float32"],
        help="autocast dtype (float32: no autocast)",
    )
    p.add_argument("--kernels", default="contract", choices=["contract", "real"])
    p.add_argument(
        "--backend",
        default="auto",
        choices=list(kernels.BACKENDS),
        help="scan/conv backend with --kernels real",
    )
    p.add_argument("--state-chunk", type=int, default=32, help="steps between saved scan states (contract)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--paths", default="unfused,fused")
    p.add_argument("--out", type=Path, default=None, help="CSV file")
    args = p.parse_args(argv)

    rows: list[dict] = []
    totals: list[tuple[str, float, float]] = []
    for path in args.paths.split(","):
        saved, tokens = measure(path == "fused", args)
        path_rows = rows_for(path, saved, tokens, args)
        rows += path_rows
        per_tok = sum(r["bytes_per_token"] for r in path_rows)
        totals.append((path, per_tok, sum(r["target_gb"] for r in path_rows if r["kind"] != "parameter")))

    print(
        f"saved for backward per Mamba block: d_model {args.d_model}, batch {args.batch} x {args.seqlen}, "
        f"{args.dtype} autocast, kernels={args.kernels}"
        + (f" (state chunk {args.state_chunk})" if args.kernels == "contract" else f" ({args.backend})")
    )
    print(
        f"target: {args.target_batch} x {args.target_seqlen} tokens x {args.layers} layers (GB = 1e9 bytes)\n"
    )
    print(f"{'path':<8}{'saved by':<30}{'tensor':<32}{'kind':<10}{'n':>3}{'B/token':>10}{'target GB':>11}")
    for r in rows:
        print(
            f"{r['path']:<8}{r['site'][:29]:<30}{r['tensor'][:31]:<32}{r['kind']:<10}{r['storages']:>3}"
            f"{r['bytes_per_token']:>10.1f}{r['target_gb']:>11.3f}"
        )
    print()
    for path, per_tok, gb in totals:
        print(f"{path:<8} total {per_tok:>9.1f} B/token/layer   {gb:7.2f} GB at target (parameters excluded)")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with args.out.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        print(f"\nwrote {args.out}")
    return rows


if __name__ == "__main__":
    main()
