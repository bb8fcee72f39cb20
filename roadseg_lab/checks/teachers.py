"""Score teachers on a split: each alone, each with test-time augmentation, and their combination.

    python -m roadseg_lab teacher-eval --teacher runs/kd/teacher-fpn-lite2 [--teacher RUN ...] \
        --data CAMVID --split holdout:0006R0 --size 192x256 [--tta flip] [--out teachers.json]

Every prediction goes through :class:`distill.distill.Teachers`, the one object
every KD path uses (the same resize, views and per-class weighting), so the
numbers are those of the soft targets a student would see: the frame is
resized to ``size`` (the student's input, the preprocessing contract's
stretch), the teachers' probabilities are area-resized onto each label's own
resolution and arg-maxed, and scored with the project's confusion matrix
(mIoU-7 ignores void, the Cityscapes category convention).
"""
from __future__ import annotations

import numpy as np


def score(runs: list[str], tta: str, samples, fmt: str, size: tuple[int, int], weighting: str = "iou") -> dict:
    """``{"teachers", "tta", "miou7", "miou8", "iou7"}`` of the combination of ``runs`` with ``tta``
    on ``samples`` (uint8 RGB frames resized to ``size`` = (height, width) pixels).

    Raises:
        FileNotFoundError: a run has no export.
        ValueError: a bad ``tta`` or ``weighting``.
    """
    import tensorflow as tf

    from distill.distill import Teachers
    from edge_runtime.contract.preprocessing import preprocess
    from edge_runtime.eval.datasets import load_sample
    from edge_runtime.eval.metrics import ConfusionMatrix
    teachers = Teachers(runs, weighting, tta)
    cm = ConfusionMatrix()
    for s in samples:
        image, label = load_sample(s, fmt)
        x = preprocess(image, size)[None]
        probs = teachers.probs(tf.constant(x.astype(np.uint8)), label.shape[:2])
        cm.update(np.argmax(probs.numpy()[0], axis=-1), label)
    m = cm.compute()
    return {"teachers": [str(r) for r in runs], "tta": tta, "miou7": round(m.miou7, 6), "miou8": round(m.miou8, 6),
            "iou7": {k: round(v, 6) for k, v in m.as_dict()["iou7"].items()}}


def evaluate(runs: list[str], tta: str, data: str, split: str, size: tuple[int, int]) -> list[dict]:
    """Each teacher alone, each with ``tta`` (when given), and all together with ``tta``: one dict each
    (see :func:`score`). Raises what :func:`score` and the dataset reader raise."""
    from edge_runtime.eval.datasets import list_samples
    fmt, samples = list_samples(data, split)
    rows = [score([r], "", samples, fmt, size) for r in runs]
    if tta:
        rows += [score([r], tta, samples, fmt, size) for r in runs]
    if len(runs) > 1:
        rows.append(score(runs, tta, samples, fmt, size))
    return rows
