"""scripts/kernel_resources.py compiles the scan kernels for sm_90 without a GPU and reports their cost."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_reports_registers_of_the_sequential_forward() -> None:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    res = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "kernel_resources.py"),
            "fwd",
            "--family",
            "sequential",
            "BLOCK_D=32",
            "TT=8",
            "CHUNK=128",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    m = re.search(
        r"registers (\d+), spill stack (\d+) B, SASS instructions (\d+), MUFU (\d+), SHFL (\d+)", res.stdout
    )
    assert m, res.stdout
    regs, stack, _, mufu, shfl = map(int, m.groups())
    # the one-channel-per-thread layout: no spills, no cross-lane traffic, >= 8 x 16 exp2 per tile
    assert regs <= 255 and stack == 0 and shfl == 0 and mufu >= 128


def test_conv_backward_fits_registers() -> None:
    """The causal conv1d backward at its launch tile (width 4, SiLU): no spills, one atomic per tap and bias."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    res = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "kernel_resources.py"),
            "conv_bwd",
            "BLOCK_D=4",
            "BLOCK_T=128",
            "N_TILES=8",
            "--warps",
            "4",
            "--div16",
            "seqlen",
            "dim",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    m = re.search(r"registers (\d+), spill stack (\d+) B, .* atomics (\d+)", res.stdout)
    assert m, res.stdout
    regs, stack, atomics = map(int, m.groups())
    assert regs <= 128 and stack == 0 and atomics == 5
