"""Distillation losses on student logits and teacher probabilities, both at
the student's output resolution, ``[N,h,w,C]``.

Written in ``keras.ops`` so that one definition serves ``roadseg-distill``
(TensorFlow) and the any-backend trainer (``distill.keras_backend`` on JAX
or PyTorch)."""
from __future__ import annotations

from keras import ops

from edge_runtime.contract.labels import IGNORE_INDEX

EPS = 1e-8

#: the grids the KD terms may use, 1/N of the frame (``roadseg-distill --kd-stride``, both trainers)
KD_STRIDES = (1, 2, 4, 8, 16, 32)


def _log(p):
    return ops.log(ops.maximum(p, EPS))


def soften(probs, temperature: float):
    """Teacher probabilities ``[...,C]`` at temperature T: softmax(log p / T)
    (Hinton et al. 2015, the softened targets of knowledge distillation)."""
    if temperature == 1.0:
        return probs
    return ops.softmax(_log(probs) / temperature, axis=-1)


def pixel_kd(student_logits, teacher_probs, temperature: float = 1.0, mask=None):
    """Pixel-wise KL(teacher_T || student_T) * T^2, averaged over pixels
    (Hinton et al. 2015, the T^2 keeps the gradient's scale across T; Liu et
    al. 2019, "Structured knowledge distillation for dense prediction", the
    pixel-wise term). ``student_logits`` and ``teacher_probs`` ``[N,h,w,C]``
    at the same grid; ``mask`` [N,h,w] (1 = counts) leaves out pixels, e.g.
    padding. Returns a scalar (nats)."""
    s = ops.cast(student_logits, "float32")
    pt = soften(ops.cast(teacher_probs, "float32"), temperature)
    log_ps = ops.log_softmax(s / temperature, axis=-1)
    kl = ops.sum(pt * (_log(pt) - log_ps), axis=-1)
    if mask is None:
        mean = ops.mean(kl)
    else:
        mask = ops.reshape(ops.cast(mask, "float32"), ops.shape(kl))
        mean = ops.sum(kl * mask) / ops.maximum(ops.sum(mask), 1.0)
    return mean * temperature ** 2


def channel_kd(student_logits, teacher_probs, temperature: float = 4.0):
    """Channel-wise distillation (Shu et al., ICCV 2021): each class channel
    is turned into a distribution over spatial positions (softmax of
    logits / T) and the student matches the teacher's with KL, * T^2,
    averaged over channels and images. Teacher logits are log-probabilities.
    ``[N,h,w,C]`` both; returns a scalar (nats)."""
    s = ops.cast(student_logits, "float32")
    t = _log(ops.cast(teacher_probs, "float32"))

    def per_channel(x):  # [N,h,w,C] -> [N,C,h*w]
        x = ops.transpose(x, (0, 3, 1, 2))
        return ops.reshape(x, (ops.shape(x)[0], ops.shape(x)[1], -1)) / temperature
    s, t = per_channel(s), per_channel(t)
    log_pt = ops.log_softmax(t, axis=-1)
    kl = ops.sum(ops.exp(log_pt) * (log_pt - ops.log_softmax(s, axis=-1)), axis=-1)
    return ops.mean(kl) * temperature ** 2


def valid_mask_at(labels, size):
    """float32 ``[N,h,w]`` mask (1 = counts) of the student's output grid
    ``size = (h, w)``: pixels whose label ``[N,H,W]`` (nearest-resized) is
    not ``IGNORE_INDEX``, so padding added by augmentation does not teach."""
    lab = ops.image.resize(ops.cast(labels, "float32")[..., None], tuple(size), interpolation="nearest")[..., 0]
    return ops.cast(ops.not_equal(lab, float(IGNORE_INDEX)), "float32")


def combine_teachers(probs_list, class_weights=None):
    """Average several teachers' probabilities; with ``class_weights``
    ``[T, C]`` (e.g. each teacher's val IoU per class, normalized over
    teachers) each teacher counts most for the classes it knows best. The
    result is renormalized to sum to 1 per pixel. ``probs_list``: ``T``
    arrays ``[N,h,w,C]``; returns ``[N,h,w,C]``."""
    stacked = ops.stack([ops.cast(p, "float32") for p in probs_list])  # [T,N,h,w,C]
    if class_weights is None:
        mixed = ops.mean(stacked, axis=0)
    else:
        w = ops.convert_to_tensor(class_weights, "float32")[:, None, None, None, :]
        mixed = ops.sum(stacked * w, axis=0)
    return mixed / ops.maximum(ops.sum(mixed, axis=-1, keepdims=True), EPS)


def teacher_class_weights(ious: list[list[float | None]]) -> list[list[float]]:
    """Per-class weights ``[T][C]`` from teachers' val IoUs ``[T][C]``
    (0..1; None = unknown): each class's IoUs normalized over the teachers,
    equal weights where any is unknown or all are 0."""
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
