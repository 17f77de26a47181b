"""CPU training-step speed of the default job by intra-op thread count, with and without other work
competing for the cores (what ``cpu_threads=auto`` is chosen from).

    python scripts/cpu_threads_benchmark.py --out outputs/cpu_threads
    python scripts/cpu_threads_benchmark.py --threads 1 2 4 --competitors 0 1 2 --steps 30

For each number of competitors, that many busy processes (a pure-Python loop each: one core each) run
beside the measurement; for each thread count the script times ``--steps`` training steps (forward,
loss, backward, AdamW) of the default ``python src/train.py`` model and data after two warm-up steps.
Writes ``threads.csv`` and ``threads.md`` (steps/s) to ``--out`` as it goes and prints the table.
The machine's own load (other users) comes on top and is reported as the load average.
"""

from __future__ import annotations

import argparse
import csv
import multiprocessing as mp
import os
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from omegaconf import open_dict

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("PROJECT_ROOT", str(ROOT))


def _spin(stop: mp.Event) -> None:
    x = 0
    while not stop.is_set():
        for _ in range(100_000):
            x += 1


def build_task(overrides: list[str]) -> tuple[torch.nn.Module, dict[str, torch.Tensor]]:
    """The default job's task and one training batch (``overrides`` as on the command line)."""
    import mambabench.utils.resolvers  # noqa: F401
    from mambabench.utils.build import build_datamodule
    from mambabench.utils.build import build_task as build

    with initialize_config_dir(version_base="1.3", config_dir=str(ROOT / "configs")):
        cfg = compose(config_name="train.yaml", overrides=overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = "unused"
    datamodule = build_datamodule(cfg)
    task = build(cfg, datamodule)
    batch = next(iter(datamodule.train_dataloader()))
    return task, batch


def steps_per_second(task: torch.nn.Module, batch: dict[str, torch.Tensor], steps: int) -> float:
    optimizer = torch.optim.AdamW(task.parameters(), lr=1e-3)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss = task.compute(batch)["loss"][0]
        loss.backward()
        optimizer.step()

    for _ in range(2):
        step()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    return steps / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("outputs/cpu_threads"))
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--competitors", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. model.d_model=128")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    task, batch = build_task(args.overrides)
    rows: list[dict[str, object]] = []
    csv_path, md_path = args.out / "threads.csv", args.out / "threads.md"
    print(f"{os.cpu_count()} cores; load average at start {os.getloadavg()[0]:.2f}")
    for competitors in args.competitors:
        stop = mp.Event()
        procs = [mp.Process(target=_spin, args=(stop,), daemon=True) for _ in range(competitors)]
        for proc in procs:
            proc.start()
        try:
            for threads in args.threads:
                torch.set_num_threads(threads)
                rate = steps_per_second(task, batch, args.steps)
                rows.append(
                    {
                        "competitors": competitors,
                        "threads": threads,
                        "steps_per_s": round(rate, 2),
                        "load_avg": round(os.getloadavg()[0], 2),
                    }
                )
                print(f"competitors={competitors} threads={threads}: {rate:.2f} steps/s")
                with open(csv_path, "w", newline="") as handle:
                    writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
                    writer.writeheader()
                    writer.writerows(rows)
                lines = ["| competitors | threads | steps/s | load avg |", "|---:|---:|---:|---:|"]
                lines += [
                    f"| {r['competitors']} | {r['threads']} | {r['steps_per_s']} | {r['load_avg']} |"
                    for r in rows
                ]
                md_path.write_text("\n".join(lines) + "\n")
        finally:
            stop.set()
            for proc in procs:
                proc.join(timeout=5)
    print(md_path.read_text())


if __name__ == "__main__":
    main()
