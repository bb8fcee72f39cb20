"""Accuracy of any segmenter on a labelled split (numpy only): used by
``roadseg-eval``, the benchmark's accuracy column and the calibration gate."""
from __future__ import annotations

import logging
import time
from typing import Callable

import cv2
import numpy as np

from edge_runtime.datasets import load_sample
from edge_runtime.metrics import ConfusionMatrix

log = logging.getLogger("roadseg.eval")

#: ``segment(image RGB uint8 [H,W,3]) -> class map uint8 [h,w]`` at any h, w
Segmenter = Callable[[np.ndarray], np.ndarray]


def evaluate_segmenter(segment: Segmenter, samples, fmt: str, keep: int = 4,
                       progress_every: int = 25) -> tuple[ConfusionMatrix, dict, list]:
    cm = ConfusionMatrix()
    kept = []
    t_total = 0.0
    for i, s in enumerate(samples):
        img, lab = load_sample(s, fmt)
        t0 = time.perf_counter()
        pred = segment(img)
        t_total += time.perf_counter() - t0
        if pred.shape != lab.shape:
            pred = cv2.resize(pred, (lab.shape[1], lab.shape[0]), interpolation=cv2.INTER_NEAREST)
        cm.update(pred, lab)
        if len(kept) < keep:
            kept.append((s.name, img, lab, pred))
        if progress_every and (i + 1) % progress_every == 0:
            log.info("evaluated %d/%d images", i + 1, len(samples))
    n = len(samples)
    timing = {"images": n, "ms_per_image": round(1000 * t_total / max(n, 1), 2),
              "images_per_s": round(n / t_total, 2) if t_total else None}
    return cm, timing, kept
