#!/usr/bin/env bash
# Audio on one GPU in a few minutes: YouTubeMix bits per sample at two context lengths with the same
# tokens per step (the shape of Figure 7), then SC09: a short SaShiMi-Mamba training, unconditional
# samples generated with the recurrent step (WAV + spectrogram PNG), the digit classifier, and Table 4's
# metrics for real data vs the samples. Every result is written to OUT as soon as it exists
# (audio_gpu.md is rewritten after each step), so a run cut short still returns what it measured.
#
#   bash scripts/audio_gpu.sh OUT [BUDGET_S]          # one H100: about BUDGET_S seconds (default 240)
#   AUDIO_GPU_SMOKE=1 bash scripts/audio_gpu.sh OUT    # CPU: the same steps, tiny
#
# Data (prepared once, small enough to copy: ~7 MB):
#   python scripts/prepare_data.py youtubemix --minutes 4 --clip-seconds 20
#   python scripts/prepare_data.py sc09 --speakers 16 --takes 1 --format flac
# Environment (optional): PYTHON (default python3), MAMBABENCH_DATA (default data/), AUDIO_GPU_SC09=0
#   (skip SC09: scripts/sc09_gpu.sh prepares a larger set and scores it properly),
#   AUDIO_GPU_LENGTHS (default "8192 32768"), AUDIO_GPU_SAMPLES (SC09 samples, default 16).
# The YouTubeMix model is the paper's SaShiMi-Mamba (3 layers per level, pool 16 x 16, D=64) with a
# real-valued SSM: the Triton scan has no complex A (the paper's complex variant falls back to PyTorch).
set -u
cd "$(dirname "$0")/.."

OUT=${1:?usage: scripts/audio_gpu.sh OUT [BUDGET_S]}
BUDGET=${2:-240}
START=$(date +%s)
PY=${PYTHON:-python3}
DATA=${MAMBABENCH_DATA:-data}
export MAMBABENCH_DATA=$DATA
RUNS="$OUT/runs"
mkdir -p "$OUT" "$RUNS"
REPORT="$OUT/audio_gpu.md"
YM_ROWS="$RUNS/youtubemix_rows.md"
: > "$YM_ROWS"

if [ "${AUDIO_GPU_SMOKE:-0}" = 1 ]; then
    TRAINER=cpu; LENGTHS=${AUDIO_GPU_LENGTHS:-"256 512"}; TOKENS=1024; SC09_LEN=1024; SAMPLES=${AUDIO_GPU_SAMPLES:-2}
    YM_MODEL=(model.d_model=8 model.n_layer=1 model.outer_mixer.d_state=4 model.center_mixer.d_state=4)
    SC_MODEL=(model.d_model=8 model.n_layer=1 model.outer_mixer.d_state=4 model.center_mixer.d_state=4
              data.seq_len=$SC09_LEN data.batch_size=2)
    YM_SHARE=30; SC_SHARE=30; CLS_STEPS=3; MAXSTEPS=3; EVAL=(data.max_eval_windows=2)
else
    TRAINER=gpu; LENGTHS=${AUDIO_GPU_LENGTHS:-"8192 32768"}; TOKENS=131072; SC09_LEN=16000
    SAMPLES=${AUDIO_GPU_SAMPLES:-16}
    YM_MODEL=(model.outer_mixer.A_init=s4d_real model.center_mixer.A_init=s4d_real data.num_workers=4)
    # SC09: SaShiMi-Mamba with 2 layers per level (10 in all) so that 16,000 recurrent steps fit the budget
    SC_MODEL=(model.n_layer=2 data.batch_size=16 data.num_workers=4)
    YM_SHARE=13; SC_SHARE=17; CLS_STEPS=4000; MAXSTEPS=100000; EVAL=(data.max_eval_windows=16)
fi
COMMON=(trainer=$TRAINER logger=csv callbacks.progress_bar=null print_config=false task_name=audio_gpu)

elapsed() { echo $(( $(date +%s) - START )); }
log() { echo "[audio_gpu $(elapsed)s] $*"; }
share() { echo $(( BUDGET * $1 / 100 )); }   # seconds of fitting for one run (percent of the budget)
hms() { printf '00:00:%02d:%02d' $(( $1 / 60 )) $(( $1 % 60 )); }

write_report() {
    {
        echo "# Audio on one GPU ($(elapsed) s of a ${BUDGET} s budget)"
        echo
        echo "## YouTubeMix: test bits per sample vs context length (Figure 7's axes)"
        echo
        echo "| seq_len | batch | steps | test bits/sample | train wall s | note |"
        echo "|---|---|---|---|---|---|"
        cat "$YM_ROWS"
        if [ -f "$OUT/sc09_train.summary.json" ]; then
            echo
            echo "## SC09"
            echo
            "$PY" - "$OUT/sc09_train.summary.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
m = s["metrics"]
print(f"SaShiMi-Mamba, {s['params']['total'] / 1e6:.2f}M parameters, {s['global_step']} steps: "
      f"test NLL {m.get('test/bits_per_token', float('nan')):.3f} bits per sample")
PY
        fi
        [ -f "$OUT/sc09_classifier.json" ] && echo && echo "Digit classifier: $(cat "$OUT/sc09_classifier.json" | tr -d '\n' | cut -c1-160)"
        [ -f "$OUT/sc09_metrics.md" ] && echo && cat "$OUT/sc09_metrics.md"
        ls "$OUT"/sample_*.png > /dev/null 2>&1 && echo && echo "Spectrograms: $(cd "$OUT" && ls sample_*.png | tr '\n' ' ')"
    } > "$REPORT"
}

# ------------------------------------------------------------------------------------ YouTubeMix
for L in $LENGTHS; do
    secs=$(share $YM_SHARE)
    dir="$RUNS/youtubemix_$L"
    log "youtubemix seq_len=$L: fitting for ${secs}s"
    "$PY" src/train.py experiment=audio/youtubemix/paper "${COMMON[@]}" "hydra.run.dir=$dir" \
        data.seq_len=$L audio.tokens_per_batch=$TOKENS trainer.max_steps=$MAXSTEPS trainer.val_check_interval=null \
        trainer.check_val_every_n_epoch=1000 "++trainer.max_time='$(hms "$secs")'" "${EVAL[@]}" "${YM_MODEL[@]}" \
        > "$dir.log" 2>&1 || log "youtubemix seq_len=$L failed (see $dir.log)"
    if [ -f "$dir/summary.json" ]; then
        cp "$dir/summary.json" "$OUT/youtubemix_$L.summary.json"
        "$PY" - "$dir/summary.json" "$L" >> "$YM_ROWS" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
m = s["metrics"]
print(f"| {sys.argv[2]} | {s['data']['batch_size']} | {s['global_step']} | {m.get('test/bits_per_token', float('nan')):.4f} "
      f"| {s['wall_time_s']} | |")
PY
    else
        echo "| $L | | | | | failed: $(tail -n 1 "$dir.log" | cut -c1-120) |" >> "$YM_ROWS"
    fi
    write_report
done

# ------------------------------------------------------------------------------------------ SC09
if [ "${AUDIO_GPU_SC09:-1}" = 1 ]; then   # AUDIO_GPU_SC09=0: YouTubeMix only (scripts/sc09_gpu.sh does SC09 alone)
secs=$(share $SC_SHARE)
dir="$RUNS/sc09"
log "sc09: fitting SaShiMi-Mamba for ${secs}s"
"$PY" src/train.py experiment=audio/sc09/paper "${COMMON[@]}" "hydra.run.dir=$dir" trainer.max_steps=$MAXSTEPS \
    trainer.val_check_interval=null trainer.check_val_every_n_epoch=1000 data.max_eval_clips=64 \
    "++trainer.max_time='$(hms "$secs")'" "${SC_MODEL[@]}" > "$dir.log" 2>&1 || log "sc09 training failed (see $dir.log)"
[ -f "$dir/summary.json" ] && cp "$dir/summary.json" "$OUT/sc09_train.summary.json"
write_report

CKPT="$dir/checkpoints/last.ckpt"
GEN="$RUNS/sc09_generate"
if [ -f "$CKPT" ]; then
    DEVICE=cuda; [ "$TRAINER" = cpu ] && DEVICE=cpu
    log "sc09: generating $SAMPLES samples of $SC09_LEN steps"
    # generation must leave time for the classifier and the metrics (about 40 s)
    left=$(( BUDGET - $(elapsed) - 40 )); [ "$left" -lt 30 ] && left=30
    timeout "$left" "$PY" src/generate.py ckpt_path="$CKPT" prompt_ids=[128] max_new_tokens=$SC09_LEN num_samples=$SAMPLES \
        device=$DEVICE spectrograms=2 "hydra.run.dir=$GEN" > "$GEN.log" 2>&1 || log "generation failed (see $GEN.log)"
    cp "$GEN"/audio/sample_00[01].* "$OUT"/ 2>/dev/null
fi
write_report

CLS="$RUNS/classifier.pt"
log "sc09: digit classifier (up to $CLS_STEPS steps or 40 s)"
"$PY" scripts/train_sc09_classifier.py --root "$DATA/sc09" --out "$CLS" --steps $CLS_STEPS --max-seconds 40 --workers 4 --device $([ "$TRAINER" = cpu ] && echo cpu || echo cuda) \
    > "$RUNS/classifier.log" 2>&1 || log "classifier failed (see $RUNS/classifier.log)"
[ -f "$RUNS/classifier.json" ] && cp "$RUNS/classifier.json" "$OUT/sc09_classifier.json"

if [ -d "$GEN/audio" ] && [ -f "$CLS" ]; then
    log "sc09: Table 4 metrics, samples vs real data"
    PARAMS=$("$PY" -c "import json,sys; print(f\"{json.load(open(sys.argv[1]))['params']['total'] / 1e6:.2f}M\")" \
          "$OUT/sc09_train.summary.json" 2>/dev/null || echo -)
    NLL=$("$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))['metrics'].get('test/bits_per_token'))" \
          "$OUT/sc09_train.summary.json" 2>/dev/null || echo null)
    "$PY" src/eval.py task=sc09_samples samples_dir="$GEN/audio" classifier_ckpt="$CLS" sc09_root="$DATA/sc09" \
        nll_bits="$NLL" params="$PARAMS" model_name=SaShiMi-Mamba-short "hydra.run.dir=$RUNS/sc09_metrics" \
        device=$([ "$TRAINER" = cpu ] && echo cpu || echo cuda) > "$RUNS/sc09_metrics.log" 2>&1 \
        || log "metrics failed (see $RUNS/sc09_metrics.log)"
    cp "$RUNS"/sc09_metrics/sc09_metrics.* "$OUT"/ 2>/dev/null
fi
fi
write_report
cat "$REPORT"
log "done; results in $OUT"
