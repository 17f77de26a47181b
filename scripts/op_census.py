"""Count the PyTorch ops of one training step on CPU, as the GPU would run them (no GPU needed).

Every aten op of the forward + backward of a ``model=`` preset under bf16 autocast is logged with
a ``TorchDispatchMode``; the Triton kernels run under ``TRITON_INTERPRET=1`` with the ``triton``
backend, or (default, fast) are skipped, since only the ops *around* them are counted here; the
fused add+norm kernel is taken as on CUDA. Ops on activation-sized tensors (at least
``batch * seqlen * d_model / 2`` elements, with a seqlen or batch * seqlen axis; weights are left out)
are the ones that become the big elementwise/copy kernels of a CUDA profile; the table lists them with where they
came from (the innermost project source line in the forward, the autograd node in the backward),
their output dtype and whether they read a non-contiguous input.

    python scripts/op_census.py                       # mamba_130m, batch 2 x 64, per layer
    python scripts/op_census.py --models mamba_130m,model.mixer.fused=false --all
    python scripts/op_census.py --loss torch --all    # with F.cross_entropy on fp32 logits
"""

from __future__ import annotations

import argparse
import os
import traceback
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

os.environ.setdefault("TRITON_INTERPRET", "1")

import torch  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("PROJECT_ROOT", str(ROOT))

from mambabench.utils.presets import compose_model  # noqa: E402

# views and metadata ops: no kernel
FREE = {
    "view",
    "_unsafe_view",
    "t",
    "transpose",
    "permute",
    "expand",
    "slice",
    "select",
    "split",
    "split_with_sizes",
    "unsqueeze",
    "squeeze",
    "as_strided",
    "alias",
    "detach",
    "empty",
    "empty_like",
    "empty_strided",
    "unbind",
    "chunk",
    "narrow",
    "lift_fresh",
    "_to_copy_noop",
    "unflatten",
    "reshape_alias",
    "_reshape_alias",
    "view_as",
    "new_empty",
    "new_empty_strided",
    "is_same_size",
    "_has_compatible_shallow_copy_type",
    "set_",
    "resize_",
    "sym_size",
    "sym_stride",
    "sym_numel",
    "sym_storage_offset",
    "dim",
    "size",
    "stride",
}


def _where() -> str:
    """Innermost stack frame in the project's sources (not this script)."""
    for frame in reversed(traceback.extract_stack()):
        f = frame.filename
        if ("mambabench" in f or "/kernels/" in f) and "op_census" not in f:
            return f"{Path(f).name}:{frame.lineno} {frame.line.strip()[:60] if frame.line else ''}"
    return "?"


class Census(TorchDispatchMode):
    """Logs (phase, where, op, out dtype, non-contiguous input) of ops on tensors of >= ``big`` elements."""

    def __init__(self, big: int, seq_dims: tuple[int, ...]) -> None:
        super().__init__()
        self.big = big
        self.seq_dims = seq_dims
        self.phase = "fwd"
        self.paused = False
        self.rows: Counter[tuple[str, str, str, str, str, str]] = Counter()

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        out = func(*args, **(kwargs or {}))
        name = func.overloadpacket.__name__
        if self.paused or name in FREE:
            return out
        ins = [a for a in list(args) + list((kwargs or {}).values()) if isinstance(a, torch.Tensor)]
        outs = out if isinstance(out, (tuple, list)) else [out]
        outs = [o for o in outs if isinstance(o, torch.Tensor)]
        acts = [t for t in ins + outs if t.numel() >= self.big and any(s in self.seq_dims for s in t.shape)]
        if not acts:  # weights and their casts, (batch, seqlen)-sized scalars per token
            return out
        strided = (
            "strided" if any(t.numel() >= self.big and not t.is_contiguous() for t in ins + outs) else ""
        )
        dtypes = "->".join(
            [
                "/".join(sorted({str(t.dtype)[6:] for t in ins})) or "-",
                "/".join(str(t.dtype)[6:] for t in outs) or "-",
            ]
        )
        if self.phase == "fwd":
            where = _where()
        else:
            node = torch._C._current_autograd_node()
            src = _where()
            where = node.name() if node is not None else "?"
            where = where if src == "?" else f"{where} {src}"
        shape = "x".join(str(s) for s in max(ins + outs, key=lambda t: t.numel()).shape)
        self.rows[(self.phase, where, name, dtypes, strided, shape)] += 1
        return out


@contextmanager
def kernels_paused(census: Census, run: bool) -> Iterator[None]:
    """Triton launches: not counted (the interpreter's own copies are not GPU ops); skipped unless ``run``."""
    from triton.runtime import interpreter

    original = interpreter.GridExecutor.__call__

    def call(self: Any, *a: Any, **k: Any) -> Any:
        census.paused = True
        try:
            return original(self, *a, **k) if run else None
        finally:
            census.paused = False

    interpreter.GridExecutor.__call__ = call
    try:
        yield
    finally:
        interpreter.GridExecutor.__call__ = original


def census_step(
    spec: str, batch: int, seqlen: int, run_kernels: bool, loss: str = "kernel"
) -> tuple[Census, int]:
    """One training step: forward, cross-entropy (``loss``: "kernel", the Triton one that the LM task
    runs on GPU, or "torch", ``F.cross_entropy`` on fp32 logits as in bench_train_step.py's official
    comparison), backward."""
    from mambabench.models import norms

    norms._FUSED_ON_CPU = True  # fused_add_norm presets take the Triton add+norm kernel, as on CUDA
    model = compose_model(spec + ",model.mixer.scan_backend=triton", 50277, ROOT / "configs")
    n_layer = model.n_layer
    torch.manual_seed(0)
    tokens = torch.randint(0, 50277, (batch, seqlen + 1))
    census = Census(big=batch * seqlen * model.d_model // 2, seq_dims=(seqlen, batch * seqlen))
    with kernels_paused(census, run_kernels), census:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model(tokens[:, :-1])
        if loss == "kernel":
            from mambabench.kernels import cross_entropy_fn

            value = cross_entropy_fn(logits.flatten(0, 1), tokens[:, 1:].flatten(), backend="triton")
        else:
            value = torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), tokens[:, 1:].flatten())
        census.phase = "bwd"
        value.backward()
    return census, n_layer


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["mamba_130m"])
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--seqlen", type=int, default=64)
    p.add_argument("--run-kernels", action="store_true", help="interpret the Triton kernels (slow)")
    p.add_argument("--all", action="store_true", help="also list ops that run once per step, not per layer")
    p.add_argument(
        "--loss",
        choices=["kernel", "torch"],
        default="kernel",
        help="cross-entropy: the Triton kernel (the LM task on GPU) or F.cross_entropy on fp32 logits",
    )
    args = p.parse_args()
    torch.set_num_threads(1)
    for spec in args.models:
        census, n_layer = census_step(spec, args.batch, args.seqlen, args.run_kernels, args.loss)
        total = sum(census.rows.values())
        per_layer = sum(c for c in census.rows.values() if c >= n_layer) / n_layer
        print(
            f"\n{spec}: {total} activation-sized ops per step, {per_layer:.1f} per layer "
            f"(batch {args.batch}, seqlen {args.seqlen}, {n_layer} layers)"
        )
        print(f"{'phase':<5} {'count':>5}  {'op':<22} {'dtypes':<28} {'layout':<8} {'shape':<14} where")
        for (phase, where, name, dtypes, strided, shape), c in sorted(
            census.rows.items(), key=lambda kv: (kv[0][0] != "fwd", -kv[1])
        ):
            if c < n_layer and not args.all:
                continue
            print(f"{phase:<5} {c:>5}  {name:<22} {dtypes:<28} {strided:<8} {shape:<14} {where}")


if __name__ == "__main__":
    main()
