"""End-to-end behaviour of train/eval: run outputs, evaluation of a checkpoint, exact resume, errors,
the command line (default job, overrides, multirun), W&B offline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf, open_dict

from mambabench.utils.errors import ConfigError
from mambabench.utils.run import evaluate, train
from tests.conftest import ROOT, TINY_JOB, checkpoint_weights, compose_config


def test_run_directory_contents(make_config) -> None:
    cfg = make_config([*TINY_JOB, "trainer.max_steps=6"])
    metrics = train(cfg)
    run = Path(cfg.paths.output_dir)
    assert (run / "config.yaml").exists() and (run / "checkpoints" / "last.ckpt").exists()
    assert (run / "csv" / "metrics.csv").read_text().startswith("epoch,step")
    summary = json.loads((run / "summary.json").read_text())
    assert summary["global_step"] == 6 and summary["params"]["total"] > 0
    assert summary["tokens_per_s"] > 0 and summary["wall_time_s"] > 0
    assert summary["tokens_per_s_wall"] > 0 and summary["train_step_time_s"] > 0
    assert summary["choices"]["model"] == "mamba" and summary["choices"]["data"] == "selective_copying"
    assert {"test/loss", "test/accuracy", "test/perplexity", "test/bits_per_token", "val/loss"} <= set(
        metrics
    )
    assert summary["metrics"]["test/loss"] == pytest.approx(metrics["test/loss"])
    saved = OmegaConf.load(run / "config.yaml")
    assert saved.model.d_model == 16 and saved.data.seq_len == 32


def test_eval_reads_the_run_config_next_to_the_checkpoint(make_config, tmp_path) -> None:
    cfg = make_config([*TINY_JOB, "trainer.max_steps=3"])
    train(cfg)
    ckpt = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    # eval composed with defaults (d_model 64, seq_len 64): the saved run config must win
    eval_cfg = compose_config([f"ckpt_path={ckpt}", "logger=[]"], tmp_path / "eval", "eval.yaml")
    metrics = evaluate(eval_cfg)
    assert set(metrics) >= {"test/loss", "test/accuracy"}
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert summary["ckpt_path"] == str(ckpt)


def test_resume_equals_uninterrupted_training(make_config) -> None:
    """3 steps + resume to 6 == 6 steps straight: model, optimizer, scheduler, step and data position."""
    straight = make_config([*TINY_JOB, "trainer.max_steps=6", "test=false"], subdir="straight")
    train(straight)
    first = make_config([*TINY_JOB, "trainer.max_steps=3", "test=false"], subdir="first")
    train(first)
    last = Path(first.paths.output_dir) / "checkpoints" / "last.ckpt"
    resumed = make_config(
        [*TINY_JOB, "trainer.max_steps=6", "test=false", f"ckpt_path={last}"], subdir="resumed"
    )
    train(resumed)
    a = checkpoint_weights(Path(straight.paths.output_dir) / "checkpoints" / "last.ckpt")
    b = checkpoint_weights(Path(resumed.paths.output_dir) / "checkpoints" / "last.ckpt")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)
    c = checkpoint_weights(last)
    assert any(not torch.equal(a[k], c[k]) for k in a)  # the second half really trained


def test_resume_dir_continues_a_run_in_place(make_config) -> None:
    cfg = make_config([*TINY_JOB, "trainer.max_steps=3", "test=false"])
    train(cfg)
    run = cfg.paths.output_dir
    again = make_config([f"resume_dir={run}", "trainer.max_steps=6", "test=false"], subdir="ignored")
    with open_dict(again):
        again.paths.output_dir = run
    train(again)
    step = torch.load(Path(run) / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)[
        "global_step"
    ]
    assert step == 6


def test_clear_config_errors(make_config) -> None:
    with pytest.raises(ConfigError, match="model.mixer.d_state=300 is not supported"):
        train(make_config(["model.mixer.d_state=300"]))
    with pytest.raises(ConfigError, match="task needs 'num_classes'.*provides none"):
        train(make_config(["task=classification", "debug=fdr"]))
    with pytest.raises(ConfigError, match="data sequence length 8192 exceeds model.max_seq_len=4096"):
        train(make_config(["model=transformer", "data.seq_len=8192", "debug=fdr"]))
    with pytest.raises(ConfigError, match="global_batch_size=10 is not a multiple"):
        train(make_config([*TINY_JOB, "global_batch_size=10", "debug=fdr"]))


def test_global_batch_size_becomes_accumulation(make_config) -> None:
    from mambabench.utils.build import build_trainer

    cfg = make_config([*TINY_JOB, "global_batch_size=16"])
    assert build_trainer(cfg, [], []).accumulate_grad_batches == 4


def test_nonfinite_loss_stops_the_run(make_config) -> None:
    cfg = make_config(
        [
            *TINY_JOB,
            "trainer.max_steps=5",
            "optimizer.lr=1e30",
            "trainer.gradient_clip_val=null",
            "test=false",
        ]
    )
    with pytest.raises(FloatingPointError, match="training loss became"):
        train(cfg)


def test_wandb_logger_runs_offline_without_login(make_config, monkeypatch) -> None:
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("HOME", str(Path(make_config([]).paths.output_dir).parent))  # no ~/.netrc
    cfg = make_config([*TINY_JOB, "trainer.max_steps=2", "logger=wandb", "test=false"], subdir="wb")
    train(cfg)
    run = Path(cfg.paths.output_dir)
    assert os.environ["WANDB_MODE"] in ("offline", "dryrun")  # WandbLogger(offline=True) says dryrun
    assert list((run / "wandb").glob("offline-run-*"))
    run_id = (run / "wandb_id.txt").read_text().strip()
    assert run_id
    # a resume into a new directory continues the same W&B run
    resumed = make_config(
        [
            *TINY_JOB,
            "trainer.max_steps=3",
            "logger=wandb",
            "test=false",
            f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}",
        ],
        subdir="wb2",
    )
    train(resumed)
    assert (Path(resumed.paths.output_dir) / "wandb_id.txt").read_text().strip() == run_id


def test_generate_from_a_checkpoint(make_config, tmp_path) -> None:
    from mambabench.utils.sampling import sample_from_checkpoint

    cfg = make_config([*TINY_JOB, "trainer.max_steps=2", "test=false"])
    train(cfg)
    gen = compose_config(
        [
            f"ckpt_path={Path(cfg.paths.output_dir) / 'checkpoints' / 'last.ckpt'}",
            "max_new_tokens=5",
            "num_samples=3",
            "prompt_len=4",
        ],
        tmp_path / "gen",
        "generate.yaml",
    )
    out = sample_from_checkpoint(gen)
    assert out.shape == (3, 9)
    samples = json.loads((tmp_path / "gen" / "samples.json").read_text())["samples"]
    assert [s["prompt_ids"] + s["continuation_ids"] for s in samples] == out.tolist()
    assert all(len(s["prompt_ids"]) == 4 and s["continuation"] for s in samples)


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PROJECT_ROOT": str(cwd), "WANDB_MODE": "offline"}
    return subprocess.run(
        [sys.executable, str(ROOT / "src" / "train.py"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_cli_unknown_model_lists_choices(tmp_path) -> None:
    result = _cli("model=no_such_model", cwd=tmp_path)
    assert result.returncode != 0
    assert "no_such_model" in result.stderr and "mamba" in result.stderr  # Hydra lists available options


def test_cli_multirun_sweeps_overrides(tmp_path) -> None:
    result = _cli(
        "-m",
        "model.d_model=16,24",
        "debug=fdr",
        "logger=[]",
        "paths.log_dir=" + str(tmp_path),
        "data.batch_size=2",
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    sweep = next((tmp_path / "debug" / "multiruns").iterdir())
    runs = sorted(p.name for p in sweep.iterdir() if p.is_dir() and (p / "config.yaml").exists())
    assert len(runs) == 2
    assert runs[0].startswith("0_") and "model.d_model:16" in runs[0] and "model.d_model:24" in runs[1]
