"""Representative frames for int8 calibration, drawn from the training split
and preprocessed by the runtime's own contract.

``diverse`` selection (default) describes every training image by its
category histogram and its brightness and contrast, clusters those
descriptions (k-means, seeded) into ``count`` groups and takes the image
nearest each centre: the calibration set spans the label distribution and the
lighting instead of repeating the most common scene. ``random`` draws
uniformly. Both are reproducible for a seed; the chosen files are recorded.
"""
from __future__ import annotations

import hashlib
import logging

import cv2
import numpy as np

from edge_runtime.contract.labels import NUM_CLASSES
from edge_runtime.contract.preprocessing import preprocess, resize_mask

log = logging.getLogger("roadseg.calibration")
SELECTIONS = ("diverse", "random")


def describe_image(image: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """A frame's description, float64 ``[10]``: the fraction of each of the
    8 categories and the mean and standard deviation of luma (0..1, BT.601
    weights through OpenCV) on a 64x32 thumbnail of ``image`` (RGB uint8
    ``[H,W,3]``) and ``labels`` (uint8 ``[H,W]``, ignored pixels left out)."""
    lab = resize_mask(labels, (32, 64))
    hist = np.bincount(lab.ravel(), minlength=256)[:NUM_CLASSES].astype(np.float64)
    hist /= max(hist.sum(), 1)
    luma = cv2.cvtColor(cv2.resize(image, (64, 32), interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2GRAY) / 255.0
    return np.concatenate([hist, [luma.mean(), luma.std()]])


def _kmeans(x: np.ndarray, k: int, rng: np.random.Generator, iters: int = 25) -> np.ndarray:
    """k-means++ initialisation then Lloyd iterations; returns centres."""
    centres = [x[rng.integers(len(x))]]
    for _ in range(1, k):
        d = np.min(((x[:, None] - np.array(centres)[None]) ** 2).sum(-1), axis=1)
        p = d / d.sum() if d.sum() > 0 else np.full(len(x), 1 / len(x))
        centres.append(x[rng.choice(len(x), p=p)])
    c = np.array(centres)
    for _ in range(iters):
        assign = np.argmin(((x[:, None] - c[None]) ** 2).sum(-1), axis=1)
        new = np.array([x[assign == j].mean(0) if np.any(assign == j) else c[j] for j in range(k)])
        if np.allclose(new, c):
            break
        c = new
    return c


def select(samples, fmt: str, count: int, selection: str = "diverse", seed: int = 0) -> tuple[list, dict]:
    """Pick ``count`` of ``samples`` (layout ``fmt``), reproducibly for
    ``seed``: ``diverse`` clusters :func:`describe_image` descriptions by
    k-means (k-means++ seeding, Arthur & Vassilvitskii 2007; Lloyd's
    iterations) and takes the frame nearest each centre; ``random`` draws
    uniformly. Returns ``(samples, summary)``, the summary naming the files
    and their sha256. Raises ``ValueError`` for an unknown ``selection`` or
    a ``count`` under 1, ``DatasetError`` for an unreadable frame."""
    from trainer.datasets import load_sample
    if selection not in SELECTIONS:
        raise ValueError(f"unknown selection {selection!r}; valid: {', '.join(SELECTIONS)}")
    if count <= 0:
        raise ValueError("--samples must be positive")
    rng = np.random.default_rng(seed)
    n = len(samples)
    count = min(count, n)
    if selection == "random" or count == n:
        idx = sorted(rng.choice(n, size=count, replace=False).tolist())
    else:
        feats = np.stack([describe_image(*load_sample(s, fmt)) for s in samples])
        # histogram and lighting weigh alike: scale lighting to the histogram's spread
        feats[:, NUM_CLASSES:] *= feats[:, :NUM_CLASSES].std() / max(feats[:, NUM_CLASSES:].std(), 1e-6)
        centres = _kmeans(feats, count, rng)
        chosen: list[int] = []
        for c in centres:
            order = np.argsort(((feats - c) ** 2).sum(-1))
            chosen.append(int(next(i for i in order if i not in chosen)))
        idx = sorted(chosen)
    picked = [samples[i] for i in idx]
    names = [s.name for s in picked]
    summary = {"count": len(picked), "selection": selection, "seed": seed, "split": "train",
               "files": names, "files_sha256": hashlib.sha256("\n".join(names).encode()).hexdigest()}
    return picked, summary


def frames(samples, fmt: str, size: tuple[int, int]):
    """Calibration inputs (a generator): RGB 0..255 at ``size`` through the runtime's
    preprocessing, as float32 ``[1,H,W,3]``. Two pixels of the first frame
    are set to 0 and 255 so the calibrated input range is exactly 0..255,
    making the int8 model's uint8 input the raw pixel (scale 1, zero point 0)."""
    from trainer.datasets import read_image
    for i, s in enumerate(samples):
        x = preprocess(read_image(s.image), size).astype(np.float32)[None]
        if i == 0:
            x[0, 0, 0, :] = 0.0
            x[0, 0, 1, :] = 255.0
        yield x
