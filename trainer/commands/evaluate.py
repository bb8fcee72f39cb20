"""roadseg-eval: accuracy of a run's export or a .tflite on a labelled split.

    roadseg-eval --model runs/NAME --data PATH --split val [--size HxW] [--json]
    roadseg-eval --model dist/NAME.tflite --data PATH --split val [--threads N]

Frames go through the runtime's preprocessing contract; predictions are
scored at each label's native resolution (class map resized by nearest).
Writes ``metrics.json``, ``confusion.png`` and ``samples.png`` beside the
model (or into ``--out``). A .tflite is evaluated through ``edge_runtime``'s
interpreter and needs only the runtime extra: TensorFlow is not imported.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from edge_runtime.commands import cli
from edge_runtime.contract.preprocessing import parse_size


def build_parser() -> argparse.ArgumentParser:
    """``roadseg-eval``'s parser."""
    p = cli.parser("roadseg-eval", __doc__)
    p.add_argument("--model", required=True, help="run directory, export/ folder or .tflite")
    p.add_argument("--data", required=True)
    p.add_argument("--split", default="val")
    p.add_argument("--format", default="auto", choices=["auto", "cityscapes", "camvid"])
    p.add_argument("--size", type=parse_size, help="must match the model's input when given")
    p.add_argument("--threads", type=int, default=None, help="interpreter threads (.tflite)")
    p.add_argument("--out", help="folder for metrics.json and plots (default: beside the model)")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    return p


def model_segmenter(model: Path, size: tuple[int, int] | None, threads: int | None, out: str | None):
    """``(segment, info, out_dir)`` for a .tflite (through the runtime's
    interpreter, no TensorFlow) or a SavedModel export. Raises
    ``ValueError`` when ``size`` differs from a .tflite's input, and what
    the model loaders raise for a missing or unreadable model, and
    ImportError naming the train extra for a SavedModel where TensorFlow is
    not installed."""
    if model.suffix == ".tflite":
        from edge_runtime.model.segmenter import DeviceSegmenter
        seg = DeviceSegmenter(model, threads=threads)
        if size and tuple(size) != seg.input_size:
            raise ValueError(f"--size {size} differs from the model's input {seg.input_size}")
        info = {"kind": "tflite", "path": str(model), **seg.describe()}
        return seg.segment_classes, info, Path(out) if out else model.parent / (model.stem + "_eval")
    import importlib.util
    if importlib.util.find_spec("tensorflow") is None:
        raise ImportError(f"--model {model}: a SavedModel run needs the train extra (tensorflow is not installed "
                          f"here): pip install \"roadseg[train]\"; a .tflite needs only the runtime extra")
    from trainer.evaluate import savedmodel_segmenter
    segment, info = savedmodel_segmenter(model, size)
    return segment, info, Path(out) if out else (model if (model / "export").is_dir() else model.parent)


def main(argv: list[str] | None = None) -> int:
    """``roadseg-eval``; returns the exit code (0, or 2 for a missing model or data)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    model = Path(args.model)

    def body():
        from edge_runtime.eval.evaluation import evaluate_segmenter
        from trainer.datasets import list_samples
        from trainer.evaluate import format_report, write_report
        if not model.exists():
            raise FileNotFoundError(f"--model {model}: not found")
        fmt, samples = list_samples(args.data, args.split, args.format)
        segment, info, out_dir = model_segmenter(model, args.size, args.threads, args.out)
        cm, timing, kept = evaluate_segmenter(segment, samples, fmt)
        report = {"model": info, "data": str(args.data), "split": args.split, "format": fmt,
                  "metrics": cm.compute().as_dict(), "timing": timing,
                  "confusion": cm.matrix.tolist(), "_samples": kept}
        path = write_report(report, out_dir)
        if args.json:
            print(json.dumps(report))
        else:
            print(format_report(report))
            print(f"wrote {path}")

    return cli.run("roadseg-eval", body)


if __name__ == "__main__":
    sys.exit(main())
