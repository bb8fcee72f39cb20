"""Evaluation on the workstation: the scores, reports and plots of a run.

Frames go through the runtime's preprocessing contract; predictions are
scored at each label's native resolution (class map resized by nearest),
the way ``edge_runtime.eval.evaluation`` scores a .tflite on the vehicle.
:func:`evaluate_export` scores a SavedModel export (``roadseg-train``,
``roadseg-distill``, ``roadseg-eval``); :func:`evaluate_frames` scores any
logits function on frames held in memory (the any-backend trainer, on JAX or
PyTorch: nothing here imports TensorFlow at module level). The command line
is :mod:`trainer.commands.evaluate`.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from edge_runtime import atomic
from edge_runtime.atomic import save_figure
from edge_runtime.contract.labels import CATEGORIES, PALETTE, colorize
from edge_runtime.contract.preprocessing import preprocess, resize_mask, scores_to_classes
from edge_runtime.eval.evaluation import Segmenter, evaluate_segmenter
from edge_runtime.eval.metrics import ConfusionMatrix

log = logging.getLogger("roadseg.eval")


def evaluate_frames(predict: Callable[[np.ndarray], np.ndarray], frames: Sequence[tuple[np.ndarray, np.ndarray]],
                    size: tuple[int, int], batch: int = 16) -> ConfusionMatrix:
    """Confusion matrix of a model on frames held in memory.

    ``frames``: ``(image RGB uint8 [H,W,3], labels uint8 [H,W])`` pairs at
    any resolution. Each image is resized to ``size`` by the preprocessing
    contract; ``predict(uint8 [B,h,w,3]) -> logits [B,h/s,w/s,C]`` (any
    stride ``s``, any array type :func:`numpy.asarray` takes) is called on
    batches of ``batch``; :func:`edge_runtime.contract.preprocessing.scores_to_classes` brings the logits to ``size`` and
    the class map is scored at the label's resolution (nearest).
    Raises ``ValueError`` for a frame that is not uint8 ``[H,W,3]``."""
    cm = ConfusionMatrix()
    for k in range(0, len(frames), batch):
        chunk = frames[k:k + batch]
        logits = np.asarray(predict(np.stack([preprocess(img, size) for img, _ in chunk])), np.float32)
        for (_, lab), lg in zip(chunk, logits):
            cm.update(resize_mask(scores_to_classes(lg, size).astype(np.uint8), lab.shape[:2]), lab)
    return cm


def savedmodel_segmenter(path: str | Path, size: tuple[int, int] | None = None) -> tuple[Segmenter, dict]:
    """``(segment, info)`` of a SavedModel export (a run directory or its
    ``export/``): ``segment(RGB uint8 [H,W,3]) -> class map uint8`` at
    ``size`` (default the export's frame size) and the export's description.
    Imports TensorFlow. Raises ``FileNotFoundError`` without an export and
    ``ValueError`` for a ``size`` the export cannot take."""
    import trainer  # noqa: F401
    from trainer.export import ExportedModel
    m = ExportedModel(path)
    return m.segmenter(size), m.info()


def evaluate_export(export_dir: str | Path, samples, fmt: str) -> dict:
    """The report of an export on ``samples`` (``trainer.datasets.Sample``
    of layout ``fmt``): ``{"model", "metrics", "timing", "confusion",
    "_samples"}``, where ``metrics`` is ``ConfusionMatrix.compute().as_dict()``
    (IoU in 0..1, both mIoU conventions), ``timing`` milliseconds per image
    and ``_samples`` up to four ``(name, image, label, prediction)`` for
    :func:`write_report`'s plots. Raises what :func:`savedmodel_segmenter`
    raises, and ``DatasetError`` for an unreadable frame."""
    segment, info = savedmodel_segmenter(export_dir)
    cm, timing, kept = evaluate_segmenter(segment, samples, fmt)
    return {"model": info, "metrics": cm.compute().as_dict(), "timing": timing,
            "confusion": cm.matrix.tolist(), "_samples": kept}


def plot_confusion(cm: np.ndarray, out: Path) -> None:
    """Row-normalized confusion matrix ``cm`` (pixel counts ``[8,8]``, rows
    the truth) as a PNG at ``out``. Needs matplotlib (``ImportError``)."""
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
    """A PNG at ``out`` of ``(name, image, label, prediction)`` rows: image |
    truth | prediction, colours from the label taxonomy. Nothing for an empty
    ``kept``. Needs matplotlib (``ImportError``)."""
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
    """Write ``report`` (from :func:`evaluate_export`; its ``_samples`` are
    taken out) as ``out_dir/name`` through a temporary name, with
    ``confusion.png`` and ``samples.png`` beside it when matplotlib is
    installed. Returns the JSON's path; ``OSError`` if it cannot be written."""
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
    """The text table ``roadseg-eval`` prints: both mIoU conventions, mean
    Dice, pixel accuracy, frequency-weighted IoU, per-category IoU and Dice
    (``-`` where a category never occurs) and the timing, if any."""
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
