"""roadseg-train: train a teacher into a run directory.

    roadseg-train --arch fpn-efficientnetb0 --data PATH --out runs/fpn-b0 \
        [--size 192x256] [--crop HxW] [--epochs 10] [--steps-per-epoch N] [--batch 8] [--lr 1e-3] \
        [--loss ce+dice] [--class-weights] [--pretrained PRESET] [--encoder-weights none] \
        [--init-weights FILE ...] [--resume] [--time-budget MINUTES] [--config FILE]

``--init-weights`` starts from weights trained elsewhere (a ``.weights.h5``,
or ``.npz`` arrays in ``get_weights()`` order such as
``python -m distill.commands.keras_backend train`` writes on a JAX or
PyTorch machine); with ``--epochs 0`` the run only evaluates, exports and
reports them.

A run directory holds config.json (everything needed to rerun),
best.weights.h5 and the last checkpoint, history.csv, curves.png,
metrics.json and export/ (the SavedModel later stages load).
"""
from __future__ import annotations

import argparse
import sys

from edge_runtime.contract.preprocessing import parse_size
from trainer.commands.common import run_command


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of :class:`trainer.train.TrainConfig` beyond the run's."""
    a = p.add_argument
    a("--arch", help="architecture name (see --list)")
    a("--crop", type=parse_size, help="training crop HEIGHTxWIDTH (default: --size; square for SegFormer)")
    a("--class-weights", action="store_true", default=None, help="weight cross-entropy by inverse label frequency")
    a("--pretrained", help="keras-hub preset for segformer-* (needs a download)")
    a("--encoder-weights", help="imagenet, none, or a weights file (EfficientNet-Lite .pth, for air-gapped machines)")
    a("--mixed-precision", choices=["auto", "on", "off"])
    a("--init-weights", action="append", metavar="FILE",
      help="start from these weights: a .weights.h5, or .npz arrays in get_weights() order (repeatable: "
           "the parts of one set); with --epochs 0, only evaluate and export them")


def main(argv: list[str] | None = None) -> int:
    """``roadseg-train``; returns the exit code (:func:`run_command`'s)."""
    from trainer.models import ARCHITECTURES
    from trainer.train import TrainConfig, train
    return run_command("roadseg-train", __doc__, add_arguments, train, TrainConfig, ("arch", "data", "out"),
                       lambda: list(ARCHITECTURES), argv)


if __name__ == "__main__":
    sys.exit(main())
