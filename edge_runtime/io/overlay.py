"""The picture people look at: the class map over the frame in the
colour-blind-safe palette, with a legend naming every colour and its share of
the frame, and the FPS. Used by the preview video, the window, the live MJPEG
stream, MQTT snapshots and the API's PNG answer.

The legend sits on a dark translucent backdrop (readable over sky and road
alike) and its text scales with the frame: the same share of the frame's
height at 240 px as at 1080 px.
"""
from __future__ import annotations

import cv2
import numpy as np

from edge_runtime.contract.labels import CATEGORIES, NUM_CLASSES, PALETTE
from edge_runtime.contract.preprocessing import resize_mask

#: frame height (px) at which the legend's text is drawn at font scale BASE_FONT_SCALE
BASE_HEIGHT = 360
BASE_FONT_SCALE = 0.5
#: darkening of the legend's backdrop (0 none, 1 black)
BACKDROP_ALPHA = 0.6
FONT = cv2.FONT_HERSHEY_SIMPLEX


def category_shares(classes: np.ndarray) -> np.ndarray:
    """Fraction of pixels of each category, float [NUM_CLASSES] summing to 1
    (ids outside the taxonomy are not counted). ``classes``: integer [H,W]."""
    counts = np.bincount(classes.ravel(), minlength=NUM_CLASSES)[:NUM_CLASSES].astype(np.float64)
    return counts / max(counts.sum(), 1.0)


def legend_lines(classes: np.ndarray) -> list[str]:
    """The legend's text, one line per category in taxonomy order, e.g.
    ``"flat 42%"`` (percent of the frame's pixels, rounded; "<1%" for a trace)."""
    lines = []
    for name, share in zip(CATEGORIES, category_shares(classes)):
        pct = 100 * share
        lines.append(f"{name} {'<1' if 0 < pct < 0.5 else f'{pct:.0f}'}%")
    return lines


def _scale(height: int) -> tuple[float, int]:
    """Font scale and stroke thickness (px) for a frame ``height`` px high."""
    s = max(BASE_FONT_SCALE * height / BASE_HEIGHT, 0.25)
    return s, max(1, round(s * 2))


def _backdrop(img: np.ndarray, x0: int, y0: int, x1: int, y1: int) -> None:
    """Darken ``img[y0:y1, x0:x1]`` in place (BGR uint8)."""
    h, w = img.shape[:2]
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    roi = img[y0:y1, x0:x1]
    roi[:] = (roi.astype(np.float32) * (1 - BACKDROP_ALPHA)).astype(np.uint8)


def draw_legend(img: np.ndarray, classes: np.ndarray) -> None:
    """Draw the legend (swatch, category name and share per line) on a
    backdrop at the top left of ``img`` (BGR uint8 [H,W,3], in place)."""
    scale, thick = _scale(img.shape[0])
    lines = legend_lines(classes)
    (tw, th), base = cv2.getTextSize(max(lines, key=len), FONT, scale, thick)
    pad, step = max(2, th // 2), th + base + max(2, th // 2)
    sw = th + base  # swatch side
    _backdrop(img, 0, 0, 3 * pad + sw + tw, pad + step * len(lines))
    y = pad
    for i, text in enumerate(lines):  # text beside each colour: readable without colour vision
        bgr = tuple(int(v) for v in PALETTE[i][::-1])
        cv2.rectangle(img, (pad, y), (pad + sw, y + sw), bgr, -1)
        cv2.rectangle(img, (pad, y), (pad + sw, y + sw), (255, 255, 255), 1)  # void's black shows too
        cv2.putText(img, text, (2 * pad + sw, y + th), FONT, scale, (255, 255, 255), thick, cv2.LINE_AA)
        y += step


def draw_fps(img: np.ndarray, fps: float) -> None:
    """The achieved frame rate at the top right of ``img`` (BGR, in place), on a backdrop;
    "-- FPS" until the first measurement window has closed (``fps`` <= 0), never a false 0.0."""
    scale, thick = _scale(img.shape[0])
    text = f"{fps:.1f} FPS" if fps > 0 else "-- FPS"
    (tw, th), base = cv2.getTextSize(text, FONT, scale, thick)
    pad, w = max(2, th // 2), img.shape[1]
    _backdrop(img, w - tw - 2 * pad, 0, w, th + base + 2 * pad)
    cv2.putText(img, text, (w - tw - pad, pad + th), FONT, scale, (255, 255, 255), thick, cv2.LINE_AA)


def draw_overlay(frame_rgb: np.ndarray, classes: np.ndarray, fps: float | None = None,
                 alpha: float = 0.5) -> np.ndarray:
    """Colour overlay with the legend and the FPS: BGR uint8 [H,W,3] (for
    OpenCV writers) at the frame's size. ``frame_rgb`` uint8 [H,W,3] RGB,
    ``classes`` integer category ids [h,w] (resized nearest to the frame),
    ``alpha`` the palette's weight (0..1)."""
    h, w = frame_rgb.shape[:2]
    colour = PALETTE[resize_mask(classes, (h, w))]
    out = cv2.addWeighted(frame_rgb, 1 - alpha, colour, alpha, 0)
    out = cv2.cvtColor(out, cv2.COLOR_RGB2BGR)
    draw_legend(out, classes)
    if fps is not None:
        draw_fps(out, fps)
    return out


def snapshot_jpeg(frame_rgb: np.ndarray, classes: np.ndarray, fps: float | None = None, max_width: int = 480,
                  max_bytes: int = 64 * 1024) -> bytes:
    """A small JPEG of the overlay with its legend, at most ``max_width``
    pixels wide and ``max_bytes`` long (quality is lowered, then the picture
    halved, until it fits): what a vehicle shows the fleet over MQTT. Raises
    ValueError when even a 64 px wide picture does not fit."""
    h, w = frame_rgb.shape[:2]
    if w > max_width:
        frame_rgb = cv2.resize(frame_rgb, (max_width, max(1, round(h * max_width / w))),
                               interpolation=cv2.INTER_AREA)
    img = draw_overlay(frame_rgb, classes, fps)
    while True:
        for quality in (75, 60, 45, 30):
            data = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes()
            if len(data) <= max_bytes:
                return data
        if img.shape[1] <= 64:
            raise ValueError(f"cannot fit a snapshot in {max_bytes} bytes")
        img = cv2.resize(img, (img.shape[1] // 2, img.shape[0] // 2), interpolation=cv2.INTER_AREA)
