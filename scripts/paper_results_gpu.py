"""Regenerate Table 1 and the induction-heads extrapolation figure on one GPU in about eight minutes:

    python scripts/paper_results_gpu.py --out OUT [--budget 400] [--eval-budget 120]

The training runs start at once as separate processes on the one GPU (the models are tiny, so one
process alone leaves the GPU mostly idle):

* Table 1 rows (preset ``ablations/table1/short``): by default the three S6 rows (``--t1-models all``
  for all eight);
* the induction-heads models (preset ``induction_heads/short``, trained at length 256): by default
  Mamba alone, at batch 32 so that the budget buys many optimizer updates (``--ih-models all`` adds
  MHA-Abs, MHA-RoPE, MHA-xPos, H3 and Hyena, each slowing the others down);
* checks of the Mamba/S6 row (``--t1-checks``), by default: the same run with bf16 autocast off
  (``fp32``) and at half and twice the learning rate (``half_lr``, ``double_lr``); ``--t1-checks all``
  adds the PyTorch scan instead of the Triton one (``reference``), four times the learning rate
  (``quadruple_lr``), the other Triton scan family (``tiled``) and the sequential Triton scan
  stripped of its GPU-only launch options (``plain``: no prefetch, no register cap, no shuffle
  reduction of dB/dC). They tell a numerical problem of one GPU path from a training setting; their
  test accuracies and loss curves go to ``table1_checks.md``, not into Table 1.

Every run stops at the same wall-clock deadline, ``--budget`` seconds after the start, then tests and
saves its last checkpoint. The induction-heads models are then tested at 2^6..2^20
(``scripts/eval_lengths.py``; long lengths one sequence at a time, Mamba in fp32 so that its state is
carried over 10^6 steps without bf16 rounding; out of memory is recorded as such), and
``scripts/report.py`` writes Table 1, Table 11 and the induction-heads figure, ours beside the paper's.

OUT receives at most eight files, refreshed as the work goes (a run cut short keeps what it measured):
``log.txt`` (this script's log), ``report.tar.gz`` (the whole report: Markdown, CSV, PNG, SVG),
``runs.tar.gz`` (every run's config, summary, metrics.csv, log and length tests, the checks'
included; no checkpoints), ``table1_checks.md`` and copies of the Table 1 and Table 11 Markdown and the induction-heads PNG. Run
folders and checkpoints stay in ``--work``.

A CPU check of the whole pipeline in a few minutes:

    python scripts/paper_results_gpu.py --out /tmp/paper_cpu --trainer cpu --budget 60 --eval-budget 30 \\
        --t1-seq-len 32 --t1-tokens 4 --t1-batch 8 --ih-seq-len 32 --ih-batch 8 --width 16 \\
        --eval-samples 8 --max-log2 10 --t1-models table1/mamba_s6,table1/s4_nogate --t1-checks fp32 \\
        --ih-models mamba,mha_abs
"""

from __future__ import annotations

import argparse
import csv
import json
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
TABLE1_S6_MODELS = ("table1/s6_nogate", "table1/h3_s6", "table1/mamba_s6")
INDUCTION_MODELS = ("mamba", "mha_abs", "mha_rope", "mha_xpos", "h3", "hyena")
CHECKED_MODEL = "table1/mamba_s6"
# runs of CHECKED_MODEL that differ from its Table 1 run in one respect: name -> (what differs,
# Hydra overrides, environment); "{half_lr}", "{double_lr}", "{quadruple_lr}": 1/2, 2 and 4 times the
# Table 1 learning rate
CHECKS = {
    "fp32": ("bf16 autocast off (fp32 Triton scan)", ["trainer.precision=32-true"], {}),
    "tiled": ("the tiled Triton scan family", [], {"MAMBABENCH_SCAN_LAUNCH": "family=tiled"}),
    "plain": (
        "the Triton scan without its GPU-only options (prefetch, register cap, shuffle dB/dC sums)",
        [],
        {"MAMBABENCH_SCAN_LAUNCH": "prefetch=0,bwd_maxnreg=0,lane_reduce=0"},
    ),
    "reference": ("the PyTorch reference scan (no Triton scan)", ["model.mixer.scan_backend=reference"], {}),
    "half_lr": ("half the learning rate", ["optimizer.lr={half_lr}"], {}),
    "double_lr": ("twice the learning rate", ["optimizer.lr={double_lr}"], {}),
    "quadruple_lr": ("four times the learning rate", ["optimizer.lr={quadruple_lr}"], {}),
}
# not the PyTorch scan by default: its thousands of small kernels a step would slow every other run
DEFAULT_CHECKS = ("fp32", "half_lr", "double_lr")
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
    env: dict[str, str] = field(default_factory=dict)
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
        "--budget", type=float, default=400.0, help="training wall-clock seconds, start included"
    )
    parser.add_argument("--eval-budget", type=float, default=120.0, help="seconds for the length tests")
    parser.add_argument("--trainer", default="gpu", help="trainer config: gpu or cpu")
    parser.add_argument("--parts", default="table1,induction", help="table1, induction or both")
    parser.add_argument(
        "--t1-models",
        default=",".join(TABLE1_S6_MODELS),
        help="comma-separated Table 1 model configs, or 'all' for the eight rows (default: the S6 rows)",
    )
    parser.add_argument(
        "--t1-checks",
        default=",".join(DEFAULT_CHECKS),
        help=f"comma-separated checks of {CHECKED_MODEL} ({', '.join(CHECKS)}; 'all' or 'none')",
    )
    parser.add_argument(
        "--ih-models",
        default="mamba",
        help="comma-separated induction-heads models, or 'all' for the six (default: mamba)",
    )
    parser.add_argument("--only", default="", help="comma-separated model configs to run (default: all)")
    parser.add_argument("--t1-seq-len", type=int, default=256, help="Table 1 sequence length (paper 4096)")
    parser.add_argument("--t1-tokens", type=int, default=16, help="Table 1 tokens to copy (paper 16)")
    parser.add_argument("--t1-batch", type=int, default=128, help="Table 1 batch (paper 64)")
    parser.add_argument("--t1-lr", type=float, default=4e-3, help="Table 1 learning rate (paper 1e-4)")
    parser.add_argument(
        "--ih-seq-len", type=int, default=256, help="induction-heads training length (paper 256)"
    )
    parser.add_argument(
        "--ih-batch", type=int, default=32, help="induction-heads batch (paper 8; more updates than 256)"
    )
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
    parser.add_argument("--val-every", type=int, default=500, help="Table 1: steps between validations")
    parser.add_argument(
        "--ih-val-every", type=int, default=2000, help="induction heads: steps between validations"
    )
    parser.add_argument("--max-log2", type=int, default=20, help="longest test length 2^k (paper 20)")
    parser.add_argument("--eval-samples", type=int, default=256, help="test sequences per length, at most")
    parser.add_argument("--eval-tokens", type=int, default=2**22, help="test tokens per length, at most")
    parser.add_argument(
        "--eval-min-samples", type=int, default=16, help="test sequences per length, at least (2^20 too)"
    )
    parser.add_argument(
        "--grace", type=float, default=90.0, help="seconds after the deadline before a run is killed"
    )
    return parser


def chosen(spec: str, known: tuple[str, ...], option: str) -> list[str]:
    """``spec`` (comma-separated names, 'all' or 'none') -> the names, in ``known``'s order."""
    if spec == "all":
        return list(known)
    names = [n for n in spec.split(",") if n and n != "none"]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SystemExit(f"{option}: unknown {', '.join(unknown)}; known: {', '.join(known)}, all, none")
    return [n for n in known if n in names]


def table1_overrides(args: argparse.Namespace, model: str) -> list[str]:
    return [
        f"experiment={TABLE1_PRESET}",
        f"model={model}",
        f"data.seq_len={args.t1_seq_len}",
        f"data.num_tokens_memorize={args.t1_tokens}",
        f"data.batch_size={args.t1_batch}",
        f"optimizer.lr={args.t1_lr}",
        f"trainer.val_check_interval={args.val_every}",
    ] + ([f"model.d_model={args.width}"] if args.width else [])


def table1_jobs(args: argparse.Namespace, runs: Path) -> list[Job]:
    return [
        Job(model, "table1", table1_overrides(args, model), runs / "table1" / model.split("/")[1])
        for model in chosen(args.t1_models, TABLE1_MODELS, "--t1-models")
    ]


def check_jobs(args: argparse.Namespace, checks: Path) -> list[Job]:
    """Runs of ``CHECKED_MODEL`` that each differ from its Table 1 run in one respect (``CHECKS``)."""
    jobs = []
    lrs = {"half_lr": args.t1_lr / 2, "double_lr": args.t1_lr * 2, "quadruple_lr": args.t1_lr * 4}
    for name in chosen(args.t1_checks, tuple(CHECKS), "--t1-checks"):
        _, extra, env = CHECKS[name]
        extra = [o.format(**lrs) for o in extra]
        # later overrides win: the check's own come after the Table 1 ones
        overrides = table1_overrides(args, CHECKED_MODEL) + extra
        jobs.append(Job(f"check/{name}", "checks", overrides, checks / name, env=dict(env)))
    return jobs


def induction_jobs(args: argparse.Namespace, runs: Path) -> list[Job]:
    jobs = []
    for model in chosen(args.ih_models, INDUCTION_MODELS, "--ih-models"):
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
            f"trainer.val_check_interval={args.ih_val_every}",
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
        f"run_dir={job.run_dir}",
        f"hydra.run.dir={job.run_dir.parent.parent.parent / 'hydra' / job.label}",  # Hydra's own files, not outputs/
        "resume=never",
        "logger=csv",
        "print_config=false",
        "+callbacks.deadline._target_=mambabench.utils.callbacks.StopAtWallClock",
        f"+callbacks.deadline.deadline={deadline:.1f}",
        *[f"~callbacks.{name}" for name in SLOW_CALLBACKS],
        "trainer.log_every_n_steps=50",
        "task.log_throughput_every=1000000",  # its CUDA synchronisation every 10 steps costs more than it tells
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **job.env}
    with open(job.log, "w") as log:
        log.write(" ".join([*(f"{k}={v}" for k, v in job.env.items()), *command]) + "\n")
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
            "--min-samples", str(args.eval_min_samples),
            "--time-budget", f"{args.eval_budget / len(dirs):.0f}",
            # Mamba's state must survive 10^6 steps: no bf16 rounding of its inputs (cheap at D=64)
            "--precision", "fp32" if lane == ["mamba"] else "auto",
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


def loss_curve(run_dir: Path, points: int = 5) -> str:
    """``step: loss`` at ``points`` evenly spaced logged steps of the run's train/loss ('' if none)."""
    path = run_dir / "csv" / "metrics.csv"
    if not path.exists():
        return ""
    with open(path, newline="") as f:
        rows = [(int(r["step"]), float(r["train/loss"])) for r in csv.DictReader(f) if r.get("train/loss")]
    if not rows:
        return ""
    picks = sorted({round(i * (len(rows) - 1) / max(1, points - 1)) for i in range(points)})
    return ", ".join(f"{rows[i][0]}: {rows[i][1]:.2f}" for i in picks)


def test_accuracy(run_dir: Path) -> float | None:
    try:
        metrics = json.loads((run_dir / "summary.json").read_text()).get("metrics") or {}
    except (OSError, ValueError):
        return None
    value = metrics.get("test/accuracy")
    return None if value is None else float(value)


def write_checks(jobs: list[Job], path: Path) -> None:
    """``table1_checks.md``: the Table 1 run of ``CHECKED_MODEL`` beside its checks (test accuracy, steps,
    train loss along the run), to tell a numerical problem of one path from a training setting."""
    lines = [
        f"# Checks of {CHECKED_MODEL} (Table 1, selective copying)",
        "",
        "Each check differs from the Table 1 run in one respect; all stop at the same wall-clock deadline.",
        "",
        "| Run | Differs in | Test accuracy (%) | Steps | Train loss (step: loss) |",
        "|---|---|---|---|---|",
    ]
    for job in jobs:
        what = "-" if job.group == "table1" else CHECKS[job.name.split("/")[1]][0]
        acc = test_accuracy(job.run_dir)
        cell = "*missing*" if acc is None else f"{100 * acc:.1f}"
        lines.append(f"| {job.label} | {what} | {cell} | {job.step() or '-'} | {loss_curve(job.run_dir)} |")
    tmp = path.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(path)


def write_report(args: argparse.Namespace, runs: Path, report: Path, log: Log) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "report.py"), str(runs), "--out", str(report)],
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    if result.returncode != 0:
        log(f"report.py failed (exit {result.returncode}): {result.stderr.strip()[-500:]}")


def bundle(out: Path, runs: Path, report: Path, log: Log) -> None:
    """Refresh the archives and copies in OUT (each written beside and renamed, so a kill leaves a whole one)."""
    # the checks of Mamba/S6 travel with the runs (outside the report's reach)
    checks = runs.parent / "checks"
    for name, folders in (("report.tar.gz", [report]), ("runs.tar.gz", [runs, checks])):
        folders = [f for f in folders if f.exists()]
        if not folders:
            continue
        tmp = out / f".{name}.tmp"
        with tarfile.open(tmp, "w:gz") as tar:
            for folder in folders:
                tar.add(
                    folder,
                    arcname=folder.name,
                    filter=lambda t: None if t.name.endswith(ARCHIVE_SKIP) else t,
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
    for folder in (runs, report, work / "hydra", work / "checks"):
        if folder.exists():
            shutil.rmtree(folder)  # a fresh set of runs: the report must not mix in an older attempt
    runs.mkdir(parents=True)
    log = Log(out / "log.txt")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    log(f"commit {commit.stdout.strip() or 'unknown'}; {' '.join(sys.argv)}")

    parts = set(args.parts.split(","))
    jobs = (table1_jobs(args, runs) + check_jobs(args, work / "checks") if "table1" in parts else []) + (
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

    checks_logged = False

    def group_done(group: str) -> None:
        nonlocal checks_logged
        if group in ("table1", "checks"):
            checked = [j for j in jobs if j.name == CHECKED_MODEL or j.group == "checks"]
            if any(j.group == "checks" for j in checked):
                write_checks(checked, out / "table1_checks.md")
                if not checks_logged and all(j.ended is not None for j in checked):
                    checks_logged = True
                    log("table1_checks.md:\n" + (out / "table1_checks.md").read_text().strip())
            if group == "checks":
                return
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
