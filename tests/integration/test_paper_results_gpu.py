"""scripts/paper_results_gpu.py end to end at toy size on the CPU: runs started side by side stop at the
wall-clock deadline, are tested (induction heads at several lengths) and reported, and OUT holds the
archives and copies it promises (at most eight files), with our cells beside the paper's and the
checks of Mamba/S6 beside its Table 1 run."""

from __future__ import annotations

import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_paper_results_driver_on_cpu(tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = subprocess.run(
        [
            sys.executable,
            "scripts/paper_results_gpu.py",
            "--out",
            str(out),
            "--trainer",
            "cpu",
            "--budget",
            "40",
            "--eval-budget",
            "20",
            "--t1-seq-len",
            "32",
            "--t1-tokens",
            "4",
            "--t1-batch",
            "8",
            "--ih-seq-len",
            "32",
            "--ih-batch",
            "8",
            "--width",
            "16",
            "--eval-samples",
            "8",
            "--max-log2",
            "8",
            "--t1-models",
            "table1/mamba_s6",
            "--t1-checks",
            "half_lr",
            "--ih-models",
            "mamba,mha_rope",
        ],  # fmt: skip
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "induction_heads_short.md",
        "induction_heads_short.png",
        "log.txt",
        "report.tar.gz",
        "runs.tar.gz",
        "table1_checks.md",
        "table1_short.md",
    ]
    checks = (out / "table1_checks.md").read_text()
    assert "| table1/mamba_s6 | - |" in checks and "| checks/half_lr | half the learning rate |" in checks
    table1 = (out / "table1_short.md").read_text()
    assert "](../runs/table1/mamba_s6) / 99.8 |" in table1 and "*missing* / 18.3" in table1
    induction = (out / "induction_heads_short.md").read_text()
    mamba = next(line for line in induction.splitlines() if line.startswith("| Mamba"))
    assert mamba.count("](../runs/induction_heads/mamba)") == 3  # 2^6, 2^7, 2^8
    with tarfile.open(out / "runs.tar.gz") as tar:
        members = tar.getnames()
    assert "runs/induction_heads/mamba/eval_lengths/summary.json" in members
    assert "checks/half_lr/summary.json" in members
    assert not any(name.endswith(".ckpt") for name in members)
    assert "length tests 2^6..2^8" in (out / "log.txt").read_text()
