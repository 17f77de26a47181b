"""Opt-in autotuning of the sequential scan launch parameters (kernels/scan_autotune.py): the tuner keeps the
fastest candidate per key, remembers it (also across processes through its JSON cache), and its trials
never leak into the results (atomics and in-place outputs stay correct)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from mambabench.kernels import scan_autotune
from mambabench.kernels.scan_autotune import ScanTuner, tuning_key
from mambabench.kernels.scan_launch import ScanLaunch, scan_launch, sequential_launch
from tests.kernels.test_selective_scan import check_scan, make_inputs


def countdown_timer() -> tuple[Callable[[Callable[[], object]], float], list[int]]:
    """A timer that runs each trial once and reports ever smaller times: the last candidate wins."""
    calls: list[int] = []

    def timer(fn: Callable[[], object]) -> float:
        fn()
        calls.append(1)
        return 1000.0 - len(calls)

    return timer, calls


def test_tuner_picks_the_fastest_once_and_caches(tmp_path: Path) -> None:
    times = {(4, 0): 3.0, (4, 1): 1.0, (8, 0): 2.0, (8, 1): 5.0}
    seen: list[dict] = []

    def trial(cfg: dict) -> float:
        seen.append(cfg)
        return times[(cfg["lanes"], cfg["prefetch"])]

    cache = tmp_path / "tune.json"
    tuner = ScanTuner(timer=lambda fn: fn(), cache_path=cache)
    base = {"lanes": 4, "prefetch": 0, "CHUNK": 128}
    cfg = tuner.pick("k", base, scan_autotune.FWD_SPACE, trial)
    assert cfg == {"lanes": 4, "prefetch": 1, "CHUNK": 128} and len(seen) == 4
    assert tuner.pick("k", base, scan_autotune.FWD_SPACE, trial) == cfg and len(seen) == 4  # cached
    again = ScanTuner(timer=lambda fn: pytest.fail("a cached key is not timed again"), cache_path=cache)
    assert again.pick("k", base, scan_autotune.FWD_SPACE, trial) == cfg


def test_tuning_key_buckets_seqlen_and_rows() -> None:
    a = torch.empty(2, 48, 1000)
    b = torch.empty(2, 48, 1024)
    assert tuning_key("fwd", a, 16, True, True) == tuning_key("fwd", b, 16, True, True)
    assert tuning_key("fwd", a, 16, True, True) != tuning_key("bwd", a, 16, True, True)
    assert "rows128" in tuning_key("fwd", a, 16, True, False)


def test_bad_environment_values(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MAMBABENCH_SCAN_AUTOTUNE", "yes")
    with pytest.raises(ValueError, match="use 1"):
        scan_autotune.tuner_from_env()
    bad = tmp_path / "bad.json"
    bad.write_text("not json")
    monkeypatch.setenv("MAMBABENCH_SCAN_AUTOTUNE", "1")
    monkeypatch.setenv("MAMBABENCH_SCAN_AUTOTUNE_CACHE", str(bad))
    with pytest.raises(ValueError, match="delete it"):
        scan_autotune.tuner_from_env()


@pytest.mark.parametrize(("bc", "det"), [("var", False), ("const", True)])
def test_autotuned_scan_matches_reference(device: str, bc: str, det: bool) -> None:
    # every forward (4) and backward (8) candidate runs on the real inputs, the last one wins (8 lanes,
    # prefetch; 8 backward lanes, maxnreg 160, split target 32768); the results are still the reference's
    timer, calls = countdown_timer()
    tuner = ScanTuner(timer=timer)
    inputs = make_inputs(device, dim=8, seqlen=40, dstate=4, bc=bc, seed=5)
    with scan_launch(family="sequential", tuner=tuner):
        check_scan(inputs, softplus=True, return_last=True, dtype=torch.float32, deterministic=det)
    assert len(calls) == 4 + 8
    (bwd_key, bwd), (fwd_key, fwd) = sorted(tuner.best.items())
    assert bwd_key.startswith("bwd|") and fwd_key.startswith("fwd|")
    assert fwd == {"lanes": 8, "prefetch": 1}
    assert bwd == {"bwd_lanes": 8, "bwd_maxnreg": 160, "split_target": 32768}


def test_fixed_keys_are_not_tuned() -> None:
    # a launch override fixes its keys: the tuner searches only the others
    timer, calls = countdown_timer()
    tuner = ScanTuner(timer=timer)
    u = torch.empty(2, 8, 40)
    launch = ScanLaunch(family="sequential", sequential={"lanes": 4}, tuner=tuner)
    cfg = sequential_launch("fwd", u, 4, True, True, lambda c: None, launch)
    assert len(calls) == 2 and cfg["lanes"] == 4 and cfg["prefetch"] == 1
