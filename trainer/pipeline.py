"""tf.data input pipeline: decode once, cache, augment (seeded, stateless),
shuffle, batch, prefetch; validation batches at the frame size.

Images stay uint8 RGB end to end (models normalize inside). Labels are
category masks (uint8 0..7) with ``IGNORE_INDEX`` where a pixel must not count
(padding added by scale-and-crop).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from edge_runtime.contract.labels import IGNORE_INDEX
from edge_runtime.contract.preprocessing import preprocess, resize_mask
from trainer.datasets import Sample, load_sample


@dataclass(frozen=True)
class AugmentConfig:
    """Training augmentation. The seed project measured about +10 mIoU points
    from scale, crop, flip and photometric jitter."""
    min_scale: float = 0.5
    max_scale: float = 2.0
    flip: bool = True
    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.2
    hue: float = 0.02
    enabled: bool = True


def _load_fn(samples: list[Sample], fmt: str):
    paths = [(s.image, s.label) for s in samples]

    def load(i):
        img, lab = load_sample(Sample("", *paths[int(i)]), fmt)
        return img, lab

    return load


def _decode(ds: tf.data.Dataset, samples: list[Sample], fmt: str) -> tf.data.Dataset:
    load = _load_fn(samples, fmt)

    def fn(i):
        img, lab = tf.numpy_function(load, [i], [tf.uint8, tf.uint8], stateful=False)
        img.set_shape([None, None, 3])
        lab.set_shape([None, None])
        return img, lab

    return ds.map(fn, num_parallel_calls=tf.data.AUTOTUNE)


def augment(img: tf.Tensor, lab: tf.Tensor, crop: tuple[int, int], base_height: int,
            cfg: AugmentConfig, seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Random scale (relative to the scale at which a frame is ``base_height``
    tall), pad with ignore, random crop to ``crop``, flip, photometric jitter.
    ``seed`` is a stateless seed pair: the same seed gives the same view, which
    lets the teacher cache replay views exactly."""
    ch, cw = crop
    seeds = tf.random.experimental.stateless_split(seed, 8)
    shape = tf.shape(img)
    h, w = tf.cast(shape[0], tf.float32), tf.cast(shape[1], tf.float32)
    base = tf.cast(base_height, tf.float32) / h
    if cfg.enabled:
        logs = tf.random.stateless_uniform([], seeds[0], np.log(cfg.min_scale), np.log(cfg.max_scale))
        scale = base * tf.exp(logs)
    else:
        scale = base
    nh = tf.maximum(tf.cast(tf.round(h * scale), tf.int32), 1)
    nw = tf.maximum(tf.cast(tf.round(w * scale), tf.int32), 1)
    imgf = tf.image.resize(tf.cast(img, tf.float32), [nh, nw], method="bilinear")
    labr = tf.image.resize(lab[..., None], [nh, nw], method="nearest")[..., 0]
    # pad to at least the crop; padded label pixels are ignored
    ph, pw = tf.maximum(ch - nh, 0), tf.maximum(cw - nw, 0)
    imgf = tf.pad(imgf, [[0, ph], [0, pw], [0, 0]])
    labr = tf.pad(tf.cast(labr, tf.int32) - IGNORE_INDEX, [[0, ph], [0, pw]]) + IGNORE_INDEX
    H, W = nh + ph, nw + pw
    y0 = tf.random.stateless_uniform([], seeds[1], 0, H - ch + 1, dtype=tf.int32)
    x0 = tf.random.stateless_uniform([], seeds[2], 0, W - cw + 1, dtype=tf.int32)
    imgf = imgf[y0:y0 + ch, x0:x0 + cw]
    labr = labr[y0:y0 + ch, x0:x0 + cw]
    if cfg.enabled and cfg.flip:
        flip = tf.random.stateless_uniform([], seeds[3]) < 0.5
        imgf = tf.cond(flip, lambda: imgf[:, ::-1], lambda: imgf)
        labr = tf.cond(flip, lambda: labr[:, ::-1], lambda: labr)
    if cfg.enabled:
        x = imgf / 255.0
        x = tf.image.stateless_random_brightness(x, cfg.brightness, seeds[4])
        x = tf.image.stateless_random_contrast(x, 1 - cfg.contrast, 1 + cfg.contrast, seeds[5])
        x = tf.image.stateless_random_saturation(x, 1 - cfg.saturation, 1 + cfg.saturation, seeds[6])
        x = tf.image.stateless_random_hue(x, cfg.hue, seeds[7])
        imgf = x * 255.0
    img_out = tf.cast(tf.clip_by_value(tf.round(imgf), 0, 255), tf.uint8)
    img_out.set_shape([ch, cw, 3])
    lab_out = tf.cast(labr, tf.uint8)
    lab_out.set_shape([ch, cw])
    return img_out, lab_out


def make_dataset(samples: list[Sample], fmt: str, size: tuple[int, int], batch: int,
                 cache: bool = True) -> tf.data.Dataset:
    """Validation batches of ``(uint8 images [N,h,w,3], uint8 labels [N,h,w])``
    at the frame ``size``: frames resized by the runtime's preprocessing
    contract, labels by nearest. Training views come from :class:`DecodedSplit`."""
    load = _load_fn(samples, fmt)

    def load_val(i):
        img, lab = load(i)
        return preprocess(img, size), resize_mask(lab, size)

    def fn(i):
        img, lab = tf.numpy_function(load_val, [i], [tf.uint8, tf.uint8], stateful=False)
        img.set_shape([size[0], size[1], 3])
        lab.set_shape([size[0], size[1]])
        return img, lab

    ds = tf.data.Dataset.range(len(samples)).map(fn, num_parallel_calls=tf.data.AUTOTUNE)
    if cache:
        ds = ds.cache()
    return ds.batch(batch).prefetch(tf.data.AUTOTUNE)


class DecodedSplit:
    """A split decoded once and cached in memory, from which every epoch's
    augmented views are drawn: ``views(view, ...)`` yields batches of
    ``(images, labels, indices)`` where element ``i`` of view ``k`` is always
    the same augmentation (stateless seed ``[seed * 1000 + k, i]``), whatever
    the shuffle order. Distillation's teacher cache relies on this."""

    def __init__(self, samples: list[Sample], fmt: str, cache: bool = True):
        self.samples = samples
        self.fmt = fmt
        idx = tf.data.Dataset.range(len(samples))
        ds = tf.data.Dataset.zip((idx, _decode(idx, samples, fmt)))
        self.base = ds.cache() if cache else ds

    def __len__(self) -> int:
        return len(self.samples)

    def views(self, view: int, size: tuple[int, int], crop: tuple[int, int], batch: int, seed: int = 0,
              shuffle: bool = True, augment_cfg: AugmentConfig = AugmentConfig(),
              drop_remainder: bool = True) -> tf.data.Dataset:
        ds = self.base
        if shuffle:
            ds = ds.shuffle(len(self.samples), seed=seed * 1000 + view, reshuffle_each_iteration=False)

        def aug(i, pair):
            img, lab = pair
            s = tf.stack([tf.constant(seed * 1000 + view, tf.int64), i])
            img, lab = augment(img, lab, crop, size[0], augment_cfg, s)
            return img, lab, i

        ds = ds.map(aug, num_parallel_calls=tf.data.AUTOTUNE)
        return ds.batch(batch, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)
