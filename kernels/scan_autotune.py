"""Opt-in autotuning of the sequential scan kernels' launch parameters (``MAMBABENCH_SCAN_AUTOTUNE=1``).

The default launch parameters are fixed heuristics (:func:`mambabench.kernels.scan_launch.sequential_config`,
chosen from H100/H200 sweeps, docs/benchmarks.md); the tuner is one field of the launch settings
(:class:`mambabench.kernels.scan_launch.ScanLaunch`). With autotuning on, the first forward and the first
backward of every *tuning key*

    (phase, seqlen bucket, dim, dstate, dtype, has_z, rows bucket, saves states)

time each candidate of a small search space on the real inputs and keep the fastest for the rest of
the process (and, with ``MAMBABENCH_SCAN_AUTOTUNE_CACHE=path.json``, for later processes). seqlen and
the (batch, channel) row count are bucketed to powers of two, the quantities the heuristics switch on.

Why this is safe for outputs that are written in place or accumulated with atomics (``triton.autotune``
would re-run one launch into the caller's buffers): every trial is a complete call of the host
function with its *own* freshly allocated outputs (zeroed where the kernels add atomically), and is
thrown away; the caller's call then runs once with the chosen parameters. The forward and backward are
tuned separately over parameters that keep their contract (the saved-state spacing ``CHUNK`` is never
searched), so any tuned forward pairs with any tuned backward. Tuning is skipped while a CUDA graph
is being captured (the heuristics are used).
"""

from __future__ import annotations

import itertools
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import torch

__all__ = ["FWD_SPACE", "BWD_SPACE", "ScanTuner", "tuning_key", "tuner_from_env"]

# candidates: every combination of these values over the heuristic's configuration
FWD_SPACE: dict[str, tuple[int, ...]] = {"lanes": (4, 8), "prefetch": (0, 1)}
BWD_SPACE: dict[str, tuple[int, ...]] = {
    "bwd_lanes": (4, 8),
    "bwd_maxnreg": (128, 160),
    "split_target": (16384, 32768),
}


def _pow2_bucket(x: int) -> int:
    return 1 << max(0, int(x) - 1).bit_length()


def tuning_key(phase: str, u: torch.Tensor, dstate: int, has_z: bool, save_states: bool) -> str:
    """The cache key of a call: phase ("fwd" / "bwd"), seqlen and row buckets, dim, dstate, dtype, gate."""
    batch, dim, seqlen = u.shape
    dtype = str(u.dtype).removeprefix("torch.")
    return (
        f"{phase}|L{_pow2_bucket(seqlen)}|d{dim}|N{dstate}|{dtype}|z{int(has_z)}|"
        f"rows{_pow2_bucket(batch * dim)}|s{int(save_states)}"
    )


def cuda_timer(fn: Callable[[], object], reps: int = 3) -> float:
    """Median milliseconds of ``fn`` after one warm-up call (compilation), with CUDA events on a GPU
    and the host clock otherwise."""
    fn()
    times = []
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for _ in range(reps):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
    else:
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
    return sorted(times)[len(times) // 2]


class ScanTuner:
    """Times the candidates of one tuning key once and remembers the winner.

    Args:
        timer: ``timer(fn) -> milliseconds``; injectable for tests.
        cache_path: optional JSON file of {key: {param: value}} read at start and rewritten after
            every new key.
    """

    def __init__(
        self,
        timer: Callable[[Callable[[], object]], float] = cuda_timer,
        cache_path: str | os.PathLike | None = None,
    ) -> None:
        self.timer = timer
        self.cache_path = Path(cache_path) if cache_path else None
        self.best: dict[str, dict[str, int]] = {}
        if self.cache_path is not None and self.cache_path.exists():
            try:
                self.best = {k: dict(v) for k, v in json.loads(self.cache_path.read_text()).items()}
            except (OSError, ValueError) as e:
                raise ValueError(
                    f"MAMBABENCH_SCAN_AUTOTUNE_CACHE={self.cache_path} is not a JSON object of "
                    f"configs ({e}); delete it to start over"
                ) from e

    def pick(
        self,
        key: str,
        base: dict[str, int],
        space: dict[str, tuple[int, ...]],
        trial: Callable[[dict[str, int]], object],
    ) -> dict[str, int]:
        """The configuration for ``key``: ``base`` with the fastest combination of ``space`` (each
        timed by ``trial(config)``), computed on the first call of the key."""
        if key not in self.best:
            results = []
            for combo in itertools.product(*space.values()):
                cfg = {**base, **dict(zip(space, combo))}
                results.append((dict(zip(space, combo)), self.timer(lambda cfg=cfg: trial(cfg))))
            self.best[key] = min(results, key=lambda r: r[1])[0]
            self._save()
        return {**base, **self.best[key]}

    def _save(self) -> None:
        if self.cache_path is None:
            return
        self.cache_path.parent.mkdir(parents=True, exist_ok=True)
        self.cache_path.write_text(json.dumps(self.best, indent=1, sort_keys=True))


def tuner_from_env() -> ScanTuner | None:
    """A tuner when ``MAMBABENCH_SCAN_AUTOTUNE=1`` (cache file: ``MAMBABENCH_SCAN_AUTOTUNE_CACHE``)."""
    flag = os.environ.get("MAMBABENCH_SCAN_AUTOTUNE", "0")
    if flag not in ("0", "1"):
        raise ValueError(f"MAMBABENCH_SCAN_AUTOTUNE={flag!r}; use 1 (tune) or 0 (the fixed heuristics)")
    if flag == "0":
        return None
    return ScanTuner(cache_path=os.environ.get("MAMBABENCH_SCAN_AUTOTUNE_CACHE") or None)
