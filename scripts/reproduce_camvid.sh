#!/usr/bin/env bash
# Reproduce the CamVid results from scratch; resumable stage by stage.
# Usage: scripts/reproduce_camvid.sh /path/to/camvid   (see scripts/reproduce_camvid.py for variables)
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -eq 1 ] || { echo "usage: $0 CAMVID_DIR" >&2; exit 2; }
if [ ! -x .venv/bin/python ]; then python3 -m venv .venv; fi
.venv/bin/python -m pip install -q -e ".[train,runtime]"
exec .venv/bin/python scripts/reproduce_camvid.py "$1"
