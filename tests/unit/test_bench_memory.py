"""scripts/bench_memory.py runs end to end on CPU and puts the paper's Table 15 beside each row."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _script():
    spec = importlib.util.spec_from_file_location("bench_memory", ROOT / "scripts" / "bench_memory.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_paper_column_is_table_15() -> None:
    bench = _script()
    assert bench.paper_gb("mamba", 1, 2048) == 4.8
    assert bench.paper_gb("transformerpp", 32, 2048) == 34.5
    assert bench.paper_gb("mamba", 3, 2048) is None  # not a batch of the table
    assert bench.paper_gb("mamba", 1, 1024) is None  # not the paper's sequence length


def test_tiny_cpu_run_writes_csv_and_markdown(tmp_path) -> None:
    bench = _script()
    args = bench.parse_args(
        [
            "--device", "cpu", "--seqlen", "8", "--batches", "1", "2", "--vocab", "64", "--steps", "1",
            "--out", str(tmp_path),
            "--models", "mamba=mamba,model.d_model=16,model.n_layer=1",
            "transformerpp=transformerpp,model.d_model=16,model.n_layer=1,model.mixer.n_heads=2",
        ]
    )  # fmt: skip
    bench.run(args)
    with open(tmp_path / "bench_memory.csv") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert reader.fieldnames == ["model", "batch", "seqlen", "peak_mem_gb", "paper_gb", "device"]
    assert [(r["model"], r["batch"]) for r in rows] == [
        ("mamba", "1"), ("mamba", "2"), ("transformerpp", "1"), ("transformerpp", "2")
    ]  # fmt: skip
    assert all(r["device"] == "cpu" and r["peak_mem_gb"] == "" and r["seqlen"] == "8" for r in rows)
    table = (tmp_path / "bench_memory.md").read_text()
    assert "| batch | mamba ours GB | mamba paper GB | transformerpp ours GB" in table
    assert "not measured" in table
