#!/usr/bin/env bash
# SC09 (Table 4) on one GPU in about BUDGET_S seconds, from nothing but the installed packages:
#   1. prepare an SC09-like set of synthetic spoken digits (eSpeak NG, parallel over speakers),
#   2. train the digit classifier (small ResNet on log-mel) and, at the same time, a short SaShiMi-Mamba,
#   3. generate one-second samples with the recurrent step (WAV + spectrogram PNG) and drop the 40 % least
#      and 5 % most likely, as SaShiMi does before scoring (arXiv:2202.09729 App. C.3),
#   4. score them: Table 4 (NLL, FID, IS, mIS, AM) for the samples, real training and real held-out clips.
# Every result is written to OUT as soon as it exists (sc09_gpu.md is rewritten after each step), so a
# run cut short still returns what it measured. OUT holds at most 7 files: sc09_gpu.md, sc09_metrics.csv,
# sc09_metrics.md, classifier.json, sample_000.wav, sample_000.png and logs.tar.gz (logs + run summaries).
#
#   bash scripts/sc09_gpu.sh OUT [BUDGET_S]          # one GPU, default budget 330 s
#   SC09_GPU_SMOKE=1 bash scripts/sc09_gpu.sh OUT     # CPU: the same steps, tiny (a minute or two)
#
# Needs the PyPI packages espeakng-loader and soundfile (no network: the preparer imports them).
# Environment (optional): PYTHON (default python3), SC09_GPU_WORK (prepared data and runs; default a
#   fresh temporary folder), SC09_GPU_SPEAKERS (default 240: 4,800 clips), SC09_GPU_WORKERS (preparer
#   processes, default 4), SC09_GPU_SAMPLES (generated clips, default 64), SC09_GPU_ROOT (an existing
#   SC09 folder, e.g. the real SC09: skips step 1), SC09_GPU_EXPERIMENT (the generative model's preset,
#   default audio/sc09/paper; e.g. audio/sc09_wavenet/paper for Table 4's WaveNet row) with
#   SC09_GPU_MODEL_ARGS (its size overrides; default "model.n_layer=2" for SaShiMi, none otherwise).
set -u
cd "$(dirname "$0")/.."

OUT=${1:?usage: scripts/sc09_gpu.sh OUT [BUDGET_S]}
BUDGET=${2:-330}
START=$(date +%s)
PY=${PYTHON:-python3}
WORK=${SC09_GPU_WORK:-$(mktemp -d -t sc09_gpu.XXXXXX)}
WORKERS=${SC09_GPU_WORKERS:-4}
mkdir -p "$OUT" "$WORK"
OUT=$(cd "$OUT" && pwd)
REPORT="$OUT/sc09_gpu.md"
LOGS="$WORK/logs"
mkdir -p "$LOGS"

if [ "${SC09_GPU_SMOKE:-0}" = 1 ]; then
    DEVICE=cpu; TRAINER=cpu; SPEAKERS=${SC09_GPU_SPEAKERS:-6}; TAKES=1; SAMPLES=${SC09_GPU_SAMPLES:-3}
    LENGTH=400; CLS=(--steps 6 --width 4 --batch-size 16); CLS_SECONDS=60
    SIZE=(model.d_model=8 model.n_layer=1 model.outer_mixer.d_state=4 model.center_mixer.d_state=4)
    SC_MODEL=(data.seq_len=$LENGTH data.batch_size=2 trainer.max_steps=3 data.max_eval_clips=2)
    GEN_RESERVE=40; METRIC_RESERVE=30
else
    DEVICE=cuda; TRAINER=gpu; SPEAKERS=${SC09_GPU_SPEAKERS:-240}; TAKES=2; SAMPLES=${SC09_GPU_SAMPLES:-64}
    LENGTH=16000; CLS=(--steps 4000 --width 32 --batch-size 64); CLS_SECONDS=$(( BUDGET * 20 / 100 ))
    # SaShiMi-Mamba with 2 layers per level (10 in all, 1.8M parameters): 16,000 recurrent steps of it
    # fit the generation share of the budget
    SIZE=(model.n_layer=2)
    SC_MODEL=(data.batch_size=16 data.num_workers=2 trainer.max_steps=100000 data.max_eval_clips=64)
    GEN_RESERVE=$(( BUDGET * 22 / 100 )); METRIC_RESERVE=$(( BUDGET * 8 / 100 ))
fi

EXPERIMENT=${SC09_GPU_EXPERIMENT:-audio/sc09/paper}
case "$EXPERIMENT" in
    audio/sc09/*) MODEL_NAME=SaShiMi-Mamba-short ;;
    *) name=$(basename "$(dirname "$EXPERIMENT")"); MODEL_NAME="${name#sc09_}-short"; SIZE=() ;;
esac
if [ -n "${SC09_GPU_MODEL_ARGS+set}" ]; then read -r -a SIZE <<< "$SC09_GPU_MODEL_ARGS"; fi

elapsed() { echo $(( $(date +%s) - START )); }
log() { echo "[sc09_gpu $(elapsed)s] $*"; }
hms() { printf '00:00:%02d:%02d' $(( $1 / 60 )) $(( $1 % 60 )); }
pack_logs() { tar -czf "$OUT/logs.tar.gz" -C "$WORK" logs 2>/dev/null; }

write_report() {
    "$PY" - "$OUT" "$LOGS" "$(elapsed)" "$BUDGET" "$MODEL_NAME" > "$REPORT" <<'PY'
import json, sys
from pathlib import Path
out, logs, elapsed, budget, model = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
print(f"# SC09 on one GPU ({elapsed} s of a {budget} s budget)\n")
manifest = logs / "manifest.json"
if manifest.exists():
    m = json.loads(manifest.read_text())
    print(f"Data: {sum(m['clips'].values())} clips {m['clips']} from {len(m['speakers'])} speakers"
          f" ({m['source']})\n")
cls = out / "classifier.json"
if cls.exists():
    c = json.loads(cls.read_text())
    print(f"Digit classifier: {c['steps']} steps in {c['seconds']} s on {c['train_clips']} clips; accuracy "
          f"train {c['train_accuracy']:.3f}, validation {c['val_accuracy']:.3f}, test {c['test_accuracy']:.3f}\n")
train = logs / "sc09_train.summary.json"
if train.exists():
    s = json.loads(train.read_text())
    print(f"{model}: {s['params']['total'] / 1e6:.2f}M parameters, {s['global_step']} steps, "
          f"{s['wall_time_s']} s: test NLL {s['metrics'].get('test/bits_per_token', float('nan')):.3f} bits per sample\n")
gen = logs / "generate.json"
if gen.exists():
    g = json.loads(gen.read_text())
    print(f"Generated: {g['clips']} clips kept after rejection by likelihood, {g['samples_per_clip']} samples "
          f"each, in {g['seconds']} s; their bits per sample {g['bits_per_sample_of_kept']}\n")
table = out / "sc09_metrics.md"
if table.exists():
    print(table.read_text())
PY
}

# ------------------------------------------------------------------------------------ 1. data
if [ -n "${SC09_GPU_ROOT:-}" ]; then
    ROOT=$SC09_GPU_ROOT
    log "using the SC09 folder $ROOT"
else
    ROOT="$WORK/sc09"
    log "preparing $SPEAKERS speakers x 10 digits x $TAKES takes with $WORKERS processes into $ROOT"
    "$PY" scripts/prepare_data.py sc09 --speakers "$SPEAKERS" --takes "$TAKES" --workers "$WORKERS" --out "$ROOT" \
        > "$LOGS/prepare.log" 2>&1 || log "preparing failed (see logs/prepare.log)"
fi
cp "$ROOT/manifest.json" "$LOGS/manifest.json" 2>/dev/null
write_report

# ------------------------------------------------------- 2. classifier and SaShiMi side by side
log "digit classifier: up to ${CLS_SECONDS}s (in the background)"
"$PY" scripts/train_sc09_classifier.py --root "$ROOT" --out "$WORK/classifier.pt" --device $DEVICE --workers 2 \
    --max-seconds "$CLS_SECONDS" "${CLS[@]}" > "$LOGS/classifier.log" 2>&1 &
CLS_PID=$!

RUN="$WORK/sc09_run"
fit=$(( BUDGET - $(elapsed) - GEN_RESERVE - METRIC_RESERVE - 30 )); [ "$fit" -lt 20 ] && fit=20
log "$MODEL_NAME ($EXPERIMENT ${SIZE[*]}): fitting for ${fit}s"
"$PY" src/train.py experiment="$EXPERIMENT" trainer=$TRAINER logger=csv callbacks.progress_bar=null \
    print_config=false task_name=sc09_gpu "hydra.run.dir=$RUN" data.root="$ROOT" trainer.val_check_interval=null \
    trainer.check_val_every_n_epoch=1000 "++trainer.max_time='$(hms "$fit")'" "${SIZE[@]}" "${SC_MODEL[@]}" \
    > "$LOGS/train.log" 2>&1 || log "training failed (see logs/train.log)"
cp "$RUN/summary.json" "$LOGS/sc09_train.summary.json" 2>/dev/null

wait $CLS_PID || log "classifier failed (see logs/classifier.log)"
cp "$WORK/classifier.json" "$OUT/classifier.json" 2>/dev/null
write_report; pack_logs

# ------------------------------------------------------------------------------ 3. generation
GEN="$WORK/generate"
if [ -f "$RUN/checkpoints/last.ckpt" ]; then
    gen_s=$(( BUDGET - $(elapsed) - METRIC_RESERVE - 10 )); [ "$gen_s" -lt 10 ] && gen_s=10
    log "generating $SAMPLES clips of $LENGTH samples (stops after ${gen_s}s)"
    t0=$(date +%s)
    "$PY" src/generate.py ckpt_path="$RUN/checkpoints/last.ckpt" prompt_ids=[128] max_new_tokens=$LENGTH \
        num_samples=$SAMPLES device=$DEVICE spectrograms=1 max_seconds=$gen_s \
        reject_lowest=0.4 reject_highest=0.05 "hydra.run.dir=$GEN" \
        > "$LOGS/generate.log" 2>&1 || log "generation failed (see logs/generate.log)"
    "$PY" - "$GEN/samples.json" "$(( $(date +%s) - t0 ))" > "$LOGS/generate.json" <<'PY' || rm -f "$LOGS/generate.json"
import json, sys
s = json.load(open(sys.argv[1]))["samples"]
bits = sorted(x["bits_per_token"] for x in s)
print(json.dumps({"clips": len(s), "samples_per_clip": len(s[0]["continuation_ids"]), "seconds": int(sys.argv[2]),
                  "bits_per_sample_of_kept": [round(bits[0], 3), round(bits[-1], 3)]}))
PY
    cp "$GEN/audio/sample_000.wav" "$GEN/audio/sample_000.png" "$OUT"/ 2>/dev/null
fi
write_report; pack_logs

# --------------------------------------------------------------------------------- 4. Table 4
if [ -d "$GEN/audio" ] && [ -f "$WORK/classifier.pt" ]; then
    log "Table 4: generated vs real clips"
    read -r PARAMS NLL < <("$PY" -c "import json,sys; s=json.load(open(sys.argv[1])); \
print(f\"{s['params']['total'] / 1e6:.2f}M\", s['metrics'].get('test/bits_per_token'))" \
        "$LOGS/sc09_train.summary.json" 2>/dev/null || echo "- null")
    "$PY" src/eval.py task=sc09_samples samples_dir="$GEN/audio" classifier_ckpt="$WORK/classifier.pt" \
        sc09_root="$ROOT" nll_bits="$NLL" params="$PARAMS" model_name="$MODEL_NAME" device=$DEVICE \
        "hydra.run.dir=$WORK/metrics" > "$LOGS/metrics.log" 2>&1 || log "metrics failed (see logs/metrics.log)"
    cp "$WORK"/metrics/sc09_metrics.md "$WORK"/metrics/sc09_metrics.csv "$OUT"/ 2>/dev/null
    cp "$WORK"/metrics/sc09_metrics.json "$LOGS"/ 2>/dev/null
fi
write_report; pack_logs
cat "$REPORT"
[ -f "$OUT/sc09_metrics.csv" ] && cat "$OUT/sc09_metrics.csv"
log "done; results in $OUT (work folder $WORK)"
