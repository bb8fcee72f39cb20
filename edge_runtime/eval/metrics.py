"""Segmentation metrics from a streaming confusion matrix (numpy only).

Used by training evaluation, calibration's accuracy gate and the device, so
every stage counts IoU the same way. Two mIoU conventions are reported:

* ``miou7``: the Cityscapes category convention (Cordts et al., CVPR 2016;
  ``cityscapesscripts.evaluation.evalPixelLevelSemanticLabeling``, whose
  ``getIouScoreForLabel`` counts false negatives over every prediction and
  false positives over non-ignored ground truth only). Pixels whose ground
  truth is void are ignored; a non-void pixel predicted as void still counts
  as a miss for its true class. The mean runs over the 7 non-void categories.
* ``miou8``: all 8 categories scored, void included.

Per class c, with TP, FP, FN counted from ``cm[true, pred]``:

* IoU (Jaccard index) = TP / (TP + FP + FN), as in PASCAL VOC (Everingham et
  al., IJCV 2010) and Cityscapes.
* Dice (Sorensen-Dice coefficient, the pixel F1 score; Dice, Ecology 1945)
  = 2 TP / (2 TP + FP + FN).
* Pixel accuracy = sum of TP / all counted pixels.
* Frequency-weighted IoU = sum over c of (ground-truth pixels of c / all
  pixels) * IoU_c (Long, Shelhamer and Darrell, "Fully Convolutional Networks
  for Semantic Segmentation", CVPR 2015, section 5).

Classes absent from both ground truth and prediction have an undefined IoU
(NaN) and are left out of the means (as cityscapesscripts does).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge_runtime.contract.labels import CATEGORIES, IGNORE_INDEX, NUM_CLASSES, VOID


class ConfusionMatrix:
    """Accumulates ``cm[true, pred]`` pixel counts over many images.

    ``matrix`` is int64 [num_classes, num_classes]: row = ground-truth class,
    column = predicted class. Pixels whose ground truth equals
    ``ignore_index`` are not counted. Memory is constant in the number of
    images.
    """

    def __init__(self, num_classes: int = NUM_CLASSES, ignore_index: int = IGNORE_INDEX):
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.matrix = np.zeros((num_classes, num_classes), dtype=np.int64)

    def update(self, pred: np.ndarray, target: np.ndarray) -> None:
        """Count one image (or a batch: any shape, as long as both agree).

        Args:
            pred: integer array of predicted class indices 0..num_classes-1.
            target: integer array of ground-truth class indices, same shape;
                ``ignore_index`` marks pixels to skip (their prediction is
                neither counted nor checked).

        Raises:
            ValueError: the shapes differ, or a counted pixel holds a class
                index outside 0..num_classes-1; the matrix is unchanged.
        """
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

    def merge(self, other: ConfusionMatrix) -> None:
        """Add ``other``'s counts to this matrix (e.g. from a parallel worker).

        Raises:
            ValueError: the two matrices' shapes differ (NumPy cannot add them;
                a 1-class ``other`` would broadcast, so give equal class counts).
        """
        self.matrix += other.matrix

    def compute(self) -> SegmentationMetrics:
        """The metrics of every pixel counted so far (see :class:`SegmentationMetrics`)."""
        return SegmentationMetrics.from_confusion(self.matrix)


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.maximum(den, 1), np.nan)


@dataclass(frozen=True)
class SegmentationMetrics:
    """Scores from one confusion matrix (formulas and sources: the module docstring).

    Per-class arrays are float64 in category order (:data:`CATEGORIES`; the
    ``*7`` ones without void), NaN where a class is absent from both ground
    truth and prediction. Scalars are fractions in 0..1, NaN when nothing was
    counted. ``pixels`` is the number of pixels counted (ignored ones excluded).
    """

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
    def from_confusion(cls, cm: np.ndarray) -> SegmentationMetrics:
        """Score a confusion matrix.

        Args:
            cm: array-like [C, C] of pixel counts, ``cm[true, pred]``, with
                C = :data:`NUM_CLASSES` and void at index :data:`VOID`.

        Raises:
            ValueError: ``cm`` is not numeric.
        """
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
        """JSON-friendly summary: every score rounded to 6 decimals, NaN as None.

        Returns:
            ``{"miou7", "miou8", "mdice7", "mdice8", "pixel_accuracy",
            "pixel_accuracy7", "fw_iou": float | None, "pixels": int,
            "iou", "dice": {category: float | None} (8 categories),
            "iou7", "dice7": {category: float | None} (7, void left out)}``.
        """

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
