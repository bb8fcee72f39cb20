#!/usr/bin/env bash
# roadseg end to end at smoke scale: data -> teacher -> distilled student -> int8 with
# the accuracy gate -> roadseg-run on a video, streaming coverage over MQTT.
# Needs only Python 3.10+ and git: creates .venv and installs what it needs.
#   ./scripts/demo.sh                      synthetic street scenes, embedded MQTT broker
#   DATA=/path/to/cityscapes ./scripts/demo.sh   the same on real data (Cityscapes or CamVid layout); the
#                                                live run then plays its val frames through the shipped model
#   MQTT_HOST=broker.local ./scripts/demo.sh     publish to your broker instead
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
OUT="${OUT:-runs/demo}"
SIZE="${SIZE:-128x256}"
step() { printf '\n\033[1m==> [%s] %s\033[0m\n' "$(date +%H:%M:%S)" "$*"; }
START=$(date +%s)

step "1/7 environment (.venv, roadseg[train,runtime])"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e ".[train,runtime]"
export TF_CPP_MIN_LOG_LEVEL=2
B=.venv/bin
mkdir -p "$OUT"

REAL_DATA=${DATA:-}
if [ -z "${DATA:-}" ]; then
    DATA="$OUT/synthetic"
    step "2/7 no DATA given: synthetic street scenes in the Cityscapes layout -> $DATA"
    [ -d "$DATA/leftImg8bit" ] || $B/roadseg-data synth --out "$DATA" --train 48 --val 12 --size "$SIZE"
else
    step "2/7 dataset $DATA"
fi
$B/roadseg-data stats --data "$DATA" --split val
$B/roadseg-data preview --data "$DATA" --split val --out "$OUT/preview.png" --count 4

step "3/7 teacher: segformer-b0 from scratch (tiny budget)"
rm -rf "$OUT/teacher" "$OUT/student" "$OUT/teacher-cache"
$B/roadseg-train --arch segformer-b0 --data "$DATA" --size "$SIZE" --epochs 4 --steps-per-epoch 12 \
    --batch 4 --lr 1e-3 --out "$OUT/teacher"

step "4/7 student: roadseg-fast distilled from the teacher (cached teacher views)"
$B/roadseg-distill --teacher "$OUT/teacher" --student roadseg-fast --data "$DATA" --size "$SIZE" \
    --epochs 6 --steps-per-epoch 12 --batch 4 --lr 3e-3 --teacher-cache "$OUT/teacher-cache" --cache-views 2 \
    --out "$OUT/student"

step "5/7 int8 calibration with the accuracy gate (smoke-scale thresholds)"
$B/roadseg-calibrate --model "$OUT/student" --data "$DATA" --out "$OUT/dist/student-int8.tflite" \
    --samples 32 --max-drop 5 --min-agreement 0.8 --min-miou 0

step "6/7 a short video to play as the camera"
if [ -n "${REAL_DATA:-}" ]; then  # real street frames: the dataset's val split, at its own size
$B/python - "$OUT/drive.mp4" "$DATA" <<'PY'
import sys, cv2
from edge_runtime.eval.datasets import list_samples
fmt, samples = list_samples(sys.argv[2], "val")
frames = [cv2.imread(str(s.image)) for s in samples[:90]]
frames = [f for f in frames if f is not None]
h, w = frames[0].shape[:2]
out = cv2.VideoWriter(sys.argv[1], cv2.VideoWriter_fourcc(*"mp4v"), 15, (w, h))
for f in frames:
    out.write(cv2.resize(f, (w, h)))
out.release()
print(f"wrote {sys.argv[1]} ({len(frames)} real {fmt} val frames, {w}x{h}, 15 fps)")
PY
else
$B/python - "$OUT/drive.mp4" "$SIZE" <<'PY'
import sys, cv2
from edge_runtime.contract.preprocessing import parse_size
from edge_runtime.eval.synthetic import synthetic_scene
h, w = parse_size(sys.argv[2]); h, w = h * 2, w * 2
out = cv2.VideoWriter(sys.argv[1], cv2.VideoWriter_fourcc(*"mp4v"), 15, (w, h))
for i in range(90):
    out.write(cv2.cvtColor(synthetic_scene(1000 + i // 3, h, w)[0], cv2.COLOR_RGB2BGR))
out.release()
print(f"wrote {sys.argv[1]} (90 frames, {w}x{h}, 15 fps)")
PY
fi

# on real frames the model that ships inside the package runs (no --model); on synthetic scenes, the smoke student
if [ -n "$REAL_DATA" ]; then RUN_MODEL=(); WHICH="the shipped model (edge_runtime/models)"
else RUN_MODEL=(--model "$OUT/dist/student-int8.tflite"); WHICH="the smoke-scale student"; fi
step "7/7 roadseg-run ($WHICH) on the video at 10 FPS, subscribing to its own MQTT topics"
PORT=$($B/python -c "from edge_runtime.io.broker import free_port; print(free_port())")
if [ -n "${MQTT_HOST:-}" ]; then BROKER=(--mqtt-host "$MQTT_HOST" --mqtt-port "${MQTT_PORT:-1883}"); MON=(--mqtt-host "$MQTT_HOST" --mqtt-port "${MQTT_PORT:-1883}")
else BROKER=(--mqtt-port "$PORT"); MON=(--mqtt-port "$PORT"); fi
# the monitor starts first (the embedded broker comes up inside roadseg-run): it retries every 2 s, and
# negotiates the MQTT version (the embedded broker speaks 3.1.1); its lines are what arrived over MQTT
$B/roadseg-monitor "${MON[@]}" --topic 'roadseg/demo-car/#' --duration 40 &
MON_PID=$!
$B/roadseg-run "${RUN_MODEL[@]}" --source "$OUT/drive.mp4" --fps 10 --loop \
    --device-id demo-car "${BROKER[@]}" --publish-interval 1 --stats-interval 3 --preview "$OUT/preview.mp4" \
    --duration 15
sleep 1; kill "$MON_PID" 2>/dev/null || true; wait "$MON_PID" 2>/dev/null || true

step "done in $(( $(date +%s) - START ))s. Produced:"
cat <<EOT
  $OUT/preview.png                 dataset preview with legend
  $OUT/teacher/                    teacher run (curves.png, metrics.json, samples.png, export/)
  $OUT/student/                    distilled student run
  $OUT/dist/student-int8.tflite    int8 model + student-int8.json sidecar (accuracy gate inside)
  $OUT/preview.mp4                 the live overlay with legend and FPS
Next: scripts/reproduce_camvid.sh /path/to/camvid for real numbers; see README.md.
EOT
