"""The report (scripts/report.py, mambabench.report): ours beside the paper's in every cell, missing runs
marked missing, summaries of every task type read, evaluations folded into their run, W&B runs mapped
like local ones. Runs here are small fake run folders (summary.json as training writes it)."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from mambabench.report import collect_runs, write_report
from mambabench.report import wandb_runs as wandb_runs_module
from mambabench.report.paper import paper_values

ROOT = Path(__file__).resolve().parents[2]


def fake_run(
    root: Path,
    name: str,
    experiment: str | None,
    model: str,
    metrics: dict[str, float],
    data: str = "selective_copying",
    model_cfg: dict | None = None,
    data_cfg: dict | None = None,
    params: int = 1000,
    train_tokens: int | None = None,
    **extra: Any,
) -> Path:
    run_dir = root / name
    run_dir.mkdir(parents=True)
    summary = {
        "run_dir": str(run_dir),
        "choices": {"experiment": experiment, "model": model, "data": data},
        "model": model_cfg or {"d_model": 64, "n_layer": 2},
        "data": data_cfg or {"seq_len": 256},
        "params": {"total": params},
        "global_step": 1500,
        "metrics": metrics,
        "train_tokens": train_tokens,
        **extra,
    }
    (run_dir / "summary.json").write_text(json.dumps(summary))
    return run_dir


def test_table1_puts_ours_beside_the_paper_and_marks_missing_rows(tmp_path: Path) -> None:
    runs = tmp_path / "multirun"
    mamba = fake_run(runs, "0", "ablations/table1/mini", "table1/mamba_s6", {"test/accuracy": 0.912})
    fake_run(runs, "1", "ablations/table1/mini", "table1/s4_nogate", {"test/accuracy": 0.25})
    fake_run(runs, "2", "selective_copying/mini", "mamba", {"test/accuracy": 0.5})  # another preset
    out = tmp_path / "report"
    write_report(collect_runs([runs]), out)

    md = (out / "table1_mini.md").read_text()
    assert f"| Mamba | Mamba | S6 | [91.2](../multirun/{mamba.name}) / 99.8 |" in md
    assert "| S4 | No gate | S4 | [25.0](../multirun/1) / 18.3 |" in md
    assert md.count("*missing* /") == 6  # the six rows without a run, never filled in
    rows = list(csv.DictReader((out / "table1_mini.csv").open()))
    assert [r["Accuracy (%) paper"] for r in rows] == [
        "18.3",
        "97.0",
        "57.0",
        "30.1",
        "99.7",
        "56.4",
        "28.4",
        "99.8",
    ]
    assert rows[-1]["Accuracy (%) ours"] == "91.2" and rows[1]["Accuracy (%) ours"] == ""
    index = (out / "README.md").read_text()
    assert "table1_mini" in index and "`selective_copying/mini`" in index


def test_without_runs_every_table_cell_is_missing(tmp_path: Path) -> None:
    written = write_report([], tmp_path)
    table1 = (tmp_path / "table1.md").read_text()
    assert table1.count("*missing* /") == 8
    assert {p.name for p in written} >= {
        "table1.md",
        "induction_heads.md",
        "table6.md",
        "table10.md",
        "README.md",
    }


def test_reads_summaries_of_every_task_type(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    # language modelling (perplexity vs FLOPs)
    for i, (model, params, ppl) in enumerate(
        [("mamba", 2e6, 30.0), ("mamba", 8e6, 20.0), ("transformerpp", 2e6, 35.0)]
    ):
        fake_run(
            runs,
            f"lm{i}",
            "lm/scaling/125m",
            model,
            {"test/perplexity": ppl},
            data="pile",
            params=int(params),
            train_tokens=10**8,
            data_cfg={"seq_len": 2048},
        )
    # DNA pretraining (model size, context length) and classification (great apes)
    fake_run(
        runs, "dna0", "dna/model_size/mini", "mamba", {"test/perplexity": 3.1}, data="hg38", params=10**5
    )
    fake_run(
        runs, "dna1", "dna/model_size/mini", "mamba", {"test/perplexity": 2.9}, data="hg38", params=10**6
    )
    fake_run(
        runs,
        "dna2",
        "dna/context_length/mini",
        "hyena",
        {"test/perplexity": 3.2},
        data="hg38",
        data_cfg={"seq_len": 1024},
    )
    fake_run(
        runs,
        "apes",
        "dna/great_apes/mini",
        "mamba",
        {"test/accuracy": 0.42},
        data="great_apes",
        data_cfg={"seq_len": 1024},
    )
    # audio: YouTubeMix bits per sample vs length, SC09 metrics
    for i, n in enumerate([8192, 16384]):
        fake_run(
            runs,
            f"ytm{i}",
            "audio/youtubemix/mini",
            "sashimi",
            {"test/bits_per_byte": 1.9 - 0.1 * i},
            data="youtubemix",
            data_cfg={"seq_len": n},
        )
    fake_run(runs, "sc09", "audio/sc09/mini", "sashimi", {"test/loss": 1.95, "test/fid": 3.0}, data="sc09")
    # in-context regression: error vs number of examples
    fake_run(
        runs,
        "icl",
        "icl/linear/mini",
        "mamba",
        {"test/loss": 0.3},
        data="icl_regression",
        icl_curves={"test": {"in_dist": [1.0, 0.6, 0.3, 0.1]}},
    )
    # induction heads, one length out of memory
    fake_run(
        runs,
        "ih",
        "induction_heads/mini",
        "mha_abs",
        {"test/L64/accuracy": 1.0, "test/L256/accuracy": 0.99, "test/L1024/accuracy": 0.2},
        data="induction_heads",
        data_cfg={"train_seq_len": 64},
    )
    out = tmp_path / "report"
    names = {p.name for p in write_report(collect_runs([runs]), out)}

    assert {
        "figure4_context2048.png",
        "figure4_context2048.svg",
        "figure5_model_size_mini.png",
        "figure5_context_length_mini.png",
        "figure7_mini.png",
        "icl_linear_mini.png",
        "induction_heads_mini.png",
        "table13_mini.md",
        "table4_mini.md",
    } <= names
    assert "| mamba (ours) | [42.00](../runs/apes) / - |" in (out / "table13_mini.md").read_text()
    assert "| HyenaDNA 1.4M (paper) | - / 28.04 |" in (out / "table13_mini.md").read_text()
    sc09 = (out / "table4_mini.md").read_text()
    assert "[1.950](../runs/sc09) / -" in sc09 and "*missing* / -" in sc09  # NLL and FID ours, IS missing
    lm = list(csv.DictReader((out / "figure4_runs.csv").open()))
    assert [r["FLOPs (1e15) ours"] for r in lm] == ["1.20", "4.80", "1.20"]  # 6 x params x tokens
    ih = (out / "induction_heads_mini.md").read_text()
    assert (
        "| MHA-Abs | [1,000](../runs/ih) / 137K | [100.0](../runs/ih) / 100.0 | *missing* / 99.6 "
        "| [99.0](../runs/ih) / 100.0 |" in ih
    )
    assert "| Hyena | *missing* / 69M* | *missing* / 97.7 |" in ih  # no run: no count of ours either
    assert "*missing* / oom" in ih  # 2^15 and above: no run of ours, paper out of memory


def test_an_evaluation_is_folded_into_its_training_run(tmp_path: Path) -> None:
    run = fake_run(
        tmp_path / "runs",
        "mamba",
        "induction_heads/paper",
        "mamba",
        {"test/L256/accuracy": 1.0},
        data="induction_heads",
        data_cfg={"train_seq_len": 256},
    )
    evaluation = tmp_path / "runs" / "eval"
    evaluation.mkdir()
    (evaluation / "summary.json").write_text(
        json.dumps(
            {
                "ckpt_path": str(run / "checkpoints" / "last.ckpt"),
                "choices": {},
                "metrics": {"test/L1048576/accuracy": 0.98},
                "out_of_memory_lengths": [2097152],
            }
        )
    )
    (only,) = collect_runs([tmp_path / "runs"])
    assert only.run_dir == run and only.metrics["test/L1048576/accuracy"] == 0.98
    assert only.out_of_memory_lengths == {2097152}
    write_report([only], tmp_path / "report")
    md = (tmp_path / "report" / "induction_heads_paper.md").read_text()
    assert "[98.0](../runs/mamba) / 100.0" in md and "[oom](../runs/mamba) / -" in md


def test_wandb_runs_map_like_local_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Offline: a stand-in for ``wandb.Api`` serves one finished run; the report reads it as a local run."""
    wb_run = SimpleNamespace(
        id="abc123",
        url="https://wandb.ai/me/proj/runs/abc123",
        config={
            "choices": {"experiment": "ablations/table1/paper", "model": "table1/h3_s6"},
            "model": {"d_model": 64, "n_layer": 2},
            "data": {"seq_len": 4096},
            "params/total": 5000,
        },
        summary={"test/accuracy": 0.97, "trainer/global_step": 400000, "_runtime": 3.0},
    )
    api = SimpleNamespace(runs=lambda project, filters: [wb_run] if project == "me/proj" else [])
    monkeypatch.setattr(wandb_runs_module, "_api", lambda: api)
    runs = wandb_runs_module.fetch_wandb_runs("me/proj", tmp_path / "cache")
    assert [r.model_name for r in runs] == ["table1/h3_s6"] and runs[0].metric("test/accuracy") == 0.97
    write_report(runs, tmp_path / "report")
    assert (
        "| - | H3 | S6 | [97.0](../cache/abc123) / 99.7 |"
        in (tmp_path / "report" / "table1_paper.md").read_text()
    )


def test_every_paper_value_names_its_source() -> None:
    values = paper_values()
    for name, entry in values.items():
        if name != "figures":
            assert entry["source"].startswith(("Table", "Figure")), name
    assert len(values["table1"]["rows"]) == 8
    assert all(
        len(r["values"]) == len(values["table11"]["lengths"]) for r in values["table11"]["rows"].values()
    )


def test_report_script_reads_folders_and_rejects_missing_ones(tmp_path: Path, capsys) -> None:
    spec = importlib.util.spec_from_file_location("report_script", ROOT / "scripts" / "report.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    fake_run(tmp_path / "runs", "0", "ablations/table1/mini", "table1/h3_s4", {"test/accuracy": 0.6})
    assert script.main([str(tmp_path / "runs"), "--out", str(tmp_path / "out")]) == 0
    assert "ablations/table1/mini: 1 run(s)" in capsys.readouterr().out
    assert "[60.0](../runs/0) / 57.0" in (tmp_path / "out" / "table1_mini.md").read_text()
    assert script.main([str(tmp_path / "nowhere"), "--out", str(tmp_path / "out")]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_wandb_runs_carry_group_job_type_and_tags(make_config) -> None:
    """A run of a preset is grouped by the preset, typed by its table, tagged with model, size and knobs."""
    from hydra.core.hydra_config import HydraConfig

    from mambabench.utils.wandb import comparison_fields, prepare_wandb

    cfg = make_config(["experiment=ablations/table1/mini", "model=table1/h3_s4", "logger=wandb"])
    fields = comparison_fields(cfg, dict(HydraConfig.get().runtime.choices))
    node = prepare_wandb(cfg.logger.wandb, None, fields)
    assert node.group == "ablations/table1/mini" and node.job_type == "ablations/table1"
    assert {
        "table1",
        "model=table1/h3_s4",
        "data=selective_copying",
        "d_model=64",
        "n_layer=2",
        "inner_layer=s4_complex",
    } <= set(node.tags)
    plain = comparison_fields(make_config(["model=mamba"]), {"model": "mamba", "data": "selective_copying"})
    assert plain["group"] == "mamba-selective_copying" and plain["job_type"] == "train"
