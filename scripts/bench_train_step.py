"""Whole-model training-step throughput: tokens/s and peak memory of any `model=` preset.

    python scripts/bench_train_step.py --models mamba_130m transformerpp,+model/size=transformerpp_125m

Random tokens (vocab 50277), bf16 autocast with fp32 parameters, fused AdamW, the same setting as the
official Mamba-130M figure in docs/benchmarks.md. Prints a table and writes CSV to --out.

    python scripts/bench_train_step.py --profile        # also: top-25 CUDA kernels of one step
    python scripts/bench_train_step.py --models mamba_130m official_mamba_130m   # the official model beside ours
    python scripts/bench_train_step.py --loss kernel    # the Triton cross-entropy instead of PyTorch's

With ``--profile`` one more step per model runs under torch.profiler after the timed ones; the table
of kernels by self CUDA time is printed and written to ``--out/profile_<model>.txt``.

``official_mamba_130m`` is mamba-ssm's ``MambaLMHeadModel`` in the released 130M configuration (24 x 768,
RMSNorm, fused add-norm, fp32 residual, vocab padded to a multiple of 8), timed the same way; it needs the
``mamba_ssm`` package with its CUDA extensions (and ``causal_conv1d`` for its fast path) installed.
Columns: ms/step, tokens/s, peak GB (``max_memory_allocated`` over the timed steps) and act GB (memory
held after the forward and loss, before the backward, less what the model and optimizer hold).
"""

from __future__ import annotations

import argparse
import csv
import os
import time
from collections.abc import Callable
from pathlib import Path

import torch

from mambabench.utils.presets import compose_model

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("PROJECT_ROOT", str(ROOT))


def tag(spec: str) -> str:
    """A file-name-safe form of a model spec."""
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in spec)


OFFICIAL_130M = "official_mamba_130m"


def build_official_130m(vocab_size: int) -> torch.nn.Module:
    """mamba-ssm's MambaLMHeadModel in the released Mamba-130M configuration; logits come back as
    ``.logits`` (padded vocab), so it is wrapped to return the first ``vocab_size`` columns like ours."""
    try:
        from mamba_ssm.models.config_mamba import MambaConfig
        from mamba_ssm.models.mixer_seq_simple import MambaLMHeadModel
    except ImportError as e:
        raise SystemExit(
            f"{OFFICIAL_130M} needs the mamba_ssm package with its CUDA extension ({e}); "
            "build it with scripts/install_official.sh"
        ) from e

    class Official(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lm = MambaLMHeadModel(
                MambaConfig(
                    d_model=768,
                    n_layer=24,
                    vocab_size=vocab_size,
                    ssm_cfg={},
                    rms_norm=True,
                    residual_in_fp32=True,
                    fused_add_norm=True,
                    pad_vocab_size_multiple=8,
                    tie_embeddings=True,
                )
            )

        def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
            return self.lm(input_ids).logits[..., :vocab_size]

    return Official()


def build_model(spec: str, vocab_size: int) -> torch.nn.Module:
    """Instantiate a model preset for ``vocab_size`` tokens (see :func:`mambabench.utils.presets.compose_model`),
    or ``official_mamba_130m`` (see the module docstring)."""
    if spec == OFFICIAL_130M:
        return build_official_130m(vocab_size)
    return compose_model(spec, vocab_size, ROOT / "configs")


def loss_fn(kind: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Mean next-token cross-entropy of (tokens, vocab) logits: PyTorch's on fp32 logits ("torch", as in
    the official figure) or the Triton kernel of :func:`mambabench.kernels.cross_entropy_fn` ("kernel")."""
    if kind == "torch":
        return lambda logits, targets: torch.nn.functional.cross_entropy(logits.float(), targets)
    from mambabench.kernels import cross_entropy_fn

    return lambda logits, targets: cross_entropy_fn(logits, targets, backend="triton")


def time_steps(
    model: torch.nn.Module,
    batch: int,
    seqlen: int,
    vocab: int,
    steps: int,
    warmup: int,
    profile_to: Path | None = None,
    loss: str = "torch",
) -> dict:
    device = torch.device("cuda")
    model = model.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    tokens = torch.randint(0, vocab, (batch, seqlen + 1), device=device)
    inputs, targets = tokens[:, :-1], tokens[:, 1:]
    criterion = loss_fn(loss)
    held = {}

    def step() -> None:
        before = torch.cuda.memory_allocated()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits = model(inputs)
        loss = criterion(logits.flatten(0, 1), targets.flatten())
        del logits
        held["act"] = torch.cuda.memory_allocated() - before
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(warmup):
        step()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    torch.cuda.synchronize()
    ms = (time.perf_counter() - start) / steps * 1e3
    peak = torch.cuda.max_memory_allocated()
    if profile_to is not None:
        profile_step(step, profile_to)
    return {
        "ms_per_step": round(ms, 2),
        "tokens_per_s": round(batch * seqlen / ms * 1e3),
        "peak_gb": round(peak / 1e9, 2),
        "act_gb": round(held["act"] / 1e9, 2),
        "params_m": round(sum(p.numel() for p in {id(p): p for p in model.parameters()}.values()) / 1e6, 2),
    }


def profile_step(step: Callable[[], None], path: Path, rows: int = 25) -> str:
    """Run ``step`` once under torch.profiler; print and write the kernels by self CUDA time."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        step()
        torch.cuda.synchronize()
    from torch.autograd import DeviceType
    from torch.autograd.profiler_util import EventList

    events = prof.key_averages()
    kernels = EventList(
        [e for e in events if e.device_type == DeviceType.CUDA],
        use_device=events._use_device,
        profile_memory=events._profile_memory,
    )  # kernels and memcpys only
    total_us = sum(e.self_device_time_total for e in kernels)
    table = (kernels or events).table(
        sort_by="self_device_time_total", row_limit=rows, max_name_column_width=70
    )
    text = f"one step: {total_us / 1e3:.1f} ms of CUDA kernel time\n{table}"
    print(text, flush=True)
    path.write_text(text)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="+", default=["mamba_130m"])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seqlen", type=int, default=2048)
    parser.add_argument("--vocab", type=int, default=50277)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("outputs/bench"))
    parser.add_argument(
        "--loss",
        nargs="+",
        choices=["torch", "kernel"],
        default=["torch"],
        help="cross-entropy: PyTorch's on fp32 logits (as the official figure) and/or the Triton "
        "kernel; each model runs once per choice",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="after timing, profile one step and print the top-25 CUDA kernels",
    )
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("bench_train_step.py needs a CUDA GPU")
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in args.models:
        for loss in args.loss:
            torch.manual_seed(0)
            profile_to = args.out / f"profile_{tag(name)}_{loss}.txt" if args.profile else None
            row = {
                "model": name,
                "loss": loss,
                "batch": args.batch,
                "seqlen": args.seqlen,
                **time_steps(
                    build_model(name, args.vocab),
                    args.batch,
                    args.seqlen,
                    args.vocab,
                    args.steps,
                    args.warmup,
                    profile_to=profile_to,
                    loss=loss,
                ),
            }
            rows.append(row)
            print(row, flush=True)
            torch.cuda.empty_cache()
            with open(args.out / "train_step.csv", "w", newline="") as f:  # rewritten after every row
                writer = csv.DictWriter(f, fieldnames=list(rows[0]))
                writer.writeheader()
                writer.writerows(rows)
    print(
        f"{'model':<40}{'loss':>7}{'ms/step':>10}{'tokens/s':>12}{'peak GB':>10}{'act GB':>9}{'params M':>10}"
    )
    for r in rows:
        print(
            f"{r['model']:<40}{r['loss']:>7}{r['ms_per_step']:>10}{r['tokens_per_s']:>12}{r['peak_gb']:>10}"
            f"{r['act_gb']:>9}{r['params_m']:>10}"
        )


if __name__ == "__main__":
    main()
