"""Do DDP and FSDP train like one device, and how well do they scale? At a fixed global batch:

1. ``same_loss``: for each model (Mamba and Transformer++ by default) a plain one-device run is the
   reference; FSDP in one process (``trainer=fsdp trainer.devices=1``) and, with N >= 2 devices, DDP and
   FSDP with N processes must give the same validation losses and final weights.
2. ``throughput`` (N >= 2 devices only): tokens/s of a Mamba LM on 1 device and with DDP / FSDP on N,
   and the scaling efficiency ``tokens/s(N) / (N x tokens/s(1))``.

    python scripts/multi_gpu_check.py --out outputs/multi_gpu                 # every visible GPU
    python scripts/multi_gpu_check.py --out outputs/multi_gpu --devices 1     # one GPU: FSDP vs plain
    python scripts/multi_gpu_check.py --out outputs/multi_gpu_cpu --accelerator cpu --tiny  # gloo, 2 processes

Each run is one ``python src/train.py ...`` (the command a user types) into ``--out/<run>`` with its log
in ``--out/<run>.log``; after every run ``--out/results.csv`` and ``--out/results.md`` are rewritten, so a
check cut short keeps what it measured. The one-device runs of ``same_loss`` run ``--parallel`` at a
time (their speed is not measured); every run with several devices and every ``throughput`` run runs
alone. "match" means a validation loss within ``--rtol`` (relative) of the reference at every
validation; the largest weight difference is listed beside it. Throughput includes Lightning's per-step
overhead and the validations (kept few). Extra arguments are config overrides for every run.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]

PARTS = ("same_loss", "throughput")
MODELS = ("mamba", "transformerpp")

# same_loss: a small model, a few steps; global batch = data.batch_size x max(devices, 2), so that one
# device accumulates gradients over micro-batches that N processes take one each
CHECK = {
    "gpu": ["data.seq_len=256", "data.num_tokens_memorize=16", "data.batch_size=4", "model.d_model=256",
            "model.n_layer=4", "trainer.max_steps=12", "trainer.val_check_interval=6", "data.num_val_samples=64"],
    "cpu": ["data.seq_len=32", "data.num_tokens_memorize=4", "data.batch_size=4", "model.d_model=16",
            "model.n_layer=2", "trainer.max_steps=4", "trainer.val_check_interval=2", "data.num_val_samples=8",
            "cpu_threads=1"],
}  # fmt: skip
# throughput: a Mamba LM of the paper's smallest size on selective-copying sequences of 1024 tokens
THROUGHPUT = {
    "gpu": ["model=mamba_130m", "data.seq_len=1024", "data.num_tokens_memorize=16", "data.batch_size=8",
            "trainer.max_steps=60", "trainer.val_check_interval=30", "data.num_val_samples=64"],
    "cpu": ["model=mamba", "data.seq_len=64", "data.num_tokens_memorize=4", "data.batch_size=4",
            "model.d_model=32", "trainer.max_steps=6", "trainer.val_check_interval=3", "data.num_val_samples=8",
            "cpu_threads=1"],
}  # fmt: skip
COMMON = [
    "resume=never",
    "test=false",
    "print_config=false",
    "callbacks.progress_bar=null",
    "callbacks.periodic_checkpoint.every_n_train_steps=100000",
    "logger=csv",
]
TRAINER = {
    ("gpu", "plain"): "trainer=gpu",
    ("gpu", "ddp"): "trainer=ddp",
    ("gpu", "fsdp"): "trainer=fsdp",
    ("cpu", "plain"): "trainer=cpu",
    ("cpu", "ddp"): "trainer=ddp_cpu",
    ("cpu", "fsdp"): "trainer=fsdp_cpu",
}


@dataclass
class Run:
    """One training run of the check: ``name`` is also its folder under --out."""

    name: str
    part: str
    model: str
    strategy: str  # plain | ddp | fsdp
    devices: int
    overrides: list[str]
    reference: str | None = None  # the run it is compared with (None: it is a reference)
    parallel: bool = False  # may run beside other parallel runs
    result: dict[str, object] = field(default_factory=dict)


def build_plan(
    accelerator: str, devices: int, models: list[str], parts: list[str], tiny: bool, extra: list[str]
) -> list[Run]:
    """The runs of the check, in order. ``devices`` is the N of the multi-device runs (1: none)."""
    size = "cpu" if tiny or accelerator == "cpu" else "gpu"
    plan: list[Run] = []
    if "same_loss" in parts:
        batch = int(next(o for o in CHECK[size] if o.startswith("data.batch_size=")).split("=")[1])
        check = [*CHECK[size], f"global_batch_size={batch * max(devices, 2)}", *extra]
        for model in models:
            base = [f"model={model}", *check]
            ref = f"{model}_1dev"
            plan.append(
                Run(
                    ref, "same_loss", model, "plain", 1, [TRAINER[accelerator, "plain"], *base], parallel=True
                )
            )
            plan.append(
                Run(f"{model}_fsdp1", "same_loss", model, "fsdp", 1,
                    [TRAINER[accelerator, "fsdp"], *base, "trainer.devices=1"], ref, parallel=True)
            )  # fmt: skip
        for model in models if devices > 1 else []:
            for strategy in ("ddp", "fsdp"):
                plan.append(
                    Run(f"{model}_{strategy}{devices}", "same_loss", model, strategy, devices,
                        [TRAINER[accelerator, strategy], f"model={model}", *check, f"trainer.devices={devices}"],
                        f"{model}_1dev")
                )  # fmt: skip
    if "throughput" in parts and devices > 1:
        batch = int(next(o for o in THROUGHPUT[size] if o.startswith("data.batch_size=")).split("=")[1])
        base = [*THROUGHPUT[size], f"global_batch_size={batch * devices}", *extra]
        plan.append(
            Run("tput_1dev", "throughput", "mamba", "plain", 1, [TRAINER[accelerator, "plain"], *base])
        )
        for strategy in ("ddp", "fsdp"):
            plan.append(
                Run(f"tput_{strategy}{devices}", "throughput", "mamba", strategy, devices,
                    [TRAINER[accelerator, strategy], *base, f"trainer.devices={devices}"], "tput_1dev")
            )  # fmt: skip
    return plan


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_one(run: Run, out: Path, timeout_s: int) -> None:
    """Train ``run`` in a subprocess into ``out/run.name``; fills ``run.result``."""
    run_dir = out / run.name
    command = [sys.executable, str(ROOT / "src" / "train.py"), *run.overrides, f"run_dir={run_dir}", *COMMON]
    env = {**os.environ, "PROJECT_ROOT": str(ROOT), "WANDB_MODE": "offline", "MASTER_PORT": str(_free_port())}
    started = time.time()
    try:
        result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout_s, env=env)
        log, error = result.stdout + "\n" + result.stderr, ""
        if result.returncode != 0:
            lines = result.stderr.strip().splitlines() or [f"exit code {result.returncode}"]
            error = lines[-1][:200]
    except subprocess.TimeoutExpired as exc:
        log, error = f"{exc.stdout or ''}\n{exc.stderr or ''}", f"timed out after {timeout_s} s"
    (out / f"{run.name}.log").write_text(" ".join(command) + "\n\n" + str(log))
    summary_path = run_dir / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    run.result = {
        "tokens_per_s": summary.get("tokens_per_s") or 0.0,
        "curve": val_curve(run_dir),
        "weights": final_weights(run_dir),
        "wall_s": time.time() - started,
        "error": error,
    }


def val_curve(run_dir: Path) -> list[float]:
    path = run_dir / "csv" / "metrics.csv"
    if not path.exists():
        return []
    with open(path, newline="") as handle:
        return [float(row["val/loss"]) for row in csv.DictReader(handle) if row.get("val/loss")]


def final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    path = run_dir / "checkpoints" / "last.ckpt"
    return torch.load(path, map_location="cpu", weights_only=False)["state_dict"] if path.exists() else {}


def compare(run: Run, ref: Run | None, rtol: float) -> dict[str, object]:
    """One table row: ``run`` against its reference run (if both finished)."""
    res = run.result
    row: dict[str, object] = {
        "part": run.part,
        "run": run.name,
        "model": run.model,
        "strategy": run.strategy,
        "devices": run.devices,
        "reference": run.reference or "",
        "tokens_per_s": round(float(res.get("tokens_per_s", 0.0)), 1),
        "scaling_efficiency": "",
        "last_val_loss": round(res["curve"][-1], 5) if res.get("curve") else "",
        "max_rel_val_loss_diff": "",
        "max_weight_diff": "",
        "match": "",
        "wall_s": round(float(res.get("wall_s", 0.0)), 1),
        "error": res.get("error", ""),
    }
    if ref is None or not ref.result or res.get("error") or ref.result.get("error"):
        return row
    curve, ref_curve = res["curve"], ref.result["curve"]
    weights, ref_weights = res["weights"], ref.result["weights"]
    if curve and len(curve) == len(ref_curve):
        diff = max(abs(a - b) / max(abs(b), 1e-12) for a, b in zip(curve, ref_curve))
        row["max_rel_val_loss_diff"] = f"{diff:.2e}"
        row["match"] = "yes" if diff <= rtol and weights.keys() == ref_weights.keys() else "NO"
    elif run.part == "same_loss":
        row["match"] = f"NO ({len(curve)} vs {len(ref_curve)} validations)"
    shared = [k for k in ref_weights if k in weights and weights[k].shape == ref_weights[k].shape]
    if shared:
        row["max_weight_diff"] = (
            f"{max(float((weights[k].float() - ref_weights[k].float()).abs().max()) for k in shared):.2e}"
        )
    ref_tps = float(ref.result.get("tokens_per_s") or 0.0)
    if run.part == "throughput" and ref_tps > 0:
        row["scaling_efficiency"] = round(float(res["tokens_per_s"]) / (run.devices * ref_tps), 3)
    return row


def write_tables(plan: list[Run], out: Path, rtol: float) -> list[dict[str, object]]:
    """Rewrite results.csv and results.md from the runs finished so far."""
    by_name = {run.name: run for run in plan}
    rows = [compare(run, by_name.get(run.reference or ""), rtol) for run in plan if run.result]
    if not rows:
        return rows
    tmp = out / ".results.csv.tmp"
    with open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(out / "results.csv")
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    lines += ["| " + " | ".join(str(v) for v in row.values()) + " |" for row in rows]
    (out / "results.md").write_text("\n".join(lines) + "\n")
    return rows


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--out", type=Path, required=True, help="output folder (results.csv, results.md, runs)"
    )
    parser.add_argument("--accelerator", choices=["gpu", "cpu"], default="gpu")
    parser.add_argument(
        "--devices", type=int, default=None, help="N of the multi-device runs (default: all GPUs; 2 on CPU)"
    )
    parser.add_argument("--models", nargs="+", default=list(MODELS), help="models of the same-loss check")
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--tiny", action="store_true", help="tiny sizes on any device (checks the script)")
    parser.add_argument("--parallel", type=int, default=None, help="one-device check runs at a time (GPU: 4)")
    parser.add_argument("--rtol", type=float, default=1e-3, help="relative val-loss tolerance of 'match'")
    parser.add_argument("--timeout", type=int, default=900, help="seconds per run")
    parser.add_argument("overrides", nargs="*", help="config overrides for every run")
    args = parser.parse_args(argv)
    if args.devices is None:
        args.devices = torch.cuda.device_count() if args.accelerator == "gpu" else 2
    if args.accelerator == "gpu" and not 1 <= args.devices <= torch.cuda.device_count():
        parser.error(
            f"--devices {args.devices}: this machine has {torch.cuda.device_count()} GPU(s); "
            "use --accelerator cpu to check the script with CPU processes"
        )
    if args.devices < 1:
        parser.error(f"--devices must be >= 1, got {args.devices}")
    if args.parallel is None:
        args.parallel = 4 if args.accelerator == "gpu" else 1
    if args.parallel < 1:
        parser.error(f"--parallel must be >= 1, got {args.parallel}")
    unknown = sorted(set(args.models) - set(MODELS))
    if unknown:
        parser.error(f"--models {' '.join(unknown)}: the check knows {', '.join(MODELS)}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    plan = build_plan(args.accelerator, args.devices, args.models, args.parts, args.tiny, args.overrides)
    if args.devices == 1:
        print("one device: the same-loss check compares FSDP in one process with plain training; "
              "DDP/FSDP with several processes and the scaling efficiency need --devices >= 2", flush=True)  # fmt: skip
    lock = threading.Lock()

    def execute(run: Run) -> None:
        run_one(run, args.out, args.timeout)
        with lock:
            rows = write_tables(plan, args.out, args.rtol)
            row = next(r for r in rows if r["run"] == run.name)
            print(
                f"{run.name}: {row['tokens_per_s']} tokens/s, val loss {row['last_val_loss']}"
                + (f", vs {run.reference}: rel diff {row['max_rel_val_loss_diff']}, weights "
                   f"{row['max_weight_diff']}, match {row['match']}" if run.reference else "")
                + (f", efficiency {row['scaling_efficiency']}" if row["scaling_efficiency"] != "" else "")
                + (f", ERROR {row['error']} (see {args.out / (run.name + '.log')})" if row["error"] else ""),
                flush=True,
            )  # fmt: skip

    parallel = [run for run in plan if run.parallel]
    with ThreadPoolExecutor(max_workers=args.parallel) as pool:
        list(pool.map(execute, parallel))
    for run in plan:
        if not run.parallel:
            execute(run)
    results = args.out / "results.md"
    print(results.read_text() if results.exists() else "no run finished")


if __name__ == "__main__":
    main()
