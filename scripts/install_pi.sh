#!/usr/bin/env bash
# Install the roadseg runtime as a systemd service on a Raspberry Pi 4/5 (Raspberry Pi OS Bookworm,
# 64-bit) or a Jetson (JetPack 6). Run from a checkout, as a user with sudo:
#   scripts/install_pi.sh --model dist/student.tflite --device-id car1 --mqtt-host broker.local [--source picamera2]
#   scripts/install_pi.sh --model dist/student.onnx --source csi:0 ...      (a Jetson's GPU: ONNX Runtime + TensorRT)
# NumPy, OpenCV and picamera2 come from apt / JetPack (a venv with --system-site-packages); pip adds
# only the rest, with the platform's constraints (constraints/*.txt) so NumPy stays 1.x. A .onnx model
# also gets ONNX Runtime: on a Jetson NVIDIA's onnxruntime-gpu for JetPack 6 from the Jetson AI Lab index
# (ROADSEG_ORT_INDEX_URL overrides it), elsewhere PyPI's CPU build (ROADSEG_ORT_PACKAGE overrides the
# requirement, e.g. a wheel file). roadseg-doctor then checks that everything imports together; no service
# is installed when it fails.
#   --model PATH           the .tflite or .onnx to run (its .json sidecar beside it); required
#   --device-id ID         default: the host name;  --mqtt-host HOST  default: an embedded broker
#   --source SRC           default picamera2 (csi:0 on a Jetson; any roadseg-run --source);  --fps N  default 15
#   --prefix DIR           default /opt/roadseg;  --platform debian-bookworm|jetpack6  default: detected
#   --delegate NAME        an ONNX Runtime execution provider for a .onnx (default on a Jetson:
#                          TensorrtExecutionProvider with fp16 and an engine cache; `none`: the CPU) or
#                          a LiteRT delegate library for a .tflite (e.g. libedgetpu.so.1)
#   --delegate-option K=V  its options (repeat); replaces the TensorRT defaults
#   --trust-root PATH      the fleet's TUF root metadata (roadseg-release trust-root writes it): copied to
#                          PREFIX/trust-root.json, checked by roadseg-doctor; the vehicle runs a model release
#                          only if the keys it names vouch for it (docs/deploy.md, "Fleet operator")
#   --update-repo URL      the release repository the vehicle fetches from (needs --trust-root); without it
#                          no update is fetched (ROADSEG_UPDATE_REPO in /etc/roadseg.env can add it later)
#   --venv-only            stop after the check: the venv, models/ and roadseg.toml under --prefix, no
#                          service; no sudo needed. What the tests run.
#   --dry-run              print the roadseg.toml and the unit that would be written; install nothing
#   -h, --help             print this text
# Exit status: 0 done, 2 bad arguments or an unsupported system (32-bit ARM, JetPack 4/5, Python < 3.10),
# 4 the runtime cannot be installed or run here: apt or pip failed, or the check did (no service then);
# the last line on stderr says which, in one line.
# For the tests only: ROADSEG_INSTALL_UNAME_M, ROADSEG_INSTALL_DPKG_ARCH and ROADSEG_INSTALL_TEGRA_RELEASE
# stand in for `uname -m`, `dpkg --print-architecture` and /etc/nv_tegra_release.
set -euo pipefail
SELF="$0"
usage() { sed -n '2,/^set -euo pipefail/{/^#/s/^# \{0,1\}//p}' "$SELF" | sed '/^For the tests only/,$d'; }
cd "$(dirname "$0")/.."
die() { local rc=$1; shift; echo "install_pi.sh: $*" >&2; exit "$rc"; }
q() { printf '%q' "$1"; }  # a value as one shell word: a newline in it cannot split the error line

MODEL="" DEVICE_ID="$(hostname -s)" MQTT_HOST="" SOURCE="picamera2" FPS=15 PREFIX=/opt/roadseg
PLATFORM=auto VENV_ONLY=0 DRY_RUN=0 DELEGATE=auto DELEGATE_OPTIONS=() TRUST_ROOT="" UPDATE_REPO=""
while [ $# -gt 0 ]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --venv-only) VENV_ONLY=1; shift; continue ;;
        --dry-run) DRY_RUN=1; shift; continue ;;
        --model|--device-id|--mqtt-host|--source|--fps|--prefix|--platform|--delegate|--delegate-option|\
        --trust-root|--update-repo)
            [ $# -ge 2 ] || die 2 "$1 needs a value" ;;
        *) die 2 "unknown option $(q "$1") (see the top of scripts/install_pi.sh)" ;;
    esac
    case "$1" in
        --model) MODEL="$2" ;;
        --device-id) DEVICE_ID="$2" ;;
        --mqtt-host) MQTT_HOST="$2" ;;
        --source) SOURCE="$2" ;;
        --fps) FPS="$2" ;;
        --prefix) PREFIX="$2" ;;
        --platform) PLATFORM="$2" ;;
        --delegate) DELEGATE="$2" ;;
        --delegate-option) DELEGATE_OPTIONS+=("$2") ;;
        --trust-root) TRUST_ROOT="$2" ;;
        --update-repo) UPDATE_REPO="$2" ;;
    esac
    shift 2
done

# -- the system: 64-bit userland, JetPack 6 on a Jetson, Python >= 3.10 ----------------------------------
MACHINE="${ROADSEG_INSTALL_UNAME_M:-$(uname -m)}"
DPKG_ARCH="${ROADSEG_INSTALL_DPKG_ARCH:-$(dpkg --print-architecture 2>/dev/null || true)}"
TEGRA_RELEASE="${ROADSEG_INSTALL_TEGRA_RELEASE:-/etc/nv_tegra_release}"
# a 32-bit Raspberry Pi OS on a Pi 4/5 boots a 64-bit kernel (uname -m: aarch64) under an armhf userland
case "$MACHINE" in armv6l|armv7l|armv8l) ARM32=1 ;; *) ARM32=0 ;; esac
case "$DPKG_ARCH" in armhf|armel) ARM32=1 ;; esac
[ "$ARM32" = 0 ] || die 2 "32-bit ARM ($MACHINE${DPKG_ARCH:+, $DPKG_ARCH userland}) is not supported: neither" \
    "ai-edge-litert nor tflite-runtime has wheels for it; flash Raspberry Pi OS (64-bit)"
if [ -f "$TEGRA_RELEASE" ]; then
    # first line, e.g. "# R36 (release), REVISION: 4.3, GCID: ..." (L4T R32 = JetPack 4, R34/R35 = JetPack 5,
    # R36 = JetPack 6: NVIDIA's Jetson Linux release notes)
    L4T="$(sed -n 's/^# R\([0-9][0-9]*\) (release), REVISION: \([0-9.]*\).*/\1.\2/p' "$TEGRA_RELEASE" | head -n 1)"
    L4T_MAJOR="${L4T%%.*}"
    FOUND="found L4T R$L4T in $TEGRA_RELEASE"
    if [ -z "$L4T" ]; then
        [ "$PLATFORM" != auto ] || die 2 "cannot read the L4T release from $TEGRA_RELEASE; on JetPack 6 pass --platform jetpack6"
    elif [ "$L4T_MAJOR" -le 32 ]; then
        die 2 "JetPack 4 (Python 3.6) is not supported; use JetPack 6 ($FOUND)"
    elif [ "$L4T_MAJOR" -le 35 ]; then
        die 2 "JetPack 5 (Python 3.8) is not supported; use JetPack 6 ($FOUND)"
    elif [ "$L4T_MAJOR" -eq 36 ]; then
        [ "$PLATFORM" != auto ] || PLATFORM=jetpack6
    elif [ "$PLATFORM" = auto ]; then
        die 2 "L4T R$L4T is newer than JetPack 6 (L4T R36), the only JetPack this script knows; --platform jetpack6 tries its settings"
    fi
fi
[ "$PLATFORM" != auto ] || PLATFORM=debian-bookworm
CONSTRAINTS="constraints/$PLATFORM.txt"
[[ "$PLATFORM" =~ ^[a-z0-9][a-z0-9-]*$ && -f "$CONSTRAINTS" ]] || die 2 "--platform $(q "$PLATFORM"): no constraints file (have: $(cd constraints && for f in *.txt; do printf '%s ' "${f%.txt}"; done))"
PYVER="$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)" || die 2 "no python3 on the PATH"
python3 -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
    || die 2 "python3 is $PYVER; roadseg needs Python >= 3.10 (Raspberry Pi OS Bookworm has 3.11, JetPack 6 has 3.10)"

# -- the arguments: checked here, before anything is installed (they end up in TOML and a systemd unit) --
case "$MODEL" in *.tflite) BACKEND=tflite ;; *.onnx) BACKEND=onnx ;;
    *) die 2 "--model must name a .tflite or .onnx (with its .json sidecar beside it)" ;; esac
[ -f "$MODEL" ] || die 2 "--model $(q "$MODEL"): no such file"
SIDECAR="${MODEL%.*}.json"
[ -f "$SIDECAR" ] || die 2 "missing sidecar $(q "$SIDECAR")"
[[ "$DEVICE_ID" =~ ^[A-Za-z0-9_-]{1,64}$ ]] || die 2 "--device-id $(q "$DEVICE_ID"): use 1 to 64 letters, digits, _ or -"
[ -z "$MQTT_HOST" ] || [[ "$MQTT_HOST" =~ ^[A-Za-z0-9._:-]+$ ]] || die 2 "--mqtt-host $(q "$MQTT_HOST") is not a host name or address"
[[ "$FPS" =~ ^[0-9]+([.][0-9]+)?$ ]] || die 2 "--fps $(q "$FPS") is not a number of frames per second"
case "$PREFIX" in /*) ;; *) PREFIX="$PWD/$PREFIX" ;; esac
[[ "$PREFIX" =~ ^/[A-Za-z0-9._/+-]*$ ]] || die 2 "--prefix $(q "$PREFIX"): use letters, digits and . _ / + - only (it goes into a systemd unit)"
plain() { [[ "$2" =~ ^[[:print:]]+$ && "$2" != *[\"\\]* ]] || die 2 "$1 $(q "$2") has a quote, a backslash or a control character"; }
plain --source "$SOURCE"
CACHE_DIR=/var/cache/roadseg  # the service's CacheDirectory=roadseg
[ "$VENV_ONLY" = 0 ] || CACHE_DIR="$PREFIX/cache"
if [ "$DELEGATE" = auto ]; then
    DELEGATE=none
    [ "$BACKEND/$PLATFORM" != onnx/jetpack6 ] || DELEGATE=TensorrtExecutionProvider
fi
[[ "$DELEGATE" =~ ^[A-Za-z0-9._/+-]+$ ]] || die 2 "--delegate $(q "$DELEGATE") is not a provider or library name"
if [ "$DELEGATE" = TensorrtExecutionProvider ] && [ ${#DELEGATE_OPTIONS[@]} -eq 0 ]; then
    # fp16 engines, built once (minutes) and kept in the cache directory across restarts
    DELEGATE_OPTIONS=(trt_fp16_enable=1 trt_engine_cache_enable=1 "trt_engine_cache_path=$CACHE_DIR")
fi
KEY_VALUE='^[^=;]+=[^;]*$'
for o in ${DELEGATE_OPTIONS[@]+"${DELEGATE_OPTIONS[@]}"}; do
    plain --delegate-option "$o"
    [[ "$o" =~ $KEY_VALUE ]] || die 2 "--delegate-option $(q "$o") is not KEY=VALUE"
done
[ "$DELEGATE" != none ] || [ ${#DELEGATE_OPTIONS[@]} -eq 0 ] || die 2 "--delegate-option needs --delegate"
if [ "$BACKEND" = onnx ]; then
    if [ "$PLATFORM" = jetpack6 ]; then
        ORT_PACKAGE="${ROADSEG_ORT_PACKAGE:-onnxruntime-gpu}"
        ORT_INDEX="${ROADSEG_ORT_INDEX_URL-https://pypi.jetson-ai-lab.io/jp6/cu126}"  # mirrors PyPI for the rest
    else
        ORT_PACKAGE="${ROADSEG_ORT_PACKAGE:-onnxruntime>=1.18}"
        ORT_INDEX="${ROADSEG_ORT_INDEX_URL-}"
    fi
    ORT_FROM="${ORT_INDEX:-PyPI}"
fi
if [ -n "$TRUST_ROOT" ]; then
    [ -f "$TRUST_ROOT" ] || die 2 "--trust-root $(q "$TRUST_ROOT"): no such file (roadseg-release trust-root writes it)"
    [ "$(wc -c < "$TRUST_ROOT")" -le 512000 ] || die 2 "--trust-root $(q "$TRUST_ROOT") is larger than TUF root metadata may be"
fi
if [ -n "$UPDATE_REPO" ]; then
    [ -n "$TRUST_ROOT" ] || die 2 "--update-repo needs --trust-root: the vehicle must know whose signatures to trust"
    [[ "$UPDATE_REPO" =~ ^https?://[A-Za-z0-9._~:-]+(/[A-Za-z0-9._~%-]*)*$ ]] \
        || die 2 "--update-repo $(q "$UPDATE_REPO") is not an http(s)://host[:port]/path URL"
fi
NAME="$(basename "$MODEL")"

write_config() {  # roadseg.toml; the keys are roadseg-run's settings (edge_runtime/commands/settings.py)
    echo "# written by scripts/install_pi.sh; roadseg-run --config reads it (a key per setting, as the flags)"
    echo "model = \"$PREFIX/models/$NAME\""
    echo "source = \"$SOURCE\""
    echo "fps = $FPS"
    echo "device_id = \"$DEVICE_ID\""
    echo "# a camera that is not there at boot is waited for (status camera_lost) before the service gives up (exit 4)"
    echo "camera_wait = 600"
    [ -z "$MQTT_HOST" ] || echo "mqtt_host = \"$MQTT_HOST\""
    if [ -n "$TRUST_ROOT" ]; then
        echo "# model releases: signed by the keys this TUF root names (the slots and the trusted metadata: the state dir)"
        echo "trust_root = \"$PREFIX/trust-root.json\""
        [ -z "$UPDATE_REPO" ] || echo "update_repo = \"$UPDATE_REPO\""
    fi
    if [ "$DELEGATE" != none ]; then
        echo "# the accelerator: an ONNX Runtime execution provider (.onnx) or a LiteRT delegate library (.tflite)"
        echo "delegate = \"$DELEGATE\""
        local IFS=';'
        [ ${#DELEGATE_OPTIONS[@]} -eq 0 ] || echo "delegate_options = \"${DELEGATE_OPTIONS[*]}\""
    fi
}

write_unit() {
    cat <<EOT
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
# exit 78: this install cannot do what roadseg.toml asks (e.g. csi:0 with an OpenCV without GStreamer): no restart loop
RestartPreventExitStatus=78
WatchdogSec=60
# /var/cache/roadseg, made by systemd and owned by User=: TensorRT's engine cache for a .onnx on a Jetson
CacheDirectory=roadseg
# /var/lib/roadseg (\$STATE_DIRECTORY): the offline MQTT queue, kept over a power cut, and the installation id
StateDirectory=roadseg
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
}

# stdin -> $1, through a temporary name in the same directory, so no half-written file is left
atomic_write() {
    local tmp
    tmp="$(dirname "$1")/.$(basename "$1").tmp.$$"
    if cat > "$tmp" && mv -f "$tmp" "$1"; then return 0; fi
    rm -f "$tmp"
    return 1
}

if [ "$DRY_RUN" = 1 ]; then
    echo "# $PREFIX/roadseg.toml (platform $PLATFORM${ORT_PACKAGE:+; $ORT_PACKAGE from $ORT_FROM})"
    write_config
    echo "# /etc/systemd/system/roadseg.service"
    write_unit
    exit 0
fi

# -- install -------------------------------------------------------------------------------------------
# whatever fails from here on ends the script with exit 4 and one line naming the command (never a bare
# exit 1 or apt's 100); the steps that fail for known reasons say more through die 4
trap 'rc=$?; echo "install_pi.sh: $(q "$BASH_COMMAND" | head -c 300) failed (exit $rc; its message is above); no service installed" >&2; exit 4' ERR
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
apt_install() {  # apt-get install "$@", or one line naming the packages and apt's exit status (then exit 4)
    local rc=0
    $SUDO apt-get install -y "$@" || rc=$?
    [ "$rc" -eq 0 ] || die 4 "apt-get could not install $* (exit $rc; its message is above): check the" \
        "package names for this system and that apt-get update works; no service installed"
}
CAMERA=none
case "$SOURCE" in picamera2*) CAMERA=picamera2 ;; csi*) CAMERA=csi ;; esac
if [ "$CAMERA" = picamera2 ] && ! python3 -c "import picamera2" 2>/dev/null; then
    apt_install python3-picamera2
fi
if [ "$PLATFORM" = debian-bookworm ] && ! python3 -c "import numpy, cv2" 2>/dev/null; then
    apt_install python3-numpy python3-opencv python3-venv
fi
if [ "$VENV_ONLY" = 0 ]; then
    $SUDO mkdir -p "$PREFIX/models"
    $SUDO chown "$(id -u):$(id -g)" "$PREFIX" "$PREFIX/models"
else
    mkdir -p "$PREFIX/models" "$CACHE_DIR"
fi
# system site packages: NumPy, OpenCV, picamera2 and libcamera come from apt / JetPack, not PyPI
[ -x "$PREFIX/venv/bin/python" ] || python3 -m venv --system-site-packages "$PREFIX/venv"
PY="$PREFIX/venv/bin/python"
PIP=("$PY" -m pip)
"${PIP[@]}" install -q --upgrade pip
if ! "${PIP[@]}" install -q -c "$CONSTRAINTS" ".[runtime-system]"; then
    echo "ai-edge-litert has no wheel here: falling back to tflite-runtime"
    "${PIP[@]}" install -q -c "$CONSTRAINTS" "paho-mqtt>=2" amqtt tflite-runtime
    "${PIP[@]}" install -q -c "$CONSTRAINTS" --no-deps .
fi
if [ "$BACKEND" = onnx ]; then
    echo "installing $ORT_PACKAGE from $ORT_FROM (a .onnx model runs on ONNX Runtime)"
    ORT_ARGS=(install -q -c "$CONSTRAINTS")
    [ -z "$ORT_INDEX" ] || ORT_ARGS+=(--index-url "$ORT_INDEX")
    "${PIP[@]}" "${ORT_ARGS[@]}" "$ORT_PACKAGE" \
        || die 4 "pip could not install $ORT_PACKAGE from $ORT_FROM (its message is above); no service installed"
    if [ "$DELEGATE" != none ]; then
        HAVE="$("$PY" -c 'import onnxruntime as o; print(", ".join(o.get_available_providers()))' 2>/dev/null)" \
            || die 4 "$ORT_PACKAGE from $ORT_FROM does not import in $PREFIX/venv; no service installed"
        case ", $HAVE, " in *", $DELEGATE, "*) ;;
            *) die 4 "$ORT_PACKAGE from $ORT_FROM has no $DELEGATE (available: $HAVE): on a Jetson the GPU providers" \
                "come with NVIDIA's onnxruntime-gpu for JetPack 6 (ROADSEG_ORT_INDEX_URL); --delegate none runs on the CPU;" \
                "no service installed" ;;
        esac
    fi
fi
# everything must import together, with the system's NumPy; no service otherwise
DOCTOR=(--camera "$CAMERA" --model "$MODEL")
[ -z "$TRUST_ROOT" ] || DOCTOR+=(--trust-root "$TRUST_ROOT")  # TUF root metadata, or the install stops here
if ! "$PREFIX/venv/bin/roadseg-doctor" "${DOCTOR[@]}"; then
    die 4 "the runtime cannot start here as installed (see the fix above); no service installed"
fi
# shellcheck disable=SC2094  # read, then renamed over: safe even when --model already is the installed copy
for f in "$MODEL" "$SIDECAR"; do atomic_write "$PREFIX/models/$(basename "$f")" < "$f"; done
[ -z "$TRUST_ROOT" ] || atomic_write "$PREFIX/trust-root.json" < "$TRUST_ROOT"
write_config | atomic_write "$PREFIX/roadseg.toml"
if [ "$VENV_ONLY" = 1 ]; then
    echo "venv ready: $PREFIX/venv; config $PREFIX/roadseg.toml (roadseg-run --config it);" \
         "--venv-only: no service installed (--dry-run shows its unit)"
    exit 0
fi
write_unit | $SUDO tee /etc/systemd/system/.roadseg.service.tmp >/dev/null
$SUDO mv -f /etc/systemd/system/.roadseg.service.tmp /etc/systemd/system/roadseg.service
$SUDO systemctl daemon-reload
$SUDO systemctl enable --now roadseg.service
echo "installed: systemctl status roadseg; journalctl -u roadseg -f; mosquitto_sub -h ${MQTT_HOST:-127.0.0.1} -t 'roadseg/$DEVICE_ID/#' -v"
