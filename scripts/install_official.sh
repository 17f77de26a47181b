#!/usr/bin/env bash
# Build the official Mamba CUDA kernels (mamba-ssm and causal-conv1d, https://github.com/state-spaces/mamba)
# from their PyPI source distributions, for this machine's GPU architecture only, and install them
# into the current Python environment. Only the benchmarks use them, as the reference to compare
# against (docs/benchmarks.md); nothing else in the project needs them.
#
#     bash scripts/install_official.sh                 # the versions the benchmarks were measured with
#     MAMBA_SSM_VERSION=2.3.2.post1 CAUSAL_CONV1D_VERSION=1.6.1 MAX_JOBS=8 bash scripts/install_official.sh
#     SDIST_DIR=sdists/ bash scripts/install_official.sh   # offline: the two .tar.gz downloaded beforehand
#     CUDA_ARCH=90 TARGET=official_site bash scripts/install_official.sh   # no GPU here: build for sm_90 into a
#                                                                           # folder to put on PYTHONPATH elsewhere
#
# Needs: a CUDA GPU, the CUDA toolkit (nvcc) matching torch's CUDA, torch installed, and network access to
# PyPI for the two sdists unless SDIST_DIR holds them (mamba_ssm-<version>.tar.gz, causal_conv1d-<version>.tar.gz,
# e.g. from https://pypi.org/simple/mamba-ssm/). Building one architecture instead of the sdists' six takes a few minutes.
# CUDA_ARCH (e.g. 90 for H100/H200) builds without a GPU; the Python version and torch build must then be
# those of the machine that runs the kernels. TARGET installs into that folder instead of the environment.
# Afterwards `python -c "import torch, selective_scan_cuda"` works (import torch first: it loads libc10).
# The official model (scripts/bench_train_step.py --models official_mamba_130m) also imports einops and
# transformers from mamba_ssm's Python code; pip install them if they are missing.
set -euo pipefail

MAMBA_SSM_VERSION=${MAMBA_SSM_VERSION:-2.3.2.post1}
CAUSAL_CONV1D_VERSION=${CAUSAL_CONV1D_VERSION:-1.6.1}
PYTHON=${PYTHON:-python}
export MAX_JOBS=${MAX_JOBS:-$(( $(nproc) > 2 ? $(nproc) - 2 : 1 ))}

arch=${CUDA_ARCH:-$("$PYTHON" - <<'EOF'
import sys
import torch
if not torch.cuda.is_available():
    sys.exit("install_official.sh: no CUDA GPU is visible; build on the GPU machine, or name its architecture: CUDA_ARCH=90")
major, minor = torch.cuda.get_device_capability()
print(f"{major}{minor}")
EOF
)}
command -v nvcc >/dev/null || { echo "install_official.sh: nvcc not found; install the CUDA toolkit (or set PATH)" >&2; exit 1; }
echo "building mamba-ssm $MAMBA_SSM_VERSION and causal-conv1d $CAUSAL_CONV1D_VERSION for sm_$arch with $MAX_JOBS jobs"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# the sdists' metadata step imports torch; skip their CUDA build while only downloading
if [ -n "${SDIST_DIR:-}" ]; then
  for sdist in causal_conv1d-"$CAUSAL_CONV1D_VERSION".tar.gz mamba_ssm-"$MAMBA_SSM_VERSION".tar.gz; do
    [ -f "$SDIST_DIR/$sdist" ] || { echo "install_official.sh: $SDIST_DIR/$sdist not found; download it from PyPI first" >&2; exit 1; }
    cp "$SDIST_DIR/$sdist" "$work/"
  done
else
  MAMBA_SKIP_CUDA_BUILD=TRUE CAUSAL_CONV1D_SKIP_CUDA_BUILD=TRUE \
    "$PYTHON" -m pip download --no-deps --no-binary :all: --no-build-isolation -d "$work" \
    "mamba-ssm==$MAMBA_SSM_VERSION" "causal-conv1d==$CAUSAL_CONV1D_VERSION"
fi

# Keep only this GPU's -gencode pair: the setup scripts list their architectures in cc_flag just
# before the "# HACK: The compiler flag -D_GLIBCXX..." line; replace the list there.
only_local_arch() {
  "$PYTHON" - "$1" "$arch" <<'EOF'
import sys
from pathlib import Path

path, arch = Path(sys.argv[1]), sys.argv[2]
text = path.read_text()
marker = "    # HACK: The compiler flag -D_GLIBCXX_USE_CXX11_ABI"
if marker not in text:
    sys.exit(f"{path}: the line {marker.strip()!r} was not found; this version's setup.py is not supported")
line = (f'    cc_flag = [f for f in cc_flag if f != "-gencode" and not f.startswith("arch=")]'
        f' + ["-gencode", "arch=compute_{arch},code=sm_{arch}"]\n')
path.write_text(text.replace(marker, line + marker, 1))
EOF
}

cd "$work"
for sdist in causal_conv1d-"$CAUSAL_CONV1D_VERSION".tar.gz mamba_ssm-"$MAMBA_SSM_VERSION".tar.gz; do
  tar xzf "$sdist"
  only_local_arch "${sdist%.tar.gz}/setup.py"
done
target=()
[ -n "${TARGET:-}" ] && mkdir -p "$TARGET" && target=(--target "$(cd "$TARGET" && pwd)")
(cd causal_conv1d-"$CAUSAL_CONV1D_VERSION" && CAUSAL_CONV1D_FORCE_BUILD=TRUE \
  "$PYTHON" -m pip install --no-build-isolation --no-deps "${target[@]}" .)
(cd mamba_ssm-"$MAMBA_SSM_VERSION" && MAMBA_FORCE_BUILD=TRUE \
  "$PYTHON" -m pip install --no-build-isolation --no-deps "${target[@]}" .)
if [ -n "${CUDA_ARCH:-}" ] || [ -n "${TARGET:-}" ]; then
  echo "official kernels built for sm_$arch${TARGET:+ into $TARGET}"
else
  "$PYTHON" -c "import torch, selective_scan_cuda, causal_conv1d; print('official kernels installed:', selective_scan_cuda.__file__)"
fi
