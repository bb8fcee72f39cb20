"""Accuracy of segmenters on a labelled split (numpy only): used by
``roadseg-eval``, the benchmark's accuracy column and the calibration gate.

A segmenter is any ``segment(image RGB uint8 [H,W,3]) -> class map uint8
[h,w]``; predictions are scored at each label's native resolution (class map
resized by nearest). Several segmenters are scored on the same decoded frames
in one pass, with their pixel agreement (the int8 gate's second check).
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from edge_runtime.contract.preprocessing import resize_mask
from edge_runtime.eval.datasets import load_sample
from edge_runtime.eval.metrics import ConfusionMatrix

log = logging.getLogger("roadseg.eval")

#: ``segment(image RGB uint8 [H,W,3]) -> class map uint8 [h,w]`` at any h, w
Segmenter = Callable[[np.ndarray], np.ndarray]


@dataclass
class Evaluation:
    """What :func:`evaluate_segmenters` measured.

    Attributes:
        confusion: segmenter name -> its :class:`ConfusionMatrix` over the split.
        timing: segmenter name -> ``{"images": int, "ms_per_image": float,
            "images_per_s": float | None}``: wall-clock time of the
            ``segment`` calls only (no decoding, no scoring), rounded to 0.01.
        kept: up to ``keep`` tuples ``(name, image RGB uint8 [H,W,3], label
            uint8 [H,W], first segmenter's prediction uint8 [H,W])`` for plots.
        agreement: fraction (0..1) of pixels where the first two segmenters
            agree, at the first one's output resolution; None with one segmenter.
    """

    confusion: dict[str, ConfusionMatrix]
    timing: dict[str, dict]
    kept: list = field(default_factory=list)   # (name, image, label, first segmenter's prediction)
    agreement: float | None = None             # first two segmenters: fraction of equal pixels


def evaluate_segmenters(segmenters: dict[str, Segmenter], samples, fmt: str, keep: int = 4,
                        progress_every: int = 25) -> Evaluation:
    """Score several segmenters on the same decoded frames, in one pass.

    Each prediction is resized by nearest neighbour to its label's resolution
    before it is counted (void ground truth is kept, so both mIoU conventions
    of :mod:`edge_runtime.eval.metrics` can be read from the matrix).

    Args:
        segmenters: name -> :data:`Segmenter`; the first is the reference for
            ``kept`` and ``agreement``.
        samples: a sequence of :class:`~edge_runtime.eval.datasets.Sample`.
        fmt: their label format, ``"cityscapes"`` or ``"camvid"``.
        keep: how many leading frames to keep in memory for plots.
        progress_every: log progress every this many frames (0: never).

    Raises:
        DatasetError, UnknownLabelError: as
            :func:`~edge_runtime.eval.datasets.load_sample`.
        ValueError: a prediction holds a class index outside 0..7.
        Whatever a segmenter raises is passed on.
    """
    names = list(segmenters)
    cms = {n: ConfusionMatrix() for n in names}
    seconds = dict.fromkeys(names, 0.0)
    kept: list = []
    agree = total = 0
    for i, s in enumerate(samples):
        img, lab = load_sample(s, fmt)
        preds = []
        for n in names:
            t0 = time.perf_counter()
            pred = segmenters[n](img)
            seconds[n] += time.perf_counter() - t0
            preds.append(pred)
            cms[n].update(resize_mask(pred, lab.shape[:2]), lab)
        if len(preds) > 1:
            a, b = preds[0], resize_mask(preds[1], preds[0].shape[:2])
            agree += int((a == b).sum())
            total += a.size
        if len(kept) < keep:
            kept.append((s.name, img, lab, resize_mask(preds[0], lab.shape[:2])))
        if progress_every and (i + 1) % progress_every == 0:
            log.info("evaluated %d/%d images", i + 1, len(samples))
    n = len(samples)
    timing = {k: {"images": n, "ms_per_image": round(1000 * t / max(n, 1), 2),
                  "images_per_s": round(n / t, 2) if t else None} for k, t in seconds.items()}
    return Evaluation(cms, timing, kept, agree / total if total else None)


def evaluate_segmenter(segment: Segmenter, samples, fmt: str, keep: int = 4,
                       progress_every: int = 25) -> tuple[ConfusionMatrix, dict, list]:
    """One segmenter: ``(confusion matrix, timing, kept samples)``, as the
    fields of :class:`Evaluation` (same arguments and errors as
    :func:`evaluate_segmenters`)."""
    ev = evaluate_segmenters({"model": segment}, samples, fmt, keep, progress_every)
    return ev.confusion["model"], ev.timing["model"], ev.kept
