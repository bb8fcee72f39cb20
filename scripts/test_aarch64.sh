#!/usr/bin/env bash
# Release check: the vehicle runtime on aarch64 (arm64 Debian bookworm, as Raspberry Pi OS Bookworm),
# under qemu user-mode emulation on an x86 machine. As root:
#   scripts/test_aarch64.sh [--model dist/student.tflite]      (default: a tiny model made here)
# 1. an arm64 bookworm root by debootstrap (cached in $ROOTFS; about 3 minutes the first time)
# 2. the runtime installed in it by scripts/install_pi.sh --venv-only --platform debian-bookworm
#    (apt's NumPy 1.24 and OpenCV 4.6, aarch64 wheels of ai-edge-litert and the rest)
# 3. roadseg-run on a short video with the embedded broker (on a free port), its coverage read back over
#    MQTT; roadseg-bench for a few frames; the model's raw output on a fixed frame compared with x86's:
#    passed when the argmax is equal wherever x86's top-two margin is above 8 int8 steps; every pixel
#    that differs is listed with its margin (roadseg_lab.checks.aarch64.agreement)
# 4. the result (never the timings: emulated timings mean nothing) in docs/measurements/40-aarch64.md
set -euo pipefail
cd "$(dirname "$0")/.."
ROOTFS=${ROOTFS:-/var/cache/roadseg/arm64-bookworm}
MODEL=""
while [ $# -gt 0 ]; do
    case "$1" in
        --model) MODEL="$2"; shift 2 ;;
        *) echo "usage: $0 [--model X.tflite]" >&2; exit 2 ;;
    esac
done
[ "$(id -u)" -eq 0 ] || { echo "$0 needs root (binfmt_misc, debootstrap, chroot)" >&2; exit 2; }
[ -x .venv/bin/python ] || { echo "run scripts/test.sh first (the x86 side needs .venv)" >&2; exit 2; }
t0=$(date +%s)
log() { echo "[aarch64 $(date +%T)] $*"; }

# -- qemu user-mode emulation ------------------------------------------------------------------------
if ! command -v qemu-aarch64-static >/dev/null || ! command -v debootstrap >/dev/null; then
    log "installing qemu-user-static binfmt-support debootstrap"
    apt-get install -y -q qemu-user-static binfmt-support debootstrap >/dev/null
fi
mountpoint -q /proc/sys/fs/binfmt_misc || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
[ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || update-binfmts --enable qemu-aarch64 || true
[ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || { echo "qemu-aarch64 is not registered with binfmt_misc" >&2; exit 4; }

# -- the arm64 root (cached) ---------------------------------------------------------------------------
if [ ! -x "$ROOTFS/usr/bin/python3" ]; then
    MIRROR=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null \
        | sed -nE 's#^URIs:[[:space:]]*(https?://[^ ]*/debian)/?$#\1#p; s#^deb[[:space:]]+(\[[^]]*\][[:space:]]+)?(https?://[^ ]*/debian)/?[[:space:]].*#\2#p' \
        | head -1 || true)
    MIRROR=${MIRROR:-http://deb.debian.org/debian}
    log "debootstrap arm64 bookworm into $ROOTFS from $MIRROR"
    rm -rf "$ROOTFS.tmp" && mkdir -p "$(dirname "$ROOTFS")"
    debootstrap --arch=arm64 --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
        bookworm "$ROOTFS.tmp" "$MIRROR" >/dev/null
    mv "$ROOTFS.tmp" "$ROOTFS"
fi
cp /etc/resolv.conf "$ROOTFS/etc/resolv.conf"
cp /etc/ssl/certs/ca-certificates.crt "$ROOTFS/etc/ssl/certs/ca-certificates.crt"
# /proc, or cpuinfo complains; but not the host's /sys: its x86 CPU topology makes LiteRT's cpuinfo
# (XNNPACK's CPU detection on arm64) crash in allocate_tensors
mountpoint -q "$ROOTFS/sys" && umount "$ROOTFS/sys"
mountpoint -q "$ROOTFS/proc" || mount -t proc proc "$ROOTFS/proc"
trap 'umount "$ROOTFS/proc" 2>/dev/null || true' EXIT

# -- the model (x86 side) and the source tree -----------------------------------------------------------
WORK=$(mktemp -d)
if [ -z "$MODEL" ]; then
    log "making a tiny int8 model on x86"
    .venv/bin/roadseg-data synth --out "$WORK/data" --layout cityscapes --train 6 --val 3 --size 64x128 >/dev/null
    .venv/bin/roadseg-distill --student roadseg-fast --no-kd --width 0.5 --data "$WORK/data" --out "$WORK/run" \
        --size 64x128 --epochs 2 --steps-per-epoch 4 --batch 2 >/dev/null 2>&1
    .venv/bin/roadseg-calibrate --model "$WORK/run" --data "$WORK/data" --out "$WORK/tiny.tflite" --samples 4 \
        --max-drop 100 --min-agreement 0 --min-miou 0 >/dev/null 2>&1
    MODEL="$WORK/tiny.tflite"
fi
SRC="$ROOTFS/opt/roadseg-src"
rm -rf "$SRC" && mkdir -p "$SRC/m"
git archive HEAD | tar -x -C "$SRC"
cp "$MODEL" "$SRC/m/model.tflite" && cp "${MODEL%.*}.json" "$SRC/m/model.json"

# -- install the way install_pi.sh does it, then the checks, all inside the arm64 root ------------------
log "install_pi.sh --venv-only inside the arm64 root (apt python3-numpy/python3-opencv; pip the rest)"
chroot "$ROOTFS" /bin/bash -c "cd /opt/roadseg-src && export DEBIAN_FRONTEND=noninteractive && \
    (python3 -c 'import numpy, cv2' 2>/dev/null || (apt-get update -q >/dev/null && \
        apt-get install -y -q python3-numpy python3-opencv >/dev/null)) && \
    bash scripts/install_pi.sh --venv-only --prefix /opt/roadseg --platform debian-bookworm --source synthetic \
        --model m/model.tflite"
log "roadseg-run + roadseg-bench inside the arm64 root"
rm -rf "$ROOTFS/tmp/arm-check"
set +e
chroot "$ROOTFS" /opt/roadseg/venv/bin/python -m roadseg_lab aarch64-check \
    /opt/roadseg-src/m/model.tflite /tmp/arm-check
rc=$?
set -e
[ -f "$ROOTFS/tmp/arm-check/report.json" ] || { echo "no report from the arm64 check (rc $rc)" >&2; exit 4; }

# -- compare with x86 and record ----------------------------------------------------------------------
.venv/bin/python -m roadseg_lab aarch64-compare "$MODEL" "$ROOTFS/tmp/arm-check" "$rc" "$(( $(date +%s) - t0 ))"
