"""The one training augmentation (trainer.augment): NumPy and OpenCV, the
same views inside roadseg-train's tf.data pipeline and in the any-backend
trainer."""
from __future__ import annotations

import numpy as np
import pytest

from edge_runtime.contract.labels import IGNORE_INDEX
from edge_runtime.eval.synthetic import synthetic_scene
from trainer.augment import AugmentConfig, augment, view_rng


@pytest.fixture(scope="module")
def frame():
    return synthetic_scene(3, 60, 80)


@pytest.mark.parametrize("crop,base", [((32, 48), 32), ((64, 64), 64), ((16, 96), 16)])
def test_view_shapes_dtypes_and_labels(frame, crop, base):
    img, lab = frame
    for i in range(8):
        a, b = augment(img, lab, crop, base, AugmentConfig(), view_rng(7, i))
        assert a.shape == (*crop, 3) and a.dtype == np.uint8 and b.shape == crop and b.dtype == np.uint8
        assert set(np.unique(b).tolist()) <= set(np.unique(lab).tolist()) | {IGNORE_INDEX}
        assert a.flags.c_contiguous and b.flags.c_contiguous


def test_same_generator_same_view_other_generator_other_view(frame):
    img, lab = frame
    a1, b1 = augment(img, lab, (32, 48), 32, AugmentConfig(), view_rng(1, 5))
    a2, b2 = augment(img, lab, (32, 48), 32, AugmentConfig(), view_rng(1, 5))
    assert np.array_equal(a1, a2) and np.array_equal(b1, b2)
    others = [augment(img, lab, (32, 48), 32, AugmentConfig(), view_rng(s, i))[0] for s, i in ((1, 6), (2, 5))]
    assert all(not np.array_equal(a1, o) for o in others)


def test_padding_is_ignored_and_black(frame):
    img, lab = frame
    # a frame scaled to half the crop's height cannot fill it: the rest is padding
    cfg = AugmentConfig(min_scale=0.5, max_scale=0.5, flip=False, brightness=0, contrast=0, saturation=0, hue=0)
    a, b = augment(img, lab, (64, 200), 64, cfg, view_rng(0, 0))
    assert (b[32:] == IGNORE_INDEX).all() and (a[32:] == 0).all()
    assert (b[:32, :40] != IGNORE_INDEX).all()


def test_disabled_is_resize_and_crop_only(frame):
    img, lab = frame
    from edge_runtime.contract.preprocessing import preprocess, resize_mask
    a, b = augment(img, lab, (30, 40), 30, AugmentConfig(enabled=False), view_rng(0, 0))
    full_img, full_lab = preprocess(img, (30, 40)), resize_mask(lab, (30, 40))
    assert np.array_equal(a, full_img) and np.array_equal(b, full_lab)


def test_photometric_ranges(frame):
    """Brightness alone moves (nearly) every pixel by one offset within the
    range (a pixel with a channel pushed below 0 has its saturation clipped,
    as in tf.image); flips mirror image and label together."""
    img, lab = frame
    cfg = AugmentConfig(min_scale=1, max_scale=1, flip=False, brightness=0.1, contrast=0, saturation=0, hue=0)
    base = augment(img, lab, (60, 80), 60, AugmentConfig(enabled=False), view_rng(0, 0))[0].astype(int)
    for i in range(5):
        a, b = augment(img, lab, (60, 80), 60, cfg, view_rng(0, i))
        diff = a.astype(int) - base
        inner = diff[(base > 30).all(-1) & (base < 225).all(-1)]  # pixels that cannot clip at 0 or 255
        offsets, counts = np.unique(inner, return_counts=True)
        offset = offsets[counts.argmax()]
        assert counts.max() >= 0.995 * inner.size and abs(offset) <= 0.1 * 255 + 1
    cfg = AugmentConfig(min_scale=1, max_scale=1, flip=True, brightness=0, contrast=0, saturation=0, hue=0)
    flips = 0
    for i in range(16):
        a, b = augment(img, lab, (60, 80), 60, cfg, view_rng(0, i))
        flipped = np.array_equal(b, lab[:, ::-1]) and not np.array_equal(b, lab)
        flips += flipped
        assert np.array_equal(b, lab[:, ::-1] if flipped else lab)
    assert 0 < flips < 16


def test_tf_pipeline_draws_the_same_views(synth_cityscapes):
    """roadseg-train's DecodedSplit views are trainer.augment's, frame by frame."""
    pytest.importorskip("tensorflow")
    from trainer.datasets import list_samples, load_sample
    from trainer.pipeline import DecodedSplit
    fmt, samples = list_samples(synth_cityscapes, "train")
    x, y, idx = next(iter(DecodedSplit(samples, fmt).views(2, (48, 96), (48, 64), batch=3, seed=4)))
    for img, lab, i in zip(x.numpy(), y.numpy(), idx.numpy()):
        a, b = augment(*load_sample(samples[i], fmt), (48, 64), 48, AugmentConfig(), view_rng(4 * 1000 + 2, i))
        assert np.array_equal(img, a) and np.array_equal(lab, b)


@pytest.mark.parametrize("h,w,grid", [(64, 128, 8), (192, 256, 8), (96, 96, 32), (64, 64, 4)])
def test_cutmix_box_on_grid_inside_frame_area_uniform(h, w, grid):
    """Issue 21: CutMix rectangles lie on the grid (cached teacher maps cut along the same edges),
    inside the frame, with an area share of about U(0, 1) (Yun et al. 2019)."""
    from trainer.augment import cutmix_box
    rng = np.random.default_rng(3)
    shares = []
    for _ in range(400):
        y0, x0, bh, bw = cutmix_box(h, w, grid, rng)
        assert all(v % grid == 0 for v in (y0, x0, bh, bw))
        assert 0 <= y0 and y0 + bh <= h and 0 <= x0 and x0 + bw <= w
        shares.append(bh * bw / (h * w))
    assert 0.4 < np.mean(shares) < 0.6 and min(shares) < 0.1 and max(shares) > 0.8


@pytest.mark.parametrize("h,w,grid", [(60, 128, 8), (64, 128, 0), (64, 100, 8)])
def test_cutmix_box_refuses_frames_off_the_grid(h, w, grid):
    from trainer.augment import cutmix_box
    with pytest.raises(ValueError, match="whole number"):
        cutmix_box(h, w, grid, np.random.default_rng(0))


@pytest.mark.parametrize("b,grid,map_stride", [(2, 8, 4), (5, 8, 8), (4, 16, 16), (3, 8, 1)])
def test_cutmix_batch_keeps_every_pixel_with_its_own_label_and_map(b, grid, map_stride):
    """Every pixel of a mixed frame comes, with its label and its cached map, from the frame itself or
    from its partner (i + 1) % B at the same place; the inputs are left as they were."""
    from trainer.augment import cutmix_batch
    h, w = 64, 96
    frame_id = np.arange(b, dtype=np.uint8)[:, None, None]
    yy, xx = np.mgrid[0:h, 0:w]
    images = np.stack([frame_id + 0 * yy, (yy % 251) + 0 * frame_id, (xx % 251) + 0 * frame_id], -1).astype(np.uint8)
    labels = (frame_id + 10 + 0 * yy).astype(np.uint8)
    maps = np.broadcast_to(np.arange(b, dtype=np.float32)[:, None, None, None],
                           (b, h // map_stride, w // map_stride, 3)).copy()
    before = (images.copy(), labels.copy(), maps.copy())
    mi, ml, (mm,) = cutmix_batch(images, labels, np.random.default_rng(7), grid, (maps,))
    for a, c in zip((images, labels, maps), before):
        np.testing.assert_array_equal(a, c)
    np.testing.assert_array_equal(mi[..., 1:], images[..., 1:])          # every pixel stays where it was
    np.testing.assert_array_equal(ml, mi[..., 0] + 10)                   # with its own frame's label
    src = mi[..., 0]
    partner = (np.arange(b) + 1) % b
    assert ((src == np.arange(b)[:, None, None]) | (src == partner[:, None, None])).all()
    # the map takes the same rectangle: its source frame is the image's, cell by cell
    cell_src = src[:, ::map_stride, ::map_stride]
    np.testing.assert_array_equal(mm[..., 0], cell_src.astype(np.float32))
    pasted = (src != np.arange(b)[:, None, None]).mean()
    assert 0 < pasted < 1


def test_cutmix_batch_refuses_a_map_off_the_grid():
    from trainer.augment import cutmix_batch
    images, labels = np.zeros((2, 64, 64, 3), np.uint8), np.zeros((2, 64, 64), np.uint8)
    with pytest.raises(ValueError, match="does not lie on the 8-pixel grid"):
        cutmix_batch(images, labels, np.random.default_rng(0), 8, (np.zeros((2, 4, 4, 8), np.float32),))
