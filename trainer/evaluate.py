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

import json
import logging
import sys
from pathlib import Path

import numpy as np

from edge_runtime import atomic
from edge_runtime.atomic import save_figure
from edge_runtime.contract.labels import CATEGORIES, PALETTE, colorize
from edge_runtime.eval.evaluation import Segmenter, evaluate_segmenter  # noqa: F401

log = logging.getLogger("roadseg.eval")

def savedmodel_segmenter(path: str | Path, size: tuple[int, int] | None = None) -> tuple[Segmenter, dict]:
    import trainer  # noqa: F401
    from trainer.export import ExportedModel
    m = ExportedModel(path)
    return m.segmenter(size), m.info()


def evaluate_export(export_dir: str | Path, samples, fmt: str) -> dict:
    segment, info = savedmodel_segmenter(export_dir)
    cm, timing, kept = evaluate_segmenter(segment, samples, fmt)
    return {"model": info, "metrics": cm.compute().as_dict(), "timing": timing,
            "confusion": cm.matrix.tolist(), "_samples": kept}


def plot_confusion(cm: np.ndarray, out: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    cm = np.asarray(cm, np.float64)
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(6, 5))
    im = ax.imshow(norm, cmap="viridis", vmin=0, vmax=1)
    ax.set_xticks(range(len(CATEGORIES)), CATEGORIES, rotation=45, ha="right")
    ax.set_yticks(range(len(CATEGORIES)), CATEGORIES)
    ax.set(xlabel="predicted", ylabel="true", title="confusion (row-normalized)")
    for i in range(len(CATEGORIES)):
        for j in range(len(CATEGORIES)):
            ax.text(j, i, f"{norm[i, j]:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if norm[i, j] < 0.5 else "black")
    fig.colorbar(im)
    fig.tight_layout()
    save_figure(fig, out)


def plot_samples(kept: list, out: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch
    if not kept:
        return
    fig, axes = plt.subplots(len(kept), 3, figsize=(10, 2.4 * len(kept)), squeeze=False)
    for row, (name, img, lab, pred) in zip(axes, kept):
        row[0].imshow(img)
        row[0].set_title(name, fontsize=8)
        row[1].imshow((0.4 * img + 0.6 * colorize(lab)).astype(np.uint8))
        row[1].set_title("truth", fontsize=8)
        row[2].imshow((0.4 * img + 0.6 * colorize(pred)).astype(np.uint8))
        row[2].set_title("prediction", fontsize=8)
        for a in row:
            a.axis("off")
    handles = [Patch(color=PALETTE[i] / 255, label=c) for i, c in enumerate(CATEGORIES)]
    fig.legend(handles=handles, loc="lower center", ncol=8, fontsize=8)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    save_figure(fig, out)


def write_report(report: dict, out_dir: Path, name: str = "metrics.json") -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    kept = report.pop("_samples", [])
    path = atomic.write_text(out_dir / name, json.dumps(report, indent=2))
    try:
        plot_confusion(np.array(report["confusion"]), out_dir / "confusion.png")
        plot_samples(kept, out_dir / "samples.png")
    except ImportError:  # matplotlib is a train extra; the device needs only the JSON
        log.warning("matplotlib not installed: skipped confusion.png and samples.png")
    return path


def format_report(report: dict) -> str:
    m = report["metrics"]
    lines = [f"mIoU-7 (void ignored) {m['miou7']:.4f}   mIoU-8 {m['miou8']:.4f}   "
             f"mDice-7 {m['mdice7']:.4f}   pixel acc {m['pixel_accuracy']:.4f}   fwIoU {m['fw_iou']:.4f}",
             f"{'category':<14}{'IoU':>8}{'Dice':>8}"]
    for c in CATEGORIES:
        iou, dice = m["iou"][c], m["dice"][c]
        lines.append(f"{c:<14}{'-' if iou is None else f'{iou:.4f}':>8}{'-' if dice is None else f'{dice:.4f}':>8}")
    t = report.get("timing", {})
    if t:
        lines.append(f"{t['images']} images, {t['ms_per_image']} ms/image, {t['images_per_s']} images/s")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from edge_runtime.commands import cli
    from edge_runtime.contract.preprocessing import parse_size
    from trainer.datasets import list_samples
    p = cli.parser("roadseg-eval", __doc__)
    p.add_argument("--model", required=True, help="run directory, export/ folder or .tflite")
    p.add_argument("--data", required=True)
    p.add_argument("--split", default="val")
    p.add_argument("--format", default="auto", choices=["auto", "cityscapes", "camvid"])
    p.add_argument("--size", type=parse_size, help="must match the model's input when given")
    p.add_argument("--threads", type=int, default=None, help="interpreter threads (.tflite)")
    p.add_argument("--out", help="folder for metrics.json and plots (default: beside the model)")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    model = Path(args.model)

    def body():
        if not model.exists():
            raise FileNotFoundError(f"--model {model}: not found")
        fmt, samples = list_samples(args.data, args.split, args.format)
        if model.suffix == ".tflite":
            from edge_runtime.model.segmenter import DeviceSegmenter
            seg = DeviceSegmenter(model, threads=args.threads)
            if args.size and tuple(args.size) != seg.input_size:
                raise ValueError(f"--size {args.size} differs from the model's input {seg.input_size}")
            segment = seg.segment_classes
            info = {"kind": "tflite", "path": str(model), **seg.describe()}
            out_dir = Path(args.out) if args.out else model.parent / (model.stem + "_eval")
        else:
            segment, info = savedmodel_segmenter(model, args.size)
            out_dir = Path(args.out) if args.out else (model if (model / "export").is_dir() else model.parent)
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
