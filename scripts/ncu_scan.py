"""One forward + backward of the scan per shape, for Nsight Compute (hardware counters, no timing).

    ncu --clock-control none -k regex:scan --section SpeedOfLight --section Occupancy \\
        --section WarpStateStats --section SchedulerStats python scripts/ncu_scan.py --shapes 8,2048,2048

Runs the default dispatch of our Triton kernels (the training forward that saves states, then the
backward; time-split shapes also launch ``seq_scan_carry_kernel``) and, when the ``selective_scan_cuda``
extension of mamba-ssm is importable, the official kernel's ``fwd`` / ``bwd`` on the same inputs (the
Mamba module's configuration of ``mambabench.kernels.benchmark``: bf16, N = 16, variable B/C, z, D, bias,
softplus). ncu replays each kernel launch with its own cache control, so no warm-up is needed; without
ncu the script just runs the calls once (a smoke test).
"""

from __future__ import annotations

import argparse
import sys

import torch

from mambabench.kernels import benchmark as bm


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shapes", nargs="+", default=["8,2048,2048"], help="batch,dim,seqlen (N = 16)")
    p.add_argument("--dtype", default="bf16", choices=["bf16", "fp32"])
    p.add_argument("--no-official", action="store_true", help="skip the official kernel even if importable")
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        raise SystemExit("ncu_scan.py needs a CUDA GPU")
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    for shape in args.shapes:
        batch, dim, seqlen = (int(v) for v in shape.split(","))
        x = bm.make_scan_inputs(batch, dim, seqlen, 16, dtype)
        torch.cuda.nvtx.range_push(f"ours {shape}")
        bm.ours_bwd(x)()  # ours_bwd runs the training forward once to get the saved states
        torch.cuda.nvtx.range_pop()
        if bm.selective_scan_cuda is not None and not args.no_official:
            torch.cuda.nvtx.range_push(f"official {shape}")
            bm.official_bwd(x)()
            torch.cuda.nvtx.range_pop()
        torch.cuda.synchronize()
        print(f"{shape}: done", flush=True)
        del x
        torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main())
