"""1 device vs N devices: the same training (loss curve, final weights) and the throughput (scaling efficiency)
for Lightning's DDP and FSDP, at a fixed global batch.

    python scripts/multi_gpu_check.py --out outputs/multi_gpu --devices 2                  # GPUs: ddp and fsdp
    python scripts/multi_gpu_check.py --out outputs/multi_gpu_cpu --accelerator cpu --tiny # 2 CPU processes, ddp

Each configuration is one ``python src/train.py`` run (the command a user types) into ``--out/<name>``.
After each run the script appends to ``--out/results.csv`` and rewrites ``--out/results.md``: tokens/s
(from summary.json), scaling efficiency ``tokens/s(N) / (N x tokens/s(1))``, the last validation loss and
the largest difference of any final weight and of the validation curve against the 1-device run.
FSDP runs only on GPUs (Lightning 2.6 refuses it on CPU). Extra arguments are config overrides for
every run. Throughput includes Lightning's per-step overhead and the validations (kept few).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]

GPU_DEFAULTS = [
    "model=mamba_130m",
    "data.seq_len=1024",
    "data.num_tokens_memorize=16",
    "data.batch_size=8",
    "global_batch_size=16",
    "trainer.max_steps=60",
    "trainer.val_check_interval=30",
    "data.num_val_samples=64",
    "callbacks.periodic_checkpoint.every_n_train_steps=1000",
]
TINY = [
    "data.seq_len=32",
    "data.num_tokens_memorize=4",
    "data.batch_size=4",
    "global_batch_size=8",
    "model.d_model=16",
    "trainer.max_steps=6",
    "trainer.val_check_interval=3",
    "data.num_val_samples=8",
    "cpu_threads=1",
]


def run_one(name: str, overrides: list[str], out: Path, timeout_s: int) -> tuple[Path, float, str]:
    run_dir = out / name
    command = [
        sys.executable,
        str(ROOT / "src" / "train.py"),
        *overrides,
        f"run_dir={run_dir}",
        "resume=never",
        "test=false",
        "print_config=false",
        "callbacks.progress_bar=null",
        "logger=csv",
    ]
    started = time.time()
    result = subprocess.run(
        command,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env={**os.environ, "PROJECT_ROOT": str(ROOT), "WANDB_MODE": "offline"},
    )
    (out / f"{name}.log").write_text(result.stdout + "\n" + result.stderr)
    error = "" if result.returncode == 0 else result.stderr.strip().splitlines()[-1][:200]
    return run_dir, time.time() - started, error


def val_curve(run_dir: Path) -> list[float]:
    path = run_dir / "csv" / "metrics.csv"
    if not path.exists():
        return []
    with open(path, newline="") as handle:
        return [float(row["val/loss"]) for row in csv.DictReader(handle) if row.get("val/loss")]


def final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    path = run_dir / "checkpoints" / "last.ckpt"
    return torch.load(path, map_location="cpu", weights_only=False)["state_dict"] if path.exists() else {}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--devices", type=int, default=2)
    parser.add_argument("--accelerator", choices=["gpu", "cpu"], default="gpu")
    parser.add_argument("--strategies", nargs="+", default=None, help="default: ddp fsdp on GPU, ddp on CPU")
    parser.add_argument("--tiny", action="store_true", help="a few steps of a tiny model (checks the script)")
    parser.add_argument("--timeout", type=int, default=900, help="seconds per run")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    strategies = args.strategies or (["ddp", "fsdp"] if args.accelerator == "gpu" else ["ddp"])
    base = [*(TINY if args.tiny else GPU_DEFAULTS), *args.overrides]
    one_trainer = "trainer=gpu" if args.accelerator == "gpu" else "trainer=cpu"
    multi = {"ddp": "trainer=ddp" if args.accelerator == "gpu" else "trainer=ddp_cpu", "fsdp": "trainer=fsdp"}
    plan = [("1dev", [one_trainer, *base, "trainer.devices=1"], 1)]
    for strategy in strategies:
        if strategy == "fsdp" and args.accelerator == "cpu":
            print("skipping fsdp: Lightning runs FSDP on GPUs only")
            continue
        plan.append(
            (
                f"{args.devices}dev_{strategy}",
                [multi[strategy], *base, f"trainer.devices={args.devices}"],
                args.devices,
            )
        )

    rows: list[dict[str, object]] = []
    reference: dict[str, object] = {}
    for name, overrides, devices in plan:
        run_dir, wall, error = run_one(name, overrides, args.out, args.timeout)
        summary_path = run_dir / "summary.json"
        summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
        tokens_per_s = summary.get("tokens_per_s") or 0.0
        curve, weights = val_curve(run_dir), final_weights(run_dir)
        if name == "1dev":
            reference = {"tokens_per_s": tokens_per_s, "curve": curve, "weights": weights}
        ref_w, ref_curve = reference.get("weights") or {}, reference.get("curve") or []
        weight_diff = max(
            (float((weights[k].float() - ref_w[k].float()).abs().max()) for k in ref_w if k in weights),
            default=float("nan"),
        )
        curve_diff = max((abs(a - b) for a, b in zip(curve, ref_curve)), default=float("nan"))
        efficiency = (
            tokens_per_s / (devices * reference["tokens_per_s"]) if reference.get("tokens_per_s") else None
        )
        rows.append(
            {
                "run": name,
                "devices": devices,
                "tokens_per_s": round(tokens_per_s, 1),
                "scaling_efficiency": round(efficiency, 3) if efficiency else "",
                "last_val_loss": round(curve[-1], 5) if curve else "",
                "max_val_loss_diff": f"{curve_diff:.2e}",
                "max_weight_diff": f"{weight_diff:.2e}",
                "wall_s": round(wall, 1),
                "error": error,
            }
        )
        with open(args.out / "results.csv", "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        header = "| " + " | ".join(rows[0]) + " |"
        lines = [header, "|" + "---|" * len(rows[0])] + [
            "| " + " | ".join(str(v) for v in r.values()) + " |" for r in rows
        ]
        (args.out / "results.md").write_text("\n".join(lines) + "\n")
        print(
            f"{name}: {tokens_per_s:.0f} tokens/s, val curve diff {curve_diff:.2e}, weight diff {weight_diff:.2e}"
            + (f", ERROR {error}" if error else ""),
            flush=True,
        )
    print((args.out / "results.md").read_text())


if __name__ == "__main__":
    main()
