"""Launch policy of the selective scan: which kernel family runs, and with which launch parameters.

Two kernel families compute the same scan (see docs/kernels.md):

* **sequential** (:mod:`scan_sequential`): the states of one channel on 1-8 lanes, the recurrence run
  step by step in registers; below :data:`SPLIT_ROWS` (batch, channel) rows time is cut into
  segments that run at once from each segment's carry.
* **tiled** (:mod:`scan_tiled`): ``BLOCK_D`` channels x ``BLOCK_T`` time steps per tile, one
  ``tl.associative_scan`` over time per state; the only family for dstate > 16.

Default choice (``family="auto"``), for dstate <= 16: the sequential backward always; the sequential
forward for every training forward and for no-grad forwards of at least
:data:`NOGRAD_SEQUENTIAL_MIN_ROWS` or fewer than :data:`NOGRAD_TILED_MIN_ROWS` rows; the tiled forward
in between.  Either backward starts from either forward's saved states.  The thresholds and every
fixed parameter below come from H100/H200 sweeps (``scripts/sweep_scan_launch.py``); the figures are
in docs/benchmarks.md.

Launch parameters are fixed heuristics rather than ``triton.autotune``: the backward accumulates with
atomics, and the forward's saved-state spacing must match the backward's chunk.  The one owner of
every switch is a :class:`ScanLaunch` settings object, changed for a block of code with
:func:`scan_launch` and read once from the environment on first use:

* ``MAMBABENCH_SCAN_LAUNCH="family=tiled"`` or ``"prefetch=1,bwd_maxnreg=160"``: the kernel family
  and/or sequential launch parameters (keys of :func:`sequential_config`) for a whole run;
* ``MAMBABENCH_SCAN_AUTOTUNE=1`` (cache: ``MAMBABENCH_SCAN_AUTOTUNE_CACHE=path.json``): time the
  sequential candidates of :mod:`scan_autotune` per shape class instead of the heuristic's values.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

import torch
from torch import Tensor

from mambabench.kernels import scan_autotune
from mambabench.kernels._host import cdiv, next_power_of_2

__all__ = [
    "FAMILIES",
    "NOGRAD_SEQUENTIAL_MIN_ROWS",
    "NOGRAD_TILED_MIN_ROWS",
    "SPLIT_ROWS",
    "ScanLaunch",
    "busy_fraction",
    "current_launch",
    "parse_launch_spec",
    "pick_by_waves",
    "scan_launch",
    "sequential_backward_runs",
    "sequential_config",
    "sequential_forward_runs",
    "sequential_launch",
    "tiled_bwd_config",
    "tiled_fwd_config",
]

FAMILIES = ("auto", "tiled", "sequential")
LAUNCH_ENV = "MAMBABENCH_SCAN_LAUNCH"

# Below this many (batch, channel) rows the sequential kernels cut time into segments, and the unsplit
# sequential backward gives a channel 8 lanes instead of 4 (few rows: more threads per channel).
SPLIT_ROWS = 8192
# No-grad forwards with at least this many rows run the sequential family; the tiled forward serves
# [NOGRAD_TILED_MIN_ROWS, NOGRAD_SEQUENTIAL_MIN_ROWS).
NOGRAD_SEQUENTIAL_MIN_ROWS = 6144
# Below this many rows the no-grad forward is sequential (time-split) again: the tiled forward does
# not split time, so it has too few programs.
NOGRAD_TILED_MIN_ROWS = 4096

# Wave model of the one-warp sequential programs.  A grid of P programs with R resident per SM on n SMs
# runs in ceil(P / (R n)) waves, of which the fraction P / (R n) / ceil(...) of the slots is busy.
# Prefetching in the forward (168 registers per thread: 12 resident warps per SM against 18 at 110) and
# the backward's 160-register cap (12 against 16 at 128, and no spills) are each a few percent faster
# per program at equal waves (``*_GAIN``), so "auto" (-1 in :func:`sequential_config`) takes them unless
# their last wave is emptier by more than that.  Register counts: sm_90, Triton 3.6
# (``scripts/kernel_resources.py``).
FWD_RESIDENT = {0: 18, 1: 12}  # prefetch -> resident one-warp forward programs per SM
BWD_RESIDENT = {128: 16, 160: 12}  # maxnreg -> resident one-warp backward programs per SM
PREFETCH_GAIN = 1.04
MAXNREG_GAIN = 1.06

_SEQUENTIAL_EXTRA_KEYS = ("fwd_split_rows", "stages")


@dataclass(frozen=True)
class ScanLaunch:
    """Every switch of the scan's launch policy; the defaults are the measured heuristics.

    Attributes:
        family: "auto" (the default choice above), "tiled" or "sequential" (forced where it applies:
            the sequential family needs dstate <= 16).
        sequential: sequential launch parameters merged over :func:`sequential_config`'s (a partial
            dict; the keys that it sets are not autotuned).
        tiled_fwd, tiled_bwd: complete tiled launch parameters (``BLOCK_D``, ``BLOCK_T``,
            ``num_warps``, ...) instead of :func:`tiled_fwd_config` / :func:`tiled_bwd_config`; a
            ``tiled_fwd`` also makes the forward tiled, a ``tiled_bwd`` the backward (for sweeps).
        tuner: a :class:`scan_autotune.ScanTuner` (autotuning on) or None.
    """

    family: str = "auto"
    sequential: dict[str, int] = field(default_factory=dict)
    tiled_fwd: dict[str, int] | None = None
    tiled_bwd: dict[str, int] | None = None
    tuner: scan_autotune.ScanTuner | None = None

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"scan family {self.family!r} is unknown; choose one of {', '.join(FAMILIES)}")
        known = {*_sequential_defaults(2), *_SEQUENTIAL_EXTRA_KEYS}
        unknown = sorted(set(self.sequential) - known)
        if unknown:
            raise ValueError(
                f"sequential launch keys {', '.join(unknown)} are unknown; known: {', '.join(sorted(known))}"
            )

    @classmethod
    def from_env(cls) -> ScanLaunch:
        """The settings that ``MAMBABENCH_SCAN_LAUNCH`` and ``MAMBABENCH_SCAN_AUTOTUNE`` ask for."""
        family, sequential = parse_launch_spec(os.environ.get(LAUNCH_ENV, ""))
        return cls(family=family, sequential=sequential, tuner=scan_autotune.tuner_from_env())


_current: ScanLaunch | None = None


def current_launch() -> ScanLaunch:
    """The settings in force (read from the environment on the first call)."""
    global _current
    if _current is None:
        _current = ScanLaunch.from_env()
    return _current


@contextmanager
def scan_launch(**changes: object) -> Iterator[ScanLaunch]:
    """Change launch settings (fields of :class:`ScanLaunch`) inside a ``with`` block::

    with scan_launch(family="tiled"):
        out = selective_scan_fn(u, delta, A, B, C, ...)
    with scan_launch(sequential={"prefetch": 1, "bwd_maxnreg": 160}):
        ...
    """
    global _current
    previous = current_launch()
    _current = replace(previous, **changes)
    try:
        yield _current
    finally:
        _current = previous


def parse_launch_spec(spec: str) -> tuple[str, dict[str, int]]:
    """``"family=sequential,prefetch=1,bwd_maxnreg=160"`` -> ("sequential", {"prefetch": 1, ...}).

    ``family`` takes auto / tiled / sequential; every other key is a sequential launch parameter
    (see :func:`sequential_config`) with an integer value."""
    family, out = "auto", {}
    known = {*_sequential_defaults(2), *_SEQUENTIAL_EXTRA_KEYS}
    for item in (s for s in spec.split(",") if s.strip()):
        key, _, value = (part.strip() for part in item.partition("="))
        if key == "family":
            if value not in FAMILIES:
                raise ValueError(f"{LAUNCH_ENV}: family={value!r}; choose one of {', '.join(FAMILIES)}")
            family = value
        elif key in known and value.lstrip("-").isdigit():
            out[key] = int(value)
        else:
            raise ValueError(
                f"{LAUNCH_ENV}: {item.strip()!r} is not KEY=INT with a known key; known: "
                f"family, {', '.join(sorted(known))}"
            )
    return family, out


# ------------------------------------------------------------------------------------------------
# which family runs


def sequential_backward_runs(dstate: int, launch: ScanLaunch) -> bool:
    """Whether the sequential kernels run the backward (and so take any forward's saved states)."""
    return dstate <= 16 and launch.family != "tiled" and launch.tiled_bwd is None


def sequential_forward_runs(u: Tensor, dstate: int, save_states: bool, launch: ScanLaunch) -> bool:
    """Whether the sequential kernels run the forward: training (time-split for few rows, where the
    tiled state-saving forward is slow), no-grad with at least ``NOGRAD_SEQUENTIAL_MIN_ROWS`` rows, or
    very few rows (below ``NOGRAD_TILED_MIN_ROWS`` the tiled forward, which does not split time, has
    too few programs); the tiled forward keeps the no-grad forward in between."""
    if dstate > 16 or launch.tiled_fwd is not None:
        return False
    if launch.family != "auto":
        return launch.family == "sequential"
    rows = u.shape[0] * u.shape[1]
    return save_states or rows >= NOGRAD_SEQUENTIAL_MIN_ROWS or rows < NOGRAD_TILED_MIN_ROWS


# ------------------------------------------------------------------------------------------------
# tiled family


def _pow2_divisor(x: int, cap: int) -> int:
    """Largest power of two <= cap that divides x (>= 1)."""
    p = 1
    while p * 2 <= cap and x % (p * 2) == 0:
        p *= 2
    return p


def block_d_for(dim: int, groups: int, want: int) -> int:
    """BLOCK_D <= want; with several B/C groups all channels of a program must share one group."""
    want = min(want, next_power_of_2(dim))
    if groups > 1:
        return _pow2_divisor(dim // groups, want)
    return want


def carry_width(block_n: int, block_t: int) -> int:
    """Width of the per-state carry tiles of the tiled kernels.

    With dstate <= BLOCK_T the carries (h, dh, dA, ...) live in a [BLOCK_D, BLOCK_T] tile, column n
    for state n: it has the layout of the data tiles, so reading or writing a column needs no
    layout conversion through shared memory.  Otherwise a [BLOCK_D, BLOCK_N] tile is used.
    """
    return block_t if block_n <= block_t else block_n


def tiled_fwd_config(
    dim: int, dstate: int, seqlen: int, batch: int, elem: int, training: bool = True
) -> dict[str, int]:
    """Launch parameters of the tiled forward: BLOCK_D, BLOCK_T (the backward's chunk when training), warps.

    With gradients the tile is also the backward's chunk, so the pair with the smallest fwd + bwd
    time was kept: BLOCK_T 32 when there are many (batch, channel) rows, 64 for few long rows.
    Without gradients one config won at both sweep shapes (4 channels x 128 steps, one warp).
    """
    block_n = next_power_of_2(dstate)
    many_rows = batch * dim >= 8192
    if training:
        block_t, block_d, warps = (32, 64, 4) if many_rows else (64, 4, 1)
    else:
        block_t, block_d, warps = 128, 4, 1
    block_t = min(block_t, max(16, next_power_of_2(seqlen)))
    block_d = max(2, block_d * 16 // max(16, block_n))  # fewer channels for larger states
    return {"BLOCK_D": block_d, "BLOCK_T": block_t, "num_warps": warps, "num_stages": 1}


def tiled_bwd_config(dim: int, dstate: int, seqlen: int, batch: int, elem: int) -> dict[str, int]:
    """Launch parameters of the tiled backward (its BLOCK_T is the forward's); one warp won the sweeps."""
    block_n = next_power_of_2(dstate)
    block_d = 8 if batch * dim >= 8192 else 2
    block_d = max(2, block_d * 16 // max(16, block_n))
    return {"BLOCK_D": block_d, "num_warps": 1, "num_stages": 1}


# ------------------------------------------------------------------------------------------------
# sequential family


def _sequential_defaults(elem: int, rows: int = SPLIT_ROWS) -> dict[str, int]:
    return {
        "fwd_warps": 1,
        "lanes": 4,
        "prefetch": -1,
        "FWD_TT": 16 // elem if elem < 4 else 4,
        "CHUNK": 128,
        "bwd_warps": 1,
        "bwd_lanes": 4 if rows >= SPLIT_ROWS else 8,
        "BWD_TT": 4,
        "bwd_maxnreg": -1,
        "split_rows": SPLIT_ROWS,
        "split_target": 32768,
        "split_lanes": 4,
        "lane_reduce": 1,
    }


def sequential_config(dim: int, dstate: int, seqlen: int, batch: int, elem: int) -> dict[str, int]:
    """The heuristic launch parameters of the sequential kernels: warps, lanes per channel, time tiles, chunk.

    FWD_TT is one 16-byte vector of time steps per thread (8 bf16/fp16, 4 fp32).  The backward keeps
    TT + 1 states per register slot, so it uses 4, and one warp per program (8 channels x 4 lanes: no
    cross-warp sums) capped at 128 registers (16 resident warps per SM).  CHUNK (steps between saved
    states) sets the memory kept for the backward, dstate * 4 / CHUNK bytes per (batch, channel, step).
    Below ``split_rows`` (batch, channel) rows both kernels cut time into segments, enough for
    ``split_target`` row-segments (``split_lanes`` lanes then).  ``lane_reduce`` sums dB/dC with a
    shuffle reduce-scatter (GPU, 4 lanes x 8 channels).  ``prefetch`` (the forward issues the next
    tile's loads before this tile's recurrence) and ``bwd_maxnreg`` (the backward's register cap; 0:
    none) are -1, "auto": chosen per grid by the wave model (:func:`pick_by_waves`).  Further keys a
    :class:`ScanLaunch` may set: ``fwd_split_rows`` (replaces ``split_rows`` for the forward) and
    ``stages`` (the forward's ``num_stages``).
    """
    return _sequential_defaults(elem, batch * dim)


def sequential_launch(
    phase: str,
    u: Tensor,
    dstate: int,
    has_z: bool,
    save_states: bool,
    trial: Callable[[dict[str, int]], object],
    launch: ScanLaunch,
) -> dict[str, int]:
    """The sequential launch parameters of one call: the heuristic with ``launch.sequential`` over it,
    tuned by ``launch.tuner`` (not while a CUDA graph is captured) over the keys of ``scan_autotune``'s
    space that ``launch.sequential`` leaves free; ``trial(config)`` runs one candidate."""
    batch, dim, seqlen = u.shape
    cfg = {**sequential_config(dim, dstate, seqlen, batch, u.element_size()), **launch.sequential}
    if launch.tuner is None or (u.is_cuda and torch.cuda.is_current_stream_capturing()):
        return cfg
    space = scan_autotune.FWD_SPACE if phase == "fwd" else scan_autotune.BWD_SPACE
    space = {k: v for k, v in space.items() if k not in launch.sequential}
    if not space:
        return cfg
    key = scan_autotune.tuning_key(phase, u, dstate, has_z, save_states)
    return launch.tuner.pick(key, cfg, space, trial)


def time_segments(rows: int, n_chunks: int, cfg: dict[str, int], key: str = "split_rows") -> tuple[int, int]:
    """(n_seg, chunks per segment): below ``cfg[key]`` (batch, channel) rows (0: never; the forward
    reads ``fwd_split_rows``, falling back to ``split_rows``) cut the time axis so that rows * n_seg
    reaches ``split_target``."""
    split_rows = cfg.get(key, cfg.get("split_rows", 0))
    if split_rows <= 0 or rows >= split_rows or n_chunks < 2:
        return 1, n_chunks
    target = max(split_rows, cfg.get("split_target", split_rows))
    seg_chunks = cdiv(n_chunks, min(n_chunks, cdiv(target, rows)))
    return cdiv(n_chunks, seg_chunks), seg_chunks


_SM_COUNT: dict[str, int] = {}


def sm_count(device: torch.device) -> int:
    """Streaming multiprocessors of a CUDA device (132 elsewhere: the H100's, for the interpreter)."""
    if device.type != "cuda":
        return 132
    key = str(device)
    if key not in _SM_COUNT:
        _SM_COUNT[key] = torch.cuda.get_device_properties(device).multi_processor_count
    return _SM_COUNT[key]


def busy_fraction(programs: int, per_sm: int, sms: int) -> float:
    """The fraction of resident-program slots busy over the waves that ``programs`` one-warp programs need."""
    slots = per_sm * sms
    return programs / (cdiv(programs, slots) * slots)


def pick_by_waves(programs: int, sms: int, resident: dict[int, int], preferred: int, gain: float) -> int:
    """``preferred`` (a key of ``resident``: option -> resident programs per SM) unless the other option's
    busy fraction beats its own by more than ``gain``; see the wave model above."""
    other = next(k for k in resident if k != preferred)
    own = busy_fraction(programs, resident[preferred], sms) * gain
    return preferred if own >= busy_fraction(programs, resident[other], sms) else other
