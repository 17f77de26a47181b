#!/usr/bin/env bash
# DNA mini presets on one GPU: HG38 next-base pretraining (experiment=dna/model_size/mini),
# then great-apes species classification fine-tuned from that checkpoint at several window lengths
# (experiment=dna/great_apes/mini). After every run the table of test accuracy per length is rewritten
# to $OUT/dna_mini_gpu.md and the run's summary.json is copied to $OUT, so a run cut short still
# returns what it measured. A failed run is recorded and the next length goes on.
#
#   OUT=/tmp/out bash scripts/gpu_dna_mini.sh                     # one H100: under 8 min in all
#   DNA_MINI_SMOKE=1 OUT=/tmp/out bash scripts/gpu_dna_mini.sh    # CPU: the same steps, tiny, ~2 min
#
# Environment (all optional):
#   OUT                      where the table, summaries and confusion PNGs go (default outputs/gpu_dna_mini/report)
#   PYTHON                   interpreter (default python3)
#   MAMBABENCH_DATA          data folder (default data/, as paths.data_dir)
#   DNA_MINI_LENGTHS         fine-tuning window lengths (default "256 1024 4096")
#   DNA_MINI_PRETRAIN_LEN    pretraining window length (default 1024)
#   DNA_MINI_PRETRAIN_STEPS  / DNA_MINI_FINETUNE_STEPS   optimizer steps (defaults 1500 / 800)
#   DNA_MINI_PRETRAIN_TIME / DNA_MINI_FINETUNE_TIME   max seconds of fitting per run (defaults 90 / 60)
#   DNA_MINI_BUDGET_S        wall-clock budget of the whole script (default 450); each run also stops
#                            at its own max_time, and lengths that no longer fit are skipped
#   DNA_MINI_TRAINER         trainer config (default gpu)
#   DNA_MINI_SMOKE=1         CPU logic check: trainer=cpu, a few steps, short windows, small eval sets
set -u
cd "$(dirname "$0")/.."

START=$(date +%s)
PY=${PYTHON:-python3}
DATA=${MAMBABENCH_DATA:-data}   # the folder data configs read (paths.data_dir)
OUT=${OUT:-outputs/gpu_dna_mini/report}
RUNS=${DNA_MINI_RUNS:-outputs/gpu_dna_mini/runs_$(date +%Y%m%d_%H%M%S)}   # run directories (checkpoints)
mkdir -p "$OUT" "$RUNS"
TABLE="$OUT/dna_mini_gpu.md"
ROWS="$RUNS/rows.md"
: > "$ROWS"

if [ "${DNA_MINI_SMOKE:-0}" = 1 ]; then
    TRAINER=${DNA_MINI_TRAINER:-cpu}
    LENGTHS=${DNA_MINI_LENGTHS:-"64 128"}
    PRE_LEN=${DNA_MINI_PRETRAIN_LEN:-64}
    PRE_STEPS=${DNA_MINI_PRETRAIN_STEPS:-4}
    FT_STEPS=${DNA_MINI_FINETUNE_STEPS:-3}
    BUDGET=${DNA_MINI_BUDGET_S:-600}
    PRE_TIME=${DNA_MINI_PRETRAIN_TIME:-120}; FT_TIME=${DNA_MINI_FINETUNE_TIME:-60}
    EXTRA=(data.batch_size=4 data.num_workers=0)
    PRE_EVAL=(data.max_eval_windows=16 data.eval_batch_size=16)
    FT_EVAL=(data.num_eval_samples=16 data.eval_batch_size=16)
else
    TRAINER=${DNA_MINI_TRAINER:-gpu}
    LENGTHS=${DNA_MINI_LENGTHS:-"256 1024 4096"}
    PRE_LEN=${DNA_MINI_PRETRAIN_LEN:-1024}
    PRE_STEPS=${DNA_MINI_PRETRAIN_STEPS:-1500}
    FT_STEPS=${DNA_MINI_FINETUNE_STEPS:-800}
    BUDGET=${DNA_MINI_BUDGET_S:-450}
    # seconds of fitting per run (Lightning max_time: it stops there and tests); steps usually end first
    PRE_TIME=${DNA_MINI_PRETRAIN_TIME:-90}; FT_TIME=${DNA_MINI_FINETUNE_TIME:-60}
    EXTRA=(data.batch_size=64 data.num_workers=4 data.pin_memory=true)
    PRE_EVAL=(data.max_eval_windows=1024 data.eval_batch_size=64)
    FT_EVAL=(data.num_eval_samples=2048 data.eval_batch_size=64)
fi
COMMON=(trainer="$TRAINER" logger=csv callbacks.progress_bar=null print_config=false task_name=gpu_dna_mini)
STARTUP_S=45   # interpreter start, Triton compilation and the test pass, on top of max_time

elapsed() { echo $(( $(date +%s) - START )); }
log() { echo "[gpu_dna_mini $(elapsed)s] $*"; }

# seconds of fitting a run may have now (0: it does not fit the budget any more)
fit_seconds() {
    local want=$1 left=$(( BUDGET - $(elapsed) - STARTUP_S ))
    if [ "$left" -lt 15 ]; then echo 0; elif [ "$left" -lt "$want" ]; then echo "$left"; else echo "$want"; fi
}

hms() { printf '00:%02d:%02d:%02d' $(( $1 / 3600 )) $(( $1 % 3600 / 60 )) $(( $1 % 60 )); }

write_table() {  # the whole report, rewritten after every run
    {
        echo "# DNA mini presets on $( (nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null || echo cpu) | head -1)"
        echo
        echo "Written by scripts/gpu_dna_mini.sh (trainer=$TRAINER), $(elapsed) s after it started; budget $BUDGET s."
        echo "Pretraining: experiment=dna/model_size/mini at $PRE_LEN bases, up to $PRE_STEPS steps."
        echo "Fine-tuning: experiment=dna/great_apes/mini from that checkpoint, up to $FT_STEPS steps per length;"
        echo "test = held-out chr22 regions (disjoint from training), class-balanced. Chance: 25 %."
        echo
        echo "| run | length | steps | test acc | human | chimpanzee | gorilla | orangutan | val | wall s | tokens/s | note |"
        echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
        cat "$ROWS"
    } > "$TABLE.tmp" && mv "$TABLE.tmp" "$TABLE"
}

# one table row from a run's summary.json (or a failure note)
add_row() {  # name length run_dir note
    local name=$1 length=$2 dir=$3 note=$4
    if [ -f "$dir/summary.json" ]; then
        cp "$dir/summary.json" "$OUT/$name.summary.json"
        for png in "$dir"/confusion/test_*.png; do
            if [ -f "$png" ]; then cp "$png" "$OUT/${name}_$(basename "$png")"; fi
        done
        "$PY" - "$dir/summary.json" "$name" "$length" "$note" >> "$ROWS" <<'PY' || echo "| $name | $length | | summary unreadable | | | | | | | | $note |" >> "$ROWS"
import json, sys
path, name, length, note = sys.argv[1:5]
s = json.load(open(path))
m = s.get("metrics", {})
def f(key, scale=100.0, digits=1):
    v = m.get(key)
    return "" if v is None else f"{v * scale:.{digits}f}"
if "test/bits_per_token" in m or "val/bits_per_token" in m:  # the pretraining run: bits per base
    acc = f"{f('test/bits_per_token', 1.0, 3)} bits/base"
    per = ["", "", "", ""]
    val = f"{f('val/bits_per_token', 1.0, 3)} bits/base"
else:
    acc = f"**{f('test/accuracy')}**"
    per = [f(f"test/accuracy_{c}") for c in ("human", "chimpanzee", "gorilla", "orangutan")]
    val = f("val/accuracy")
print(f"| {name} | {length} | {s.get('global_step', '')} | {acc} | {' | '.join(per)} | {val} | "
      f"{s.get('wall_time_s', '')} | {s.get('tokens_per_s', '')} | {note} |")
PY
    else
        echo "| $name | $length | | failed (no summary.json) | | | | | | | | $note |" >> "$ROWS"
    fi
    write_table
}

run() {  # name dir fit_seconds overrides... ; returns the command's status
    local name=$1 dir=$2 secs=$3; shift 3
    log "$name: $PY src/train.py $* (max_time ${secs}s)"
    # hard stop: never past the budget + 25 s (fit_seconds leaves at least STARTUP_S for start and test)
    local hard=$(( secs + STARTUP_S + 60 )) cap=$(( BUDGET + 25 - $(elapsed) ))
    if [ "$cap" -lt "$hard" ]; then hard=$cap; fi
    timeout --kill-after=5 "$hard" \
        "$PY" src/train.py "$@" "${COMMON[@]}" "hydra.run.dir=$dir" "++trainer.max_time='$(hms "$secs")'" \
        > "$RUNS/$name.log" 2>&1
    local status=$?
    cp "$RUNS/$name.log" "$OUT/$name.log" 2>/dev/null
    tail -n 3 "$RUNS/$name.log"
    return $status
}

write_table

# 1. data (offline: Debian packages already in <data>/_packages, or prepared before)
for dataset in hg38 great_apes; do
    if [ "$dataset" = hg38 ] && [ -s "$DATA/hg38/genome.fa" ] && [ -s "$DATA/hg38/sequences.bed" ]; then continue; fi
    if [ "$dataset" = great_apes ] && [ -s "$DATA/great_apes/human.fa" ] && [ -s "$DATA/great_apes/orangutan.fa" ]; then
        continue
    fi
    log "preparing $dataset"
    if ! "$PY" scripts/prepare_data.py "$dataset" --data-dir "$DATA" > "$RUNS/prepare_$dataset.log" 2>&1; then
        tail -n 5 "$RUNS/prepare_$dataset.log"
        cp "$RUNS/prepare_$dataset.log" "$OUT/"
        echo "| prepare $dataset | | | failed: see prepare_$dataset.log | | | | | | | | |" >> "$ROWS"
        write_table
        [ "$dataset" = great_apes ] && exit 1
    fi
done

# 2. HG38 pretraining
CKPT=""
secs=$(fit_seconds "$PRE_TIME")
if [ "$secs" -gt 0 ]; then
    dir="$RUNS/hg38_pretrain"
    run hg38_pretrain "$dir" "$secs" experiment=dna/model_size/mini "data.seq_len=$PRE_LEN" "${EXTRA[@]}" \
        "${PRE_EVAL[@]}" "trainer.max_steps=$PRE_STEPS" "trainer.val_check_interval=$(( PRE_STEPS / 3 > 0 ? PRE_STEPS / 3 : 1 ))"
    status=$?
    if [ -f "$dir/checkpoints/last.ckpt" ]; then CKPT="$dir/checkpoints/last.ckpt"; fi
    add_row hg38_pretrain "$PRE_LEN" "$dir" "exit $status; LM on held-out chrX"
fi
if [ -z "$CKPT" ]; then log "no pretrained checkpoint: fine-tuning starts from scratch"; fi

# 3. great-apes fine-tuning per length
for length in $LENGTHS; do
    secs=$(fit_seconds "$FT_TIME")
    name="great_apes_L$length"
    if [ "$secs" -eq 0 ]; then
        echo "| $name | $length | | skipped: time budget spent | | | | | | | | |" >> "$ROWS"
        write_table
        continue
    fi
    dir="$RUNS/$name"
    init=(); note="from scratch"
    if [ -n "$CKPT" ]; then init=("task.pretrained_ckpt=$CKPT"); note="from hg38_pretrain"; fi
    run "$name" "$dir" "$secs" experiment=dna/great_apes/mini "data.seq_len=$length" "${EXTRA[@]}" "${FT_EVAL[@]}" \
        ${init[@]+"${init[@]}"} "trainer.max_steps=$FT_STEPS" "trainer.val_check_interval=$(( FT_STEPS / 2 > 0 ? FT_STEPS / 2 : 1 ))"
    add_row "$name" "$length" "$dir" "exit $?; $note"
done

log "done: $TABLE"
cat "$TABLE"
