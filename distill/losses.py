"""Distillation losses on student logits and teacher probabilities, both at
the student's output resolution, ``[N,h,w,C]``."""
from __future__ import annotations

import tensorflow as tf

from edge_runtime.labels import IGNORE_INDEX

EPS = 1e-8


def soften(probs, temperature: float):
    """Teacher probabilities at temperature T: softmax(log p / T)."""
    if temperature == 1.0:
        return probs
    return tf.nn.softmax(tf.math.log(tf.maximum(probs, EPS)) / temperature, axis=-1)


def pixel_kd(student_logits, teacher_probs, temperature: float = 1.0, mask=None):
    """Pixel-wise KL(teacher_T || student_T) * T^2, averaged over pixels
    (Hinton et al. 2015; Liu et al., "Structured KD for dense prediction").
    ``mask`` [N,h,w] (1 = counts) leaves out pixels, e.g. padding."""
    s = tf.cast(student_logits, tf.float32)
    pt = soften(tf.cast(teacher_probs, tf.float32), temperature)
    log_ps = tf.nn.log_softmax(s / temperature, axis=-1)
    kl = tf.reduce_sum(pt * (tf.math.log(tf.maximum(pt, EPS)) - log_ps), axis=-1)
    if mask is None:
        mean = tf.reduce_mean(kl)
    else:
        mask = tf.cast(mask, tf.float32)
        mean = tf.reduce_sum(kl * mask) / tf.maximum(tf.reduce_sum(mask), 1.0)
    return mean * temperature ** 2


def channel_kd(student_logits, teacher_probs, temperature: float = 4.0):
    """Channel-wise distillation (Shu et al., ICCV 2021): each class channel
    is turned into a distribution over spatial positions (softmax of
    logits / T) and the student matches the teacher's with KL, * T^2,
    averaged over channels and images. Teacher logits are log-probabilities."""
    s = tf.cast(student_logits, tf.float32)
    t = tf.math.log(tf.maximum(tf.cast(teacher_probs, tf.float32), EPS))
    n, c = tf.shape(s)[0], tf.shape(s)[3]
    s = tf.reshape(tf.transpose(s, [0, 3, 1, 2]), [n, c, -1]) / temperature
    t = tf.reshape(tf.transpose(t, [0, 3, 1, 2]), [n, c, -1]) / temperature
    pt = tf.nn.softmax(t, axis=-1)
    kl = tf.reduce_sum(pt * (tf.nn.log_softmax(t, axis=-1) - tf.nn.log_softmax(s, axis=-1)), axis=-1)
    return tf.reduce_mean(kl) * temperature ** 2


def valid_mask_at(labels, size):
    """Pixels of the student's output grid whose label is not ignored
    (nearest-resized), so padding added by augmentation does not teach."""
    lab = tf.image.resize(tf.cast(labels, tf.int32)[..., None], size, method="nearest")[..., 0]
    return tf.cast(tf.not_equal(lab, IGNORE_INDEX), tf.float32)


def combine_teachers(probs_list, class_weights=None):
    """Average several teachers' probabilities; with ``class_weights``
    ``[T, C]`` (e.g. each teacher's val IoU per class, normalized over
    teachers) each teacher counts most for the classes it knows best. The
    result is renormalized to sum to 1 per pixel."""
    stacked = tf.stack([tf.cast(p, tf.float32) for p in probs_list])  # [T,N,h,w,C]
    if class_weights is None:
        mixed = tf.reduce_mean(stacked, axis=0)
    else:
        w = tf.constant(class_weights, tf.float32)[:, None, None, None, :]
        mixed = tf.reduce_sum(stacked * w, axis=0)
    return mixed / tf.maximum(tf.reduce_sum(mixed, axis=-1, keepdims=True), EPS)


def teacher_class_weights(ious: list[list[float | None]]) -> list[list[float]]:
    """Per-class weights from teachers' val IoUs (None = unknown -> equal)."""
    n_t = len(ious)
    n_c = len(ious[0])
    out = [[0.0] * n_c for _ in range(n_t)]
    for c in range(n_c):
        vals = [ious[t][c] if ious[t][c] is not None else None for t in range(n_t)]
        if any(v is None for v in vals) or sum(vals) <= 0:
            for t in range(n_t):
                out[t][c] = 1.0 / n_t
        else:
            s = sum(vals)
            for t in range(n_t):
                out[t][c] = vals[t] / s
    return out
