"""The picture people look at: the class map over the frame in the
colour-blind-safe palette, with a legend naming every colour and its share of
the frame, and the FPS. Used by the preview video, the window, the live MJPEG
stream, MQTT snapshots and the API's PNG answer.

The class map comes at the model's output grid (often 1/4 of its input) and
is brought to the frame's size by a filter (``--overlay-filter``):
``linear`` (the default, as jetson-inference's segNet) upsamples the model's
scores bilinearly before the argmax (each category's mask when only the class
map is at hand), so boundaries run smooth instead of in grid-sized steps;
``point`` repeats the nearest cell (cheaper, blocky).

The legend sits on a dark translucent backdrop (readable over sky and road
alike) at the top left; its text scales with the frame and the box stays
within :data:`LEGEND_MAX_WIDTH` of the frame's width and
:data:`LEGEND_MAX_HEIGHT` of its height (down to :data:`MIN_FONT_SCALE`,
below which the glyphs cannot be read).
"""
from __future__ import annotations

import functools

import cv2
import numpy as np

from edge_runtime.contract.labels import CATEGORIES, NUM_CLASSES, PALETTE
from edge_runtime.contract.preprocessing import resize_mask

#: frame height (px) at which the legend's text is drawn at most at font scale BASE_FONT_SCALE
BASE_HEIGHT = 360
BASE_FONT_SCALE = 0.5
#: the legend's box covers at most these shares of the frame's width and height
LEGEND_MAX_WIDTH = 1 / 6
LEGEND_MAX_HEIGHT = 1 / 4
#: the smallest font scale drawn (about 7 px high): a frame smaller than ~360 px gets a legend over its shares
MIN_FONT_SCALE = 0.25
#: how the class map is brought to the frame's size (``--overlay-filter``): see the module's docstring
FILTERS = ("linear", "point")
#: the linear filter works at most at this many times the class map's size per axis, then repeats
#: pixels (at 1080p from a 64x128 map: 2 px steps, invisible, at a third of the cost)
LINEAR_MAX_UPSCALE = 8
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


def _thickness(scale: float) -> int:
    return max(1, round(scale * 1.6))


def _legend_box(scale: float, thick: int) -> tuple[int, int, int, int, int, int]:
    """``(width, height, text_height, pad, step, swatch)`` in px of the legend drawn at ``scale``:
    sized for the widest line it can have (``construction 100%``), so it keeps its size from frame to frame.
    The swatch starts ``pad`` from the left, its text ``max(2, pad)`` after it."""
    widest = max(CATEGORIES, key=len) + " 100%"
    (tw, th), base = cv2.getTextSize(widest, FONT, scale, thick)
    pad = max(1, th // 4)
    sw = th  # swatch side
    step = th + base + pad
    return pad + sw + max(2, pad) + tw + pad, 2 * pad + step * (NUM_CLASSES - 1) + th + base, th, pad, step, sw


@functools.lru_cache(maxsize=16)
def _font(height: int, width: int) -> tuple[float, int]:
    """Font scale and stroke thickness (px) for a frame ``height`` x ``width`` px: BASE_FONT_SCALE at
    BASE_HEIGHT, in proportion to the height, lowered until the legend fits LEGEND_MAX_WIDTH x
    LEGEND_MAX_HEIGHT of the frame, never below MIN_FONT_SCALE."""
    scale = max(BASE_FONT_SCALE * height / BASE_HEIGHT, MIN_FONT_SCALE)
    for _ in range(8):  # text size is nearly proportional to the scale: converges in two or three steps
        bw, bh = _legend_box(scale, _thickness(scale))[:2]
        fit = min(LEGEND_MAX_WIDTH * width / bw, LEGEND_MAX_HEIGHT * height / bh)
        if fit >= 1 or scale <= MIN_FONT_SCALE:
            break
        scale = max(scale * min(fit, 0.97), MIN_FONT_SCALE)
    return scale, _thickness(scale)


def _backdrop(img: np.ndarray, x0: int, y0: int, x1: int, y1: int) -> None:
    """Darken ``img[y0:y1, x0:x1]`` in place (BGR uint8)."""
    h, w = img.shape[:2]
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    roi = img[y0:y1, x0:x1]
    roi[:] = (roi.astype(np.float32) * (1 - BACKDROP_ALPHA)).astype(np.uint8)


def draw_legend(img: np.ndarray, classes: np.ndarray) -> None:
    """Draw the legend (swatch, category name and share per line) on a
    backdrop at the top left of ``img`` (BGR uint8 [H,W,3], in place),
    within LEGEND_MAX_WIDTH x LEGEND_MAX_HEIGHT of it (:func:`_font`)."""
    scale, thick = _font(*img.shape[:2])
    bw, bh, th, pad, step, sw = _legend_box(scale, thick)
    _backdrop(img, 0, 0, bw, bh)
    y = pad
    for i, text in enumerate(legend_lines(classes)):  # text beside each colour: readable without colour vision
        bgr = tuple(int(v) for v in PALETTE[i][::-1])
        cv2.rectangle(img, (pad, y), (pad + sw - 1, y + sw - 1), bgr, -1)
        cv2.rectangle(img, (pad, y), (pad + sw - 1, y + sw - 1), (255, 255, 255), 1)  # void's black shows too
        cv2.putText(img, text, (pad + sw + max(2, pad), y + th), FONT, scale, (255, 255, 255), thick, cv2.LINE_AA)
        y += step


def draw_fps(img: np.ndarray, fps: float) -> None:
    """The achieved frame rate at the top right of ``img`` (BGR, in place), on a backdrop;
    "-- FPS" until the first measurement window has closed (``fps`` <= 0), never a false 0.0."""
    scale, thick = _font(*img.shape[:2])
    text = f"{fps:.1f} FPS" if fps > 0 else "-- FPS"
    (tw, th), base = cv2.getTextSize(text, FONT, scale, thick)
    pad, w = max(2, th // 2), img.shape[1]
    _backdrop(img, w - tw - 2 * pad, 0, w, th + base + 2 * pad)
    cv2.putText(img, text, (w - tw - pad, pad + th), FONT, scale, (255, 255, 255), thick, cv2.LINE_AA)


def check_filter(name: str) -> str:
    """``name`` when it is one of :data:`FILTERS`; else ValueError naming the choices."""
    if name not in FILTERS:
        raise ValueError(f"overlay filter {name!r}: choose one of {', '.join(FILTERS)}")
    return name


def _score_planes(scores: np.ndarray | None, grid: tuple[int, int]) -> np.ndarray | None:
    """``scores`` [h,w,NUM_CLASSES] (any real dtype, quantized or not) as float32 [NUM_CLASSES,h,w]
    planes; None when there are none or they are not one per category on the class map's grid."""
    if scores is None or scores.shape != (*grid, NUM_CLASSES) or not np.issubdtype(scores.dtype, np.number):
        return None
    return np.ascontiguousarray(np.moveaxis(scores, -1, 0), dtype=np.float32)


def upsample_classes(classes: np.ndarray, size: tuple[int, int], filter: str = "linear",
                     scores: np.ndarray | None = None) -> np.ndarray:
    """The class map ``classes`` (category ids uint8 [h,w], each below NUM_CLASSES) at ``size`` =
    (height, width) px, uint8. ``point``: the nearest cell (resize_mask). ``linear``: the
    model's ``scores`` [h,w,NUM_CLASSES] (logits or probabilities, quantized or not: a
    positive affine dequantization keeps the argmax) upsampled bilinearly, then the argmax
    among the categories of ``classes``; without scores (or with scores of another shape, e.g.
    per model class before a class mapping) each category's mask is upsampled instead. No
    category is invented and a region keeps its size. Works at most at LINEAR_MAX_UPSCALE
    times the map's size per axis and repeats pixels beyond. Raises ValueError for an
    unknown ``filter``."""
    check_filter(filter)
    h, w = size
    classes = classes.astype(np.uint8, copy=False)
    if filter == "point" or classes.shape == (h, w):
        return resize_mask(classes, (h, w))
    wh, ww = min(h, LINEAR_MAX_UPSCALE * classes.shape[0]), min(w, LINEAR_MAX_UPSCALE * classes.shape[1])
    present = np.flatnonzero(np.bincount(classes.ravel(), minlength=NUM_CLASSES))
    planes = _score_planes(scores, classes.shape)
    out = np.full((wh, ww), present[0], np.uint8)
    if len(present) > 1:
        def weight(c):  # how strongly each pixel is category c: its score, or its share of the cells around
            plane = (classes == c).view(np.uint8) * np.uint8(255) if planes is None else planes[c]
            return cv2.resize(plane, (ww, wh), interpolation=cv2.INTER_LINEAR)
        best = weight(present[0])
        for c in present[1:]:
            wc = weight(c)
            out[wc > best] = c
            cv2.max(best, wc, dst=best)
    return resize_mask(out, (h, w))


def colour_classes(classes: np.ndarray, size: tuple[int, int], filter: str = "linear",
                   scores: np.ndarray | None = None) -> np.ndarray:
    """The palette's colours of ``classes`` (uint8 [h,w]) at ``size`` = (height, width) px: RGB
    uint8 [H,W,3] (:func:`upsample_classes`, with ``scores`` as there; coloured before the last,
    repeating, resize, which costs far less than colouring every pixel of a large frame)."""
    h, w = size
    classes = classes.astype(np.uint8, copy=False)
    if check_filter(filter) == "linear" and classes.shape != (h, w):
        classes = upsample_classes(classes, (min(h, LINEAR_MAX_UPSCALE * classes.shape[0]),
                                             min(w, LINEAR_MAX_UPSCALE * classes.shape[1])), "linear", scores)
    colour = PALETTE[classes]
    return colour if colour.shape[:2] == (h, w) else cv2.resize(colour, (w, h), interpolation=cv2.INTER_NEAREST)


def draw_overlay(frame_rgb: np.ndarray, classes: np.ndarray, fps: float | None = None,
                 alpha: float = 0.5, filter: str = "linear", scores: np.ndarray | None = None) -> np.ndarray:
    """Colour overlay with the legend and the FPS: BGR uint8 [H,W,3] (for
    OpenCV writers) at the frame's size. ``frame_rgb`` uint8 [H,W,3] RGB,
    ``classes`` integer category ids [h,w] (brought to the frame's size by
    ``filter``, "linear" or "point", using the model's ``scores`` [h,w,NUM_CLASSES]
    when given: :func:`upsample_classes`), ``alpha`` the palette's weight (0..1).
    Raises ValueError for an unknown ``filter``."""
    h, w = frame_rgb.shape[:2]
    colour = colour_classes(classes, (h, w), filter, scores)
    out = cv2.addWeighted(frame_rgb, 1 - alpha, colour, alpha, 0)
    out = cv2.cvtColor(out, cv2.COLOR_RGB2BGR)
    draw_legend(out, classes)
    if fps is not None:
        draw_fps(out, fps)
    return out


def snapshot_jpeg(frame_rgb: np.ndarray, classes: np.ndarray, fps: float | None = None, max_width: int = 480,
                  max_bytes: int = 64 * 1024, filter: str = "linear", scores: np.ndarray | None = None) -> bytes:
    """A small JPEG of the overlay with its legend, at most ``max_width``
    pixels wide and ``max_bytes`` long (quality is lowered, then the picture
    halved, until it fits): what a vehicle shows the fleet over MQTT.
    ``filter`` and ``scores``: as :func:`draw_overlay`'s. Raises ValueError when even a 64 px
    wide picture does not fit."""
    h, w = frame_rgb.shape[:2]
    if w > max_width:
        frame_rgb = cv2.resize(frame_rgb, (max_width, max(1, round(h * max_width / w))),
                               interpolation=cv2.INTER_AREA)
    img = draw_overlay(frame_rgb, classes, fps, filter=filter, scores=scores)
    while True:
        for quality in (75, 60, 45, 30):
            data = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes()
            if len(data) <= max_bytes:
                return data
        if img.shape[1] <= 64:
            raise ValueError(f"cannot fit a snapshot in {max_bytes} bytes")
        img = cv2.resize(img, (img.shape[1] // 2, img.shape[0] // 2), interpolation=cv2.INTER_AREA)
