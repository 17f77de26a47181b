"""The pieces of the one-GPU paper regeneration (scripts/paper_results_gpu.py): the wall-clock deadline
that stops every run at once, the length test's handling of lengths past learned positions and of long
lengths (one sequence at a time), the report's "n/a" cells, and the driver's runs and overrides."""

from __future__ import annotations

import importlib.util
import json
import sys
import time
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from omegaconf import OmegaConf

from mambabench.models import LMHeadModel
from mambabench.models.mixers.attention import MHA
from mambabench.report import collect_runs, write_report
from mambabench.utils.callbacks import StopAtWallClock

ROOT = Path(__file__).resolve().parents[2]


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_the_deadline_stops_training_only_once_it_has_passed() -> None:
    trainer = SimpleNamespace(should_stop=False, global_step=7)
    StopAtWallClock(deadline=time.time() + 3600).on_train_batch_end(trainer, None, None, None, 0)
    StopAtWallClock(deadline=None).on_train_batch_end(trainer, None, None, None, 0)
    assert trainer.should_stop is False
    with pytest.warns(UserWarning, match="deadline reached at step 7"):
        StopAtWallClock(deadline=time.time() - 1).on_train_batch_end(trainer, None, None, None, 0)
    assert trainer.should_stop is True


def _tiny_abs_attention_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, eval_lengths
) -> tuple[Path, list[tuple[int, int, int]]]:
    """A run folder whose 'checkpoint' loads a 1-layer attention model with 128 learned positions."""
    run = tmp_path / "mha_abs"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.ckpt").write_bytes(b"")
    torch.manual_seed(0)
    network = LMHeadModel(16, 16, 1, partial(MHA, n_heads=2, pos_encoding="none"), max_seq_len=128).eval()
    cfg = OmegaConf.create(
        {
            "data": {"vocab_size": 16},
            "model": {"mixer": {"_target_": "mambabench.models.mixers.attention.MHA"}},
        }
    )
    calls = []

    def load(ckpt, device):
        return network, cfg, None

    def accuracy_at(net, length, vocab, samples, batch, device, seed, precision="auto"):
        calls.append((length, samples, batch))
        return 0.5

    monkeypatch.setattr(eval_lengths, "load_network", load)
    monkeypatch.setattr(eval_lengths, "accuracy_at", accuracy_at)
    return run, calls


def test_lengths_past_learned_positions_are_recorded_not_crashed_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    eval_lengths = load_script("eval_lengths")
    run, calls = _tiny_abs_attention_run(tmp_path, monkeypatch, eval_lengths)
    code = eval_lengths.main(
        [
            str(run),
            "--lengths",
            "64,128,256,512",
            "--device",
            "cpu",
            "--samples",
            "8",
            "--batch-tokens",
            "256",
        ]
    )
    assert code == 0
    summary = json.loads((run / "eval_lengths" / "summary.json").read_text())
    assert sorted(summary["metrics"]) == ["test/L128/accuracy", "test/L64/accuracy"]
    assert summary["beyond_positions_lengths"] == [256, 512]
    assert calls == [(64, 8, 4), (128, 8, 2)]  # at most 256 tokens per forward pass


def test_the_report_marks_lengths_past_learned_positions_na(tmp_path: Path) -> None:
    run = tmp_path / "runs" / "mha_abs"
    run.mkdir(parents=True)
    (run / "summary.json").write_text(
        json.dumps(
            {
                "run_dir": str(run),
                "choices": {"experiment": "induction_heads/short", "model": "mha_abs"},
                "data": {"train_seq_len": 256},
                "params": {"total": 1000},
                "metrics": {"test/L256/accuracy": 1.0},
            }
        )
    )
    (run / "eval_lengths").mkdir()
    (run / "eval_lengths" / "summary.json").write_text(
        json.dumps(
            {
                "ckpt_path": str(run / "checkpoints" / "last.ckpt"),
                "metrics": {"test/L4096/accuracy": 0.1},
                "beyond_positions_lengths": [8192, 16384],
            }
        )
    )
    write_report(collect_runs([tmp_path / "runs"]), tmp_path / "report")
    md = (tmp_path / "report" / "induction_heads_short.md").read_text()
    row = next(line for line in md.splitlines() if line.startswith("| MHA-Abs"))
    assert "[10.0](../runs/mha_abs) / 9.8" in row and "[n/a](../runs/mha_abs) / 10.9" in row
    assert "*missing* / 18.8" in row  # 2^11 was not tested: missing, not n/a
    assert (tmp_path / "report" / "induction_heads_short.png").exists()


def test_the_driver_runs_the_s6_rows_their_checks_and_mamba_by_default(tmp_path: Path) -> None:
    driver = load_script("paper_results_gpu")
    args = driver.build_parser().parse_args(["--out", str(tmp_path)])
    assert [j.name for j in driver.table1_jobs(args, tmp_path)] == [
        "table1/s6_nogate",
        "table1/h3_s6",
        "table1/mamba_s6",
    ]
    assert [j.name for j in driver.induction_jobs(args, tmp_path)] == ["mamba"]
    assert "data.batch_size=32" in driver.induction_jobs(args, tmp_path)[0].overrides
    checks = {j.name: j for j in driver.check_jobs(args, tmp_path / "checks")}
    assert sorted(checks) == ["check/double_lr", "check/fp32", "check/half_lr"]
    assert all(f"model={driver.CHECKED_MODEL}" in j.overrides for j in checks.values())
    assert checks["check/fp32"].overrides[-1] == "trainer.precision=32-true"
    assert checks["check/half_lr"].overrides[-1] == "optimizer.lr=0.002"  # after the Table 1 LR: it wins
    assert checks["check/double_lr"].overrides[-1] == "optimizer.lr=0.008"
    every = driver.build_parser().parse_args(["--out", "x", "--t1-checks", "all"])
    tiled = next(j for j in driver.check_jobs(every, tmp_path) if j.name == "check/tiled")
    assert tiled.env == {"MAMBABENCH_SCAN_LAUNCH": "family=tiled"}
    assert checks["check/fp32"].run_dir == tmp_path / "checks" / "fp32"
    with pytest.raises(SystemExit, match="--t1-checks: unknown bogus"):
        driver.check_jobs(driver.build_parser().parse_args(["--out", "x", "--t1-checks", "bogus"]), tmp_path)


def test_the_checks_table_lists_accuracy_steps_and_loss_curve(tmp_path: Path) -> None:
    driver = load_script("paper_results_gpu")
    args = driver.build_parser().parse_args(["--out", str(tmp_path), "--t1-checks", "fp32,reference"])
    jobs = [j for j in driver.table1_jobs(args, tmp_path / "runs") if j.name == driver.CHECKED_MODEL]
    jobs += driver.check_jobs(args, tmp_path / "checks")
    for job, acc in zip(jobs[:2], (0.141, 0.97)):
        (job.run_dir / "csv").mkdir(parents=True)
        (job.run_dir / "summary.json").write_text(json.dumps({"metrics": {"test/accuracy": acc}}))
        rows = "".join(f"{s},{2.7 - s / 1000:.3f}\n" for s in range(49, 1000, 50))
        (job.run_dir / "csv" / "metrics.csv").write_text("step,train/loss\n" + rows)
    driver.write_checks(jobs, tmp_path / "checks.md")
    md = (tmp_path / "checks.md").read_text()
    assert "| table1/mamba_s6 | - | 14.1 | 999 | 49: 2.65, 299: 2.40, 549: 2.15, 749: 1.95, 999: 1.70 |" in md
    assert "| checks/fp32 | bf16 autocast off (fp32 Triton scan) | 97.0 | 999 |" in md
    assert "| checks/reference | the PyTorch reference scan (no Triton scan) | *missing* | - |  |" in md


def test_the_driver_runs_every_row_and_model_with_the_papers_widths(tmp_path: Path) -> None:
    driver = load_script("paper_results_gpu")
    args = driver.build_parser().parse_args(
        ["--out", str(tmp_path), "--t1-models", "all", "--ih-models", "all"]
    )
    table1 = driver.table1_jobs(args, tmp_path)
    induction = driver.induction_jobs(args, tmp_path)
    assert [j.name for j in table1] == list(driver.TABLE1_MODELS) and len(table1) == 8
    assert [j.name for j in induction] == ["mamba", "mha_abs", "mha_rope", "mha_xpos", "h3", "hyena"]
    widths = {j.name: next(o for o in j.overrides if o.startswith("model.d_model=")) for j in induction}
    assert widths["mamba"] == "model.d_model=64" and widths["mha_rope"] == "model.d_model=128"
    assert all(f"experiment={driver.TABLE1_PRESET}" in j.overrides for j in table1)
    assert "data.num_tokens_memorize=16" in table1[0].overrides and table1[0].label == "table1/s4_nogate"
