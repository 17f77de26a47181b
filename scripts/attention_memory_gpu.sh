#!/usr/bin/env bash
# Attention decoding and training memory on one GPU: the attention-decoding GPU tests, one attention
# layer's decode step (Triton kernel against SDPA, eager and CUDA graph, 1.3B shapes) and peak training
# memory of the 125M Mamba and Transformer++ beside the paper's Table 15.
#
#   bash scripts/attention_memory_gpu.sh OUT          # one H100: about 3 minutes, most of it compilation
#   ATTN_DEVICE=cpu bash scripts/attention_memory_gpu.sh /tmp/attn   # CPU logic check at tiny sizes
#
# Writes OUT/gpu_tests.txt, OUT/attention_decode/ and OUT/memory/ (CSV and Markdown as each row is
# measured); a step that fails is reported and the next one still runs. PYTHON (default python3).
set -u
cd "$(dirname "$0")/.."

OUT=${1:?usage: scripts/attention_memory_gpu.sh OUT}
PY=${PYTHON:-python3}
DEVICE=${ATTN_DEVICE:-cuda}
mkdir -p "$OUT"
status=0

if [ "$DEVICE" = cuda ]; then
    echo "== attention decoding GPU tests"
    MAMBABENCH_KERNEL_DEVICE=cuda TRITON_INTERPRET=0 "$PY" -m pytest tests/gpu/test_attention_decode_gpu.py \
        -q -p no:cacheprovider 2>&1 | tee "$OUT/gpu_tests.txt" | tail -5
    [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
    DECODE_ARGS=()
    MEMORY_ARGS=()
else
    DECODE_ARGS=(--device cpu --d-model 64 --heads 4 --prompt 24 --new 8 --batches 1 2 --iters 2 --backends torch)
    MEMORY_ARGS=(--device cpu --seqlen 16 --batches 1 2 --steps 1 --models
        "mamba=mamba,model.d_model=32,model.n_layer=2" "transformerpp=transformerpp,model.d_model=32")
fi

echo "== one attention layer's decode step"
"$PY" scripts/bench_attention_decode.py --out "$OUT/attention_decode" "${DECODE_ARGS[@]}" || status=1

echo "== peak training memory (Table 15)"
"$PY" scripts/bench_memory.py --out "$OUT/memory" "${MEMORY_ARGS[@]}" || status=1

echo "results in $OUT (status $status)"
exit $status
