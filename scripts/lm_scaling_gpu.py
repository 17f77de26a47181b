"""Mini scaling-law sweep (the first points of Figure 4): Mamba and Transformer++ at the ``lm/mini`` sizes.

    python scripts/prepare_data.py pile --max-mb 10 --export-tokens data/pile_tokens   # once, ~7 MB of tokens
    python scripts/lm_scaling_gpu.py OUT --data data/pile_tokens [--budget 240]

Every run is ``experiment=lm/mini/<model> lm.size=<size>`` in this one process (Triton kernels compile
once). After each run ``OUT/scaling.csv``, ``OUT/scaling.md`` and ``OUT/scaling.png`` (validation
perplexity against training FLOPs, log-log, one line per model) are rewritten, so a sweep cut short
keeps what it measured. ``--budget`` seconds are shared among the runs still to do (each gets a
``trainer.max_time``); runs that no longer fit are skipped and listed. On a CPU, shrink it:
``--trainer cpu --sizes 1m --steps-scale 0.02 --context 64``.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIELDS = [
    "model",
    "size",
    "params",
    "params_non_embedding",
    "steps",
    "tokens",
    "flops",
    "final_val_loss",
    "final_val_perplexity",
    "tokens_per_s",
    "mfu",
    "peak_memory_gb",
    "wall_s",
]


def compose_run(overrides: list[str], out_dir: Path):
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    import mambabench.utils.resolvers  # noqa: F401

    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(ROOT / "configs")):
        cfg = compose(config_name="train.yaml", overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(out_dir)
        cfg.hydra.job.num = 0
        cfg.print_config = False
        cfg.callbacks.progress_bar = None
        cfg.trainer.enable_progress_bar = False
        cfg.trainer.enable_model_summary = False
    HydraConfig().set_config(cfg)
    return cfg


def _hms(seconds: float) -> str:
    """Lightning's max_time format DD:HH:MM:SS."""
    s = int(seconds)
    return f"00:{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


def write_tables(rows: list[dict], out: Path) -> None:
    with open(out / "scaling.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)

    def fmt(value, spec: str) -> str:
        return "" if value is None else format(value, spec)

    lines = [
        "| model | size | params (non-emb.) | tokens | FLOPs | val loss | val ppl | tokens/s | MFU | peak GB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        r = {k: row.get(k) for k in FIELDS}
        lines.append(
            f"| {r['model']} | {r['size']} | {fmt(r['params'], ',')} ({fmt(r['params_non_embedding'], ',')}) "
            f"| {fmt(r['tokens'], ',')} | {fmt(r['flops'], '.2e')} | {fmt(r['final_val_loss'], '.3f')} "
            f"| {fmt(r['final_val_perplexity'], '.2f')} | {fmt(r['tokens_per_s'], ',.0f')} "
            f"| {fmt(r['mfu'], '.1%')} | {fmt(r['peak_memory_gb'], '.2f')} |"
        )
    (out / "scaling.md").write_text("\n".join(lines) + "\n")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for model in dict.fromkeys(r["model"] for r in rows):
        pts = sorted(
            (r["flops"], r["final_val_perplexity"])
            for r in rows
            if r["model"] == model and r.get("flops") and r.get("final_val_perplexity")
        )
        if pts:
            ax.plot(*zip(*pts), marker="o", label=model)
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="training FLOPs",
        ylabel="validation perplexity",
        title="Scaling laws, mini sizes (cf. Figure 4)",
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "scaling.png", dpi=130)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("out", help="output folder")
    parser.add_argument("--data", required=True, help="corpus or token-cache folder (data.root)")
    parser.add_argument(
        "--budget", type=float, default=240.0, help="seconds for the whole sweep (default 240)"
    )
    parser.add_argument("--models", default="mamba,transformerpp")
    parser.add_argument("--sizes", default="1m,3m,10m,30m")
    parser.add_argument(
        "--steps-scale",
        type=float,
        default=0.5,
        help="fraction of each size's lm/mini steps to run (default 0.5)",
    )
    parser.add_argument("--context", type=int, default=None, help="override lm.context (default 512)")
    parser.add_argument("--trainer", default="gpu")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for every run")
    args = parser.parse_intermixed_args(argv)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from mambabench.utils.run import train

    sizes, models = args.sizes.split(","), args.models.split(",")
    plan = [(m, s) for s in sizes for m in models]
    started, rows, skipped = time.time(), [], []
    for i, (model, size) in enumerate(plan):
        left = args.budget - (time.time() - started)
        share = left / (len(plan) - i)
        if share < 10:
            skipped.append(f"{model}/{size}")
            continue
        probe = compose_run([f"experiment=lm/mini/{model}", f"lm.size={size}"], out / "probe")
        steps = max(2, math.ceil(probe.trainer.max_steps * args.steps_scale))
        run_dir = out / "runs" / f"{model}_{size}"
        overrides = [
            f"experiment=lm/mini/{model}",
            f"lm.size={size}",
            f"data.root={args.data}",
            f"trainer={args.trainer}",
            f"trainer.max_steps={steps}",
            f"trainer.val_check_interval={max(1, steps // 4)}",
            "test=false",
            "logger=csv",
            f"+trainer.max_time='{_hms(share)}'",
            *args.overrides,
        ]
        if args.context:
            overrides.append(f"lm.context={args.context}")
        cfg = compose_run(overrides, run_dir)
        t0 = time.time()
        print(f"[{i + 1}/{len(plan)}] {model} {size}: {steps} steps, at most {share:.0f} s", flush=True)
        try:
            train(cfg)
        except Exception as err:  # keep the sweep going; the row says what failed
            print(f"  failed: {type(err).__name__}: {err}", file=sys.stderr)
            rows.append({"model": model, "size": size, "steps": steps, "wall_s": round(time.time() - t0, 1)})
            write_tables(rows, out)
            continue
        summary = json.loads((run_dir / "summary.json").read_text())
        rows.append(
            {
                "model": model,
                "size": size,
                "params": summary["params"]["total"],
                "params_non_embedding": summary.get("params_non_embedding"),
                "steps": summary["global_step"],
                "tokens": summary.get("tokens"),
                "flops": summary.get("flops"),
                "final_val_loss": summary.get("final_val_loss"),
                "final_val_perplexity": summary.get("final_val_perplexity"),
                "tokens_per_s": summary.get("tokens_per_s"),
                "mfu": summary.get("mfu"),
                "peak_memory_gb": summary.get("peak_memory_gb"),
                "wall_s": round(time.time() - t0, 1),
            }
        )
        write_tables(rows, out)
        r = rows[-1]
        print(
            f"  val ppl {r['final_val_perplexity']}, {r['tokens_per_s']} tokens/s, MFU {r['mfu']}", flush=True
        )
    if skipped:
        (out / "skipped.txt").write_text("\n".join(skipped) + "\n")
    print(f"\n{(out / 'scaling.md').read_text() if rows else 'no runs finished'}")
    print(
        f"total {time.time() - started:.0f} s; skipped (budget): {', '.join(skipped) or 'none'}; results in {out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
