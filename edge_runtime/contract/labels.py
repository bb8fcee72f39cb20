"""The label taxonomy shared by training and the vehicle.

roadseg predicts the 8 Cityscapes *categories* (not the 19 training classes):
index 0..7 = void, flat, construction, object, nature, sky, human, vehicle.
The index equals Cityscapes' official ``categoryId``, so the lookup from raw
Cityscapes labelIds is generated from ``cityscapesscripts`` (see
``scripts/gen_cityscapes_lut.py``) and pinned by a test; the runtime itself
never needs cityscapesscripts.
"""
from __future__ import annotations

import numpy as np

from edge_runtime.contract._cityscapes_lut import CITYSCAPES_LABELID_TO_CATEGORY

CATEGORIES: tuple[str, ...] = (
    "void", "flat", "construction", "object", "nature", "sky", "human", "vehicle",
)
NUM_CLASSES = len(CATEGORIES)
VOID = 0
#: Label value for pixels that must not count at all (padding, unknown).
IGNORE_INDEX = 255

#: Okabe-Ito palette (Okabe & Ito 2008), designed to stay distinguishable
#: under the common forms of colour-blindness. RGB, one row per category.
PALETTE = np.array(
    [
        (0, 0, 0),        # void: black
        (204, 121, 167),  # flat: reddish purple
        (230, 159, 0),    # construction: orange
        (240, 228, 66),   # object: yellow
        (0, 158, 115),    # nature: bluish green
        (86, 180, 233),   # sky: sky blue
        (213, 94, 0),     # human: vermillion
        (0, 114, 178),    # vehicle: blue
    ],
    dtype=np.uint8,
)

#: CamVid (SegNet split) class index -> category index. 11 = Unlabelled.
CAMVID_CLASSES: tuple[str, ...] = (
    "Sky", "Building", "Pole", "Road", "Pavement", "Tree", "SignSymbol",
    "Fence", "Car", "Pedestrian", "Bicyclist", "Unlabelled",
)
CAMVID_TO_CATEGORY: tuple[int, ...] = (5, 2, 3, 1, 1, 4, 3, 2, 7, 6, 6, 0)


def _lut(mapping: dict[int, int] | tuple[int, ...]) -> np.ndarray:
    """A 256-entry uint8 lookup table; unmapped raw values hold IGNORE_INDEX
    and are reported as unknown by :func:`map_labels`."""
    lut = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    items = mapping.items() if isinstance(mapping, dict) else enumerate(mapping)
    for raw, cat in items:
        lut[raw] = cat
    return lut


CITYSCAPES_LUT = _lut(CITYSCAPES_LABELID_TO_CATEGORY)
CAMVID_LUT = _lut(CAMVID_TO_CATEGORY)
LUTS = {"cityscapes": CITYSCAPES_LUT, "camvid": CAMVID_LUT}


class UnknownLabelError(ValueError):
    """A label image holds a raw value that the dataset's table does not know."""


def map_labels(raw: np.ndarray, fmt: str, source: str = "<array>") -> np.ndarray:
    """Map a raw label image (Cityscapes labelIds or CamVid indices) to
    category indices (uint8, 0..7). Raises :class:`UnknownLabelError` naming
    ``source`` when a value is not in the official table."""
    try:
        lut = LUTS[fmt]
    except KeyError:
        raise ValueError(f"unknown label format {fmt!r}; valid: {sorted(LUTS)}") from None
    if raw.dtype != np.uint8:
        if raw.size and (raw.min() < 0 or raw.max() > 255):
            raise UnknownLabelError(f"{source}: label values outside 0..255")
        raw = raw.astype(np.uint8)
    out = lut[raw]
    if (out == IGNORE_INDEX).any():
        bad = sorted(set(np.unique(raw[out == IGNORE_INDEX]).tolist()))
        raise UnknownLabelError(f"{source}: unknown {fmt} label value(s) {bad[:10]}")
    return out


def colorize(mask: np.ndarray) -> np.ndarray:
    """Category mask (H, W) -> RGB image (H, W, 3); ignored pixels are grey."""
    pal = np.zeros((256, 3), np.uint8)
    pal[:NUM_CLASSES] = PALETTE
    pal[IGNORE_INDEX] = (128, 128, 128)
    return pal[mask]
