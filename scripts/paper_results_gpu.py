"""Regenerate Table 1 and the induction-heads extrapolation figure on one GPU in about six minutes:

    python scripts/paper_results_gpu.py --out OUT [--budget 300] [--eval-budget 60]

All fourteen training runs start at once as separate processes on the one GPU (the models are tiny, so
one process alone leaves the GPU mostly idle): the eight rows of Table 1 (preset
``ablations/table1/short``) and the six induction-heads models (preset ``induction_heads/short``: Mamba,
MHA-Abs, MHA-RoPE, MHA-xPos, H3, Hyena, trained at length 256). Every run stops at the same wall-clock
deadline, ``--budget`` seconds after the start, then tests and saves its last checkpoint. The
induction-heads models are then tested at 2^6..2^20 (``scripts/eval_lengths.py``; long lengths one
sequence at a time; out of memory is recorded as such), and ``scripts/report.py`` writes Table 1, Table
11 and the induction-heads figure, ours beside the paper's.

OUT receives at most eight files, refreshed as the work goes (a run cut short keeps what it measured):
``log.txt`` (this script's log), ``report.tar.gz`` (the whole report: Markdown, CSV, PNG, SVG),
``runs.tar.gz`` (every run's config, summary, metrics.csv, log and length tests; no checkpoints), and
copies of the Table 1 and Table 11 Markdown and the induction-heads PNG. Run folders and checkpoints
stay in ``--work``.

A CPU check of the whole pipeline in a few minutes:

    python scripts/paper_results_gpu.py --out /tmp/paper_cpu --trainer cpu --budget 60 --eval-budget 30 \\
        --t1-seq-len 32 --t1-tokens 4 --t1-batch 8 --ih-seq-len 32 --ih-batch 8 --width 16 \\
        --eval-samples 8 --max-log2 10 --only table1/mamba_s6,table1/s4_nogate,mamba,mha_abs
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TABLE1_PRESET = "ablations/table1/short"
INDUCTION_PRESET = "induction_heads/short"
TABLE1_MODELS = (
    "table1/s4_nogate",
    "table1/s6_nogate",
    "table1/h3_s4",
    "table1/h3_hyena",
    "table1/h3_s6",
    "table1/mamba_s4",
    "table1/mamba_hyena",
    "table1/mamba_s6",
)
INDUCTION_MODELS = ("mamba", "mha_abs", "mha_rope", "mha_xpos", "h3", "hyena")
ATTENTION_MODELS = ("mha_abs", "mha_rope", "mha_xpos")
# callbacks that cost a host-device synchronisation or a disk write every step or every 100 steps
SLOW_CALLBACKS = ("tokens_per_sec", "nonfinite_guard", "periodic_checkpoint", "lr_monitor", "progress_bar")
OUT_FILES = (  # report files copied to OUT beside the archives (the rest is inside report.tar.gz)
    "table1_short.md",
    "induction_heads_short.md",
    "induction_heads_short.png",
)
ARCHIVE_SKIP = (".ckpt", ".tmp")


@dataclass
class Job:
    """One training run: its name, Hydra overrides and folder; ``process`` once started."""

    name: str
    group: str
    overrides: list[str]
    run_dir: Path
    process: subprocess.Popen | None = None
    started: float = 0.0
    ended: float | None = None
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.run_dir / "train.out"

    @property
    def label(self) -> str:
        """``table1/mamba_s6``, ``induction_heads/mamba``: the run folder below the runs folder."""
        return f"{self.run_dir.parent.name}/{self.run_dir.name}"

    def step(self) -> int | None:
        """The newest training step in the run's metrics.csv (None before the first log line)."""
        path = self.run_dir / "csv" / "metrics.csv"
        if not path.exists():
            return None
        try:
            with open(path, newline="") as f:
                steps = [row.get("step") for row in csv.DictReader(f)]
        except (OSError, csv.Error):
            return None
        numbers = [int(s) for s in steps if s and s.isdigit()]
        return max(numbers) if numbers else None


class Log:
    """Prints and appends to ``OUT/log.txt`` with the seconds since the start."""

    def __init__(self, path: Path) -> None:
        self.path, self.started = path, time.time()

    def __call__(self, message: str) -> None:
        line = f"[{time.time() - self.started:6.0f} s] {message}"
        print(line, flush=True)
        with open(self.path, "a") as f:
            f.write(line + "\n")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, required=True, help="where the (at most eight) result files go")
    parser.add_argument(
        "--work",
        type=Path,
        default=None,
        help="run folders, checkpoints and the report, emptied at the start (default: <tmp>/paper_results_work)",
    )
    parser.add_argument(
        "--budget", type=float, default=300.0, help="training wall-clock seconds, start included"
    )
    parser.add_argument("--eval-budget", type=float, default=60.0, help="seconds for the length tests")
    parser.add_argument("--trainer", default="gpu", help="trainer config: gpu or cpu")
    parser.add_argument("--parts", default="table1,induction", help="table1, induction or both")
    parser.add_argument("--only", default="", help="comma-separated model configs to run (default: all)")
    parser.add_argument("--t1-seq-len", type=int, default=256, help="Table 1 sequence length (paper 4096)")
    parser.add_argument("--t1-tokens", type=int, default=16, help="Table 1 tokens to copy (paper 16)")
    parser.add_argument("--t1-batch", type=int, default=128, help="Table 1 batch (paper 64)")
    parser.add_argument("--t1-lr", type=float, default=2e-3, help="Table 1 learning rate (paper 1e-4)")
    parser.add_argument(
        "--ih-seq-len", type=int, default=256, help="induction-heads training length (paper 256)"
    )
    parser.add_argument("--ih-batch", type=int, default=256, help="induction-heads batch (paper 8)")
    parser.add_argument(
        "--ih-lr", type=float, default=1e-3, help="induction-heads LR of Mamba and H3 (paper 1e-3 Mamba)"
    )
    parser.add_argument(
        "--ih-lr-attention",
        type=float,
        default=5e-4,
        help="induction-heads LR of attention and Hyena (paper 2e-4)",
    )
    parser.add_argument(
        "--width", type=int, default=None, help="d_model of every model (default: the paper's)"
    )
    parser.add_argument("--val-every", type=int, default=500, help="steps between validations")
    parser.add_argument("--max-log2", type=int, default=20, help="longest test length 2^k (paper 20)")
    parser.add_argument("--eval-samples", type=int, default=256, help="test sequences per length, at most")
    parser.add_argument("--eval-tokens", type=int, default=2**22, help="test tokens per length, at most")
    parser.add_argument(
        "--grace", type=float, default=90.0, help="seconds after the deadline before a run is killed"
    )
    return parser


def table1_jobs(args: argparse.Namespace, runs: Path) -> list[Job]:
    overrides = [
        f"data.seq_len={args.t1_seq_len}",
        f"data.num_tokens_memorize={args.t1_tokens}",
        f"data.batch_size={args.t1_batch}",
        f"optimizer.lr={args.t1_lr}",
    ] + ([f"model.d_model={args.width}"] if args.width else [])
    return [
        Job(
            model,
            "table1",
            [f"experiment={TABLE1_PRESET}", f"model={model}", *overrides],
            runs / "table1" / model.split("/")[1],
        )
        for model in TABLE1_MODELS
    ]


def induction_jobs(args: argparse.Namespace, runs: Path) -> list[Job]:
    jobs = []
    for model in INDUCTION_MODELS:
        width = args.width or (64 if model == "mamba" else 128)  # paper: D=64 for Mamba, 128 for the others
        lr = args.ih_lr_attention if model in ATTENTION_MODELS or model == "hyena" else args.ih_lr
        overrides = [
            f"experiment={INDUCTION_PRESET}",
            f"model={model}",
            f"model.d_model={width}",
            f"data.train_seq_len={args.ih_seq_len}",
            f"data.test_seq_lens=[{args.ih_seq_len}]",
            f"data.batch_size={args.ih_batch}",
            f"optimizer.lr={lr}",
        ]
        jobs.append(Job(model, "induction", overrides, runs / "induction_heads" / model))
    return jobs


def start(job: Job, args: argparse.Namespace, deadline: float) -> None:
    job.run_dir.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable,
        str(ROOT / "src" / "train.py"),
        "hydra.mode=RUN",
        *job.overrides,
        f"trainer={args.trainer}",
        f"trainer.val_check_interval={args.val_every}",
        f"run_dir={job.run_dir}",
        f"hydra.run.dir={job.run_dir.parent.parent.parent / 'hydra' / job.label}",  # Hydra's own files, not outputs/
        "resume=never",
        "logger=csv",
        "print_config=false",
        "+callbacks.deadline._target_=mambabench.utils.callbacks.StopAtWallClock",
        f"+callbacks.deadline.deadline={deadline:.1f}",
        *[f"~callbacks.{name}" for name in SLOW_CALLBACKS],
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(job.log, "w") as log:
        log.write(" ".join(command) + "\n")
        log.flush()
        job.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
    job.started = time.time()


def wait_for(jobs: list[Job], log: Log, deadline: float, grace: float, on_group_done) -> None:
    """Report progress every 20 s; stop runs still alive ``grace`` s after the deadline; call
    ``on_group_done(group)`` as soon as every run of a group has ended."""
    groups_open = {j.group for j in jobs}
    last_report = 0.0
    while True:
        now = time.time()
        for job in jobs:
            if job.ended is None and job.process is not None and job.process.poll() is not None:
                job.ended = now
                code = job.process.returncode
                log(
                    f"{job.label}: ended (exit {code}) at step {job.step()}"
                    + ("" if code == 0 else f"; see {job.log}")
                )
        if now > deadline + grace:
            for job in jobs:
                if job.ended is None and job.process is not None:
                    log(f"{job.label}: still running {grace:.0f} s after the deadline; stopping it")
                    job.process.send_signal(signal.SIGKILL)
        for group in sorted(groups_open):
            if all(j.ended is not None for j in jobs if j.group == group):
                groups_open.discard(group)
                on_group_done(group)
        if not groups_open:
            return
        if now - last_report >= 20:
            last_report = now
            alive = [f"{j.name.split('/')[-1]}:{j.step()}" for j in jobs if j.ended is None]
            log(
                f"{len(alive)} running, {max(0.0, deadline - now):.0f} s to the deadline; steps "
                + " ".join(alive)
            )
        time.sleep(2)


def eval_lanes(jobs: list[Job], args: argparse.Namespace, log: Log) -> None:
    """Test the induction-heads models at 2^6..2^max_log2 in three processes side by side: Mamba alone
    (the one expected to reach 2^20), H3 and Hyena, and the attention models (one after another)."""
    lengths = ",".join(str(2**k) for k in range(6, args.max_log2 + 1))
    trained = {j.name: j.run_dir for j in jobs if (j.run_dir / "checkpoints" / "last.ckpt").exists()}
    for job in jobs:
        if job.name not in trained:
            log(f"induction/{job.name}: no checkpoints/last.ckpt; its lengths stay missing")
    lanes = [["mamba"], ["h3", "hyena"], list(ATTENTION_MODELS)]
    device = "cpu" if args.trainer == "cpu" else "cuda"
    processes = []
    for lane in lanes:
        dirs = [str(trained[m]) for m in lane if m in trained]
        if not dirs:
            continue
        command = [
            sys.executable, str(ROOT / "scripts" / "eval_lengths.py"), *dirs,
            "--lengths", lengths, "--device", device, "--samples", str(args.eval_samples),
            "--tokens-per-length", str(args.eval_tokens), "--batch-tokens", str(2**18),
            "--time-budget", f"{args.eval_budget / len(dirs):.0f}",
        ]  # fmt: skip
        out = open(Path(dirs[0]).parent / f"eval_{lane[0]}.out", "w")
        processes.append(
            (lane, subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT), out)
        )
    log(f"length tests 2^6..2^{args.max_log2}: {len(processes)} processes, {args.eval_budget:.0f} s")
    hard_stop = time.time() + args.eval_budget + 60
    for lane, process, out in processes:
        try:
            process.wait(timeout=max(1.0, hard_stop - time.time()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            log(f"length tests of {', '.join(lane)}: stopped at the hard limit; the lengths done are kept")
        out.close()
        for line in Path(out.name).read_text().splitlines():
            if "accuracy" in line or "memory" in line or "budget" in line or "positions" in line:
                log("  " + line)


def write_report(args: argparse.Namespace, runs: Path, report: Path, log: Log) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "report.py"), str(runs), "--out", str(report)],
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    if result.returncode != 0:
        log(f"report.py failed (exit {result.returncode}): {result.stderr.strip()[-500:]}")


def bundle(out: Path, runs: Path, report: Path, log: Log) -> None:
    """Refresh the archives and copies in OUT (each written beside and renamed, so a kill leaves a whole one)."""
    for name, folder in (("report.tar.gz", report), ("runs.tar.gz", runs)):
        if not folder.exists():
            continue
        tmp = out / f".{name}.tmp"
        with tarfile.open(tmp, "w:gz") as tar:
            tar.add(
                folder, arcname=folder.name, filter=lambda t: None if t.name.endswith(ARCHIVE_SKIP) else t
            )
        tmp.replace(out / name)
    for name in OUT_FILES:
        if (report / name).exists():
            shutil.copyfile(report / name, out / name)
    for name in OUT_FILES[:2]:
        if (report / name).exists():
            log(
                f"{name}:\n"
                + "\n".join(row for row in (report / name).read_text().splitlines() if row.startswith("|"))
            )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    work = (args.work or Path(tempfile.gettempdir()) / "paper_results_work").resolve()
    runs, report = work / "runs", work / "report"
    for folder in (runs, report, work / "hydra"):
        if folder.exists():
            shutil.rmtree(folder)  # a fresh set of runs: the report must not mix in an older attempt
    runs.mkdir(parents=True)
    log = Log(out / "log.txt")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    log(f"commit {commit.stdout.strip() or 'unknown'}; {' '.join(sys.argv)}")

    parts = set(args.parts.split(","))
    jobs = (table1_jobs(args, runs) if "table1" in parts else []) + (
        induction_jobs(args, runs) if "induction" in parts else []
    )
    only = {m for m in args.only.split(",") if m}
    jobs = [j for j in jobs if not only or j.name in only]
    if not jobs:
        log(f"nothing to run: --parts {args.parts} --only {args.only}")
        return 2
    deadline = time.time() + args.budget
    for job in jobs:
        start(job, args, deadline)
    log(f"started {len(jobs)} runs; training stops at +{args.budget:.0f} s; run folders in {runs}")

    def group_done(group: str) -> None:
        if group == "induction":
            eval_lanes([j for j in jobs if j.group == "induction"], args, log)
        write_report(args, runs, report, log)
        bundle(out, runs, report, log)
        log(f"{group}: report written to {out}")

    try:
        wait_for(jobs, log, deadline, args.grace, group_done)
    except KeyboardInterrupt:
        for job in jobs:
            if job.process is not None and job.process.poll() is None:
                job.process.send_signal(signal.SIGTERM)
        log("interrupted; runs asked to save and stop")
        return 130
    log(f"done; results in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
