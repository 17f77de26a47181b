"""Shared pieces of the scan benchmarks: inputs in the Mamba block's layout, timing, the callables timed.

``scripts/bench_scan.py``, ``scripts/sweep_scan_launch.py``, ``scripts/host_overhead.py``,
``scripts/ncu_scan.py`` and ``scripts/bench_before_after.py`` build their measurements from these, so
they time the same thing the same way (docs/benchmarks.md, "Method").

Every scan runs in the Mamba module's configuration: variable B/C with one group, z, D, delta_bias and
softplus on; u and z are the two halves of one (batch, 2 * dim, seqlen) tensor, as the block's
``in_proj`` output.  The official CUDA kernel is used when ``import selective_scan_cuda`` works
(mamba-ssm built from source: ``scripts/install_official.sh``).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from mambabench.kernels import selective_scan as ss

try:  # the official CUDA extension (mamba-ssm), optional
    import selective_scan_cuda  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - depends on the machine
    selective_scan_cuda = None

__all__ = [
    "SCAN_ARGS",
    "bench",
    "bwd_bytes",
    "copy_bandwidth",
    "fwd_bytes",
    "make_scan_inputs",
    "official_bwd",
    "official_fwd",
    "official_fwdbwd",
    "ours_bwd",
    "ours_fwd",
    "ours_fwdbwd",
    "safe",
    "selective_scan_cuda",
]

SCAN_ARGS = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")


def make_scan_inputs(
    batch: int,
    dim: int,
    seqlen: int,
    dstate: int = 16,
    dtype: torch.dtype = torch.bfloat16,
    grad: bool = False,
    device: str = "cuda",
) -> dict[str, torch.Tensor]:
    """Inputs in the Mamba module's configuration (variable B/C with 1 group, z, D, delta_bias), keyed
    by :data:`SCAN_ARGS`; u, delta, z (batch, dim, seqlen), A (dim, dstate), B/C (batch, 1, dstate, seqlen)."""
    rq = {"requires_grad": grad}
    xz = torch.randn(batch, 2 * dim, seqlen, device=device, dtype=dtype)
    u = xz[:, :dim].detach().requires_grad_(grad) if grad else xz[:, :dim]
    z = xz[:, dim:].detach().requires_grad_(grad) if grad else xz[:, dim:]
    return {
        "u": u,
        "delta": (0.5 * torch.rand(batch, dim, seqlen, device=device) - 4.0).to(dtype).requires_grad_(grad),
        "A": (-torch.arange(1, dstate + 1, device=device, dtype=torch.float32).repeat(dim, 1)).requires_grad_(
            grad
        ),
        "B": torch.randn(batch, 1, dstate, seqlen, device=device, dtype=dtype, **rq),
        "C": torch.randn(batch, 1, dstate, seqlen, device=device, dtype=dtype, **rq),
        "D": torch.ones(dim, device=device, **rq),
        "z": z,
        "delta_bias": torch.full((dim,), -2.0, device=device, **rq),
    }


def bench(fn: Callable[[], object], rep_ms: float = 200.0) -> float:
    """Median milliseconds of ``fn``: ``triton.testing.do_bench`` (CUDA events, L2 flushed between
    calls) after one warm-up call; three calls for functions slower than 30 ms.  Without a GPU, the
    median host time of three calls after the warm-up (for smoke runs only)."""
    fn()
    if not torch.cuda.is_available():
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
        return sorted(times)[1]
    import triton

    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    fn()
    end.record()
    torch.cuda.synchronize()
    once = start.elapsed_time(end)
    if once > 30.0:
        times = [once]
        for _ in range(2):
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end))
        return sorted(times)[1]
    return float(triton.testing.do_bench(fn, warmup=25, rep=rep_ms, return_mode="median"))


def copy_bandwidth() -> float:
    """Device copy bandwidth in GB/s (bytes read + written) for a 4 GiB fp32 copy."""
    n = 1 << 30

    def timed_copy() -> float:
        a = torch.empty(n, device="cuda", dtype=torch.float32).uniform_()
        b = torch.empty_like(a)
        return bench(lambda: b.copy_(a), rep_ms=300)

    ms = timed_copy()
    torch.cuda.empty_cache()
    return 2 * n * 4 / ms / 1e6


def safe(fn: Callable[[], float]) -> float | str:
    """``fn()``, or "OOM" / "ERR <type>: <message>" so that a benchmark run goes on past a failure."""
    try:
        return fn()
    except torch.cuda.OutOfMemoryError:
        torch.cuda.empty_cache()
        return "OOM"
    except Exception as e:  # noqa: BLE001 - keep the benchmark going, report the failure
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        return f"ERR {type(e).__name__}: {str(e)[:80]}"


def fwd_bytes(batch: int, dim: int, seqlen: int, dstate: int, elem: int) -> float:
    """Minimum HBM bytes of the forward: read u, delta, z, B, C and write out."""
    return batch * seqlen * (4 * elem * dim + 2 * dstate * elem)


def bwd_bytes(batch: int, dim: int, seqlen: int, dstate: int, elem: int) -> float:
    """Minimum HBM bytes of the backward: read u, delta, z, dout, B, C; write du, ddelta, dz, dB, dC."""
    return batch * seqlen * (7 * elem * dim + 4 * dstate * elem)


# ------------------------------------------------------------------------------------------------
# the callables timed: ours (the dispatch a model gets) and the official extension's


def ours_fwd(x: dict, save_states: bool = True) -> Callable[[], object]:
    """Our forward host function (states saved for a backward unless ``save_states=False``)."""

    def f() -> object:
        return ss._forward(*(x[k] for k in SCAN_ARGS), True, save_states, False)

    return f


def ours_bwd(x: dict, deterministic: bool = False) -> Callable[[], object]:
    """Our backward host function, from the states of one training forward run here once."""
    _, states, _, spacing = ours_fwd(x)()
    dout = torch.randn_like(x["u"])

    def f() -> object:
        return ss._backward(*(x[k] for k in SCAN_ARGS), True, states, spacing, dout, deterministic)

    return f


def ours_fwdbwd(x: dict) -> Callable[[], object]:
    """What a model runs: ``selective_scan_triton`` forward and ``torch.autograd.grad`` of every input."""
    leaves = {k: x[k].detach().requires_grad_() for k in SCAN_ARGS}
    dout = torch.randn_like(x["u"])

    def f() -> object:
        out = ss.selective_scan_triton(*leaves.values(), delta_softplus=True)
        return torch.autograd.grad(out, list(leaves.values()), dout)

    return f


def _official() -> object:
    if selective_scan_cuda is None:
        raise RuntimeError(
            "the official selective_scan_cuda extension is not importable; build it with "
            "scripts/install_official.sh"
        )
    return selective_scan_cuda


def official_fwd(x: dict) -> Callable[[], object]:
    """The official kernel's forward (``selective_scan_cuda.fwd``)."""
    ext = _official()

    def f() -> object:
        return ext.fwd(*(x[k] for k in SCAN_ARGS), True)

    return f


def official_bwd(x: dict) -> Callable[[], object]:
    """The official kernel's backward, from one forward run here once."""
    ext = _official()
    res = official_fwd(x)()
    dout = torch.randn_like(x["u"])

    def f() -> object:
        return ext.bwd(*(x[k] for k in SCAN_ARGS), dout, res[1], res[0], None, True, False)

    return f


def official_fwdbwd(x: dict) -> Callable[[], object]:
    """The official kernel's forward and backward, back to back."""
    ext = _official()
    dout = torch.randn_like(x["u"])

    def f() -> object:
        res = ext.fwd(*(x[k] for k in SCAN_ARGS), True)
        return ext.bwd(*(x[k] for k in SCAN_ARGS), dout, res[1], res[0], None, True, False)

    return f
