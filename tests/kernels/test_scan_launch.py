"""The scan's launch policy (kernels/scan_launch.py): which family runs, with which launch parameters.

``test_launch_plan_is_pinned`` records every kernel launch of the forward and backward at the paper's
training shapes and a few no-grad, dstate-32 and grouped shapes, with stand-ins for the kernels (no
kernel runs), and compares them with ``data/scan_launch_plan.json``: grids, scalar arguments, buffer
shapes, constexprs, warps and the wave model's picks.  A change there changes what runs on the GPU;
regenerate the file only on purpose (``python tests/kernels/test_scan_launch.py --write``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from mambabench.kernels import scan_launch as sl
from mambabench.kernels import scan_sequential, scan_tiled, selective_scan
from mambabench.kernels.scan_launch import ScanLaunch, current_launch, scan_launch

PLAN = Path(__file__).parent / "data" / "scan_launch_plan.json"
CASES = [  # (name, (batch, dim, seqlen), dstate, dtype, B/C groups)
    *[
        (f"train_{b}x{d}x{L}", (b, d, L), 16, torch.bfloat16, 1)
        for b, d, L in (
            (16, 1536, 2048),
            (8, 4096, 2048),
            (8, 2048, 2048),
            (32, 1536, 512),
            (32, 2048, 512),
            (2, 2048, 8192),
        )
    ],
    ("fp32_8x2048x2048", (8, 2048, 2048), 16, torch.float32, 1),
    ("b1_4096x4096", (1, 4096, 4096), 16, torch.bfloat16, 1),
    ("b3_2048x4096", (3, 2048, 4096), 16, torch.bfloat16, 1),
    ("b1_2048x65536", (1, 2048, 65536), 16, torch.bfloat16, 1),
    ("b1_4096x512", (1, 4096, 512), 16, torch.bfloat16, 1),
    ("n32_2x256x300", (2, 256, 300), 32, torch.bfloat16, 1),
    ("n8_groups_2x256x300", (2, 256, 300), 8, torch.float32, 2),
]
KERNELS = (
    (scan_tiled, "tiled_scan_fwd_kernel", "tiled_fwd"),
    (scan_tiled, "tiled_scan_bwd_kernel", "tiled_bwd"),
    (scan_sequential, "seq_scan_fwd_kernel", "sequential_fwd"),
    (scan_sequential, "seq_scan_bwd_kernel", "sequential_bwd"),
    (scan_sequential, "seq_scan_carry_kernel", "sequential_carry"),
)


class _RecordingKernel:
    """Stands in for a Triton kernel: ``kernel[grid](*args, **kw)`` appends the launch to ``log``."""

    def __init__(self, label: str, log: list) -> None:
        self.label, self.log = label, log

    def __getitem__(self, grid: tuple[int, ...]):  # noqa: ANN204
        def launch(*args: object, **kw: object) -> None:
            self.log.append(
                {
                    "kernel": self.label,
                    "grid": list(grid),
                    "args": [list(a.shape) if isinstance(a, torch.Tensor) else a for a in args],
                    "kw": {k: int(v) if isinstance(v, bool) else v for k, v in sorted(kw.items())},
                }
            )

        return launch


def _inputs(
    batch: int, dim: int, seqlen: int, dstate: int, dtype: torch.dtype, groups: int
) -> list[torch.Tensor]:
    """Uninitialised inputs in the Mamba block's layout (u and z halves of one xz tensor)."""
    xz = torch.empty(batch, 2 * dim, seqlen, dtype=dtype)
    bc = (batch, groups, dstate, seqlen)
    return [
        xz[:, :dim],
        torch.empty(batch, dim, seqlen, dtype=dtype),
        -torch.ones(dim, dstate),
        torch.empty(bc, dtype=dtype),
        torch.empty(bc, dtype=dtype),
        torch.ones(dim),
        xz[:, dim:],
        torch.zeros(dim),
    ]


def record_plan(monkeypatch: pytest.MonkeyPatch) -> dict[str, list]:
    """Every launch (and wave-model pick) of a no-grad forward, and of a training forward + backward with
    atomics and deterministic, per case."""
    log: list = []
    picks: list[int] = []
    pick = sl.pick_by_waves

    def spy(*args: object) -> int:
        picks.append(pick(*args))
        return picks[-1]

    monkeypatch.setattr(scan_sequential, "pick_by_waves", spy)
    for module, name, label in KERNELS:
        monkeypatch.setattr(module, name, _RecordingKernel(label, log))
    plan = {}
    for name, (b, d, L), n, dtype, groups in CASES:
        args = _inputs(b, d, L, n, dtype, groups)
        for phase in ("nograd", "train", "train_det"):
            log.clear()
            picks.clear()
            _, residual, _ = selective_scan.selective_scan_forward(*args, True, phase != "nograd", False)
            log.append({"waves": list(picks)})
            if phase != "nograd":
                picks.clear()
                selective_scan.selective_scan_backward(
                    *args, True, residual, torch.empty_like(args[0]), phase == "train_det"
                )
                log.append({"waves": list(picks)})
            plan[f"{name}|{phase}"] = json.loads(json.dumps(log))
    return plan


def test_launch_plan_is_pinned(monkeypatch: pytest.MonkeyPatch) -> None:
    with scan_launch(**vars(ScanLaunch())):  # the defaults, whatever the environment asks for
        plan = record_plan(monkeypatch)
    pinned = json.loads(PLAN.read_text())
    assert sorted(plan) == sorted(pinned)
    for key in pinned:
        assert plan[key] == pinned[key], f"{key}: the launches changed"


@pytest.mark.parametrize(
    ("batch", "dim", "prefetch", "maxnreg"),
    [
        (16, 1536, True, 160),
        (8, 2048, False, 128),
        (32, 1536, True, 160),
        (8, 4096, True, 128),
        (4, 2048, True, 160),
    ],
)
def test_wave_model_choices(batch: int, dim: int, prefetch: bool, maxnreg: int) -> None:
    # the "auto" prefetch / register cap on an H100 (132 SMs), at L = 2048 (one-warp programs of 8
    # channels): (16, 1536, 2048), 3072 programs, takes both, while (8, 2048, 2048), 2048 programs
    # (one full wave at 18 / 16 per SM), takes neither; (4, 2048), less than one wave either way, both
    programs = batch * dim // 8
    assert sl.pick_by_waves(programs, 132, sl.FWD_RESIDENT, 1, sl.PREFETCH_GAIN) == int(prefetch)
    assert sl.pick_by_waves(programs, 132, sl.BWD_RESIDENT, 160, sl.MAXNREG_GAIN) == maxnreg
    assert sl.busy_fraction(2048, 16, 132) == pytest.approx(2048 / 2112)
    assert sl.sequential_config(dim, 16, 2048, batch, 2)["prefetch"] == -1  # resolved per grid at launch


def test_family_choice() -> None:
    # default: sequential backward for dstate <= 16; sequential forward for training and for no-grad
    # outside [NOGRAD_TILED_MIN_ROWS, NOGRAD_SEQUENTIAL_MIN_ROWS) rows; tiled for dstate > 16
    auto = ScanLaunch()
    for rows, nograd_sequential in ((4095, True), (4096, False), (6143, False), (6144, True)):
        u = torch.empty(1, rows, 1)
        assert sl.sequential_forward_runs(u, 16, False, auto) == nograd_sequential
        assert sl.sequential_forward_runs(u, 16, True, auto)
        assert not sl.sequential_forward_runs(u, 32, True, auto)
    assert sl.sequential_backward_runs(16, auto) and not sl.sequential_backward_runs(32, auto)
    tiled = ScanLaunch(family="tiled")
    assert not sl.sequential_forward_runs(torch.empty(1, 8192, 1), 16, True, tiled)
    assert not sl.sequential_backward_runs(16, tiled)
    sequential = ScanLaunch(family="sequential")
    assert sl.sequential_forward_runs(torch.empty(1, 5000, 1), 16, False, sequential)
    assert not sl.sequential_backward_runs(16, ScanLaunch(tiled_bwd={"BLOCK_D": 8, "num_warps": 1}))


def test_context_manager_restores_the_settings() -> None:
    before = current_launch()
    with scan_launch(family="tiled", sequential={"CHUNK": 64}) as inside:
        assert current_launch() is inside and inside.family == "tiled" and inside.sequential == {"CHUNK": 64}
        with scan_launch(family="sequential"):
            assert current_launch().family == "sequential" and current_launch().sequential == {"CHUNK": 64}
        assert current_launch() is inside
    assert current_launch() is before
    with pytest.raises(ValueError, match="choose one of auto, tiled, sequential"):
        ScanLaunch(family="fastest")
    with pytest.raises(ValueError, match="known: .*CHUNK"):
        ScanLaunch(sequential={"chunk": 64})


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # MAMBABENCH_SCAN_LAUNCH sets the family and sequential parameters for a whole run; a bad key
    # names the known ones
    monkeypatch.setenv("MAMBABENCH_SCAN_LAUNCH", "family=sequential, prefetch=1, bwd_maxnreg=160")
    monkeypatch.delenv("MAMBABENCH_SCAN_AUTOTUNE", raising=False)
    launch = ScanLaunch.from_env()
    assert launch.family == "sequential" and launch.sequential == {"prefetch": 1, "bwd_maxnreg": 160}
    assert launch.tuner is None
    u = torch.empty(16, 2048, 2048, dtype=torch.bfloat16)
    cfg = sl.sequential_launch("fwd", u, 16, True, True, lambda c: None, launch)
    assert cfg["prefetch"] == 1 and cfg["bwd_maxnreg"] == 160 and cfg["CHUNK"] == 128
    monkeypatch.setenv("MAMBABENCH_SCAN_LAUNCH", "chunk=256")
    with pytest.raises(ValueError, match="known: family, .*CHUNK"):
        ScanLaunch.from_env()
    monkeypatch.setenv("MAMBABENCH_SCAN_LAUNCH", "family=fused")
    with pytest.raises(ValueError, match="family=.fused."):
        ScanLaunch.from_env()


if __name__ == "__main__" and sys.argv[1:] == ["--write"]:
    with pytest.MonkeyPatch.context() as mp, scan_launch(**vars(ScanLaunch())):
        recorded = record_plan(mp)
    PLAN.write_text(
        "{\n"
        + ",\n".join(
            f"{json.dumps(k)}: {json.dumps(v, separators=(',', ':'))}" for k, v in sorted(recorded.items())
        )
        + "\n}\n"
    )
    print(f"wrote {PLAN}")
