"""Peak training memory of a 125M Mamba and a 125M Transformer++ next to the paper's Table 15.

    python scripts/bench_memory.py --out outputs/bench_memory

One training step is forward + backward + optimizer step: random tokens, bf16 autocast with fp32
parameters (the paper's mixed precision), AdamW (fused on CUDA), next-token cross-entropy. Peak memory
is ``torch.cuda.max_memory_allocated`` over ``--steps`` steps at each batch size, so it holds the
weights, gradients, AdamW's two moments and the activations. The Transformer++ attends through
``scaled_dot_product_attention`` (FlashAttention-2 kernels on the GPU); the paper's Transformer also used
FlashAttention-2 (with ``torch.compile`` fusion). A batch that runs out of memory leaves its cell empty.

Writes, as each batch finishes: ``OUT/bench_memory.csv`` (model,batch,seqlen,peak_mem_gb,paper_gb,
device), ``OUT/bench_memory.md`` (ours beside the paper) and, with matplotlib, ``OUT/bench_memory.png``.

Models are ``LABEL=SPEC``: the label names the paper's column (``mamba``, ``transformerpp``), the spec
is a model preset with optional comma-separated overrides. A tiny run on CPU checks the script end to
end; peak memory is measured by the CUDA allocator only, so on CPU the memory column stays empty:

    python scripts/bench_memory.py --device cpu --seqlen 32 --batches 1 2 --out /tmp/mem \\
        --models "mamba=mamba,model.d_model=32,model.n_layer=2" "transformerpp=transformerpp,model.d_model=32"
"""

from __future__ import annotations

import argparse
import csv
import gc
import os
from collections.abc import Callable
from pathlib import Path

import torch

from mambabench.report.paper import paper_values
from mambabench.utils.presets import compose_model

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("PROJECT_ROOT", str(ROOT))

DEFAULT_MODELS = ["mamba=mamba_130m", "transformerpp=transformerpp,+model/size=transformerpp_125m"]
PAPER_COLUMNS = {"mamba": "mamba", "transformerpp": "transformer_fa2"}  # label -> column of table15
PAPER_SEQLEN = 2048
FIELDS = ["model", "batch", "seqlen", "peak_mem_gb", "paper_gb", "device"]


def paper_gb(label: str, batch: int, seqlen: int) -> float | None:
    """The paper's Table 15 figure for this model and batch (GB), if the setting is the paper's."""
    table = paper_values()["table15"]
    column = PAPER_COLUMNS.get(label)
    row = table["rows"].get(str(batch))
    if column is None or row is None or seqlen != PAPER_SEQLEN:
        return None
    return float(row["values"][table["columns"].index(column)])


def loss_fn(kind: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Mean cross-entropy of (tokens, vocab) logits: the Triton kernel (the LM task's default on a GPU,
    which never materialises fp32 logits) or PyTorch's on fp32 logits."""
    if kind == "torch":
        return lambda logits, targets: torch.nn.functional.cross_entropy(logits.float(), targets)
    from mambabench.kernels import cross_entropy_fn

    return lambda logits, targets: cross_entropy_fn(logits, targets, backend="triton")


def peak_training_memory(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    batch: int,
    seqlen: int,
    vocab: int,
    steps: int,
    criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
) -> float | None:
    """Run ``steps`` training steps at (batch, seqlen); peak allocated GB on CUDA, None on CPU."""
    device = next(model.parameters()).device
    tokens = torch.randint(0, vocab, (batch, seqlen + 1), device=device)
    inputs, targets = tokens[:, :-1], tokens[:, 1:].flatten()
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    for _ in range(steps):
        with torch.autocast(device.type, dtype=torch.bfloat16):
            logits = model(inputs)
        loss = criterion(logits.flatten(0, 1), targets)
        del logits
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    if not cuda:
        return None
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() / 1e9


def write_markdown(rows: list[dict], path: Path) -> None:
    """Ours beside the paper, one row per batch size, one column pair per model."""
    labels = list(dict.fromkeys(r["model"] for r in rows))
    cells = {(r["model"], r["batch"]): r for r in rows}
    head = ["batch"] + [f"{label} {what}" for label in labels for what in ("ours GB", "paper GB")]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for batch in sorted({r["batch"] for r in rows}):
        line = [str(batch)]
        for label in labels:
            row = cells.get((label, batch), {})
            ours = row.get("peak_mem_gb", "")
            line += ["oom" if row.get("oom") else str(ours), str(row.get("paper_gb", ""))]
        lines.append("| " + " | ".join(line) + " |")
    device = rows[0]["device"] if rows else ""
    note = (
        "\nPeak memory is measured by the CUDA caching allocator; on CPU it is not measured.\n"
        if device == "cpu"
        else ""
    )
    path.write_text(
        f"Peak training memory (GB), sequence length {rows[0]['seqlen']}, {device}. "
        "Paper: Table 15 (A100 80GB).\n\n" + "\n".join(lines) + "\n" + note
    )


def plot(rows: list[dict], path: Path) -> None:
    """Peak memory against batch size, ours (solid) and the paper's (dashed), if matplotlib is there."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot (pip install matplotlib)")
        return
    if all(r["peak_mem_gb"] == "" and r["paper_gb"] == "" for r in rows):
        return  # nothing measured (CPU) and no paper figure at this setting
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for i, label in enumerate(dict.fromkeys(r["model"] for r in rows)):
        mine = [r for r in rows if r["model"] == label]
        color = f"C{i}"
        ours = [(r["batch"], r["peak_mem_gb"]) for r in mine if r["peak_mem_gb"] != ""]
        paper = [(r["batch"], r["paper_gb"]) for r in mine if r["paper_gb"] != ""]
        if ours:
            ax.plot(*zip(*ours), "o-", color=color, label=f"{label} (ours)")
        if paper:
            ax.plot(*zip(*paper), "s--", color=color, alpha=0.6, label=f"{label} (paper)")
    ax.set_xscale("log", base=2)
    batches = sorted({r["batch"] for r in rows})
    ax.set_xticks(batches, [str(b) for b in batches])
    ax.set_xlabel(f"batch size (sequences of {rows[0]['seqlen']} tokens)")
    ax.set_ylabel("peak training memory (GB)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)


def free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def run(args: argparse.Namespace) -> list[dict]:
    device = torch.device(args.device)
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    loss = args.loss or ("kernel" if device.type == "cuda" else "torch")
    criterion = loss_fn(loss)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    csv_path = out / "bench_memory.csv"
    rows: list[dict] = []
    with open(csv_path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        f.flush()
        for entry in args.models:
            label, _, spec = entry.partition("=")
            if not spec:
                raise SystemExit(f"--models entries are LABEL=SPEC (e.g. mamba=mamba_130m), got {entry!r}")
            torch.manual_seed(0)
            model = compose_model(spec, args.vocab, ROOT / "configs").to(device)
            n_params = sum(p.numel() for p in model.parameters()) / 1e6
            print(f"{label}: {spec} ({n_params:.1f}M parameters), loss={loss}", flush=True)
            optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")
            for batch in args.batches:
                oom = False
                try:
                    peak = peak_training_memory(
                        model, optimizer, batch, args.seqlen, args.vocab, args.steps, criterion
                    )
                except torch.OutOfMemoryError:
                    peak, oom = None, True
                    optimizer.zero_grad(set_to_none=True)
                free_memory()
                paper = paper_gb(label, batch, args.seqlen)
                row = {
                    "model": label,
                    "batch": batch,
                    "seqlen": args.seqlen,
                    "peak_mem_gb": "" if peak is None else round(peak, 2),
                    "paper_gb": "" if paper is None else paper,
                    "device": device_name,
                }
                writer.writerow(row)
                f.flush()
                rows.append({**row, "oom": oom})
                write_markdown(rows, out / "bench_memory.md")
                shown = "out of memory" if oom else ("-" if peak is None else f"{peak:.2f} GB")
                print(
                    f"  batch {batch:>3}: {shown}   paper: {paper if paper is not None else '-'}", flush=True
                )
            del model, optimizer
            free_memory()
    plot(rows, out / "bench_memory.png")
    print((out / "bench_memory.md").read_text())
    print(f"wrote {csv_path}")
    return rows


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--models", nargs="+", default=DEFAULT_MODELS, help="LABEL=SPEC entries")
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 2, 4, 8, 16, 32])
    parser.add_argument("--seqlen", type=int, default=PAPER_SEQLEN)
    parser.add_argument("--vocab", type=int, default=50277, help="vocabulary size (GPT-NeoX: 50277)")
    parser.add_argument("--steps", type=int, default=2, help="training steps per batch size")
    parser.add_argument(
        "--loss",
        choices=["kernel", "torch"],
        default=None,
        help="cross-entropy: Triton kernel (default on CUDA) or PyTorch on fp32 logits (CPU)",
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    return parser.parse_args(argv)


if __name__ == "__main__":
    run(parse_args())
