"""Compile a scan or causal-conv kernel for sm_90 on a machine without a GPU and report what it costs.

Prints registers, spill stack, SASS instruction count and the instructions that tell a layout story
(MUFU.EX2, SHFL, BAR, RED/atomics), using the ptxas / cuobjdump / nvdisasm that ship with Triton.
This is how the scan kernels were sized before spending GPU time (docs/kernels.md).

    python scripts/kernel_resources.py fwd --family sequential BLOCK_D=32 TT=8 CHUNK=128
    python scripts/kernel_resources.py bwd --family tiled BLOCK_D=8 BLOCK_T=32 UNROLL_N=0 CARRY_W=32 --warps 1
    python scripts/kernel_resources.py fwd --family sequential TT=8 BLOCK_D=32 CHUNK=128 --dump fwd.sass

Defaults describe the Mamba block's call: bf16 u/delta/z, fp32 B/C for the sequential family (bf16 for the tiled one), N = 16,
variable B/C, D, z, delta_bias and softplus on; every pointer and stride is taken as divisible by 16
(as Triton specialises them at run time) except the dstate strides the kernels keep unspecialised.
"""

from __future__ import annotations

import argparse
import inspect
import os
import re
import subprocess
import sys
import tempfile
from collections import Counter

os.environ.pop("TRITON_INTERPRET", None)  # compile for real even under the test environment

import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

from mambabench.kernels import (  # noqa: E402
    causal_conv1d,
    decode_attention,
    scan_sequential,
    scan_tiled,
    state_update,
)

KERNELS = {
    ("fwd", "tiled"): scan_tiled.tiled_scan_fwd_kernel,
    ("bwd", "tiled"): scan_tiled.tiled_scan_bwd_kernel,
    ("fwd", "sequential"): scan_sequential.seq_scan_fwd_kernel,
    ("bwd", "sequential"): scan_sequential.seq_scan_bwd_kernel,
    ("carry", "sequential"): scan_sequential.seq_scan_carry_kernel,
    ("conv_fwd", None): causal_conv1d._conv_fwd_kernel,
    ("conv_bwd", None): causal_conv1d._conv_bwd_kernel,
    ("decode_attn", None): decode_attention._decode_partial_kernel,
    ("decode_combine", None): decode_attention._decode_combine_kernel,
    ("rotary_qkv", None): decode_attention._rotary_qkv_kernel,
    ("conv_update", None): causal_conv1d._conv_update_kernel,
    ("state_update", None): state_update._state_update_kernel,
}
HALF_POINTERS = {
    "u_ptr",
    "delta_ptr",
    "z_ptr",
    "out_ptr",
    "dout_ptr",
    "du_ptr",
    "ddelta_ptr",
    "dz_ptr",
    "x_ptr",
    "dx_ptr",
    "qkv_ptr",
    "k_cache_ptr",
    "v_cache_ptr",
    "dt_ptr",
    "wdt_ptr",
    "conv_state_ptr",
}
POINTER_TYPES = {"seqlen_ptr": "i64"}  # pointers that are neither half nor fp32
FLOAT_SCALARS = {"sm_scale", "xpos_scale_base"}
UNSPECIALISED = {"s_An", "s_sn"}
DEFAULTS = dict(
    HAS_D=1,
    HAS_Z=1,
    HAS_BIAS=1,
    SOFTPLUS=1,
    B_VAR=1,
    C_VAR=1,
    BLOCK_N=16,
    DSTATE=16,
    SAVE_STATES=1,
    SAVE_LAST=0,
    DETERMINISTIC=0,
    EVEN_T=1,
    LANES=1,
    NPT=16,
    FAST=1,
    WIDTH=4,
    SILU=1,
    SPLIT=0,
    REVERSE=1,
    W_VAR=1,
    PREFETCH=0,
    ROTARY=1,
    HEAD_DIM=64,
    SPLITS=16,
    ONE_SPLIT=0,
    DT_PROJ=1,
    A_IS_LOG=1,
    BLOCK_R=128,
)
KERNEL_DEFAULTS = {
    "decode_attn": dict(BLOCK_N=64),
    "rotary_qkv": dict(BLOCK_L=32),
}  # where a shared name has another launch value


def compile_kernel(
    fn: triton.JITFunction,
    consts: dict[str, int],
    warps: int,
    half: str,
    bc_half: bool,
    div16: tuple[str, ...] = (),
) -> object:
    """triton.compile for sm_90 with run-time-like specialisation; returns the compiled kernel."""
    params = list(inspect.signature(fn.fn).parameters)
    sig: dict[str, str] = {}
    constexprs: dict[str, int] = {}
    attrs: dict[tuple[int], list[list[object]]] = {}
    for i, name in enumerate(params):
        if name in consts:
            sig[name] = "constexpr"
            constexprs[name] = consts[name]
        elif name.endswith("_ptr"):
            is_half = name in HALF_POINTERS or (bc_half and name in ("B_ptr", "C_ptr"))
            sig[name] = "*" + POINTER_TYPES.get(name, half if is_half else "fp32")
            attrs[(i,)] = [["tt.divisibility", 16]]
        elif name in FLOAT_SCALARS:
            sig[name] = "fp32"
        else:
            sig[name] = "i32"
            if (name.startswith("s_") and name not in UNSPECIALISED) or name in div16:
                attrs[(i,)] = [["tt.divisibility", 16]]
    missing = [p for p in params if sig.get(p) is None]
    if missing:
        raise SystemExit(f"missing constexpr values: {', '.join(missing)} (pass NAME=VALUE)")
    src = ASTSource(fn, sig, constexprs, attrs)
    return triton.compile(
        src,
        target=GPUTarget("cuda", 90, 32),
        options={
            "num_warps": warps,
            "num_stages": 1,
            **({"maxnreg": int(os.environ["MAXNREG"])} if os.environ.get("MAXNREG") else {}),
        },
    )


def report(kernel: object) -> tuple[str, str]:
    """(one-line summary, SASS text) of a compiled kernel."""
    bindir = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin")
    with tempfile.NamedTemporaryFile(suffix=".cubin", delete=False) as f:
        f.write(kernel.asm["cubin"])
    try:
        res = subprocess.run(
            [f"{bindir}/cuobjdump", "-res-usage", f.name], capture_output=True, text=True
        ).stdout
        sass = subprocess.run([f"{bindir}/nvdisasm", "-c", f.name], capture_output=True, text=True).stdout
    finally:
        os.unlink(f.name)
    ops: Counter[str] = Counter()
    for line in sass.splitlines():
        m = re.match(r"\s+/\*[0-9a-f]{4,}\*/\s+(?:@!?U?P[T0-9]+\s+)?([A-Z0-9_]+)", line)
        if m:
            ops[m.group(1)] += 1
    usage = re.search(r"REG:(\d+) STACK:(\d+)", res)
    regs, stack = (usage.group(1), usage.group(2)) if usage else ("?", "?")
    atomics = sum(v for k, v in ops.items() if k.startswith(("RED", "ATOM")))
    summary = (
        f"registers {regs}, spill stack {stack} B, SASS instructions {sum(ops.values())}, "
        f"MUFU {ops['MUFU']}, SHFL {ops['SHFL']}, BAR {ops['BAR']}, atomics {atomics}"
    )
    return summary, sass


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "which",
        choices=[
            "fwd",
            "bwd",
            "carry",
            "conv_fwd",
            "conv_bwd",
            "conv_update",
            "state_update",
            "decode_attn",
            "decode_combine",
            "rotary_qkv",
        ],
        help="scan forward/backward, the time-split scans' carry pass (--family sequential), the "
        "causal conv1d kernels, the decode step's kernels or the attention-decoding kernels (--family is "
        "ignored for these)",
    )
    p.add_argument("consts", nargs="*", help="constexpr overrides NAME=VALUE (e.g. BLOCK_D=32 TT=8)")
    p.add_argument(
        "--family",
        choices=["tiled", "sequential"],
        default="tiled",
        help="the scan kernel family (docs/kernels.md)",
    )
    p.add_argument("--warps", type=int, default=1)
    p.add_argument("--dtype", default="bf16", choices=["bf16", "fp16", "fp32"])
    p.add_argument("--dump", help="write the SASS here")
    p.add_argument(
        "--div16",
        nargs="*",
        default=[],
        metavar="NAME",
        help="integer arguments to take as divisible by 16, as Triton specialises them at run "
        "time (e.g. seqlen=2048 for the conv kernels: vectorised loads need it)",
    )
    args = p.parse_intermixed_args(argv)
    family = None if args.which.startswith(("conv", "state", "decode", "rotary")) else args.family
    if (args.which, family) not in KERNELS:
        raise SystemExit(f"{args.which!r} exists for --family sequential only")
    fn = KERNELS[(args.which, family)]
    params = set(inspect.signature(fn.fn).parameters)
    consts = {k: v for k, v in {**DEFAULTS, **KERNEL_DEFAULTS.get(args.which, {})}.items() if k in params}
    for kv in args.consts:
        key, _, value = kv.partition("=")
        if key not in params:
            raise SystemExit(f"{fn.fn.__name__} has no parameter {key!r}")
        consts[key] = int(value)
    kernel = compile_kernel(
        fn,
        consts,
        args.warps,
        args.dtype,
        bc_half=family == "tiled" or args.which == "state_update",
        div16=tuple(args.div16),
    )
    summary, sass = report(kernel)
    print(f"{fn.fn.__name__} {args.dtype} warps={args.warps} {consts}\n  {summary}")
    if args.dump:
        with open(args.dump, "w") as f:
            f.write(sass)
    return 0


if __name__ == "__main__":
    sys.exit(main())
