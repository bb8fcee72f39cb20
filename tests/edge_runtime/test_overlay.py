"""The overlay's legend: on a backdrop, scaled with the frame, naming each category's share."""
from __future__ import annotations

import numpy as np
import pytest

from edge_runtime.contract.labels import CATEGORIES, NUM_CLASSES
from edge_runtime.io.overlay import draw_overlay, legend_lines, snapshot_jpeg


def _frame(h: int, w: int, value: int = 255) -> np.ndarray:
    return np.full((h, w, 3), value, np.uint8)


def _legend_box(out: np.ndarray, plain: np.ndarray) -> tuple[int, int]:
    """Height and width (px) of the region the legend darkened, against the same overlay without it."""
    darker = out.astype(int).sum(axis=2) < plain.astype(int).sum(axis=2) - 60
    rows, cols = np.nonzero(darker)
    return rows.max() + 1, cols.max() + 1


def _plain(frame, classes):
    import cv2

    from edge_runtime.contract.labels import PALETTE
    colour = PALETTE[cv2.resize(classes, frame.shape[1::-1], interpolation=cv2.INTER_NEAREST)]
    return cv2.cvtColor(cv2.addWeighted(frame, 0.5, colour, 0.5, 0), cv2.COLOR_RGB2BGR)


@pytest.mark.parametrize("value", [255, 200])
def test_legend_text_has_a_dark_backdrop_on_a_bright_sky(value):
    """White text needs contrast: behind the legend the picture is darkened, whatever lies there."""
    sky = CATEGORIES.index("sky")
    frame, classes = _frame(360, 640, value), np.full((64, 128), sky, np.uint8)
    out = draw_overlay(frame, classes)
    h, w = _legend_box(out, _plain(frame, classes))
    box = out[:h, :w].astype(int).sum(axis=2)
    outside = out[h + 5:, w + 5:].astype(int).sum(axis=2)
    assert np.median(box) < 0.6 * np.median(outside)  # a backdrop, not a few dark glyphs
    assert (box > 700).sum() > 50  # and bright text on it


def test_legend_scales_with_the_frame():
    classes = np.zeros((64, 128), np.uint8)
    boxes = {}
    for h, w in ((240, 320), (480, 640), (1080, 1920)):
        frame = _frame(h, w)
        boxes[h] = _legend_box(draw_overlay(frame, classes), _plain(frame, classes))
    for h in boxes:  # the same share of the height: within a few pixels of rounding
        assert boxes[h][0] / h == pytest.approx(boxes[480][0] / 480, rel=0.15), boxes
    assert boxes[1080][0] > 3 * boxes[240][0] * 0.85


def test_legend_names_every_category_with_its_share():
    classes = np.zeros((10, 10), np.uint8)
    classes[:5] = CATEGORIES.index("flat")       # 50 %
    classes[5:, :3] = CATEGORIES.index("vehicle")  # 15 %
    classes[9, 9] = CATEGORIES.index("human")      # 1 %
    lines = legend_lines(classes)
    assert [ln.split()[0] for ln in lines] == list(CATEGORIES)
    shares = dict(ln.split() for ln in lines)
    assert shares["flat"] == "50%" and shares["vehicle"] == "15%" and shares["human"] == "1%"
    assert shares["void"] == "34%" and shares["sky"] == "0%"
    trace = np.zeros((100, 100), np.uint8)
    trace[0, 0] = CATEGORIES.index("object")  # 0.01 %: present, not rounded away
    assert dict(ln.split() for ln in legend_lines(trace))["object"] == "<1%"
    assert len(legend_lines(np.full((4, 4), NUM_CLASSES + 3, np.uint8))) == NUM_CLASSES  # foreign ids ignored


def test_snapshot_keeps_the_legend_within_its_byte_limit():
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    jpg = snapshot_jpeg(frame, rng.integers(0, NUM_CLASSES, (64, 128), dtype=np.uint8), 9.5, max_bytes=30_000)
    assert jpg[:2] == b"\xff\xd8" and len(jpg) <= 30_000
