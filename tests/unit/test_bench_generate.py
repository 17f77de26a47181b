"""scripts/bench_generate.py end to end on the CPU at tiny sizes: CSV written as it goes with the
documented columns, Markdown table and plot, out-of-memory sizes recorded and skipped past."""

from __future__ import annotations

import csv
import importlib.util
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]


def _script():
    spec = importlib.util.spec_from_file_location("bench_generate", ROOT / "scripts" / "bench_generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(module, monkeypatch: pytest.MonkeyPatch, out: Path, *extra: str) -> None:
    argv = [
        "bench_generate.py",
        "--device",
        "cpu",
        "--d-model",
        "16",
        "--n-layer",
        "1",
        "--prompt-len",
        "6",
        "--gen-len",
        "3",
        "--batch",
        "1",
        "2",
        "--out",
        str(out),
        *extra,
    ]
    monkeypatch.setattr(sys, "argv", argv)
    module.main()


def test_tiny_run_writes_csv_table_and_plot(tmp_path: Path, monkeypatch, capsys) -> None:
    module = _script()
    _run(module, monkeypatch, tmp_path)
    rows = list(csv.DictReader((tmp_path / "bench_generate.csv").open()))
    assert list(rows[0]) == module.COLUMNS
    assert [(r["model"], r["batch"]) for r in rows] == [
        ("mamba-1.4b", "1"),
        ("mamba-1.4b", "2"),
        ("transformer-1.3b", "1"),
        ("transformer-1.3b", "2"),
    ]
    for r in rows:
        assert float(r["tokens_per_s"]) == pytest.approx(int(r["batch"]) * 3 / float(r["seconds"]))
        prefill, step_ms = float(r["prefill_s"]), float(r["decode_ms_per_token"])
        assert prefill > 0 and step_ms == pytest.approx(1e3 * (float(r["seconds"]) - prefill) / 2)
        assert (r["prompt_len"], r["gen_len"], r["cuda_graph"], r["device"]) == ("6", "3", "False", "cpu")
    assert "| mamba-1.4b | mambabench | 2 |" in (tmp_path / "bench_generate.md").read_text()
    assert (tmp_path / "bench_generate.png").stat().st_size > 0
    if importlib.util.find_spec("mamba_ssm") is None:
        assert "skipping official: mamba_ssm does not import" in capsys.readouterr().out


def test_out_of_memory_is_a_row_and_the_run_goes_on(tmp_path: Path, monkeypatch) -> None:
    module = _script()
    timed = module.time_generation

    def fail_at_batch_2(fn, prefill, ids, args):
        if ids.shape[0] == 2:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return timed(fn, prefill, ids, args)

    monkeypatch.setattr(module, "time_generation", fail_at_batch_2)
    _run(module, monkeypatch, tmp_path, "--models", "mamba-1.4b", "--batch", "2", "1")
    rows = list(csv.DictReader((tmp_path / "bench_generate.csv").open()))
    assert [(r["batch"], r["seconds"], r["tokens_per_s"]) for r in rows][0] == ("2", "", "OOM")
    assert rows[1]["batch"] == "1" and float(rows[1]["tokens_per_s"]) > 0
    assert "| 2 | 6 | 3 | - | OOM | - | - |" in (tmp_path / "bench_generate.md").read_text()
