#!/usr/bin/env bash
# In-context regression on one GPU: Mamba, GPT-2, S4 and RWKV (the icl/mini sizes) trained side by side
# on linear regression and a second function family, then error vs number of in-context examples (in
# distribution, beyond the trained number of examples, out of distribution) next to the baselines,
# probes per layer, figures and CSV (scripts/icl_report.py).
#
#   bash scripts/icl_gpu.sh OUT [BUDGET_S]        # one H100: BUDGET_S (default 200) seconds in all
#   ICL_TRAINER=cpu ICL_STEPS=5 ICL_PROMPTS=32 bash scripts/icl_gpu.sh /tmp/icl 600   # CPU logic check
#
# All runs of one call train at the same time on the one GPU (the models are small); each stops at its
# step count or at its share of the budget (Lightning max_time), whichever comes first, then tests.
# Each run leaves its directory under OUT/runs (metrics.csv as it goes, icl/test_curves.csv, summary.json);
# the report in OUT is written once they end.
#
# Environment (optional): ICL_FAMILIES (default "linear noisy_linear"), ICL_MODELS (default
# "mamba transformer s4 rwkv"), ICL_STEPS (max steps per run, default 5000), ICL_TRAINER (gpu),
# ICL_PROMPTS (test prompts per evaluation set for the report, default 512), PYTHON (python3).
set -u
cd "$(dirname "$0")/.."

OUT=${1:?usage: scripts/icl_gpu.sh OUT [BUDGET_S]}
BUDGET=${2:-200}
PY=${PYTHON:-python3}
FAMILIES=${ICL_FAMILIES:-"linear noisy_linear"}
MODELS=${ICL_MODELS:-"mamba transformer s4 rwkv"}
STEPS=${ICL_STEPS:-5000}
TRAINER=${ICL_TRAINER:-gpu}
PROMPTS=${ICL_PROMPTS:-512}
START=$(date +%s)
mkdir -p "$OUT/runs" "$OUT/logs"

# training gets what is left after start-up (imports, kernel compilation) and the report
FIT_S=$(( BUDGET * 55 / 100 ))
[ "$FIT_S" -lt 5 ] && FIT_S=5
MAX_TIME=$(printf "00:00:%02d:%02d" $((FIT_S / 60)) $((FIT_S % 60)))
THREADS=$(( $(nproc) / ( $(echo $FAMILIES | wc -w) * $(echo $MODELS | wc -w) ) ))
[ "$THREADS" -lt 1 ] && THREADS=1
echo "icl_gpu: families [$FAMILIES] x models [$MODELS], ${STEPS} steps or ${FIT_S}s of fitting each, trainer=$TRAINER"

pids=()
for family in $FAMILIES; do
  for model in $MODELS; do
    run="$OUT/runs/${family}_${model}"
    OMP_NUM_THREADS=$THREADS "$PY" src/train.py "experiment=icl/$family/mini" "model=icl/mini/$model" \
      trainer="$TRAINER" trainer.max_steps="$STEPS" ++trainer.max_time="$MAX_TIME" trainer.val_check_interval=500 \
      trainer.check_val_every_n_epoch=null data.num_eval_samples=$PROMPTS logger=csv callbacks.progress_bar=null \
      print_config=false task_name=icl_gpu paths.output_dir="$run" > "$OUT/logs/${family}_${model}.log" 2>&1 &
    pids+=($!)
  done
done
failed=0
for pid in "${pids[@]}"; do wait "$pid" || failed=$((failed + 1)); done
echo "icl_gpu: training done after $(( $(date +%s) - START ))s ($failed run(s) failed; logs in $OUT/logs)"

DEVICE=cpu
[ "$TRAINER" = gpu ] && DEVICE=cuda
"$PY" scripts/icl_report.py "$OUT/runs" --out "$OUT" --device "$DEVICE" --num-prompts "$PROMPTS" \
  --probe-prompts $(( PROMPTS * 2 )) \
  --points 0 1 2 3 5 8 10 15 20 | tee "$OUT/logs/report.log"
echo "icl_gpu: finished after $(( $(date +%s) - START ))s; figures and CSV in $OUT"
