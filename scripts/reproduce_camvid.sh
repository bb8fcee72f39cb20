#!/usr/bin/env bash
# Reproduce the CamVid results; resumable stage by stage.
# Usage: scripts/reproduce_camvid.sh /path/to/camvid
#   RECIPE=pretrained (default): ImageNet EfficientNet-Lite encoders, sequence-disjoint
#                     validation on 0006R0 (python -m roadseg_lab reproduce-pretrained; ~150 min on 2 cores,
#                     TEACHER_WEIGHTS=DIR imports a teacher trained on a GPU instead;
#                     STUDENT_WEIGHTS=DIR SIZE=352x480 imports scripts/gpu_students.sh's students)
#   RECIPE=scratch:   the from-scratch teachers and students on CamVid val (python -m roadseg_lab reproduce-scratch)
#   RECIPE=both:      one after the other
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -eq 1 ] || { echo "usage: $0 CAMVID_DIR" >&2; exit 2; }
recipe=${RECIPE:-pretrained}
case "$recipe" in pretrained|scratch|both) ;; *) echo "RECIPE must be pretrained, scratch or both, not $recipe" >&2; exit 2;; esac
if [ ! -x .venv/bin/python ]; then python3 -m venv .venv; fi
.venv/bin/python -m pip install -q -e ".[train,runtime,pretrained]"
if [ "$recipe" != scratch ]; then .venv/bin/python -m roadseg_lab reproduce-pretrained "$1"; fi
if [ "$recipe" != pretrained ]; then .venv/bin/python -m roadseg_lab reproduce-scratch "$1"; fi
