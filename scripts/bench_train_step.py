"""Whole-model training-step throughput: tokens/s and peak memory of any `model=` preset.

    python scripts/bench_train_step.py --models mamba_130m transformerpp,+model/size=transformerpp_125m

Random tokens (vocab 50277), bf16 autocast with fp32 parameters, fused AdamW, the same setting as the
official Mamba-130M figure in docs/benchmarks.md. Prints a table and writes CSV to --out.

    python scripts/bench_train_step.py --profile        # also: top-25 CUDA kernels of one step

With ``--profile`` one more step per model runs under torch.profiler after the timed ones; the table
of kernels by self CUDA time is printed and written to ``--out/profile_<model>.txt``.
"""

from __future__ import annotations

import argparse
import csv
import os
import time
from collections.abc import Callable
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import open_dict

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("PROJECT_ROOT", str(ROOT))


def tag(spec: str) -> str:
    """A file-name-safe form of a model spec."""
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in spec)


def build_model(spec: str, vocab_size: int) -> torch.nn.Module:
    """Instantiate a model preset for ``vocab_size`` tokens. ``spec`` is a model choice, optionally
    followed by comma-separated Hydra overrides: ``transformerpp,+model/size=transformerpp_125m``."""
    name, *overrides = spec.split(",")
    with initialize_config_dir(version_base="1.3", config_dir=str(ROOT / "configs")):
        cfg = compose(config_name="train.yaml", overrides=[f"model={name}", *overrides])
    with open_dict(cfg):
        cfg.model.vocab_size = vocab_size
    return instantiate(cfg.model, _convert_="all")


def time_steps(model: torch.nn.Module, batch: int, seqlen: int, vocab: int, steps: int, warmup: int,
               profile_to: Path | None = None) -> dict:
    device = torch.device("cuda")
    model = model.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    tokens = torch.randint(0, vocab, (batch, seqlen + 1), device=device)
    inputs, targets = tokens[:, :-1], tokens[:, 1:]

    def step() -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits = model(inputs)
        loss = torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), targets.flatten())
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
    return {"ms_per_step": round(ms, 2), "tokens_per_s": round(batch * seqlen / ms * 1e3),
            "peak_gb": round(peak / 1e9, 2),
            "params_m": round(sum(p.numel() for p in {id(p): p for p in model.parameters()}.values()) / 1e6, 2)}


def profile_step(step: Callable[[], None], path: Path, rows: int = 25) -> str:
    """Run ``step`` once under torch.profiler; print and write the kernels by self CUDA time."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        step()
        torch.cuda.synchronize()
    from torch.autograd import DeviceType
    from torch.autograd.profiler_util import EventList

    events = prof.key_averages()
    kernels = EventList([e for e in events if e.device_type == DeviceType.CUDA], use_device=events._use_device,
                        profile_memory=events._profile_memory)  # kernels and memcpys only
    total_us = sum(e.self_device_time_total for e in kernels)
    table = (kernels or events).table(sort_by="self_device_time_total", row_limit=rows, max_name_column_width=70)
    text = f"one step: {total_us / 1e3:.1f} ms of CUDA kernel time\n{table}"
    print(text, flush=True)
    path.write_text(text)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["mamba_130m"])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seqlen", type=int, default=2048)
    parser.add_argument("--vocab", type=int, default=50277)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("outputs/bench"))
    parser.add_argument("--profile", action="store_true",
                        help="after timing, profile one step and print the top-25 CUDA kernels")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("bench_train_step.py needs a CUDA GPU")
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in args.models:
        torch.manual_seed(0)
        row = {"model": name, "batch": args.batch, "seqlen": args.seqlen,
               **time_steps(build_model(name, args.vocab), args.batch, args.seqlen, args.vocab, args.steps,
                            args.warmup, profile_to=args.out / f"profile_{tag(name)}.txt" if args.profile else None)}
        rows.append(row)
        print(row, flush=True)
        torch.cuda.empty_cache()
    with open(args.out / "train_step.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"{'model':<22}{'ms/step':>10}{'tokens/s':>12}{'peak GB':>10}{'params M':>10}")
    for r in rows:
        print(f"{r['model']:<22}{r['ms_per_step']:>10}{r['tokens_per_s']:>12}{r['peak_gb']:>10}{r['params_m']:>10}")


if __name__ == "__main__":
    main()
