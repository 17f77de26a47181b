"""Test trained induction-heads checkpoints at many sequence lengths, recording where memory runs out:

    python scripts/eval_lengths.py RUN_OR_CKPT... --lengths 64,128,...,1048576 [--device cuda]

For each run (a run folder with checkpoints/last.ckpt, or a checkpoint) it generates fresh test sequences
at each length (shortest first), scores the answer position, and writes ``<run>/eval_lengths/summary.json``
after every length: ``test/L<n>/accuracy`` metrics, ``out_of_memory_lengths`` (a length that ran out
of memory, and every longer one, is not tried again) and ``beyond_positions_lengths`` (lengths past a
model's learned absolute positions, ``model.max_seq_len``, which it cannot read at all). ``scripts/report.py`` folds these into the run's
row of the induction-heads table and figure. ``--time-budget`` stops a model that gets too slow; its
remaining lengths stay missing.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch

from mambabench.data.synthetic import induction_heads_example
from mambabench.tasks.lm import IGNORE_INDEX
from mambabench.utils.sampling import load_network


def checkpoint_of(path: Path) -> Path:
    if path.is_file():
        return path
    ckpt = path / "checkpoints" / "last.ckpt"
    if not ckpt.exists():
        raise FileNotFoundError(
            f"no checkpoint at '{ckpt}'; pass a run folder with checkpoints/last.ckpt or a .ckpt"
        )
    return ckpt


@torch.no_grad()
def accuracy_at(
    network: torch.nn.Module,
    length: int,
    vocab_size: int,
    samples: int,
    batch: int,
    device: str,
    seed: int,
    precision: str = "auto",
) -> float:
    """Accuracy at the answer position of ``samples`` fresh sequences of ``length`` tokens.

    precision: "bf16" (autocast), "fp32" or "auto" (bf16 on CUDA, as in training; fp32 elsewhere).
    """
    generator = torch.Generator().manual_seed(seed + length)
    correct = total = 0
    bf16 = precision == "bf16" or (precision == "auto" and device.startswith("cuda"))
    autocast = torch.autocast(torch.device(device).type, dtype=torch.bfloat16) if bf16 else nullcontext()
    for start in range(0, samples, batch):
        examples = [
            induction_heads_example(length, vocab_size, generator) for _ in range(min(batch, samples - start))
        ]
        inputs = torch.stack([e["input_ids"] for e in examples]).to(device)
        targets = torch.stack([e["targets"] for e in examples]).to(device)
        with autocast:
            logits = network(inputs)
        mask = targets != IGNORE_INDEX
        correct += int((logits.argmax(-1)[mask] == targets[mask]).sum())
        total += int(mask.sum())
    return correct / max(total, 1)


def evaluate_run(path: Path, lengths: list[int], args: argparse.Namespace) -> dict:
    ckpt = checkpoint_of(path)
    run_dir = ckpt.resolve().parent.parent
    network, run_cfg, _ = load_network(ckpt, args.device)
    vocab_size = int(run_cfg.data.vocab_size)
    out = run_dir / "eval_lengths" / "summary.json"
    out.parent.mkdir(exist_ok=True)
    summary = {
        "ckpt_path": str(ckpt),
        "choices": {},
        "metrics": {},
        "out_of_memory_lengths": [],
        "beyond_positions_lengths": [],
        "wall_time_s": 0.0,
    }
    positions = [m for name, m in network.named_modules() if name.endswith("position_embedding")]
    max_positions = positions[0].num_embeddings if positions else None  # learned absolute positions
    started = time.time()
    model = run_cfg.get("model", {}).get("_target_", "?")
    mixer = str(run_cfg.get("model", {}).get("mixer", {}).get("_target_", ""))
    growth = 4 if "attention" in mixer else 2  # work per doubling of the length: quadratic or linear
    last_seconds = 0.0
    for length in sorted(lengths):
        # the next length doubles the work of a linear model and quadruples attention's: stop early rather
        # than overrun the budget (the first length, which pays for kernel compilation, predicts nothing)
        if time.time() - started + growth * last_seconds > args.time_budget:
            print(f"{run_dir.name}: time budget would be spent by length {length}; the rest stay missing")
            break
        length_started = time.time()
        samples = max(args.min_samples, min(args.samples, args.tokens_per_length // length))
        batch = max(1, min(args.batch, samples, args.batch_tokens // length))
        if max_positions is not None and length > max_positions:
            summary["beyond_positions_lengths"] = [n for n in sorted(lengths) if n >= length]
            print(f"{run_dir.name}: length {length} and longer exceed its {max_positions} learned positions")
            break
        try:
            acc = accuracy_at(
                network, length, vocab_size, samples, batch, args.device, args.seed, args.precision
            )
        except torch.OutOfMemoryError:
            summary["out_of_memory_lengths"] = [n for n in sorted(lengths) if n >= length]
            torch.cuda.empty_cache()
            print(f"{run_dir.name}: out of memory at length {length} ({model})")
            break
        last_seconds = time.time() - length_started if length != min(lengths) else 0.0
        summary["metrics"][f"test/L{length}/accuracy"] = acc
        summary["choices"]["precision"] = args.precision
        summary["wall_time_s"] = round(time.time() - started, 2)
        out.write_text(json.dumps(summary, indent=2))
        print(f"{run_dir.name}: length {length}: accuracy {acc:.3f} ({samples} samples)", flush=True)
    out.write_text(json.dumps(summary, indent=2))
    del network
    if args.device.startswith("cuda"):
        torch.cuda.empty_cache()
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "runs", nargs="+", type=Path, help="run folders (with checkpoints/last.ckpt) or checkpoints"
    )
    parser.add_argument(
        "--lengths",
        default=",".join(str(2**k) for k in range(6, 21)),
        help="comma-separated test lengths (default 2^6..2^20)",
    )
    parser.add_argument("--samples", type=int, default=256, help="test sequences per length, at most")
    parser.add_argument(
        "--tokens-per-length",
        type=int,
        default=2**22,
        help="cap on samples x length per length (long lengths get fewer samples)",
    )
    parser.add_argument("--min-samples", type=int, default=4, help="test sequences per length, at least")
    parser.add_argument("--batch", type=int, default=64, help="sequences per forward pass, at most")
    parser.add_argument(
        "--batch-tokens",
        type=int,
        default=2**18,
        help="tokens per forward pass, at most (long lengths go one sequence at a time)",
    )
    parser.add_argument("--time-budget", type=float, default=600.0, help="seconds per model before giving up")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--precision",
        choices=("auto", "bf16", "fp32"),
        default="auto",
        help="bf16 autocast or fp32 (auto: bf16 on CUDA); fp32 keeps a recurrent state exact over long lengths",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    lengths = [int(n) for n in args.lengths.split(",") if n]
    try:
        for path in args.runs:
            evaluate_run(path, lengths, args)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
