#!/usr/bin/env bash
# Install the roadseg runtime as a systemd service on a Raspberry Pi (Raspberry Pi OS Bookworm)
# or a Jetson (JetPack 6). Run from a checkout, as a user with sudo:
#   scripts/install_pi.sh --model dist/student.tflite --device-id car1 --mqtt-host broker.local [--source picamera2]
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL="" DEVICE_ID="$(hostname -s)" MQTT_HOST="" SOURCE="picamera2" FPS=15 PREFIX=/opt/roadseg
while [ $# -gt 0 ]; do
    case "$1" in
        --model) MODEL="$2"; shift 2 ;;
        --device-id) DEVICE_ID="$2"; shift 2 ;;
        --mqtt-host) MQTT_HOST="$2"; shift 2 ;;
        --source) SOURCE="$2"; shift 2 ;;
        --fps) FPS="$2"; shift 2 ;;
        --prefix) PREFIX="$2"; shift 2 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
[ -f "$MODEL" ] || { echo "--model must name a .tflite (with its .json sidecar beside it)" >&2; exit 2; }
[ -f "${MODEL%.tflite}.json" ] || { echo "missing sidecar ${MODEL%.tflite}.json" >&2; exit 2; }

if [[ "$SOURCE" == picamera2* ]] && ! python3 -c "import picamera2" 2>/dev/null; then
    sudo apt-get install -y python3-picamera2
fi
sudo mkdir -p "$PREFIX/models"
sudo chown "$(id -u):$(id -g)" "$PREFIX" "$PREFIX/models"
# system site packages: picamera2 and libcamera come from apt, not PyPI
[ -x "$PREFIX/venv/bin/python" ] || python3 -m venv --system-site-packages "$PREFIX/venv"
"$PREFIX/venv/bin/pip" install -q --upgrade pip
if ! "$PREFIX/venv/bin/pip" install -q ".[runtime]"; then
    echo "ai-edge-litert has no wheel here: falling back to tflite-runtime"
    "$PREFIX/venv/bin/pip" install -q numpy opencv-python-headless "paho-mqtt>=2" amqtt tflite-runtime
    "$PREFIX/venv/bin/pip" install -q --no-deps .
fi
cp "$MODEL" "${MODEL%.tflite}.json" "$PREFIX/models/"
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
