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
#      lraspp-efficientnet-lite0-s4, the stride-4 skip).
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -eq 1 ] || { echo "usage: $0 CAMVID_DIR" >&2; exit 2; }
data=$1
SIZE=${SIZE:-288x384}; EPOCHS=${EPOCHS:-30}; SEED=${SEED:-0}; STUDENT=${STUDENT:-lraspp-efficientnet-lite0}
RUNS=${RUNS:-runs/shipped}; DIST=${DIST:-dist/shipped}; MIN_MIOU=${MIN_MIOU:-0.40}
bin=.venv/bin
budget=(); [ -n "${BUDGET_MIN:-}" ] && budget=(--time-budget "$BUDGET_MIN")
recipe=(--student "$STUDENT" --encoder-weights imagenet --no-kd --data "$data"
        --size "$SIZE" --epochs "$EPOCHS" --batch 8 --lr 2e-3 --seed "$SEED")

train() {  # NAME SPLIT-ARGS...
    local out=$RUNS/$1; shift
    if [ -f "$out/metrics.json" ]; then echo "==> $out done"; return; fi
    local resume=(); [ -f "$out/checkpoints/last.npz" ] && resume=(--resume)
    echo "==> training $out ($(date -u +%FT%TZ))"
    "$bin/roadseg-distill" "${recipe[@]}" "$@" --out "$out" "${resume[@]}" "${budget[@]}"
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
