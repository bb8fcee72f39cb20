"""The overlay: the class map upsampled linearly (or nearest) to the frame; its legend on a backdrop,
scaled with the frame within a corner of it, naming each category's share."""
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

    from edge_runtime.io.overlay import colour_classes
    colour = colour_classes(classes, frame.shape[:2])
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


def test_legend_scales_with_the_frame_and_fits_a_small_one():
    """Issue 31 (12): at 480x360 the legend covered a third of the width and half the height; now it
    stays within a sixth of the width and a quarter of the height at every size, and grows with the frame."""
    from edge_runtime.io.overlay import LEGEND_MAX_HEIGHT, LEGEND_MAX_WIDTH
    classes = np.zeros((64, 128), np.uint8)
    boxes = {}
    for h, w in ((360, 480), (480, 640), (720, 1280), (1080, 1920), (1080, 1440)):
        frame = _frame(h, w)
        boxes[h, w] = bh, bw = _legend_box(draw_overlay(frame, classes), _plain(frame, classes))
        assert bw <= LEGEND_MAX_WIDTH * w + 1 and bh <= LEGEND_MAX_HEIGHT * h + 1, (h, w, boxes[h, w])
    assert boxes[360, 480][1] <= 480 / 6 + 1 and boxes[360, 480][0] <= 360 / 4 + 1
    assert boxes[1080, 1920][0] > 3 * boxes[360, 480][0]  # the text is as readable on a large frame
    assert boxes[360, 480] < boxes[480, 640] < boxes[720, 1280] < boxes[1080, 1920]


def _diagonal(h: int, w: int) -> np.ndarray:
    """Ground truth at full size: road (flat) below a slanted line, sky above, a car in the middle."""
    from edge_runtime.contract.labels import CATEGORIES
    yy, xx = np.mgrid[:h, :w]
    truth = np.where(yy > 0.35 * h + 0.3 * xx, CATEGORIES.index("flat"), CATEGORIES.index("sky")).astype(np.uint8)
    truth[(yy - 0.6 * h) ** 2 / (0.15 * h) ** 2 + (xx - 0.5 * w) ** 2 / (0.2 * w) ** 2 < 1] = CATEGORIES.index("vehicle")
    return truth


def _edge(m: np.ndarray) -> np.ndarray:
    """Per column of the left quarter (away from the car): the first row of road (flat)."""
    from edge_runtime.contract.labels import CATEGORIES
    return np.argmax(m[:, : m.shape[1] // 4] == CATEGORIES.index("flat"), axis=0)


def test_linear_filter_follows_boundaries_the_point_filter_draws_in_steps():
    """Issue 31 (12): the model's output at 1/4 of the frame, brought to the frame. The nearest cell
    draws the slanted road edge in 4 px steps; the scores upsampled linearly follow it (as jetson-inference's
    segNet filters its overlay), and with the class map alone the steps are halved. No category is
    invented, each region keeps its size, and ``point`` is the nearest-neighbour resize it always was."""
    import cv2

    from edge_runtime.contract.preprocessing import resize_mask
    from edge_runtime.io.overlay import category_shares, upsample_classes
    h, w = 360, 480
    truth = _diagonal(h, w)
    onehot = np.stack([(truth == c).astype(np.float32) for c in range(NUM_CLASSES)], axis=-1)
    probs = cv2.resize(onehot, (w // 4, h // 4), interpolation=cv2.INTER_AREA)  # what a good model says per cell
    logits_int8 = np.round(probs * 200 - 100).astype(np.int8)  # as the shipped model's quantized output
    grid = probs.argmax(axis=-1).astype(np.uint8)  # the class map the loop gets
    point = upsample_classes(grid, (h, w), "point")
    assert np.array_equal(point, resize_mask(grid, (h, w)))
    wrong = {"point": (point != truth).mean()}
    for name, scores in (("classes", None), ("scores", logits_int8)):
        up = upsample_classes(grid, (h, w), "linear", scores=scores)
        assert up.dtype == np.uint8 and up.shape == (h, w) and set(np.unique(up)) == set(np.unique(grid))
        assert np.abs(category_shares(up) - category_shares(truth)).max() < 0.005
        wrong[name] = (up != truth).mean()
        assert np.abs(np.diff(_edge(up))).max() <= (1 if scores is not None else 2)
    assert np.abs(np.diff(_edge(point))).max() == 4  # the grid's steps
    assert wrong["scores"] < 0.3 * wrong["point"] and wrong["classes"] < wrong["point"], wrong
    assert np.array_equal(upsample_classes(grid, (h, w), "linear", scores=probs[..., :5]),  # not one per category
                          upsample_classes(grid, (h, w), "linear"))
    # a pole one cell wide stays: a thin object is not smoothed away
    pole = np.zeros((16, 16), np.uint8)
    pole[:, 8] = 3
    assert (upsample_classes(pole, (64, 64), "linear")[:, 30:36] == 3).all(axis=0).sum() >= 3


def test_overlay_filter_is_checked_and_applies_to_the_picture():
    from edge_runtime.io.overlay import FILTERS, colour_classes
    assert FILTERS == ("linear", "point")
    grid = np.zeros((8, 8), np.uint8)
    grid[4:, :] = 1
    grid[:, 4:] = 2
    frame = _frame(64, 64, 128)
    linear, point = draw_overlay(frame, grid), draw_overlay(frame, grid, filter="point")
    assert linear.shape == point.shape == (64, 64, 3) and not np.array_equal(linear, point)
    assert np.array_equal(colour_classes(grid, (64, 64), "point").shape, (64, 64, 3))
    with pytest.raises(ValueError, match="overlay filter 'cubic': choose one of linear, point"):
        draw_overlay(frame, grid, filter="cubic")
    jpg = snapshot_jpeg(frame, grid, 5.0, filter="point")
    assert jpg[:2] == b"\xff\xd8"


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
