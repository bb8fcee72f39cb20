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
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trainer  # noqa: F401

import numpy as np

from edge_runtime.commands import cli

log = logging.getLogger("roadseg.calibration")


class GateError(cli.Refused):
    """The converted model lost more accuracy than allowed, or the float model is under the floor."""


#: the absolute floor on the float model's mIoU-7 (void ignored) on the gate's split. A model that labels
#: every pixel "flat" scores about 0.05-0.10 on street scenes (one class right, six at zero); the
#: from-scratch baselines of docs/RESULTS.md score 0.50 or more. A small int8 drop says nothing about
#: whether the model was worth converting.
DEFAULT_MIN_MIOU = 0.25


def git_commit() -> str | None:
    try:
        r = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                           cwd=Path(__file__).resolve().parent)
        return r.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def accuracy_gate(float_seg, quant_seg, samples, fmt: str, split: str = "val") -> dict:
    """Evaluate both on ``samples``; mIoU (both conventions), drop in points,
    per-class IoU drop and pixel agreement between the two predictions."""
    from edge_runtime.eval.evaluation import evaluate_segmenters
    from edge_runtime.contract.labels import CATEGORIES
    ev = evaluate_segmenters({"float": float_seg, "quantized": quant_seg}, samples, fmt, keep=0)
    mf, mq = ev.confusion["float"].compute(), ev.confusion["quantized"].compute()
    per_class = {c: (None if np.isnan(a) or np.isnan(b) else round(100 * (a - b), 3))
                 for c, a, b in zip(CATEGORIES, mf.iou, mq.iou)}
    return {"split": split, "images": len(samples),
            "float": {"miou7": round(mf.miou7, 6), "miou8": round(mf.miou8, 6)},
            "quantized": {"miou7": round(mq.miou7, 6), "miou8": round(mq.miou8, 6)},
            "drop_points": round(100 * (mf.miou8 - mq.miou8), 3),
            "drop_points_miou7": round(100 * (mf.miou7 - mq.miou7), 3),
            "per_class_iou_drop_points": per_class,
            "pixel_agreement": round(ev.agreement or 0.0, 6),
            "quantized_metrics": mq.as_dict()}


def format_gate(g: dict, precision: str) -> str:
    lines = [f"accuracy gate on {g['images']} {g['split']} images ({precision} vs float):",
             f"  mIoU-8  float {g['float']['miou8']:.4f}  {precision} {g['quantized']['miou8']:.4f}  "
             f"drop {g['drop_points']:+.2f} points",
             f"  mIoU-7  float {g['float']['miou7']:.4f}  {precision} {g['quantized']['miou7']:.4f}  "
             f"drop {g['drop_points_miou7']:+.2f} points",
             f"  pixel agreement {100 * g['pixel_agreement']:.2f}%",
             "  per-class IoU drop (points): " + ", ".join(
                 f"{c} {'-' if v is None else f'{v:+.2f}'}" for c, v in g["per_class_iou_drop_points"].items())]
    return "\n".join(lines)


def calibrate(model: str, data: str, out: str, size: tuple[int, int] | None = None, precision: str | None = None,
              samples: int = 200, selection: str = "diverse", output: str = "logits", max_drop: float = 1.0,
              force: bool = False, fmt: str = "auto", seed: int = 0, threads: int | None = None,
              min_agreement: float = 0.95, train_split: str = "train", val_split: str = "val",
              min_miou: float = DEFAULT_MIN_MIOU) -> dict:
    from calibration import representative_data as rd
    from calibration.convert import convert, convert_onnx, onnx_report, tensor_report
    from edge_runtime.contract.sidecar import build_sidecar, write_pair
    from edge_runtime.model.segmenter import DeviceSegmenter
    from trainer.datasets import list_samples
    from trainer.export import ExportedModel

    run = Path(model)
    out = Path(out)
    if out.suffix not in (".tflite", ".onnx"):
        raise ValueError(f"--out {out} must end in .tflite (LiteRT) or .onnx (ONNX Runtime)")
    onnx = out.suffix == ".onnx"
    other = out.with_suffix(".tflite" if onnx else ".onnx")
    if other.exists():  # one sidecar per stem: NAME.json would then describe the wrong file
        raise ValueError(f"{other} is already there with the sidecar {out.with_suffix('.json')}: give the "
                         f"{out.suffix} another name (e.g. {out.stem}-{'ort' if onnx else 'lite'}{out.suffix})")
    precision = precision or ("fp32" if onnx else "int8")
    if onnx and precision != "fp32":
        raise ValueError(f"--precision {precision} is not made for .onnx here: export fp32 and let the provider "
                         "reduce it (TensorRT: --delegate-option trt_fp16_enable=1), or use a .tflite for int8")
    try:
        exported = ExportedModel(run)
    except FileNotFoundError as e:
        raise FileNotFoundError(f"--model {model}: {e}") from None
    meta = exported.meta
    size = tuple(size or exported.size)
    fmt, train = list_samples(data, train_split, fmt)
    _, val = list_samples(data, val_split, fmt)

    t0 = time.time()
    picked, summary = ([], None)
    rep = None
    if precision == "int8":
        picked, summary = rd.select(train, fmt, samples, selection, seed)
        log.info("calibration set: %d %s frames from train (files digest %s)", len(picked), selection,
                 summary["files_sha256"][:12])
        rep = lambda: rd.frames(picked, fmt, size)  # noqa: E731
    log.info("converting %s to %s at %dx%d (%s output)", exported.path, precision, size[0], size[1], output)
    if onnx:
        model_bytes, kind = convert_onnx(exported, size, output)
        report = onnx_report(model_bytes)
    else:
        model_bytes, kind = convert(exported, size, precision, rep, output)
        report = tensor_report(model_bytes)
    log.info("converted in %.1fs: %d bytes, ops %s", time.time() - t0, len(model_bytes), ", ".join(report["ops"]))

    with tempfile.TemporaryDirectory(prefix="roadseg-cal-") as td:
        tmp_model = Path(td) / out.name
        tmp_model.write_bytes(model_bytes)
        q = DeviceSegmenter(tmp_model, threads=threads, warn_without_sidecar=False)  # its sidecar comes after the gate
        gate = accuracy_gate(exported.segmenter(size, like_device=True), q.segment_classes, val, fmt, val_split)
        blocks = q.sidecar_blocks(kind)  # the contract's builder: input/output as the runtime reads them
    print(format_gate(gate, precision), flush=True)
    problems = []
    if gate["float"]["miou7"] < min_miou:
        problems.append(f"float mIoU-7 {gate['float']['miou7']:.3f} on {val_split} is under the floor "
                        f"--min-miou {min_miou:g}")
    if gate["drop_points"] > max_drop:
        problems.append(f"mIoU-8 drop {gate['drop_points']:.2f} points exceeds --max-drop {max_drop}")
    if gate["pixel_agreement"] < min_agreement:
        # a weak model's mIoU can move either way by chance; disagreement with float cannot hide
        problems.append(f"pixel agreement with the float model {100 * gate['pixel_agreement']:.1f}% is below "
                        f"--min-agreement {100 * min_agreement:.1f}%")
    if problems:
        msg = ("gate failed: " + "; ".join(problems) + "; no model written (look for per-tensor weights, hard-swish, bilinear "
               "resizes or a poor calibration set; --force writes it anyway)")
        if not force:
            raise GateError(msg)
        log.warning("%s; writing anyway (--force)", msg)
    sidecar = build_sidecar(model_bytes, name=out.stem, **blocks, precision=precision, calibration=summary,
                            accuracy=gate, conversion=report, source_run=str(run), source_arch=meta.get("arch"),
                            git_commit=git_commit())
    model_path, side = write_pair(model_bytes, sidecar, out)
    log.info("wrote %s (%.2f MB) and %s", model_path, len(model_bytes) / 1e6, side)
    return sidecar


def main(argv: list[str] | None = None) -> int:
    from edge_runtime.contract.preprocessing import parse_size
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
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    def body():
        sidecar = calibrate(args.model, args.data, args.out, args.size, args.precision, args.samples,
                            args.selection, args.output, args.max_drop, args.force, args.format, args.seed,
                            args.threads, args.min_agreement, args.train_split, args.val_split, args.min_miou)
        if args.json:
            print(json.dumps(sidecar))

    return cli.run("roadseg-calibrate", body)


if __name__ == "__main__":
    sys.exit(main())
