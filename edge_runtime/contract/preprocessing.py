"""The one preprocessing contract between training and the vehicle.

A frame enters every model as uint8 RGB at the model's input size. The resize
policy is ``stretch``: the whole frame is resized to (height, width) with
bilinear interpolation, without cropping or padding, so what the camera sees is
what the model sees. Normalization happens inside the model.
"""
from __future__ import annotations

import cv2
import numpy as np

RESIZE_POLICY = "stretch"
INTERPOLATION = cv2.INTER_LINEAR


def preprocess(frame: np.ndarray, size: tuple[int, int], channel_order: str = "rgb",
               out: np.ndarray | None = None) -> np.ndarray:
    """Resize ``frame`` (uint8 [H,W,3] in ``channel_order``) to ``size`` =
    (height, width) and return it as RGB uint8.

    ``out`` (uint8 [height, width, 3], C-contiguous), when given, receives the
    result and is returned: the device passes its interpreter's input tensor,
    so the frame is resized straight into it and colour-converted in place,
    with no intermediate copy. Training, evaluation and the vehicle all call
    this one function. Raises ValueError for a frame that is not uint8
    [H, W, 3], an unknown ``channel_order`` or an ``out`` of the wrong shape,
    dtype or layout."""
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"expected an [H,W,3] frame, got shape {frame.shape}")
    if frame.dtype != np.uint8:
        raise ValueError(f"expected a uint8 frame, got {frame.dtype}")
    if channel_order not in ("rgb", "bgr"):
        raise ValueError(f"unknown channel order {channel_order!r}; valid: rgb, bgr")
    h, w = size
    if out is None:
        out = np.empty((h, w, 3), np.uint8)
    elif out.shape != (h, w, 3) or out.dtype != np.uint8 or not out.flags.c_contiguous:
        raise ValueError(f"out must be a C-contiguous uint8 [{h},{w},3] array, got {out.dtype} {out.shape}")
    if frame.shape[:2] == (h, w):
        np.copyto(out, frame)
    else:
        cv2.resize(frame, (w, h), dst=out, interpolation=INTERPOLATION)
    if channel_order == "bgr":  # resize first, colour-convert the smaller image, in place
        cv2.cvtColor(out, cv2.COLOR_BGR2RGB, dst=out)
    return out


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of a label or class mask [h, w] to ``size`` =
    (height, width) pixels, so no new class ids are invented; the dtype is
    kept (OpenCV returns int64 masks as int32). Returns ``mask`` itself when
    it already has that size (no copy). The one function for every mask ->
    label / frame resize in the project. Raises cv2.error for a mask OpenCV
    cannot resize (not 2-D, or a dtype it lacks)."""
    h, w = size
    if mask.shape[:2] == (h, w):
        return mask
    return cv2.resize(mask, (w, h), interpolation=cv2.INTER_NEAREST)


def scores_to_classes(scores: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Class ids (int64 [height, width]) from per-class scores or logits ``[h, w, C]`` at any stride:
    upsampled bilinearly to ``size`` = (height, width), then argmax. The one rule by which the float
    export, the training evaluation and the vehicle's ``segment_classes`` turn scores into classes."""
    h, w = size
    if scores.shape[:2] != (h, w):
        scores = cv2.resize(np.asarray(scores, np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    return np.argmax(scores, axis=-1)


def parse_size(text: str) -> tuple[int, int]:
    """Parse ``HEIGHTxWIDTH`` (e.g. ``256x512``) into (height, width) pixels.
    Raises ValueError naming the text when it is not two positive integers."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"size {text!r} is not HEIGHTxWIDTH, e.g. 256x512") from None
    if h <= 0 or w <= 0:
        raise ValueError(f"size {text!r} must be positive")
    return h, w
