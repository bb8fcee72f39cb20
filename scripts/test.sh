#!/usr/bin/env bash
# Run roadseg's test suite on a fresh machine with only Python 3.10+ and git:
# creates .venv if absent, installs .[train,runtime,dev], installs with apt where
# it can what the tests run for real (the mosquitto broker and clients, nginx, Chromium,
# prometheus-mqtt-exporter), then runs pytest.
# With no arguments: the default suite (under 12 minutes on 2 cores), then the integration and slow
# tests (-m "integration or slow": they build venvs, install packages, train full-size encoders).
# Extra arguments go to one pytest run instead (e.g. ./scripts/test.sh -m slow).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    echo "==> creating .venv"
    "$PYTHON" -m venv .venv
fi
echo "==> installing roadseg[train,runtime,dev] into .venv"
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e ".[train,runtime,dev]"

if ! command -v mosquitto >/dev/null 2>&1 && [ ! -x /usr/sbin/mosquitto ]; then
    echo "==> installing mosquitto (MQTT broker for the tests)"
    SUDO=""
    [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && SUDO="sudo -n"
    if command -v apt-get >/dev/null 2>&1; then
        ($SUDO apt-get install -y -q mosquitto mosquitto-clients >/dev/null 2>&1 \
          || { $SUDO apt-get update -q >/dev/null 2>&1 && $SUDO apt-get install -y -q mosquitto mosquitto-clients >/dev/null 2>&1; }) \
          || echo "    could not install mosquitto; broker tests fall back to amqtt (MQTT 5 tests skip)"
    else
        echo "    no apt-get; broker tests fall back to amqtt (MQTT 5 tests skip)"
    fi
fi

if ! command -v mosquitto_sub >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
    echo "==> installing mosquitto-clients (the snapshot test subscribes with mosquitto_sub)"
    SUDO=""
    [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && SUDO="sudo -n"
    $SUDO apt-get install -y -q mosquitto-clients >/dev/null 2>&1 \
        || echo "    could not install mosquitto-clients; the mosquitto_sub snapshot test will skip"
fi

if ! command -v prometheus-mqtt-exporter >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
    echo "==> installing prometheus-mqtt-exporter (the fleet-history test's real consumer)"
    SUDO=""
    [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && SUDO="sudo -n"
    $SUDO apt-get install -y -q prometheus-mqtt-exporter >/dev/null 2>&1 \
        || echo "    could not install prometheus-mqtt-exporter; the fleet-history test will skip"
fi

if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ] && command -v apt-get >/dev/null 2>&1; then
    # Debian's full nginx (its WebDAV module takes the kept frames' PUTs; it also serves the release repository)
    echo "==> installing nginx (the kept frames' WebDAV upload target and the model updates' release repository)"
    SUDO=""
    [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && SUDO="sudo -n"
    ($SUDO apt-get install -y -q nginx >/dev/null 2>&1 \
      || { $SUDO apt-get update -q >/dev/null 2>&1 && $SUDO apt-get install -y -q nginx >/dev/null 2>&1; }) \
        || echo "    could not install nginx; the WebDAV upload tests skip, the update tests use Python's http.server"
fi

if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
    echo "==> installing chromium (the dashboard's real-browser test)"
    SUDO=""
    [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && SUDO="sudo -n"
    $SUDO apt-get install -y -q chromium >/dev/null 2>&1 \
        || echo "    could not install chromium; the browser test will skip"
fi

if [ -f /etc/debian_version ] && ! /usr/bin/python3 -c "import numpy, cv2, venv" >/dev/null 2>&1 \
        && command -v apt-get >/dev/null 2>&1; then
    echo "==> installing Debian's python3-numpy, python3-opencv and python3-venv (the Pi-install test's system stack)"
    SUDO=""
    [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && SUDO="sudo -n"
    $SUDO apt-get install -y -q python3-numpy python3-opencv python3-venv >/dev/null 2>&1 \
        || { $SUDO apt-get update -q >/dev/null 2>&1 \
             && $SUDO apt-get install -y -q python3-numpy python3-opencv python3-venv >/dev/null 2>&1; } \
        || echo "    could not install them; the system-site-packages test will skip"
fi

export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
if [ $# -gt 0 ]; then
    echo "==> running pytest $*"
    exec .venv/bin/python -m pytest "$@"
fi
# no arguments (CI): the default suite, then the integration and slow tests (they build venvs,
# install packages, train full-size encoders); both always run, the exit status is the first failure's
rc=0
echo "==> running the default suite"
.venv/bin/python -m pytest || rc=$?
echo "==> running the integration and slow tests (-m 'integration or slow')"
.venv/bin/python -m pytest -m "integration or slow" || { r=$?; [ "$rc" -ne 0 ] || rc=$r; }
exit "$rc"
