"""scripts/multi_gpu_check.py: its plan for one and for N devices, its argument errors, and (slow) the
whole check on CPU processes, tables included."""

from __future__ import annotations

import csv
import importlib.util
import subprocess
import sys

import pytest

from tests.conftest import ROOT


def load_script():  # noqa: ANN201
    spec = importlib.util.spec_from_file_location("multi_gpu_check", ROOT / "scripts" / "multi_gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


def _names(plan) -> list[str]:  # noqa: ANN001
    return [run.name for run in plan]


def test_one_gpu_compares_fsdp_in_one_process_with_plain_training() -> None:
    check = load_script()
    plan = check.build_plan("gpu", 1, ["mamba", "transformerpp"], list(check.PARTS), False, ["seed=3"])
    assert _names(plan) == ["mamba_1dev", "mamba_fsdp1", "transformerpp_1dev", "transformerpp_fsdp1"]
    by_name = {run.name: run for run in plan}
    fsdp = by_name["mamba_fsdp1"]
    assert fsdp.reference == "mamba_1dev" and fsdp.parallel
    assert fsdp.overrides[:2] == ["trainer=fsdp", "model=mamba"]
    assert "trainer.devices=1" in fsdp.overrides and "seed=3" in fsdp.overrides
    # same global batch for both: one device accumulates two micro-batches of 4
    for run in plan:
        assert "global_batch_size=8" in run.overrides
    assert by_name["transformerpp_1dev"].overrides[0] == "trainer=gpu"


def test_n_devices_add_ddp_fsdp_and_the_throughput_runs() -> None:
    check = load_script()
    plan = check.build_plan("gpu", 4, ["mamba"], list(check.PARTS), False, [])
    assert _names(plan) == [
        "mamba_1dev", "mamba_fsdp1", "mamba_ddp4", "mamba_fsdp4", "tput_1dev", "tput_ddp4", "tput_fsdp4",
    ]  # fmt: skip
    by_name = {run.name: run for run in plan}
    assert "global_batch_size=16" in by_name["mamba_ddp4"].overrides  # 4 x micro-batch 4
    assert "global_batch_size=32" in by_name["tput_fsdp4"].overrides  # 4 x micro-batch 8
    assert "model=mamba_130m" in by_name["tput_1dev"].overrides
    assert not by_name["mamba_ddp4"].parallel and not by_name["tput_1dev"].parallel
    cpu = check.build_plan("cpu", 2, ["transformerpp"], ["same_loss"], True, [])
    assert [run.overrides[0] for run in cpu] == [
        "trainer=cpu",
        "trainer=fsdp_cpu",
        "trainer=ddp_cpu",
        "trainer=fsdp_cpu",
    ]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--devices", "2"], "this machine has 0 GPU"),
        (["--accelerator", "cpu", "--devices", "0"], "--devices must be >= 1"),
        (["--accelerator", "cpu", "--models", "rwkv"], "the check knows mamba, transformerpp"),
        (["--accelerator", "cpu", "--parallel", "0"], "--parallel must be >= 1"),
    ],
)
def test_bad_arguments_are_named(argv, message, capsys, tmp_path) -> None:
    check = load_script()
    if "--accelerator" not in argv and check.torch.cuda.device_count() >= 2:
        pytest.skip("this machine has GPUs")
    with pytest.raises(SystemExit):
        check.parse_args(["--out", str(tmp_path), *argv])
    assert message in capsys.readouterr().err


def test_tables_compare_each_run_with_its_reference(tmp_path) -> None:
    import torch

    check = load_script()
    plan = check.build_plan("cpu", 2, ["mamba"], ["same_loss"], True, [])
    ref, fsdp1, ddp2 = plan[0], plan[1], plan[2]
    w = {"w": torch.ones(2)}
    ref.result = {"tokens_per_s": 100.0, "curve": [2.0, 1.0], "weights": w, "wall_s": 1.0, "error": ""}
    fsdp1.result = {**ref.result, "curve": [2.0, 1.0005], "weights": {"w": torch.ones(2) + 1e-3}}
    ddp2.result = {**ref.result, "curve": [2.0, 1.5]}
    rows = {row["run"]: row for row in check.write_tables(plan, tmp_path, rtol=1e-3)}
    assert rows["mamba_fsdp1"]["match"] == "yes" and rows["mamba_fsdp1"]["max_weight_diff"] == "1.00e-03"
    assert rows["mamba_ddp2"]["match"] == "NO" and rows["mamba_ddp2"]["max_rel_val_loss_diff"] == "5.00e-01"
    with open(tmp_path / "results.csv") as handle:
        assert [row["run"] for row in csv.DictReader(handle)] == ["mamba_1dev", "mamba_fsdp1", "mamba_ddp2"]
    assert "| mamba_ddp2 |" in (tmp_path / "results.md").read_text()


@pytest.mark.slow
def test_cpu_check_end_to_end(tmp_path) -> None:
    """2 gloo processes: DDP and FSDP match one process; throughput rows get a scaling efficiency."""
    out = tmp_path / "check"
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "multi_gpu_check.py"), "--out", str(out), "--accelerator", "cpu",
         "--tiny", "--models", "mamba"],
        cwd=ROOT, capture_output=True, text=True, timeout=1800,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    with open(out / "results.csv") as handle:
        rows = {row["run"]: row for row in csv.DictReader(handle)}
    assert set(rows) == {
        "mamba_1dev",
        "mamba_fsdp1",
        "mamba_ddp2",
        "mamba_fsdp2",
        "tput_1dev",
        "tput_ddp2",
        "tput_fsdp2",
    }
    for name in ("mamba_fsdp1", "mamba_ddp2", "mamba_fsdp2", "tput_ddp2", "tput_fsdp2"):
        assert rows[name]["match"] == "yes", rows[name]
        assert float(rows[name]["max_weight_diff"]) < 1e-4
    assert float(rows["tput_ddp2"]["scaling_efficiency"]) > 0
