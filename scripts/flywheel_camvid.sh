#!/usr/bin/env bash
# The data flywheel measured on a road the models never saw (issue 30, item 4), on a CPU, resumably.
# Usage: scripts/flywheel_camvid.sh CAMVID_DIR
#   1. teacher:  FPN-EfficientNet-Lite2 (ImageNet encoder), labels, every frame outside sequence 0006R0
#   2. base:     the Lite0 stride-4 student, labels only, same frames
#   3. vehicle:  base in int8 drives the first half of 0006R0 (0006R0[:50], real frames, one per second of the drive)
#                and keeps N = 10 and 25 frames, by its own score (selected) or at random
#   4. teacher labels them (test-time views, pixels below MIN_CONF void); the student is fine-tuned from base
#      on labels + those frames (EXTRA_RATIO of every batch), and on labels only for the same epochs (the twin);
#      seed 1 repeats the fine-tunes (and the random draw) with another seed, from the same base
#   5. every model calibrated to int8 and scored on the second half, 0006R0[50:], frames no vehicle kept
# Every stage is skipped when its output exists; a training cut off continues from its checkpoint when rerun.
# Env: SIZE (192x256), TEACHER_EPOCHS (20), BASE_EPOCHS (20), FT_EPOCHS (5), FT_LR (5e-4), EXTRA_RATIO (0.125),
#      MIN_CONF (0.5), FT_SEEDS ("0 1": the fine-tune seeds), FT_NS ("25 10": the frames each vehicle keeps), TTA (flip: the Lite2 teacher export has no size-agnostic signature for scales), RUNS (runs/flywheel), BUDGET_MIN (per training; unset: none),
#      LABELLERS (the run directories whose ensemble labels the kept frames; default $RUNS/teacher-lite2; the second
#      round: "$RUNS/teacher-lite2 runs/release1/twin", the Lite2 teacher and release 1's held-out twin at 352x480),
#      FROM_SCRATCH (1: each arm is trained as the base was, from the ImageNet encoder for BASE_EPOCHS at the base's
#      lr, as Naive-Student retrains, instead of fine-tuned from the base; seed 0's labels-only twin is the base
#      itself, another seed's is trained from scratch on labels only),
#      ARMS ("selected random": the ways of keeping run at every N; "random" with FT_NS=50 keeps the whole drive),
#      ORACLE (1: the kept frames get their human labels instead, python -m roadseg_lab flywheel-oracle: the ceiling
#      of any labeller)
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -eq 1 ] || { echo "usage: $0 CAMVID_DIR" >&2; exit 2; }
data=$1
SIZE=${SIZE:-192x256}; RUNS=${RUNS:-runs/flywheel}; FT_EPOCHS=${FT_EPOCHS:-5}; FT_LR=${FT_LR:-5e-4}
EXTRA_RATIO=${EXTRA_RATIO:-0.125}; MIN_CONF=${MIN_CONF:-0.5}; TTA=${TTA:-flip}
drive="holdout:0006R0[:50]"; test="holdout:0006R0[50:]"
bin=.venv/bin
budget=(); [ -n "${BUDGET_MIN:-}" ] && budget=(--time-budget "$BUDGET_MIN")
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}
# what taught the arms and how: stages are skipped when their output exists, so a folder holds one kind only
kind="labels=$([ "${ORACLE:-0}" = 1 ] && echo human || echo labeller) schedule=$([ "${FROM_SCRATCH:-0}" = 1 ] \
    && echo scratch || echo fine-tune)"
mkdir -p "$RUNS"
if [ -f "$RUNS/flywheel.kind" ] && [ "$(cat "$RUNS/flywheel.kind")" != "$kind" ]; then
    echo "$RUNS holds runs of '$(head -c 80 "$RUNS/flywheel.kind")', not '$kind': give another RUNS" >&2; exit 2
fi
echo "$kind" > "$RUNS/flywheel.kind"

resume() { [ -f "$1/checkpoints/last.npz" ] && echo --resume || true; }

if [ ! -f "$RUNS/teacher-lite2/metrics.json" ]; then
    echo "==> teacher ($(date -u +%FT%TZ))"
    "$bin/roadseg-train" --arch fpn-efficientnet-lite2 --encoder-weights imagenet --data "$data" --size "$SIZE" \
        --epochs "${TEACHER_EPOCHS:-20}" --batch 8 --lr 1e-3 --train-split except:0006R0 --val-split "$drive" \
        --out "$RUNS/teacher-lite2" $(resume "$RUNS/teacher-lite2") "${budget[@]}"
fi
student=(--student lraspp-efficientnet-lite0-s4 --no-kd --data "$data" --size "$SIZE" --batch 8
         --train-split except:0006R0 --val-split "$drive")
out=$RUNS/base-s0
if [ ! -f "$out/metrics.json" ]; then
    echo "==> base student ($(date -u +%FT%TZ))"
    "$bin/roadseg-distill" "${student[@]}" --encoder-weights imagenet --epochs "${BASE_EPOCHS:-20}" --lr 2e-3 \
        --seed 0 --out "$out" $(resume "$out") "${budget[@]}"
fi

calibrate_and_score() {  # RUN -> $RUNS/int8/NAME.tflite and its metrics on the test half
    local run=$1 name; name=$(basename "$1")
    local q=$RUNS/int8/$name.tflite
    [ -f "${q%.tflite}.json" ] || "$bin/roadseg-calibrate" --model "$run" --data "$data" --out "$q" --size "$SIZE" \
        --train-split except:0006R0 --val-split "$test" --max-drop 1.0 --min-miou 0
    [ -f "$RUNS/scores/$name/metrics.json" ] || "$bin/roadseg-eval" --model "$q" --data "$data" --split "$test" \
        --out "$RUNS/scores/$name" > /dev/null
}
calibrate_and_score "$RUNS/base-s0"
# the teacher, float, on the same frames: the lead the students can recover
[ -f "$RUNS/scores/teacher-lite2/metrics.json" ] || "$bin/roadseg-eval" --model "$RUNS/teacher-lite2" --data "$data" \
    --split "$test" --out "$RUNS/scores/teacher-lite2" > /dev/null
# ... and every labeller together as it labels the kept frames (full-size frames, the same views): the report's lead
labellers=(); for t in ${LABELLERS:-$RUNS/teacher-lite2}; do labellers+=(--teacher "$t"); done
[ -f "$RUNS/scores/labellers.json" ] || .venv/bin/python -m roadseg_lab teacher-eval "${labellers[@]}" --data "$data" \
    --split "$test" --size 720x960 --tta "$TTA" --out "$RUNS/scores/labellers.json" > /dev/null

finetune() {  # NAME SEED [EXTRA_DIR]
    local out=$RUNS/ft/$1 seed=$2 extra=()
    [ $# -ge 3 ] && extra=(--extra-data "$3" --extra-ratio "$EXTRA_RATIO")
    if [ ! -f "$out/metrics.json" ]; then
        echo "==> fine-tune $1 ($(date -u +%FT%TZ))"
        local init=(--init-weights "$RUNS/base-s0/best.weights.h5" --epochs "$FT_EPOCHS" --lr "$FT_LR")
        [ "${FROM_SCRATCH:-0}" = 1 ] && init=(--encoder-weights imagenet --epochs "${BASE_EPOCHS:-20}" --lr 2e-3)
        "$bin/roadseg-distill" "${student[@]}" "${init[@]}" --seed "$seed" "${extra[@]}" --out "$out" \
            $(resume "$out") "${budget[@]}"
    fi
    calibrate_and_score "$out"
}

arm() {  # MODE N SEED: the vehicle keeps N frames, the teacher labels them, the student learns from them
    local mode=$1 n=$2 seed=$3
    local name=$mode$n-s$seed
    local kept=$RUNS/kept/$name pseudo=$RUNS/pseudo/$name
    [ -f "$RUNS/kept/$name.keep.json" ] || .venv/bin/python -m roadseg_lab flywheel-keep \
        --model "$RUNS/int8/base-s0.tflite" --data "$data" --split "$drive" --n "$n" --mode "$mode" \
        --seed "$seed" --out "$kept"
    if [ -f "$pseudo/pseudolabels.json" ]; then :
    elif [ "${ORACLE:-0}" = 1 ]; then
        .venv/bin/python -m roadseg_lab flywheel-oracle --kept "$kept" --data "$data" --split "$drive" --out "$pseudo"
    else
        .venv/bin/python -m distill.commands.pseudolabel "${labellers[@]}" --frames "$kept" --out "$pseudo" \
            --tta "$TTA" --min-confidence "$MIN_CONF" --sheet "$RUNS/sheets/$name.png"
    fi
    finetune "$name" "$seed" "$pseudo"
}
# seed by seed (a run cut short still reports the seeds it finished), each seed its own labels-only twin and its
# own random draw, at every N of FT_NS
for seed in ${FT_SEEDS:-0 1}; do
    if [ "${FROM_SCRATCH:-0}" = 1 ] && [ "$seed" = 0 ]; then  # the base is seed 0's twin (a link within scores/)
        [ -L "$RUNS/scores/labels-s0" ] || [ -e "$RUNS/scores/labels-s0" ] || ln -s base-s0 "$RUNS/scores/labels-s0"
    else
        finetune "labels-s$seed" "$seed"
    fi
    for n in ${FT_NS:-25 10}; do
        for mode in ${ARMS:-selected random}; do arm "$mode" "$n" "$seed"; done
    done
done
.venv/bin/python -m roadseg_lab flywheel-report --runs "$RUNS" --data "$data" --drive "$drive"
echo "==> done ($(date -u +%FT%TZ))"
