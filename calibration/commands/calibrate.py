"""roadseg-calibrate: a run's export -> ``dist/NAME.tflite`` (or ``.onnx``) + ``dist/NAME.json``.

    roadseg-calibrate --model runs/NAME --data PATH --out dist/NAME.tflite \
        [--size HxW] [--precision int8|fp16|fp32|dynamic] [--samples 200] \
        [--selection diverse|random] [--output logits|class_map] [--max-drop 1.0] [--force]

The extension of ``--out`` chooses the format: ``.tflite`` for LiteRT
(int8 by default), ``.onnx`` for ONNX Runtime (fp32 through tf2onnx; on a
Jetson, TensorRT's execution provider builds its fp16 engine from it when
roadseg-run is given that provider with the option trt_fp16_enable=1).

The accuracy gate evaluates the float SavedModel and the converted model
(through ``edge_runtime``'s interpreter, as on the vehicle) on the val split,
prints mIoU of both, the drop, per-class IoU drops and the pixel agreement,
and refuses to write the model when the mIoU-8 drop exceeds ``--max-drop``
points or the agreement falls below ``--min-agreement``, unless ``--force``. Nothing is written until the gate passes; the
.tflite and its sidecar are then written together atomically.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys

from calibration.calibrate import DEFAULT_MIN_MIOU
from edge_runtime.commands import cli
from edge_runtime.contract.preprocessing import parse_size


def build_parser() -> argparse.ArgumentParser:
    """``roadseg-calibrate``'s parser."""
    p = cli.parser("roadseg-calibrate", __doc__)
    p.add_argument("--model", required=True, help="run directory (with export/) or SavedModel folder")
    p.add_argument("--data", required=True, help="dataset root: train for calibration, val for the gate")
    p.add_argument("--out", required=True,
                   help="dist/NAME.tflite or dist/NAME.onnx (the extension chooses the format; the sidecar goes beside it)")
    p.add_argument("--format", default="auto", choices=["auto", "cityscapes", "camvid"])
    p.add_argument("--size", type=parse_size, help="device input size (default: the run's frame size)")
    p.add_argument("--precision", choices=["int8", "fp16", "fp32", "dynamic"],
                   help="default int8 for .tflite, fp32 (the only one) for .onnx")
    p.add_argument("--samples", type=int, default=200)
    p.add_argument("--selection", default="diverse", choices=["diverse", "random"])
    p.add_argument("--output", default="logits", choices=["logits", "class_map"],
                   help="int8 logits at the model's stride (default, fastest end to end) or an argmax class map")
    p.add_argument("--max-drop", type=float, default=1.0, help="largest mIoU-8 drop in points")
    p.add_argument("--min-agreement", type=float, default=0.95,
                   help="smallest fraction of pixels where the converted and float models agree")
    p.add_argument("--min-miou", type=float, default=DEFAULT_MIN_MIOU,
                   help="refuse a float model whose mIoU-7 on --val-split is under this floor, however small its "
                        f"int8 drop (default {DEFAULT_MIN_MIOU}; 0 turns it off for smoke-scale models)")
    p.add_argument("--force", action="store_true", help="write the model even when the gate fails")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, help="interpreter threads for the gate")
    p.add_argument("--train-split", default="train", help="frames to calibrate on (see roadseg-train)")
    p.add_argument("--val-split", default="val", help="frames the gate scores on, e.g. holdout:0006R0")
    p.add_argument("--json", action="store_true", help="print the sidecar as one JSON object")
    return p


def main(argv: list[str] | None = None) -> int:
    """``roadseg-calibrate``; returns the exit code: 0 written, 2 bad input
    (missing model or data, a bad ``--out``), 3 refused by the accuracy gate
    (nothing written), 4 a runtime failure."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    def body():
        from calibration.calibrate import calibrate
        sidecar = calibrate(args.model, args.data, args.out, args.size, args.precision, args.samples,
                            args.selection, args.output, args.max_drop, args.force, args.format, args.seed,
                            args.threads, args.min_agreement, args.train_split, args.val_split, args.min_miou)
        if args.json:
            print(json.dumps(sidecar))

    return cli.run("roadseg-calibrate", body)


if __name__ == "__main__":
    sys.exit(main())
