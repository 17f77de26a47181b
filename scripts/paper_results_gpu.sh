#!/usr/bin/env bash
# Regenerate Table 1 and the induction-heads extrapolation figure on one GPU, then write the report:
#
#   bash scripts/paper_results_gpu.sh OUT [BUDGET_SECONDS]
#
# Scale (sized for about 240 s on one H100, Triton compilation included: 40% of BUDGET for Table 1, 40% for
# training the induction-heads models, the rest for testing them at every length; the paper trains 400K and
# 200K+ steps, so this shows the early shape, not the final numbers):
#   Table 1: the eight rows of experiment=ablations/table1/mini (L=256, 8 tokens, D=64, 2 layers),
#            T1_STEPS steps each at batch 32 (default 400).
#   Induction heads: Mamba, MHA-Abs, MHA-RoPE, MHA-xPos, H3, Hyena (D=64, 2 layers) trained at length 256
#            for IH_STEPS steps (default 800) at batch IH_BATCH (32) and lr 1e-3, then tested at
#            2^6..2^IH_MAX_LOG2 (default 20); lengths that run out of memory are marked on the figure.
# PARTS="table1 induction" (default both) picks what runs.
# Size knobs (environment): T1_STEPS IH_STEPS IH_BATCH IH_MAX_LOG2 EVAL_SAMPLES EVAL_TOKENS TRAINER, and
# T1_EXTRA / IH_EXTRA (more Hydra overrides, space-separated). A CPU smoke test in a few minutes:
#   TRAINER=cpu T1_STEPS=2 IH_STEPS=2 IH_MAX_LOG2=9 EVAL_SAMPLES=4 \
#   T1_EXTRA="data.seq_len=32 data.num_tokens_memorize=4 data.num_val_samples=8 data.num_test_samples=8 model.d_model=16" \
#   IH_EXTRA="data.num_eval_samples=8 model.d_model=16" bash scripts/paper_results_gpu.sh /tmp/paper_smoke
# Everything is written under OUT as it goes: runs/ (run folders), report/ (tables, figures), log.txt.
set -uo pipefail
shopt -s nullglob
cd "$(dirname "$0")/.."

OUT=${1:?usage: scripts/paper_results_gpu.sh OUT [BUDGET_SECONDS]}
BUDGET=${2:-240}
T1_STEPS=${T1_STEPS:-400}
IH_STEPS=${IH_STEPS:-800}
IH_BATCH=${IH_BATCH:-32}
IH_MAX_LOG2=${IH_MAX_LOG2:-20}
EVAL_SAMPLES=${EVAL_SAMPLES:-64}
EVAL_TOKENS=${EVAL_TOKENS:-4194304}
TRAINER=${TRAINER:-gpu}
DEVICE=$([ "$TRAINER" = cpu ] && echo cpu || echo cuda)
mkdir -p "$OUT/runs"
OUT=$(cd "$OUT" && pwd)
LOG="$OUT/log.txt"
started=$(date +%s)
elapsed() { echo $(( $(date +%s) - started )); }
say() { echo "[$(elapsed) s] $*" | tee -a "$LOG"; }

say "commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown); budget ${BUDGET} s; trainer=$TRAINER"
PARTS=${PARTS:-table1 induction}
# run folders named by job number (runs/table1/0 ... 7), not by the overrides
common=(trainer="$TRAINER" print_config=false callbacks.progress_bar=null logger=csv 'hydra.sweep.subdir=${hydra:job.num}')

# 1. Table 1: the eight architecture x layer rows, one process (one Triton compilation)
if [[ " $PARTS " == *" table1 "* ]]; then
say "Table 1: 8 runs x $T1_STEPS steps"
timeout $(( BUDGET * 40 / 100 )) python src/train.py -m experiment=ablations/table1/mini "${common[@]}" \
  trainer.max_steps="$T1_STEPS" trainer.val_check_interval="$T1_STEPS" \
  hydra.sweep.dir="$OUT/runs/table1" ${T1_EXTRA:-} >>"$LOG" 2>&1 || say "Table 1 stopped early (exit $?); partial rows are kept"
python scripts/report.py "$OUT/runs" --out "$OUT/report" >>"$LOG" 2>&1 && say "report written (Table 1)"
fi

# 2. Induction heads: train at 256 (validated at 256 only), then test every length in its own pass
if [[ " $PARTS " == *" induction "* ]]; then
say "induction heads: 6 models x $IH_STEPS steps"
timeout $(( BUDGET * 40 / 100 )) python src/train.py -m experiment=induction_heads/paper "${common[@]}" \
  model=mamba,mha_abs,mha_rope,mha_xpos,h3,hyena data.batch_size="$IH_BATCH" data.eval_batch_size=64 \
  "data.test_seq_lens=[256]" data.num_eval_samples=256 trainer.max_steps="$IH_STEPS" \
  trainer.val_check_interval="$IH_STEPS" \
  hydra.sweep.dir="$OUT/runs/induction_heads" ${IH_EXTRA:-} >>"$LOG" 2>&1 || say "induction-heads training stopped early (exit $?)"
lengths=$(python -c "print(','.join(str(2**k) for k in range(6, $IH_MAX_LOG2 + 1)))")
left=$(( BUDGET - $(elapsed) - 20 ))
runs=()
for run in "$OUT"/runs/induction_heads/*/; do
  if [ -f "$run/checkpoints/last.ckpt" ]; then runs+=("$run"); else say "no checkpoint in $run"; fi
done
if [ ${#runs[@]} -gt 0 ]; then
  per_model=$(( left / ${#runs[@]} > 5 ? left / ${#runs[@]} : 5 ))
  say "testing ${#runs[@]} models at 2^6..2^$IH_MAX_LOG2 in one process, at most ${per_model} s each"
  timeout $(( per_model * ${#runs[@]} + 30 )) python scripts/eval_lengths.py "${runs[@]}" --lengths "$lengths" \
    --device "$DEVICE" --samples "$EVAL_SAMPLES" --tokens-per-length "$EVAL_TOKENS" --time-budget "$per_model" \
    >>"$LOG" 2>&1 || say "length tests stopped (exit $?); the lengths done are kept"
fi
fi

# 3. The report: Table 1 and Table 11 beside the paper's, the induction-heads figure
python scripts/report.py "$OUT/runs" --out "$OUT/report" >>"$LOG" 2>&1
say "done; report in $OUT/report"
grep -h "^| " "$OUT/report/table1_mini.md" 2>/dev/null | head -10
grep -h "length .*accuracy\|out of memory" "$LOG" | tail -20
