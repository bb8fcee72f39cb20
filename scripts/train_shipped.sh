#!/usr/bin/env bash
# Train the model that ships inside edge_runtime (issue 21) on a CPU, resumably.
# Usage: scripts/train_shipped.sh CAMVID_DIR
#   1. twin:    LR-ASPP on ImageNet EfficientNet-Lite0, labels only, trained on every CamVid
#               frame outside sequence 0006R0 and scored on 0006R0 (the held-out number)
#   2. shipped: the same recipe on every train and val frame (--train-split trainval)
#   3. int8:    both calibrated at SIZE with the accuracy gate and the absolute floor
# Every stage is skipped when its output exists; a training cut off (Ctrl-C, power, or
# BUDGET_MIN minutes per invocation) continues from its checkpoint when rerun.
# Env: SIZE (288x384), EPOCHS (30), SEED (0), RUNS (runs/shipped), DIST (dist/shipped),
#      BUDGET_MIN (unset: no limit), MIN_MIOU (0.40), STUDENT (lraspp-efficientnet-lite0; or
#      lraspp-efficientnet-lite0-s4, the stride-4 skip), LR (2e-3).
#      PRE_SIZE and PRE_EPOCHS (unset: off): progressive resizing (Howard and Gugger, fast.ai, 2018; the
#      "FixRes" effect, Touvron et al. 2019): each model first trains PRE_EPOCHS at PRE_SIZE ($RUNS/NAME-pre),
#      then EPOCHS at SIZE starting from those weights (release 1: PRE_SIZE=192x256 PRE_EPOCHS=20
#      SIZE=352x480 EPOCHS=20 LR=1e-3).
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -eq 1 ] || { echo "usage: $0 CAMVID_DIR" >&2; exit 2; }
data=$1
SIZE=${SIZE:-288x384}; EPOCHS=${EPOCHS:-30}; SEED=${SEED:-0}; STUDENT=${STUDENT:-lraspp-efficientnet-lite0}
LR=${LR:-2e-3}; PRE_SIZE=${PRE_SIZE:-}; PRE_EPOCHS=${PRE_EPOCHS:-20}
RUNS=${RUNS:-runs/shipped}; DIST=${DIST:-dist/shipped}; MIN_MIOU=${MIN_MIOU:-0.40}
bin=.venv/bin
budget=(); [ -n "${BUDGET_MIN:-}" ] && budget=(--time-budget "$BUDGET_MIN")
common=(--student "$STUDENT" --encoder-weights imagenet --no-kd --data "$data" --batch 8 --seed "$SEED")

stage() {  # OUT SIZE EPOCHS LR SPLIT-ARGS... [--init-weights FILE]
    local out=$1 size=$2 epochs=$3 lr=$4; shift 4
    if [ -f "$out/metrics.json" ]; then echo "==> $out done"; return; fi
    local resume=(); [ -f "$out/checkpoints/last.npz" ] && resume=(--resume)
    echo "==> training $out at $size ($(date -u +%FT%TZ))"
    "$bin/roadseg-distill" "${common[@]}" --size "$size" --epochs "$epochs" --lr "$lr" "$@" \
        --out "$out" "${resume[@]}" "${budget[@]}"
}

train() {  # NAME SPLIT-ARGS...
    local name=$1; shift
    if [ -n "$PRE_SIZE" ]; then
        stage "$RUNS/$name-pre" "$PRE_SIZE" "$PRE_EPOCHS" 2e-3 "$@"
        stage "$RUNS/$name" "$SIZE" "$EPOCHS" "$LR" "$@" --init-weights "$RUNS/$name-pre/best.weights.h5"
    else
        stage "$RUNS/$name" "$SIZE" "$EPOCHS" "$LR" "$@"
    fi
}

calibrate() {  # NAME VAL-SPLIT
    local out=$DIST/$1.tflite
    if [ -f "${out%.tflite}.json" ]; then echo "==> $out done"; return; fi
    echo "==> calibrating $out"
    "$bin/roadseg-calibrate" --model "$RUNS/$1" --data "$data" --out "$out" --size "$SIZE" \
        --train-split "$3" --val-split "$2" --min-miou "$MIN_MIOU" --max-drop 1.0
}

train twin --train-split except:0006R0 --val-split holdout:0006R0
calibrate twin holdout:0006R0 except:0006R0
train shipped --train-split trainval --val-split val
calibrate shipped val trainval
echo "==> done: $DIST/shipped.tflite (held-out twin: $DIST/twin.json)"
