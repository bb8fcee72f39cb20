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
from dataclasses import dataclass, field
from typing import Callable

import cv2
import numpy as np

from edge_runtime.eval.datasets import load_sample
from edge_runtime.eval.metrics import ConfusionMatrix

log = logging.getLogger("roadseg.eval")

#: ``segment(image RGB uint8 [H,W,3]) -> class map uint8 [h,w]`` at any h, w
Segmenter = Callable[[np.ndarray], np.ndarray]


@dataclass
class Evaluation:
    confusion: dict[str, ConfusionMatrix]
    timing: dict[str, dict]
    kept: list = field(default_factory=list)   # (name, image, label, first segmenter's prediction)
    agreement: float | None = None             # first two segmenters: fraction of equal pixels


def evaluate_segmenters(segmenters: dict[str, Segmenter], samples, fmt: str, keep: int = 4,
                        progress_every: int = 25) -> Evaluation:
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
            if pred.shape != lab.shape:
                pred = cv2.resize(pred, (lab.shape[1], lab.shape[0]), interpolation=cv2.INTER_NEAREST)
            cms[n].update(pred, lab)
        if len(preds) > 1:
            a, b = preds[0], preds[1]
            if a.shape != b.shape:
                b = cv2.resize(b, (a.shape[1], a.shape[0]), interpolation=cv2.INTER_NEAREST)
            agree += int((a == b).sum())
            total += a.size
        if len(kept) < keep:
            first = preds[0] if preds[0].shape == lab.shape else cv2.resize(
                preds[0], (lab.shape[1], lab.shape[0]), interpolation=cv2.INTER_NEAREST)
            kept.append((s.name, img, lab, first))
        if progress_every and (i + 1) % progress_every == 0:
            log.info("evaluated %d/%d images", i + 1, len(samples))
    n = len(samples)
    timing = {k: {"images": n, "ms_per_image": round(1000 * t / max(n, 1), 2),
                  "images_per_s": round(n / t, 2) if t else None} for k, t in seconds.items()}
    return Evaluation(cms, timing, kept, agree / total if total else None)


def evaluate_segmenter(segment: Segmenter, samples, fmt: str, keep: int = 4,
                       progress_every: int = 25) -> tuple[ConfusionMatrix, dict, list]:
    """One segmenter: ``(confusion matrix, timing, kept samples)``."""
    ev = evaluate_segmenters({"model": segment}, samples, fmt, keep, progress_every)
    return ev.confusion["model"], ev.timing["model"], ev.kept
