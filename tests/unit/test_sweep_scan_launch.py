"""scripts/sweep_scan_launch.py: the --set grammar, and a clear exit without a GPU."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def load_script():  # noqa: ANN201
    spec = importlib.util.spec_from_file_location(
        "sweep_scan_launch", ROOT / "scripts" / "sweep_scan_launch.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_parse_set() -> None:
    sweep = load_script()
    assert sweep.parse_set(["bwd_lanes=4,8", "CHUNK=128"]) == {"bwd_lanes": [4, 8], "CHUNK": [128]}
    with pytest.raises(SystemExit, match="KEY=V1"):
        sweep.parse_set(["bwd_lanes"])
    with pytest.raises(SystemExit, match="known: .*CHUNK"):
        sweep.parse_set(["chunk=64"])


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the no-GPU message")
def test_needs_a_gpu() -> None:
    res = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "sweep_scan_launch.py"), "--set", "CHUNK=64"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert res.returncode != 0 and "needs a CUDA GPU" in res.stderr
