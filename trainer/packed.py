"""A packed dataset: every labelled frame of a CamVid folder in one flat
folder, for machines that train without TensorFlow and without the
original dataset (the any-backend trainer, :mod:`trainer.keras_backend`).

Each frame is ``SPLIT__STEM.jpg`` (the image, JPEG quality 90) and
``SPLIT__STEM.png`` (the label already mapped to roadseg's 8 categories by
roadseg's own dataset reader, 255 = ignore), so the taxonomy travels with
the data; the split in the name keeps same-named frames of train and val apart.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from edge_runtime import atomic

#: JPEG quality of packed images
JPEG_QUALITY = 90

Frame = tuple[np.ndarray, np.ndarray]  # (image RGB uint8 [H,W,3], categories uint8 [H,W])


def _encode(ext: str, image: np.ndarray, params: list[int]) -> bytes:
    ok, buf = cv2.imencode(ext, image, params)
    if not ok:
        raise ValueError(f"cannot encode a {image.shape} {image.dtype} array as {ext}")
    return buf.tobytes()


def pack(data: str | Path, out: str | Path) -> int:
    """Pack the train and val frames of the CamVid folder ``data`` into
    ``out`` (created if needed; each file written through a temporary name).
    Returns the number of frames. Raises ``DatasetError`` for a folder that
    is not CamVid or a label outside CamVid's classes, ``OSError`` when
    ``out`` cannot be written."""
    from edge_runtime.eval.datasets import list_samples, load_sample
    dst = Path(out)
    dst.mkdir(parents=True, exist_ok=True)
    n = 0
    for split in ("train", "val"):
        fmt, samples = list_samples(data, split, "camvid")
        for s in samples:
            img, lab = load_sample(s, fmt)
            stem = f"{split}__{Path(s.image).stem}"
            bgr = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
            atomic.write_bytes(dst / f"{stem}.jpg", _encode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]))
            atomic.write_bytes(dst / f"{stem}.png", _encode(".png", lab, []))
            n += 1
    return n


def load_packed(folder: str | Path, holdout: str) -> tuple[list[Frame], list[Frame]]:
    """``(train, held)`` frames of a packed folder: a frame whose stem (after
    ``SPLIT__``) starts with ``holdout`` (a CamVid sequence, e.g. ``0006R0``)
    is held out. Raises ``FileNotFoundError`` for a folder without frames and
    ``ValueError`` for an image or label that cannot be read."""
    train, held = [], []
    jpgs = sorted(Path(folder).glob("*.jpg"))
    if not jpgs:
        raise FileNotFoundError(f"{folder}: no packed frames (*.jpg with *.png labels)")
    for jpg in jpgs:
        bgr = cv2.imread(str(jpg))
        lab = cv2.imread(str(jpg.with_suffix(".png")), cv2.IMREAD_UNCHANGED)
        if bgr is None or lab is None or lab.ndim != 2:
            raise ValueError(f"{jpg}: unreadable image or missing single-channel label {jpg.with_suffix('.png').name}")
        frame = jpg.stem.split("__", 1)[-1]
        (held if frame.startswith(holdout) else train).append((cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), lab))
    return train, held
