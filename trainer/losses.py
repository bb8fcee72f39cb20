"""Segmentation losses on logits ``[N,h,w,C]`` and category labels ``[N,H,W]``
(uint8, ``IGNORE_INDEX`` = not counted). Logits at a lower resolution than the
labels (students at 1/4 or 1/8) are upsampled bilinearly first."""
from __future__ import annotations

import tensorflow as tf

from edge_runtime.contract.labels import IGNORE_INDEX, NUM_CLASSES

LOSSES = ("ce+dice", "ce", "dice", "tversky", "ce+tversky")


def _prepare(logits, labels):
    logits = tf.cast(logits, tf.float32)
    lh, lw = tf.shape(labels)[1], tf.shape(labels)[2]
    if logits.shape[1] != labels.shape[1] or logits.shape[2] != labels.shape[2]:
        logits = tf.image.resize(logits, [lh, lw], method="bilinear")
    labels = tf.cast(labels, tf.int32)
    valid = tf.not_equal(labels, IGNORE_INDEX)
    safe = tf.where(valid, labels, 0)
    return logits, safe, tf.cast(valid, tf.float32)


def cross_entropy(logits, labels, class_weights=None):
    """Softmax cross-entropy (nats) averaged over labelled pixels; with
    ``class_weights`` (``[C]``, e.g. :func:`class_weights_from_counts`) a
    weighted mean, each pixel weighted by its true class."""
    logits, y, valid = _prepare(logits, labels)
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)
    w = valid
    if class_weights is not None:
        w = w * tf.gather(tf.constant(class_weights, tf.float32), y)
    return tf.reduce_sum(ce * w) / tf.maximum(tf.reduce_sum(w), 1.0)


def _soft_overlap(logits, labels):
    logits, y, valid = _prepare(logits, labels)
    p = tf.nn.softmax(logits) * valid[..., None]
    t = tf.one_hot(y, NUM_CLASSES) * valid[..., None]
    axes = [0, 1, 2]
    tp = tf.reduce_sum(p * t, axes)
    fp = tf.reduce_sum(p * (1 - t), axes)
    fn = tf.reduce_sum((1 - p) * t, axes)
    present = tf.cast(tf.reduce_sum(t, axes) > 0, tf.float32)
    return tp, fp, fn, present


def tversky(logits, labels, alpha=0.3, beta=0.7, eps=1.0):
    """Tversky loss (Salehi et al., 2017): per class ``1 - (TP + eps) / (TP +
    alpha FP + beta FN + eps)`` on soft (softmax) counts over labelled
    pixels; alpha = beta = 0.5 is Dice. Averaged over classes present in the
    batch's ground truth; a scalar in 0..1."""
    tp, fp, fn, present = _soft_overlap(logits, labels)
    score = (tp + eps) / (tp + alpha * fp + beta * fn + eps)
    return tf.reduce_sum((1 - score) * present) / tf.maximum(tf.reduce_sum(present), 1.0)


def dice(logits, labels):
    """Soft Dice loss (Milletari et al., V-Net 2016): :func:`tversky` with
    alpha = beta = 0.5."""
    return tversky(logits, labels, 0.5, 0.5)


def make_loss(name: str, class_weights=None):
    """``loss(logits, labels) -> scalar`` for a name in :data:`LOSSES` (terms
    joined by ``+`` are summed). Raises ``ValueError`` for another name."""
    parts = {
        "ce": lambda lo, la: cross_entropy(lo, la, class_weights),
        "dice": dice,
        "tversky": tversky,
    }
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; valid: {', '.join(LOSSES)}")
    fns = [parts[p] for p in name.split("+")]
    return lambda logits, labels: tf.add_n([f(logits, labels) for f in fns])


def class_weights_from_counts(counts, ignore_void: bool = False, power: float = 0.5):
    """Inverse-frequency weights ``(median_freq / freq) ** power`` (ENet-style,
    softened), normalized to mean 1 over the classes that occur."""
    import numpy as np
    c = np.asarray(counts, np.float64)
    freq = c / max(c.sum(), 1)
    w = np.zeros_like(freq)
    occ = freq > 0
    w[occ] = (np.median(freq[occ]) / freq[occ]) ** power
    if ignore_void:
        w[0] = 0.0
    w[occ] /= w[occ].mean()
    return [float(v) for v in w]
