"""The learning-rate schedule every roadseg trainer follows (TensorFlow-free).

``roadseg-train`` and ``roadseg-distill`` call :func:`lr_at` per optimizer
step; the any-backend trainer (:mod:`trainer.keras_backend`) per epoch, with
``step`` the fraction of its epochs or time budget spent
(:func:`lr_at_progress`).
"""
from __future__ import annotations

import math

SCHEDULES = ("cosine", "poly", "constant")


def lr_at(step: int, total: int, base: float, warmup: int, schedule: str, min_ratio: float = 0.01) -> float:
    """The learning rate at optimizer step ``step`` (0-based) of ``total``.

    Linear warm-up over the first ``warmup`` steps (from ``base / warmup``
    to ``base``), then a decay to ``min_ratio * base`` at ``total``:
    ``cosine`` (SGDR, Loshchilov & Hutter 2017, without restarts),
    ``poly`` with power 0.9 (DeepLab, Chen et al. 2017) or ``constant``.
    Steps past ``total`` keep the final rate.

    Raises:
        ValueError: ``schedule`` is not one of :data:`SCHEDULES`.
    """
    if warmup and step < warmup:
        return base * (step + 1) / warmup
    t = min(1.0, (step - warmup) / max(1, total - warmup))
    if schedule == "cosine":
        f = 0.5 * (1 + math.cos(math.pi * t))
    elif schedule == "poly":
        f = (1 - t) ** 0.9
    elif schedule == "constant":
        f = 1.0
    else:
        raise ValueError(f"unknown schedule {schedule!r}; valid: {', '.join(SCHEDULES)}")
    return base * (min_ratio + (1 - min_ratio) * f)


#: resolution of :func:`lr_at_progress`: progress is counted in this many steps
PROGRESS_STEPS = 1000


def lr_at_progress(progress: float, base: float, warmup_fraction: float = 0.05, schedule: str = "cosine") -> float:
    """:func:`lr_at` for a run measured by ``progress`` in [0, 1] (epochs or
    time spent, whichever is further) instead of steps: the warm-up is the
    first ``warmup_fraction`` of the run. Raises what :func:`lr_at` raises."""
    step = int(min(max(progress, 0.0), 1.0) * PROGRESS_STEPS)
    return lr_at(step, PROGRESS_STEPS, base, int(warmup_fraction * PROGRESS_STEPS), schedule)
