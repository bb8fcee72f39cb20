"""tf.data input pipeline of ``roadseg-train`` and ``roadseg-distill``:
decode once, cache, augment (:func:`trainer.augment.augment`, seeded per view
and frame), shuffle, batch, prefetch; validation batches at the frame size.

Images stay uint8 RGB end to end (models normalize inside). Labels are
category masks (uint8 0..7) with ``IGNORE_INDEX`` where a pixel must not count
(padding added by scale-and-crop).
"""
from __future__ import annotations

import tensorflow as tf

from edge_runtime.contract.preprocessing import preprocess, resize_mask
from trainer.augment import AugmentConfig, augment, view_rng
from trainer.datasets import Sample, load_sample

__all__ = ["AugmentConfig", "DecodedSplit", "make_dataset"]


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
    the same augmentation (generator ``view_rng(seed * 1000 + k, i)``),
    whatever the shuffle order. Distillation's teacher cache relies on this.
    ``samples`` are decoded lazily, on the first pass."""

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
        """Batches ``(uint8 images [B,ch,cw,3], uint8 labels [B,ch,cw], int64
        indices [B])`` of view ``view``: every frame augmented once
        (:func:`trainer.augment.augment` about the frame height ``size[0]``,
        cropped to ``crop``, with the generator ``view_rng(seed * 1000 +
        view, index)``), shuffled by ``seed * 1000 + view`` when ``shuffle``."""
        ds = self.base
        if shuffle:
            ds = ds.shuffle(len(self.samples), seed=seed * 1000 + view, reshuffle_each_iteration=False)
        ch, cw = crop

        def one_view(img, lab, index):
            return augment(img, lab, crop, size[0], augment_cfg, view_rng(seed * 1000 + view, index))

        def aug(i, pair):
            img, lab = tf.numpy_function(one_view, [pair[0], pair[1], i], [tf.uint8, tf.uint8], stateful=False)
            img.set_shape([ch, cw, 3])
            lab.set_shape([ch, cw])
            return img, lab, i

        ds = ds.map(aug, num_parallel_calls=tf.data.AUTOTUNE)
        return ds.batch(batch, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)
