"""Released-checkpoint loader against mamba-ssm: same logits and greedy generations, on a GPU.

For each size, mamba-ssm's ``MambaLMHeadModel`` (https://github.com/state-spaces/mamba) is built with
random weights in the released configuration, saved in the released format (``config.json`` +
``pytorch_model.bin``, as in huggingface.co/state-spaces/mamba-130m), and loaded into our LM through
``model=pretrained model.pretrained=<dir>`` (the Hydra preset, composed here). Then, in fp32 and in bf16,
on random prompts of a few lengths:

- **logits** of one forward pass over the prompt, ours against mamba-ssm's (max and mean abs diff);
- **greedy generation** of ``--new-tokens`` tokens: mamba-ssm's ``generate`` (CUDA graphs, ``cg=True``,
  on a GPU) against ours (``mambabench.models.generation.generate``: prefill + recurrent steps); the
  number of identical tokens, and where the first differing token is.

Tolerances (a row fails beyond them; the script then exits with status 1):

- fp32: max |ours - theirs| <= 1e-3 x max |theirs| (TF32 is switched off for the comparison).
- bf16: both models are compared to mamba-ssm's fp32 logits for the same weights and prompt; ours must
  stay within mamba-ssm's own bf16 error: max error <= 3x theirs and mean error <= 2x theirs (each
  with a floor of 1e-3 x max |logit|). The direct bf16 difference is reported too.
- generation: a differing token fails only when it is no near-tie: mamba-ssm's logit margin between its
  token and ours, at that position, must be within the logits tolerance above.

Needs mamba-ssm built with its CUDA kernels (``bash scripts/install_official.sh``, which also wants
``einops``). transformers and huggingface_hub are optional: names mamba-ssm imports from them that a
release lacks (transformers 5 removed some, and they only type outputs and serve Hub downloads) get
stand-ins, see ``mambabench.models.official_mamba``. Without a GPU (``--device cpu``) mamba-ssm runs
its pure-PyTorch reference path, so the script also runs on a laptop at ``--sizes tiny``.

    python scripts/official_logits_gpu.py --out results/official                  # GPU: 130m, 370m; ~1 min
    python scripts/official_logits_gpu.py --out /tmp/o --device cpu --sizes tiny --prompt-lengths 5,17

Writes ``OUT/official_logits.csv`` and ``OUT/official_logits.md`` after every row.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from mambabench.models.generation import generate
from mambabench.models.official_mamba import official_mamba
from mambabench.utils.presets import compose_model

ROOT = Path(__file__).resolve().parents[1]

#: config.json of the released checkpoints (state-spaces/mamba-130m, -370m, -1.4b), plus a tiny one for CPU
RELEASED = {
    "ssm_cfg": {},
    "rms_norm": True,
    "residual_in_fp32": True,
    "fused_add_norm": True,
    "pad_vocab_size_multiple": 8,
}
SIZES = {
    "tiny": {"d_model": 64, "n_layer": 2, "vocab_size": 500, **RELEASED},
    "130m": {"d_model": 768, "n_layer": 24, "vocab_size": 50277, **RELEASED},
    "370m": {"d_model": 1024, "n_layer": 48, "vocab_size": 50277, **RELEASED},
    "1.4b": {"d_model": 2048, "n_layer": 48, "vocab_size": 50277, **RELEASED},
}
FP32_RTOL = 1e-3
BF16_MAX_FACTOR, BF16_MEAN_FACTOR, BF16_FLOOR = 3.0, 2.0, 1e-3
FIELDS = [
    "size", "dtype", "batch", "prompt_len", "max_abs_logit", "max_abs_diff", "mean_abs_diff",
    "ours_err_max", "theirs_err_max", "ours_err_mean", "theirs_err_mean", "tolerance_max",
    "new_tokens", "identical_tokens", "first_divergence", "divergence_margin", "status",
]  # fmt: skip


def logits_row(
    ours: torch.Tensor, theirs: torch.Tensor, reference: torch.Tensor | None
) -> tuple[dict[str, float], float, bool]:
    """Differences of ours vs theirs (batch, length, vocab); ``reference``: theirs in fp32 for bf16 rows.
    Returns the row's fields, the logit tolerance that applies to this row, and whether it holds."""
    ours, theirs = ours.float(), theirs.float()
    scale = theirs.abs().max().item()
    diff = (ours - theirs).abs()
    row = {"max_abs_logit": scale, "max_abs_diff": diff.max().item(), "mean_abs_diff": diff.mean().item()}
    if reference is None:
        tol = FP32_RTOL * max(scale, 1.0)
        return {**row, "tolerance_max": tol}, tol, row["max_abs_diff"] <= tol
    ours_err, theirs_err = (ours - reference).abs(), (theirs - reference).abs()
    floor = BF16_FLOOR * scale
    row |= {
        "ours_err_max": ours_err.max().item(),
        "theirs_err_max": theirs_err.max().item(),
        "ours_err_mean": ours_err.mean().item(),
        "theirs_err_mean": theirs_err.mean().item(),
    }
    tol = BF16_MAX_FACTOR * row["theirs_err_max"] + floor
    ok = (
        row["ours_err_max"] <= tol
        and row["ours_err_mean"] <= BF16_MEAN_FACTOR * row["theirs_err_mean"] + floor
    )
    return {**row, "tolerance_max": tol}, tol, ok


@torch.inference_mode()
def generation_row(
    official: torch.nn.Module,
    ours: torch.nn.Module,
    prompt: torch.Tensor,
    new_tokens: int,
    vocab: int,
    tol: float,
) -> tuple[dict[str, object], bool]:
    """Greedy continuations of ``prompt`` (batch, length) by both models; a differing token is accepted
    only as a near-tie (mamba-ssm's margin between its token and ours <= ``tol``)."""
    length = prompt.shape[1]
    theirs = official.generate(
        prompt, max_length=length + new_tokens, top_k=1, vocab_size=vocab, cg=prompt.is_cuda
    )
    mine = generate(ours, prompt, max_new_tokens=new_tokens, temperature=0.0)
    same = theirs[:, length:] == mine[:, length:]
    row: dict[str, object] = {"new_tokens": new_tokens, "identical_tokens": int(same.sum())}
    first, margin = None, 0.0
    for b in range(prompt.shape[0]):
        differs = (~same[b]).nonzero()
        if len(differs) == 0:
            continue
        t = int(differs[0])
        first = t if first is None else min(first, t)
        logits = official(theirs[b : b + 1, : length + t]).logits[0, -1, :vocab].float()
        margin = max(margin, (logits[theirs[b, length + t]] - logits[mine[b, length + t]]).item())
    row["first_divergence"] = "none" if first is None else first
    row["divergence_margin"] = margin
    return row, margin <= tol


def write_tables(out: Path, rows: list[dict[str, object]], header: str) -> None:
    with open(out / "official_logits.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)

    def cell(value: object) -> str:
        return f"{value:.3g}" if isinstance(value, float) else str(value)

    lines = [header, "", "| " + " | ".join(FIELDS) + " |", "|" + "---|" * len(FIELDS)]
    lines += ["| " + " | ".join(cell(r.get(k, "")) for k in FIELDS) + " |" for r in rows]
    (out / "official_logits.md").write_text("\n".join(lines) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--sizes", default="130m,370m", help=f"comma-separated, of {', '.join(SIZES)}")
    parser.add_argument(
        "--dtypes", default="fp32,bf16", help="fp32 and/or bf16 (fp32 first: bf16 rows need it)"
    )
    parser.add_argument("--prompt-lengths", default="7,128,1024")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--workdir", default=None, help="where the checkpoints are written (default: a temp dir)"
    )
    args = parser.parse_args()

    device = torch.device(args.device)
    reference = device.type != "cuda"
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16}
    wanted = [d.strip() for d in args.dtypes.split(",")]
    if "bf16" in wanted and wanted[0] != "fp32":
        parser.error("--dtypes: bf16 rows are judged against the fp32 logits; list fp32 first")
    sizes = [s.strip() for s in args.sizes.split(",")]
    unknown = [s for s in sizes if s not in SIZES]
    if unknown:
        parser.error(f"unknown size(s) {unknown}; known: {', '.join(SIZES)}")
    lengths = [int(n) for n in args.prompt_lengths.split(",")]
    args.out.mkdir(parents=True, exist_ok=True)
    path = "mamba-ssm's pure-PyTorch reference path" if reference else "mamba-ssm's CUDA kernels"
    header = (
        f"# Released-format checkpoints: our loader vs mamba-ssm\n\n{device} "
        f"({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'}), {path}; torch "
        f"{torch.__version__}. fp32: max diff <= {FP32_RTOL:g} x max |logit|. bf16: error vs mamba-ssm's fp32 "
        f"logits <= {BF16_MAX_FACTOR:g}x (max) and {BF16_MEAN_FACTOR:g}x (mean) mamba-ssm's own bf16 error. "
        f"Generations: greedy, {args.new_tokens} new tokens; a differing token must be a near-tie."
    )
    rows: list[dict[str, object]] = []
    failed = False
    with official_mamba(reference=reference) as build, tempfile.TemporaryDirectory(dir=args.workdir) as work:
        for size in sizes:
            config = SIZES[size]
            vocab = config["vocab_size"]
            t0 = time.perf_counter()
            torch.manual_seed(args.seed)
            official = build(config, device=device, dtype=torch.float32)
            folder = Path(work) / f"mamba-{size}"
            folder.mkdir()
            (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
            torch.save({k: v.cpu() for k, v in official.state_dict().items()}, folder / "pytorch_model.bin")
            ours = (
                compose_model(f"pretrained,model.pretrained={folder}", vocab, ROOT / "configs")
                .to(device)
                .eval()
            )
            print(f"{size}: built, saved and loaded in {time.perf_counter() - t0:.1f} s", flush=True)
            g = torch.Generator().manual_seed(args.seed + 1)
            prompts = {n: torch.randint(0, vocab, (args.batch, n), generator=g).to(device) for n in lengths}
            fp32_logits: dict[int, torch.Tensor] = {}
            for name in wanted:
                official.to(dtypes[name])
                ours.to(dtypes[name])
                for n, prompt in prompts.items():
                    with torch.inference_mode():
                        theirs = official(prompt).logits[..., :vocab]
                        mine = ours(prompt)
                    if name == "fp32":
                        fp32_logits[n] = theirs.float()
                    fields, tol, logits_ok = logits_row(
                        mine, theirs, None if name == "fp32" else fp32_logits[n]
                    )
                    gen, gen_ok = generation_row(official, ours, prompt, args.new_tokens, vocab, tol)
                    ok = logits_ok and gen_ok
                    failed |= not ok
                    row = {"size": size, "dtype": name, "batch": args.batch, "prompt_len": n, **fields, **gen}
                    row["status"] = (
                        "ok" if ok else ("MISMATCH logits" if not logits_ok else "MISMATCH generation")
                    )
                    rows.append(row)
                    write_tables(args.out, rows, header)
                    print(
                        f"{size} {name} L={n}: max|diff| {row['max_abs_diff']:.3g} (tol {tol:.3g}), "
                        f"{row['identical_tokens']}/{args.batch * args.new_tokens} identical tokens, {row['status']}",
                        flush=True,
                    )
            del official, ours
            if device.type == "cuda":
                torch.cuda.empty_cache()
    print(
        f"{'FAILED' if failed else 'all within tolerance'}: {len(rows)} rows in {args.out / 'official_logits.md'}"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
