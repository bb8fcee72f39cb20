#!/usr/bin/env bash
# roadseg demo: data -> teacher -> student -> int8 -> live MQTT stream, at smoke scale.
# Creates .venv and installs what it needs. With DATA=/path/to/dataset it uses
# real data (Cityscapes or CamVid layout); otherwise synthetic street scenes.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
echo "==> installing roadseg[train,runtime]"
.venv/bin/python -m pip install -q -e ".[train,runtime]"
OUT="${OUT:-runs/demo}"
mkdir -p "$OUT"
if [ -z "${DATA:-}" ]; then
    DATA="$OUT/synthetic"
    echo "==> no DATA given: writing synthetic street scenes to $DATA"
    .venv/bin/roadseg-data synth --out "$DATA" --train 48 --val 12 --size 128x256
fi
echo "==> dataset statistics"
.venv/bin/roadseg-data stats --data "$DATA" --split val
.venv/bin/roadseg-data preview --data "$DATA" --split val --out "$OUT/preview.png" --count 4
echo "==> wrote $OUT/preview.png"
