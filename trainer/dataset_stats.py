"""Dataset statistics and preview grids (what ``roadseg-data stats`` and
``roadseg-data preview`` print and draw; the command line is
:mod:`trainer.commands.data`)."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from edge_runtime.atomic import save_figure
from edge_runtime.contract.labels import CATEGORIES, NUM_CLASSES
from trainer.datasets import list_samples, load_sample

log = logging.getLogger("roadseg.data")


def category_stats(root: str | Path, split: str, fmt: str = "auto", progress: bool = False) -> dict:
    """Per-category pixel counts over a split at the files' native resolution:
    ``{"split", "format", "images", "pixels": {category: count}}`` (void
    included, ignored pixels not). Raises ``DatasetError`` for a missing or
    unreadable split."""
    fmt, samples = list_samples(root, split, fmt)
    counts = np.zeros(NUM_CLASSES, np.int64)
    for i, s in enumerate(samples):
        _, lab = load_sample(s, fmt)
        counts += np.bincount(lab.ravel(), minlength=NUM_CLASSES)[:NUM_CLASSES]
        if progress and (i + 1) % 50 == 0:
            log.info("%d/%d images", i + 1, len(samples))
    return {"split": split, "format": fmt, "images": len(samples),
            "pixels": {c: int(n) for c, n in zip(CATEGORIES, counts)}}


def write_preview(root: str | Path, split: str, out: str | Path, fmt: str = "auto",
                  count: int = 8, seed: int = 0) -> Path:
    """A PNG grid at ``out`` of ``count`` frames picked with ``seed``: image |
    colour-coded categories, with a legend. Returns the path. Needs
    matplotlib (``ImportError``); raises ``DatasetError`` like
    :func:`category_stats`."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    from edge_runtime.contract.labels import PALETTE, colorize

    fmt, samples = list_samples(root, split, fmt)
    rng = np.random.default_rng(seed)
    pick = sorted(rng.choice(len(samples), size=min(count, len(samples)), replace=False))
    fig, axes = plt.subplots(len(pick), 2, figsize=(8, 2.2 * len(pick)), squeeze=False)
    for row, i in zip(axes, pick):
        img, lab = load_sample(samples[i], fmt)
        row[0].imshow(img)
        row[0].set_title(samples[i].name, fontsize=8)
        row[1].imshow(colorize(lab))
        for ax in row:
            ax.axis("off")
    handles = [Patch(color=PALETTE[i] / 255, label=f"{i} {c}") for i, c in enumerate(CATEGORIES)]
    fig.legend(handles=handles, loc="lower center", ncol=4, fontsize=8)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return save_figure(fig, out)
