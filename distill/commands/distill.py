"""roadseg-distill: train a compact student on labels and on frozen
teachers' soft predictions.

    roadseg-distill --teacher runs/A [--teacher runs/B ...] --student roadseg-fast \
        --data PATH --out runs/NAME [--size 192x256] [--epochs 30] [--steps-per-epoch N] \
        [--temperature 2] [--alpha 1.0] [--cwd 0] [--kd-stride 4] [--cutmix 0] [--teacher-weighting iou|mean] \
        [--teacher-cache DIR] [--cache-views 4] [--no-kd] [--width 1.0] [--init-weights FILE ...] \
        [--extra-data DIR --extra-ratio 0.25] [--resume] [--time-budget MINUTES]

Teachers are loaded from their SavedModel exports and run on exactly the
augmented batch the student sees. With ``--teacher-cache`` their
predictions for ``--cache-views`` augmented views of every training image are
computed once (float16, at the student's output resolution, keyed by the
augmentation seed) and replayed: epoch ``e`` sees view ``e % K``, the same
images, crops, flips and colours the teachers saw. ``--no-kd`` trains the same
student on labels only with the same schedule: the baseline. ``--extra-data``
adds a second dataset's train split (the teacher's pseudo-labels of the
frames vehicles kept, ``python -m distill.commands.pseudolabel``) as
``--extra-ratio`` of every batch's frames.
"""
from __future__ import annotations

import argparse
import sys

from trainer.commands.common import run_command


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of :class:`distill.distill.DistillConfig` beyond the run's."""
    a = p.add_argument
    a("--teacher", action="append", help="teacher run directory (repeatable)")
    a("--student", help="student name (see --list)")
    a("--temperature", type=float)
    a("--alpha", type=float, help="weight of the pixel-wise KD term")
    a("--cwd", type=float, help="weight of channel-wise distillation (0 = off)")
    a("--kd-stride", type=int, choices=[1, 2, 4, 8, 16, 32],
      help="the KD terms' grid: 1/N of the frame (default 4: the student's logits upsampled bilinearly onto it)")
    a("--cutmix", type=float, metavar="SHARE",
      help="share of batches mixed by CutMix, 0..1 (default 0; the same draws with --no-kd; needs --batch 2+)")
    a("--teacher-weighting", choices=["iou", "mean"])
    a("--teacher-tta", metavar="VIEWS", help="test-time augmentation of every teacher, averaged: 'flip' and/or "
                                              "scales, e.g. flip,0.75,1.25 (scales need size-agnostic teachers)")
    a("--teacher-cache", help="folder for cached teacher predictions")
    a("--cache-views", type=int)
    a("--cache-max-mb", type=float, metavar="MIB", help="the teacher cache's size limit (default 2048 MiB)")
    a("--no-kd", action="store_true", default=None)
    a("--width", type=float)
    a("--encoder-weights", help="imagenet, none, or a .pth file (EfficientNet-Lite students)")
    a("--extra-data", metavar="DIR", help="a second dataset (e.g. pseudo-labelled kept frames, python -m "
                                          "distill.commands.pseudolabel) whose train split joins the labelled frames")
    a("--extra-ratio", type=float, metavar="SHARE",
      help="share of the training frames drawn from --extra-data, between 0 and 1 (default 0.25)")
    a("--init-weights", action="append", metavar="FILE",
      help="start from these weights: a .weights.h5, or .npz arrays in get_weights() order (repeatable: the "
           "parts of one set, e.g. from python -m distill.commands.keras_backend train); with --epochs 0, only "
           "evaluate and export them")


def main(argv: list[str] | None = None) -> int:
    """``roadseg-distill``; returns the exit code (:func:`run_command`'s)."""
    from distill.distill import DistillConfig, distill
    from distill.students import STUDENTS
    return run_command("roadseg-distill", __doc__, add_arguments, distill, DistillConfig,
                       ("student", "data", "out"), lambda: list(STUDENTS), argv)


if __name__ == "__main__":
    sys.exit(main())
