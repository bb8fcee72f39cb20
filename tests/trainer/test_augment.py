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
