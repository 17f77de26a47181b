"""Time one attention layer's decode step, Triton decode kernel against SDPA, at Transformer++ 1.3B shapes.

    python scripts/bench_attention_decode.py --out outputs/bench_attention_decode

Each row times ``MHA.step`` (fused Wqkv GEMM, rotary, cache write, attention over the cache, out_proj)
of one layer of the 1.3B Transformer++ (d_model 2048, 32 heads of 64) in bf16 with a preallocated
cache of ``--prompt + --new`` tokens filled up to the prompt, for ``decode_backend`` = triton (the
split-K kernel) and torch (SDPA over the whole buffer with a length mask). "graph" replays the step
captured in a CUDA graph (how generation runs it); "eager" calls it from Python. Writes
``OUT/bench_attention_decode.csv`` (backend,batch,mode,cache_len,us_per_step,device) and a Markdown
table as it goes. The whole-model figure is the decode benchmark's (prompt 2048 + 128 tokens).

Tiny on CPU (eager only; the triton rows need TRITON_INTERPRET=1 there):

    python scripts/bench_attention_decode.py --device cpu --d-model 64 --heads 4 --prompt 24 --new 8 \\
        --batches 1 2 --iters 2 --out /tmp/attn
"""

from __future__ import annotations

import argparse
import csv
import os
import time
from collections.abc import Callable
from pathlib import Path

import torch

from mambabench.models.mixers.attention import MHA

FIELDS = ["backend", "batch", "mode", "cache_len", "us_per_step", "device"]


def time_call(fn: Callable[[], object], iters: int, cuda: bool) -> float:
    """Mean microseconds per call of ``fn`` over ``iters`` calls (after two warm-up calls)."""
    for _ in range(2):
        fn()
    if cuda:
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(iters):
            fn()
        end.record()
        torch.cuda.synchronize()
        return start.elapsed_time(end) * 1e3 / iters
    t0 = time.perf_counter()
    for _ in range(iters):
        fn()
    return (time.perf_counter() - t0) * 1e6 / iters


def step_timings(mixer: MHA, batch: int, args: argparse.Namespace, device: torch.device) -> dict[str, float]:
    """{mode: us per step} for one backend at one batch size; the counter is rewound before each step,
    so every step attends over ``args.prompt`` cached tokens."""
    dtype = next(mixer.parameters()).dtype
    cache = mixer.allocate_cache(batch, dtype, device, max_seqlen=args.prompt + args.new)
    cache.key.normal_()
    cache.value.normal_()
    hidden = torch.randn(batch, mixer.d_model, device=device, dtype=dtype)

    def step() -> torch.Tensor:
        cache.seqlen.fill_(args.prompt)
        cache.host_seqlen = args.prompt
        return mixer.step(hidden, cache)

    cuda = device.type == "cuda"
    result = {"eager": time_call(step, args.iters, cuda)}
    if cuda:
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            step()
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            cache.seqlen.fill_(args.prompt)
            mixer.step(hidden, cache)
        result["graph"] = time_call(graph.replay, args.iters, cuda)
    return result


def write_markdown(rows: list[dict], path: Path) -> None:
    backends = list(dict.fromkeys(r["backend"] for r in rows))
    modes = list(dict.fromkeys(r["mode"] for r in rows))
    cells = {(r["backend"], r["batch"], r["mode"]): r["us_per_step"] for r in rows}
    head = ["batch"] + [f"{b} {m} us" for m in modes for b in backends]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for batch in dict.fromkeys(r["batch"] for r in rows):
        lines.append(
            "| "
            + " | ".join([str(batch)] + [str(cells.get((b, batch, m), "")) for m in modes for b in backends])
            + " |"
        )
    path.write_text(
        f"One attention layer's decode step (us), cache {rows[0]['cache_len']} tokens, {rows[0]['device']}.\n\n"
        + "\n".join(lines)
        + "\n"
    )


def run(args: argparse.Namespace) -> list[dict]:
    device = torch.device(args.device)
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    backends = list(args.backends)
    if device.type == "cpu" and os.environ.get("TRITON_INTERPRET") != "1" and "triton" in backends:
        print("triton rows skipped on CPU (set TRITON_INTERPRET=1 to run the kernel in the interpreter)")
        backends.remove("triton")
    rows: list[dict] = []
    with open(out / "bench_attention_decode.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        for batch in args.batches:
            for backend in backends:
                torch.manual_seed(0)
                mixer = MHA(args.d_model, args.heads, decode_backend=backend).to(device, dtype).eval()
                try:
                    with torch.inference_mode():
                        timings = step_timings(mixer, batch, args, device)
                except torch.OutOfMemoryError:
                    timings = {"eager": None}
                for mode, us in timings.items():
                    row = {
                        "backend": backend,
                        "batch": batch,
                        "mode": mode,
                        "cache_len": args.prompt,
                        "us_per_step": "" if us is None else round(us, 1),
                        "device": device_name,
                    }
                    writer.writerow(row)
                    f.flush()
                    rows.append(row)
                    print(
                        f"batch {batch:>4} {backend:>6} {mode:>5}: {row['us_per_step'] or 'out of memory'} us"
                    )
                write_markdown(rows, out / "bench_attention_decode.md")
                del mixer
                if device.type == "cuda":
                    torch.cuda.empty_cache()
    print((out / "bench_attention_decode.md").read_text())
    return rows


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 16, 64, 128])
    parser.add_argument("--backends", nargs="+", default=["triton", "torch"], choices=["triton", "torch"])
    parser.add_argument("--d-model", type=int, default=2048)
    parser.add_argument("--heads", type=int, default=32)
    parser.add_argument("--prompt", type=int, default=2048, help="cached tokens each step attends to")
    parser.add_argument(
        "--new", type=int, default=128, help="room left in the cache (max_seqlen = prompt + new)"
    )
    parser.add_argument("--iters", type=int, default=50)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    return parser.parse_args(argv)


if __name__ == "__main__":
    run(parse_args())
