#!/usr/bin/env bash
# Install the roadseg runtime as a systemd service on a Raspberry Pi (Raspberry Pi OS Bookworm)
# or a Jetson (JetPack 6). Run from a checkout, as a user with sudo:
#   scripts/install_pi.sh --model dist/student.tflite --device-id car1 --mqtt-host broker.local [--source picamera2]
# NumPy, OpenCV and picamera2 come from apt / JetPack (a venv with --system-site-packages); pip adds
# only the rest, with the platform's constraints (constraints/*.txt) so NumPy stays 1.x. roadseg-doctor
# then checks that everything imports together; the service is not enabled when it fails.
# --venv-only stops after that check (no service, no sudo needed for the venv): what the tests run.
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL="" DEVICE_ID="$(hostname -s)" MQTT_HOST="" SOURCE="picamera2" FPS=15 PREFIX=/opt/roadseg
PLATFORM=auto VENV_ONLY=0
while [ $# -gt 0 ]; do
    case "$1" in
        --model) MODEL="$2"; shift 2 ;;
        --device-id) DEVICE_ID="$2"; shift 2 ;;
        --mqtt-host) MQTT_HOST="$2"; shift 2 ;;
        --source) SOURCE="$2"; shift 2 ;;
        --fps) FPS="$2"; shift 2 ;;
        --prefix) PREFIX="$2"; shift 2 ;;
        --platform) PLATFORM="$2"; shift 2 ;;
        --venv-only) VENV_ONLY=1; shift ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
case "$MODEL" in *.tflite|*.onnx) ;; *) echo "--model must name a .tflite or .onnx (with its .json sidecar beside it)" >&2; exit 2;; esac
[ -f "$MODEL" ] || { echo "--model $MODEL: no such file" >&2; exit 2; }
SIDECAR="${MODEL%.*}.json"
[ -f "$SIDECAR" ] || { echo "missing sidecar $SIDECAR" >&2; exit 2; }
if [ "$PLATFORM" = auto ]; then
    if [ -f /etc/nv_tegra_release ]; then PLATFORM=jetpack6; else PLATFORM=debian-bookworm; fi
fi
CONSTRAINTS="constraints/$PLATFORM.txt"
[ -f "$CONSTRAINTS" ] || { echo "--platform $PLATFORM: no $CONSTRAINTS (have: $(ls constraints | sed 's/.txt//' | tr '\n' ' '))" >&2; exit 2; }
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
CAMERA=none
case "$SOURCE" in picamera2*) CAMERA=picamera2 ;; csi*) CAMERA=csi ;; esac
if [ "$CAMERA" = picamera2 ] && ! python3 -c "import picamera2" 2>/dev/null; then
    $SUDO apt-get install -y python3-picamera2
fi
if [ "$PLATFORM" = debian-bookworm ] && ! python3 -c "import numpy, cv2" 2>/dev/null; then
    $SUDO apt-get install -y python3-numpy python3-opencv python3-venv
fi
if [ "$VENV_ONLY" = 0 ]; then
    $SUDO mkdir -p "$PREFIX/models"
    $SUDO chown "$(id -u):$(id -g)" "$PREFIX" "$PREFIX/models"
fi
# system site packages: NumPy, OpenCV, picamera2 and libcamera come from apt / JetPack, not PyPI
[ -x "$PREFIX/venv/bin/python" ] || python3 -m venv --system-site-packages "$PREFIX/venv"
PIP=("$PREFIX/venv/bin/python" -m pip)
"${PIP[@]}" install -q --upgrade pip
if ! "${PIP[@]}" install -q -c "$CONSTRAINTS" ".[runtime-system]"; then
    echo "ai-edge-litert has no wheel here: falling back to tflite-runtime"
    "${PIP[@]}" install -q -c "$CONSTRAINTS" "paho-mqtt>=2" amqtt tflite-runtime
    "${PIP[@]}" install -q -c "$CONSTRAINTS" --no-deps .
fi
case "$MODEL" in *.onnx) "$PREFIX/venv/bin/python" -c "import onnxruntime" 2>/dev/null || {
    echo "a .onnx model needs ONNX Runtime: on a Jetson, onnxruntime-gpu from NVIDIA's Jetson index (see docs/deploy.md)" >&2; exit 2; } ;;
esac
# everything must import together, with the system's NumPy; no service otherwise
if ! "$PREFIX/venv/bin/roadseg-doctor" --camera "$CAMERA" --model "$MODEL"; then
    echo "install_pi.sh: the runtime cannot start here as installed (see the fix above); no service enabled" >&2
    exit 4
fi
if [ "$VENV_ONLY" = 1 ]; then
    echo "venv ready: $PREFIX/venv (--venv-only: no service installed)"
    exit 0
fi
cp "$MODEL" "$SIDECAR" "$PREFIX/models/"
NAME="$(basename "$MODEL")"
cat > "$PREFIX/roadseg.toml" <<EOT
model = "$PREFIX/models/$NAME"
source = "$SOURCE"
fps = $FPS
device_id = "$DEVICE_ID"
# a camera that is not there at boot is waited for (status camera_lost) before the service gives up (exit 4)
camera_wait = 600
${MQTT_HOST:+mqtt_host = \"$MQTT_HOST\"}
EOT
sudo tee /etc/systemd/system/roadseg.service >/dev/null <<EOT
[Unit]
Description=roadseg live segmentation -> MQTT
Wants=network-online.target
After=network-online.target

[Service]
Type=notify
NotifyAccess=main
ExecStart=$PREFIX/venv/bin/roadseg-run --config $PREFIX/roadseg.toml
User=$(id -un)
SupplementaryGroups=video render
Restart=on-failure
RestartSec=3
WatchdogSec=60
# two glibc malloc arenas instead of up to 8 per core: same frame rate, ~12 MB less resident memory in the soak
Environment=MALLOC_ARENA_MAX=2
# credentials, if any: ROADSEG_MQTT_USERNAME / ROADSEG_MQTT_PASSWORD
EnvironmentFile=-/etc/roadseg.env
# hardening that leaves /dev/video*, /dev/media* and /dev/dma_heap visible to the camera stack
NoNewPrivileges=yes
ProtectSystem=full
ProtectHome=read-only
ProtectKernelTunables=yes
ProtectControlGroups=yes
RestrictSUIDSGID=yes
PrivateTmp=yes

[Install]
WantedBy=multi-user.target
EOT
sudo systemctl daemon-reload
sudo systemctl enable --now roadseg.service
echo "installed: systemctl status roadseg; journalctl -u roadseg -f; mosquitto_sub -h ${MQTT_HOST:-127.0.0.1} -t 'roadseg/$DEVICE_ID/#' -v"
