#!/usr/bin/env python3
"""The DNA figures of the Mamba paper at a small scale, in one process, within a time budget.

1. a Mamba HG38 training step at sequence length 2^20, batch 1 (the 1.4M model of Figure 5 right):
   peak GPU memory and step time;
2. species classification accuracy vs window length, Mamba vs a HyenaDNA-style Hyena
   (``experiment=dna/species/mini`` on ``prepare_data.py species``), with the test confusion matrices;
3. HG38 validation bits per base vs context length with sequence-length warmup
   (``experiment=dna/context_length/mini``, Figure 5 right), Mamba vs Hyena;
4. HG38 validation bits per base vs model size (``experiment=dna/model_size/mini`` at the paper's
   250K/700K/1.4M rows, Figure 5 left), Mamba vs Hyena.

Every run is given an equal share of the budget (Lightning ``max_time``), so at the default 240 s the
curves are seconds of training each: indicative, not converged (the output says so). Results are written
to ``--out`` as they come: ``results.csv``, ``dna_gpu.md`` (rewritten after every run), PNG plots, the
runs' ``summary.json`` and confusion matrices. A run that fails is a row saying why; the next one goes on.

    python scripts/prepare_data.py species --max-bases 800000 --data-dir data_gpu
    python scripts/prepare_data.py hg38 --max-bases 4194304 --block 1 --data-dir data_gpu
    python scripts/dna_gpu.py --out /tmp/dna_gpu --data-dir data_gpu --budget 240      # one H100
    python scripts/dna_gpu.py --out /tmp/dna_cpu --data-dir data_gpu --smoke           # CPU, tiny
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("PROJECT_ROOT", str(ROOT))
os.environ.setdefault("WANDB_MODE", "disabled")

FIELDS = ["section", "model", "x", "metric", "value", "steps", "train_s", "wall_s", "params", "note"]
LABELS = {
    "species": ("window length (bases)", "test accuracy"),
    "context": ("context length (bases)", "held-out bits per base"),
    "size": ("parameters", "held-out bits per base"),
}


class Report:
    """results.csv + dna_gpu.md + plots under ``out``, rewritten after every result."""

    def __init__(self, out: Path, budget: float, device: str, scale_note: str) -> None:
        self.out, self.budget, self.device, self.scale_note = out, budget, device, scale_note
        self.rows: list[dict] = []
        self.long_step: dict | None = None
        self.started = time.time()
        out.mkdir(parents=True, exist_ok=True)

    def elapsed(self) -> float:
        return time.time() - self.started

    def add(self, **row) -> None:
        self.rows.append({k: row.get(k, "") for k in FIELDS})
        self.write()

    def write(self) -> None:
        with open(self.out / "results.csv", "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=FIELDS)
            writer.writeheader()
            writer.writerows(self.rows)
        lines = [
            f"# DNA figures on {self.device}",
            "",
            f"Written by scripts/dna_gpu.py {self.elapsed():.0f} s after it started (budget {self.budget:.0f} s).",
            self.scale_note,
            "",
        ]
        if self.long_step:
            s = self.long_step
            lines += [
                "## Mamba HG38 step at 2^20 (batch 1)",
                "",
                "| length | model | params | peak memory GiB | step s (fwd+bwd+AdamW) | note |",
                "|---|---|---|---|---|---|",
                f"| {s['length']} | {s['model']} | {s['params']} | {s['peak_gib']} | {s['step_s']} | {s['note']} |",
                "",
            ]
        for section, (xlabel, ylabel) in LABELS.items():
            rows = [r for r in self.rows if r["section"] == section]
            if not rows:
                continue
            lines += [
                f"## {section}: {ylabel} vs {xlabel}",
                "",
                f"![{section}]({section}.png)",
                "",
                "| model | x | value | steps | train s | wall s | params | note |",
                "|---|---|---|---|---|---|---|---|",
            ]
            lines += [
                f"| {r['model']} | {r['x']} | {r['value']} | {r['steps']} | {r['train_s']} | {r['wall_s']} | "
                f"{r['params']} | {r['note']} |"
                for r in rows
            ]
            lines.append("")
            self.plot(section, rows, xlabel, ylabel)
        (self.out / "dna_gpu.md").write_text("\n".join(lines) + "\n")

    def plot(self, section: str, rows: list[dict], xlabel: str, ylabel: str) -> None:
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            return
        fig, ax = plt.subplots(figsize=(5, 3.6))
        for model in dict.fromkeys(r["model"] for r in rows):
            points = sorted(
                (float(r["x"]), float(r["value"]))
                for r in rows
                if r["model"] == model and r["value"] not in ("", None) and _number(r["x"])
            )
            if points:
                ax.plot(*zip(*points), marker="o", label=model)
        ax.set_xscale("log", base=2 if section != "size" else 10)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        if section == "species":
            ax.axhline(0.2, color="grey", lw=0.8, ls="--", label="chance")
        ax.grid(alpha=0.3)
        ax.legend()
        ax.set_title(f"{section} ({self.device})", fontsize=9)
        fig.tight_layout()
        fig.savefig(self.out / f"{section}.png", dpi=120)
        plt.close(fig)


def _number(text) -> bool:
    try:
        float(text)
        return True
    except (TypeError, ValueError):
        return False


def compose(overrides: list[str], run_dir: Path):
    """Compose ``configs/train.yaml`` as ``python src/train.py`` would, writing into ``run_dir``."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    import mambabench.utils.resolvers  # noqa: F401  (registers mb.* resolvers)

    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(ROOT / "configs")):
        cfg = hydra_compose(config_name="train.yaml", overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(run_dir)
        cfg.hydra.job.num = 0
        cfg.print_config = False
        cfg.trainer.enable_progress_bar = False
        cfg.trainer.enable_model_summary = False
    HydraConfig().set_config(cfg)
    return cfg


def run_one(
    report: Report,
    section: str,
    model: str,
    x: float,
    overrides: list[str],
    seconds: float,
    metric: str,
    name: str,
) -> None:
    """Train one configuration for at most ``seconds`` (then test) and add its row."""
    from omegaconf import open_dict

    from mambabench.utils.run import train

    if seconds < 2:
        report.add(section=section, model=model, x=x, metric=metric, note="skipped: budget spent")
        return
    run_dir = report.out / "runs" / name
    started = time.time()
    try:
        cfg = compose(overrides, run_dir)
        with open_dict(cfg):
            whole = max(1, int(seconds))
            cfg.trainer.max_time = f"00:{whole // 3600:02d}:{whole % 3600 // 60:02d}:{whole % 60:02d}"
        metrics = train(cfg)
        summary = json.loads((run_dir / "summary.json").read_text())
        value = metrics.get(metric)
        note = ""
        for png in sorted((run_dir / "confusion").glob("test_*.png")):
            shutil.copy(png, report.out / f"confusion_{name}.png")
            note = f"confusion_{name}.png"
        shutil.copy(run_dir / "summary.json", report.out / f"{name}.summary.json")
        report.add(
            section=section,
            model=model,
            x=x,
            metric=metric,
            value="" if value is None else round(float(value), 4),
            steps=summary.get("global_step"),
            train_s=round(seconds),
            wall_s=round(time.time() - started, 1),
            params=summary.get("params", {}).get("total"),
            note=note,
        )
    except Exception as err:  # one failed run must not stop the figure
        traceback.print_exc()
        report.add(
            section=section,
            model=model,
            x=x,
            metric=metric,
            wall_s=round(time.time() - started, 1),
            note=f"failed: {type(err).__name__}: {str(err).splitlines()[0][:160] if str(err) else ''}",
        )


def long_step(report: Report, length: int, data_dir: Path, device: str, extra: list[str]) -> None:
    """One warm-up and three timed AdamW steps of the 1.4M Mamba (12 x 128) on real chrX at ``length``."""
    import torch

    from mambabench.data.genome import FastaGenome
    from mambabench.data.tokenizers import CharacterTokenizer
    from mambabench.utils.build import build_network

    note = ""
    try:
        cfg = compose(
            ["experiment=dna/context_length/paper", f"data.seq_len={length}", *extra],
            report.out / "runs" / "long",
        )
        net = build_network(cfg, type("Vocab", (), {"vocab_size": 12})()).to(device)
        genome = FastaGenome(data_dir / "hg38" / "genome.fa")
        contig = max(genome.lengths, key=genome.lengths.get)
        if genome.lengths[contig] < length + 1:
            raise ValueError(f"{contig} holds {genome.lengths[contig]} bases, fewer than {length + 1}")
        start = (genome.lengths[contig] - length - 1) // 2  # the middle: chrX starts with 60 kb of N
        ids = CharacterTokenizer("ACGTN", unknown="n").encode(genome.fetch(contig, start, start + length + 1))
        ids = ids.to(device)[None]
        opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
        cuda = device.startswith("cuda")
        times = []
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        for step in range(4):
            if cuda:
                torch.cuda.synchronize()
            t0 = time.time()
            with torch.autocast(device_type="cuda" if cuda else "cpu", dtype=torch.bfloat16, enabled=cuda):
                logits = net(ids[:, :-1])
                loss = torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), ids[:, 1:].flatten())
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            if cuda:
                torch.cuda.synchronize()
            if step:
                times.append(time.time() - t0)
        peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan")
        params = sum(p.numel() for p in net.parameters())
        report.long_step = {
            "length": length,
            "model": f"Mamba {cfg.model.n_layer} x {cfg.model.d_model}",
            "params": params,
            "peak_gib": round(peak, 2),
            "step_s": round(sum(times) / len(times), 3),
            "note": f"bf16 autocast, loss {loss.item():.3f}; mean of 3 steps after 1 warm-up",
        }
        del net, opt, logits, loss
        if cuda:
            torch.cuda.empty_cache()
    except Exception as err:
        traceback.print_exc()
        note = f"failed: {type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''}"
        report.long_step = {
            "length": length,
            "model": "Mamba 12 x 128",
            "params": "",
            "peak_gib": "",
            "step_s": "",
            "note": note,
        }
    report.write()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__,
    )
    parser.add_argument(
        "--out", type=Path, required=True, help="folder for the results (written as they come)"
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("MAMBABENCH_DATA", ROOT / "data")),
        help="folder holding species/ and hg38/ (prepare_data.py ... --data-dir)",
    )
    parser.add_argument("--budget", type=float, default=240.0, help="seconds for everything (default 240)")
    parser.add_argument("--models", nargs="+", default=["mamba", "hyena"], help="models to compare")
    parser.add_argument("--species-lengths", type=int, nargs="+", default=[1024, 4096, 16384, 32768])
    parser.add_argument("--context-lengths", type=int, nargs="+", default=[1024, 4096, 16384])
    parser.add_argument(
        "--sizes", nargs="+", default=["250K", "700K", "1_4M"], help="rows of the DNA size table"
    )
    parser.add_argument("--long-length", type=int, default=1 << 20, help="sequence length of the long step")
    parser.add_argument("--tokens-per-batch", type=int, default=1 << 16, help="tokens per training batch")
    parser.add_argument(
        "--smoke", action="store_true", help="CPU logic check: tiny lengths, sizes and budget"
    )
    args = parser.parse_args(argv)

    import torch

    device = "cuda" if torch.cuda.is_available() and not args.smoke else "cpu"
    trainer = "gpu" if device == "cuda" else "cpu"
    if args.smoke:
        args.species_lengths, args.context_lengths = [256], [256]
        args.sizes, args.long_length, args.tokens_per_batch = args.sizes[:1], min(args.long_length, 256), 512
    os.environ["MAMBABENCH_DATA"] = str(args.data_dir.resolve())
    for need in ("species", "hg38"):
        if not (args.data_dir / need).is_dir():
            print(
                f"error: {args.data_dir / need} is missing; run: python scripts/prepare_data.py {need} "
                f"--data-dir {args.data_dir} (see --help for the small set)",
                file=sys.stderr,
            )
            return 1
    name = torch.cuda.get_device_name() if device == "cuda" else "CPU"
    n_runs = len(args.models) * (len(args.species_lengths) + len(args.context_lengths) + len(args.sizes))
    share = {"species": 0.36, "context": 0.30, "size": 0.24}  # the long step and start-up: the other 10 %
    per_run = {
        k: args.budget * v / (len(args.models) * n)
        for k, n, v in (
            ("species", len(args.species_lengths), share["species"]),
            ("context", len(args.context_lengths), share["context"]),
            ("size", len(args.sizes), share["size"]),
        )
    }
    overhead = 4.0 if device == "cuda" else 2.0  # per run: build, first-batch compile, test pass
    note = (
        f"Scaled to the budget: {n_runs} training runs of about {per_run['species'] - overhead:.0f} / "
        f"{per_run['context'] - overhead:.0f} / {per_run['size'] - overhead:.0f} s of fitting each (species / "
        f"context / size), so the curves are seconds of training: indicative, not converged. Paper: "
        f"10K-20K steps per point."
    )
    report = Report(args.out, args.budget, name, note)
    print(note)
    common = [
        f"trainer={trainer}",
        "logger=csv",
        "callbacks.progress_bar=null",
        "trainer.num_sanity_val_steps=0",
        # runs end at max_time: a 50-step warmup, then (cosine over 100K steps) a practically constant LR
        "trainer.max_steps=100000",
        "scheduler.warmup_steps=50",
        "seed=0",
        "trainer.limit_val_batches=0",
        "trainer.val_check_interval=null",
    ]

    runs_left = [n_runs]
    tiny = ["model.d_model=32", "model.n_layer=2"] if args.smoke else []

    def seconds(section: str) -> float:  # this run's share, less what earlier runs overspent
        left = args.budget - report.elapsed()
        runs_left[0] -= 1
        return max(0.0, min(per_run[section], left / (runs_left[0] + 1)) - overhead)

    def hyena(model: str, length: int) -> list[str]:
        return [f"model.mixer.l_max={length}", "optimizer.lr=2e-3"] if model == "hyena" else []

    long_step(
        report,
        args.long_length,
        args.data_dir,
        device,
        ["model.d_model=32", "model.n_layer=2"] if args.smoke else [],
    )

    for length in args.species_lengths:
        batch = max(1, args.tokens_per_batch // length)
        for model in args.models:
            overrides = [
                "experiment=dna/species/mini",
                *common,
                f"model={model}",
                f"data.seq_len={length}",
                f"data.batch_size={batch}",
                f"data.eval_batch_size={batch}",
                "dna.sizes.mini.d_model=128",
                "dna.sizes.mini.n_layer=2",
                f"dna.layer_multiplier={2 if model == 'mamba' else 1}",
                f"data.num_eval_samples={20 if args.smoke else 500}",
                *hyena(model, length),
                *tiny,
            ]
            run_one(
                report,
                "species",
                model,
                length,
                overrides,
                seconds("species"),
                "test/accuracy",
                f"species_{model}_L{length}",
            )

    for length in args.context_lengths:
        batch = max(1, args.tokens_per_batch // length)
        for model in args.models:
            overrides = [
                "experiment=dna/context_length/mini",
                *common,
                f"model={model}",
                f"data.seq_len={length}",
                f"data.batch_size={batch}",
                f"data.eval_batch_size={batch}",
                f"callbacks.seqlen_warmup.min_seq_len={min(1024, length)}",
                f"callbacks.seqlen_warmup.tokens_per_step={batch * length}",
                f"model.n_layer={4 if model == 'mamba' else 2}",
                "model.d_model=128",
                f"data.max_eval_windows={8 if args.smoke else max(2, (1 << 19) // length)}",
                *hyena(model, length),
                *tiny,
            ]
            run_one(
                report,
                "context",
                model,
                length,
                overrides,
                seconds("context"),
                "test/bits_per_token",
                f"context_{model}_L{length}",
            )

    for size in args.sizes:
        for model in args.models:
            length = 1024 if not args.smoke else 128
            overrides = [
                "experiment=dna/model_size/mini",
                *common,
                f"model={model}",
                f"dna.size={size}",
                f"data.seq_len={length}",
                f"data.batch_size={max(1, args.tokens_per_batch // length)}",
                f"dna.layer_multiplier={2 if model == 'mamba' else 1}",
                f"data.max_eval_windows={8 if args.smoke else 512}",
                *([] if model == "mamba" else [f"model.mixer.l_max={length}", "optimizer.lr=2e-3"]),
                *tiny,
            ]
            params_row = len(report.rows)
            run_one(
                report,
                "size",
                model,
                0,
                overrides,
                seconds("size"),
                "test/bits_per_token",
                f"size_{model}_{size}",
            )
            row = report.rows[params_row]
            row["x"] = row["params"] or size
            report.write()

    print((args.out / "dna_gpu.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
