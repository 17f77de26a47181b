"""The Table 1 mini multirun (eight architecture x layer rows, shrunk to a few steps) followed by
scripts/report.py writes the Table 1 Markdown with our accuracy beside the paper's in all eight rows."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_table1_mini_multirun_then_report(tmp_path: Path) -> None:
    env = {**os.environ, "PROJECT_ROOT": str(ROOT)}
    sweep = tmp_path / "multirun"
    subprocess.run(
        [
            sys.executable,
            "src/train.py",
            "-m",
            "experiment=ablations/table1/mini",
            "trainer.max_steps=3",
            "trainer.val_check_interval=3",
            "data.seq_len=32",
            "data.num_tokens_memorize=4",
            "data.num_val_samples=8",
            "data.num_test_samples=8",
            "model.d_model=16",
            "print_config=false",
            "callbacks.progress_bar=null",
            f"hydra.sweep.dir={sweep}",
        ],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        timeout=1200,
    )
    out = tmp_path / "report"
    done = subprocess.run(
        [sys.executable, "scripts/report.py", str(sweep), "--out", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "ablations/table1/mini: 8 run(s)" in done.stdout
    rows = [line for line in (out / "table1_mini.md").read_text().splitlines() if line.startswith("| ")][1:]
    assert len(rows) == 8 and not any("*missing*" in row for row in rows), rows
    paper = ["18.3", "97.0", "57.0", "30.1", "99.7", "56.4", "28.4", "99.8"]
    assert all(
        row.rstrip(" |").endswith(f"/ {value}") and "](../multirun/" in row
        for row, value in zip(rows, paper, strict=True)
    )
