"""Run mamba-ssm's own kernel tests against our kernels: their test files and reference functions as
shipped, our functions in place of theirs.

    python scripts/official_kernel_tests.py --src path/to/mamba --out outputs/official_tests
    python scripts/official_kernel_tests.py --src mamba_ssm-2.3.2.post1.tar.gz --tests path/to/mamba/tests \
        --out OUT -k "not bfloat16"

``--src`` is a mamba-ssm source tree (a git checkout of https://github.com/state-spaces/mamba, an unpacked
sdist, or the sdist ``.tar.gz`` itself): the reference functions (``selective_scan_ref``,
``mamba_inner_ref``, ``selective_state_update_ref``) are executed from its ``mamba_ssm/ops`` files, so
mamba-ssm need not be built or installed. ``--tests`` is the folder holding ``ops/test_selective_scan.py``
and ``ops/triton/test_selective_state_update.py`` (default: ``SRC/tests``; the PyPI sdists do not ship
them, a checkout does: ``git -C mamba archive v2.3.2.post1 tests | tar x -C DIR``).

The two test files are copied unchanged and run by pytest (on CUDA; no network) with a stand-in
``mamba_ssm`` package on the path whose functions under test are adapters to ours:

- ``selective_scan_fn`` -> :func:`mambabench.kernels.selective_scan_fn` (Triton);
- ``mamba_inner_fn`` -> :func:`mambabench.models.mixers.mamba_fused.mamba_inner_fn` (the cases with
  constant B/C, which our fused block does not take, are reported as skipped);
- ``selective_state_update`` -> :func:`mambabench.kernels.selective_state_update` (heads flattened into
  channels; ``state_batch_indices`` gathered and scattered back).

Inside ``mamba_inner_ref`` the scan is their ``selective_scan_ref`` and the convolution is the
``causal_conv1d`` package's when it imports, else :func:`mambabench.ops.causal_conv1d_ref`.
Writes to ``--out``: ``pytest.log`` (as it runs), ``junit.xml``, ``summary.md`` (outcome counts per file,
every failure with its printed max differences). Needs einops (``pip install einops``), as the tests do.
"""

from __future__ import annotations

import argparse
import ast
import os
import re
import shutil
import subprocess
import sys
import tarfile
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TEST_FILES = ("ops/test_selective_scan.py", "ops/triton/test_selective_state_update.py")
REFERENCES = {
    "mamba_ssm/ops/selective_scan_interface.py": ("selective_scan_ref", "mamba_inner_ref"),
    "mamba_ssm/ops/triton/selective_state_update.py": ("selective_state_update_ref",),
}


# ---------------------------------------------------------------- loaded by the stand-in mamba_ssm package
def official_references(src: Path) -> dict[str, Any]:
    """The official reference functions, executed from their source files under ``src`` (only the
    function definitions: the modules themselves import the compiled extension)."""
    import math

    import torch
    import torch.nn.functional as F
    from einops import rearrange, repeat

    try:
        from causal_conv1d import causal_conv1d_fn
    except ImportError:
        from mambabench.ops import causal_conv1d_ref as causal_conv1d_fn
    namespace: dict[str, Any] = dict(
        torch=torch, F=F, math=math, rearrange=rearrange, repeat=repeat, causal_conv1d_fn=causal_conv1d_fn
    )
    for rel, names in REFERENCES.items():
        tree = ast.parse((src / rel).read_text(), filename=str(src / rel))
        found = [node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name in names]
        missing = set(names) - {node.name for node in found}
        if missing:
            raise SystemExit(
                f"{src / rel} has no {', '.join(sorted(missing))}; is --src a mamba-ssm source tree?"
            )
        exec(compile(ast.Module(body=found, type_ignores=[]), str(src / rel), "exec"), namespace)  # noqa: S102
    namespace["selective_scan_fn"] = namespace["selective_scan_ref"]  # mamba_inner_ref's scan: the reference
    return {name: namespace[name] for names in REFERENCES.values() for name in names}


def selective_scan_fn(
    u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False, return_last_state=False
):  # noqa: ANN001, ANN201 - the official signature
    """Our Triton scan with the official call and return convention."""
    from mambabench.kernels import selective_scan_fn as ours

    return ours(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state, backend="triton")


def mamba_inner_fn(
    xz,
    conv1d_weight,
    conv1d_bias,
    x_proj_weight,
    delta_proj_weight,
    out_proj_weight,
    out_proj_bias,
    A,
    B=None,
    C=None,
    D=None,
    delta_bias=None,
    B_proj_bias=None,
    C_proj_bias=None,
    delta_softplus=True,
    checkpoint_lvl=1,
    **unsupported,
):  # noqa: ANN001, ANN201 - the official signature
    """Our fused Mamba block (after in_proj); variants it does not implement are skipped, not failed."""
    import pytest

    from mambabench.models.mixers.mamba_fused import mamba_inner_fn as ours

    extras = [k for k, v in unsupported.items() if v is not None]
    if B is not None or C is not None or B_proj_bias is not None or C_proj_bias is not None or extras:
        pytest.skip(
            "mambabench's fused block takes selective B and C only (no constant B/C, projection biases or norms)"
        )
    if not delta_softplus or D is None or delta_bias is None:
        pytest.skip("mambabench's fused block always has D, delta_bias and the softplus")
    return ours(
        xz,
        conv1d_weight.squeeze(1),
        conv1d_bias,
        x_proj_weight,
        delta_proj_weight,
        out_proj_weight,
        out_proj_bias,
        A,
        D,
        delta_bias,
        A.shape[-1],
        backend="triton",
    )


def selective_state_update(
    state, x, dt, A, B, C, D=None, z=None, dt_bias=None, dt_softplus=False, state_batch_indices=None
):  # noqa: ANN001, ANN201 - the official signature
    """Our state update; (batch, nheads, headdim, dstate) states run as nheads * headdim channels."""
    from mambabench.kernels import selective_state_update as ours

    full = state
    if state_batch_indices is not None:
        state = full[state_batch_indices.long()]
    heads = state.dim() == 4
    if heads:
        state4 = state
        state = state4.reshape(state4.shape[0], -1, state4.shape[-1])
        x, dt = x.flatten(1), dt.flatten(1)
        z = z.flatten(1) if z is not None else None
        A = A.reshape(-1, A.shape[-1])
        D = D.reshape(-1) if D is not None else None
        dt_bias = dt_bias.reshape(-1) if dt_bias is not None else None
    out = ours(state, x, dt, A, B, C, D, z, dt_bias, dt_softplus, backend="triton")
    if heads:
        if state.data_ptr() != state4.data_ptr():  # reshape copied: write back
            state4.copy_(state.view_as(state4))
        state = state4
        out = out.view(state4.shape[:3])
    if state_batch_indices is not None:
        full[state_batch_indices.long()] = state
    return out


# ---------------------------------------------------------------- the runner
STAND_IN = '''"""Stand-in for mamba_ssm.{module} written by mambabench's scripts/official_kernel_tests.py: the
official reference functions (executed from {src}), mambabench's functions under test."""
import importlib.util as _u

_spec = _u.spec_from_file_location("official_kernel_tests", {script!r})
_runner = _u.module_from_spec(_spec)
_spec.loader.exec_module(_runner)
_refs = _runner.official_references(__import__("pathlib").Path({src!r}))
{assignments}
'''
MODULES = {
    "ops/selective_scan_interface.py": (
        "ops.selective_scan_interface",
        "selective_scan_fn = _runner.selective_scan_fn\nmamba_inner_fn = _runner.mamba_inner_fn\n"
        "selective_scan_ref = _refs['selective_scan_ref']\nmamba_inner_ref = _refs['mamba_inner_ref']",
    ),
    "ops/triton/selective_state_update.py": (
        "ops.triton.selective_state_update",
        "selective_state_update = _runner.selective_state_update\n"
        "selective_state_update_ref = _refs['selective_state_update_ref']",
    ),
}


def source_tree(src: Path, work: Path) -> Path:
    """``src`` as a directory holding ``mamba_ssm/`` (a .tar.gz sdist is unpacked into ``work``)."""
    if src.is_file() and src.name.endswith((".tar.gz", ".tgz")):
        with tarfile.open(src) as tar:
            tar.extractall(work / "src", filter="data")
        found = sorted((work / "src").glob("*/mamba_ssm"))
        if not found:
            raise SystemExit(f"{src} holds no mamba_ssm/ package folder")
        return found[0].parent
    if not (src / "mamba_ssm").is_dir():
        raise SystemExit(
            f"--src {src} has no mamba_ssm/ folder; give a mamba-ssm checkout, unpacked sdist or .tar.gz"
        )
    return src


def write_stand_in(shim: Path, src: Path) -> None:
    """The ``mamba_ssm`` package the copied tests import."""
    script = str(Path(__file__).resolve())
    for rel, (module, assignments) in MODULES.items():
        path = shim / "mamba_ssm" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(STAND_IN.format(module=module, src=str(src), script=script, assignments=assignments))
    for folder in (shim / "mamba_ssm", shim / "mamba_ssm" / "ops", shim / "mamba_ssm" / "ops" / "triton"):
        (folder / "__init__.py").touch()


def summarise(junit: Path, out: Path) -> str:
    """summary.md from pytest's junit XML: counts per test file, then every failure."""
    root = ET.parse(junit).getroot()
    counts: dict[str, Counter] = {}
    failures = []
    for case in root.iter("testcase"):
        file = case.get("classname", "").split(".")[-1]
        kind = "passed"
        for tag in ("failure", "error", "skipped"):
            node = case.find(tag)
            if node is not None:
                kind = {"failure": "failed", "error": "error", "skipped": "skipped"}[tag]
                if tag != "skipped":
                    printed = (case.findtext("system-out") or "") + (node.text or "")
                    diffs = "; ".join(re.findall(r"(\w+ max diff: [-+.\deE]+)", printed)[:2])
                    failures.append(
                        (file, case.get("name"), (node.get("message") or "").splitlines()[0][:160], diffs)
                    )
        counts.setdefault(file, Counter())[kind] += 1
    lines = ["| test file | passed | failed | error | skipped |", "|---|---:|---:|---:|---:|"]
    for file, c in counts.items():
        lines.append(f"| {file} | {c['passed']} | {c['failed']} | {c['error']} | {c['skipped']} |")
    if failures:
        lines += ["", "Failures:", ""] + [f"- `{f}::{n}`: {m} {d}".rstrip() for f, n, m, d in failures]
    text = "\n".join(lines) + "\n"
    (out / "summary.md").write_text(text)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--src", type=Path, required=True, help="mamba-ssm checkout, unpacked sdist or .tar.gz"
    )
    parser.add_argument(
        "--tests", type=Path, default=None, help="folder with ops/test_*.py (default SRC/tests)"
    )
    parser.add_argument("--out", type=Path, default=Path("outputs/official_kernel_tests"))
    parser.add_argument("-k", dest="keyword", default=None, help="pytest -k expression to select cases")
    parser.add_argument("--collect-only", action="store_true", help="check the set-up without a GPU")
    args = parser.parse_args()
    out = args.out.resolve()
    run_dir = out / "run"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    src = source_tree(args.src.resolve(), out).resolve()
    tests = (args.tests or src / "tests").resolve()
    missing = [f for f in TEST_FILES if not (tests / f).is_file()]
    if missing:
        raise SystemExit(
            f"{tests} lacks {', '.join(missing)}; the PyPI sdists do not ship the tests: pass --tests with a "
            "checkout's tests/ folder (git -C mamba archive v2.3.2.post1 tests | tar x -C DIR)"
        )
    try:
        import einops  # noqa: F401
    except ImportError:
        raise SystemExit("the official tests import einops: pip install einops") from None
    copied = []
    for rel in TEST_FILES:
        target = run_dir / Path(rel).name
        shutil.copyfile(tests / rel, target)  # as shipped
        copied.append(str(target))
    write_stand_in(run_dir / "shim", src)
    (run_dir / "pytest.ini").write_text("[pytest]\n")  # keep this project's conftest and options out
    env = dict(os.environ)
    env.pop("TRITON_INTERPRET", None)
    env["PYTHONPATH"] = os.pathsep.join([str(run_dir / "shim"), str(ROOT), env.get("PYTHONPATH", "")])
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        *copied,
        "-c",
        str(run_dir / "pytest.ini"),
        "--rootdir",
        str(run_dir),
        "-p",
        "no:cacheprovider",
        "-v",
        "-rfE",
        "-o",
        "junit_logging=all",
        "--junitxml",
        str(out / "junit.xml"),
    ]
    if args.keyword:
        cmd += ["-k", args.keyword]
    if args.collect_only:
        cmd.append("--collect-only")
    print("running:", " ".join(cmd), flush=True)
    with (out / "pytest.log").open("w") as log:
        proc = subprocess.Popen(
            cmd, cwd=run_dir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            log.write(line)
            log.flush()
            if " PASSED" not in line:
                print(line, end="", flush=True)
        code = proc.wait()
    if (out / "junit.xml").is_file():
        print(summarise(out / "junit.xml", out))
    print(f"pytest exit code {code}; log, junit.xml and summary.md in {out}")
    sys.exit(code)


if __name__ == "__main__":
    main()
