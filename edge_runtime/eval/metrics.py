"""Segmentation metrics from a streaming confusion matrix (numpy only).

Used by training evaluation, calibration's accuracy gate and the device, so
every stage counts IoU the same way. Two mIoU conventions are reported:

* ``miou7``: the Cityscapes category convention. Pixels whose ground truth is
  void are ignored; a non-void pixel predicted as void still counts as a miss
  for its true class. The mean runs over the 7 non-void categories.
* ``miou8``: all 8 categories scored, void included.

Classes absent from both ground truth and prediction have an undefined IoU
(NaN) and are left out of the means.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge_runtime.contract.labels import CATEGORIES, IGNORE_INDEX, NUM_CLASSES, VOID


class ConfusionMatrix:
    """Accumulates ``cm[true, pred]`` pixel counts over many images."""

    def __init__(self, num_classes: int = NUM_CLASSES, ignore_index: int = IGNORE_INDEX):
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.matrix = np.zeros((num_classes, num_classes), dtype=np.int64)

    def update(self, pred: np.ndarray, target: np.ndarray) -> None:
        pred = np.asarray(pred)
        target = np.asarray(target)
        if pred.shape != target.shape:
            raise ValueError(f"prediction shape {pred.shape} != target shape {target.shape}")
        keep = target != self.ignore_index
        t = target[keep].astype(np.int64)
        p = pred[keep].astype(np.int64)
        n = self.num_classes
        if t.size and (t.max() >= n or p.max() >= n or t.min() < 0 or p.min() < 0):
            raise ValueError(f"class index outside 0..{n - 1}")
        self.matrix += np.bincount(t * n + p, minlength=n * n).reshape(n, n)

    def merge(self, other: "ConfusionMatrix") -> None:
        self.matrix += other.matrix

    def compute(self) -> "SegmentationMetrics":
        return SegmentationMetrics.from_confusion(self.matrix)


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.maximum(den, 1), np.nan)


@dataclass(frozen=True)
class SegmentationMetrics:
    iou: np.ndarray          # per class, all 8 scored (void included)
    dice: np.ndarray         # per class F1, all 8 scored
    iou7: np.ndarray         # per non-void class, void ground truth ignored
    dice7: np.ndarray
    miou8: float
    miou7: float
    mdice8: float
    mdice7: float
    pixel_accuracy: float
    pixel_accuracy7: float
    fw_iou: float
    pixels: int

    @classmethod
    def from_confusion(cls, cm: np.ndarray) -> "SegmentationMetrics":
        cm = np.asarray(cm, dtype=np.float64)
        tp = np.diag(cm)
        gt = cm.sum(1)
        pr = cm.sum(0)
        iou = _safe_div(tp, gt + pr - tp)
        dice = _safe_div(2 * tp, gt + pr)
        # void ground truth ignored: drop its row; predictions of void stay misses
        cm7 = np.delete(cm, VOID, axis=0)
        classes7 = [c for c in range(cm.shape[0]) if c != VOID]
        tp7 = np.array([cm[c, c] for c in classes7])
        gt7 = cm7.sum(1)
        pr7 = np.delete(cm7.sum(0), VOID)
        iou7 = _safe_div(tp7, gt7 + pr7 - tp7)
        dice7 = _safe_div(2 * tp7, gt7 + pr7)
        total = cm.sum()
        freq = gt / total if total else np.zeros_like(gt)
        valid = ~np.isnan(iou)

        def nanmean(x: np.ndarray) -> float:
            return float(np.nanmean(x)) if np.any(~np.isnan(x)) else float("nan")

        return cls(
            iou=iou, dice=dice, iou7=iou7, dice7=dice7,
            miou8=nanmean(iou), miou7=nanmean(iou7),
            mdice8=nanmean(dice), mdice7=nanmean(dice7),
            pixel_accuracy=float(tp.sum() / total) if total else float("nan"),
            pixel_accuracy7=float(tp7.sum() / cm7.sum()) if cm7.sum() else float("nan"),
            fw_iou=float((freq[valid] * iou[valid]).sum()) if total else float("nan"),
            pixels=int(total),
        )

    def as_dict(self) -> dict:
        """JSON-friendly summary (NaN becomes None)."""

        def f(x: float):
            return None if x is None or np.isnan(x) else round(float(x), 6)

        non_void = [c for c in CATEGORIES if c != CATEGORIES[VOID]]
        return {
            "miou7": f(self.miou7),
            "miou8": f(self.miou8),
            "mdice7": f(self.mdice7),
            "mdice8": f(self.mdice8),
            "pixel_accuracy": f(self.pixel_accuracy),
            "pixel_accuracy7": f(self.pixel_accuracy7),
            "fw_iou": f(self.fw_iou),
            "pixels": self.pixels,
            "iou": {c: f(v) for c, v in zip(CATEGORIES, self.iou)},
            "dice": {c: f(v) for c, v in zip(CATEGORIES, self.dice)},
            "iou7": {c: f(v) for c, v in zip(non_void, self.iou7)},
            "dice7": {c: f(v) for c, v in zip(non_void, self.dice7)},
        }
