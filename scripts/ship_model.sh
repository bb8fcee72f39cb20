#!/usr/bin/env bash
# After scripts/train_shipped.sh: measure the shipped model's speed beside LR-ASPP MobileNetV3-Large
# int8 at the same size (trained one short epoch: its speed, not its accuracy, is the point), then put
# the model, its sidecar and its card inside the runtime package (python -m calibration.commands.ship).
# Usage: scripts/ship_model.sh CAMVID_DIR      (env: SIZE, RUNS, DIST, STUDENT, PRE_SIZE, PRE_EPOCHS, EPOCHS, LR as for train_shipped.sh;
#        FRAMES (300) per round, ROUNDS (5); AARCH64=path/to/agreement.json to quote the aarch64 check;
#        RELEASE=N: the fleet release number the card names)
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -eq 1 ] || { echo "usage: $0 CAMVID_DIR" >&2; exit 2; }
data=$1
SIZE=${SIZE:-288x384}; RUNS=${RUNS:-runs/shipped}; DIST=${DIST:-dist/shipped}
FRAMES=${FRAMES:-300}; ROUNDS=${ROUNDS:-5}
bin=.venv/bin
ref=$RUNS/speedref-lraspp-mnv3-large
if [ ! -f "$ref/metrics.json" ]; then
    echo "==> $ref (speed reference, one short epoch)"
    "$bin/roadseg-distill" --student lraspp-mobilenetv3-large --no-kd --data "$data" --size "$SIZE" \
        --epochs 1 --steps-per-epoch 5 --batch 8 --train-split except:0006R0 --val-split holdout:0006R0 --out "$ref"
fi
if [ ! -f "$DIST/speedref.json" ]; then
    "$bin/roadseg-calibrate" --model "$ref" --data "$data" --out "$DIST/speedref.tflite" --size "$SIZE" \
        --train-split except:0006R0 --val-split holdout:0006R0 --samples 50 \
        --force --max-drop 100 --min-agreement 0 --min-miou 0
fi
echo "==> roadseg-bench: shipped vs speed reference, 1 and 2 threads, interleaved"
"$bin/roadseg-bench" --model "$DIST/shipped.tflite" --model "$DIST/speedref.tflite" --threads 1 --threads 2 \
    --frames "$FRAMES" --rounds "$ROUNDS" --source "$data/val" --out "$DIST/bench.json"
aarch=(); [ -n "${AARCH64:-}" ] && aarch=(--aarch64 "$AARCH64")
# the card puts the model it replaces beside it (the card in the package now), and the fleet release number
prev=(); [ -f edge_runtime/models/card.json ] && cp edge_runtime/models/card.json "$DIST/previous-card.json" \
    && prev=(--previous "$DIST/previous-card.json")
[ -n "${RELEASE:-}" ] && prev+=(--release "$RELEASE")
"$bin/python" -m calibration.commands.ship --model "$DIST/shipped.tflite" --twin "$DIST/twin.tflite" \
    --bench "$DIST/bench.json" "${aarch[@]}" "${prev[@]}" --results "$DIST/results-section.md" --speed-note "${SPEED_NOTE:-speedref: LR-ASPP MobileNetV3-Large int8 at the same size, trained one short epoch (its speed, not its accuracy, is the point).}" \
    --command "${STUDENT:+STUDENT=$STUDENT }${PRE_SIZE:+PRE_SIZE=$PRE_SIZE PRE_EPOCHS=${PRE_EPOCHS:-20} }SIZE=$SIZE${EPOCHS:+ EPOCHS=$EPOCHS}${LR:+ LR=$LR} scripts/train_shipped.sh CAMVID_DIR && scripts/ship_model.sh CAMVID_DIR"
