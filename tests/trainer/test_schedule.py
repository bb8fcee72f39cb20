"""The one learning-rate schedule (trainer.schedule), by steps and by progress."""
from __future__ import annotations

import math

import pytest

from trainer.schedule import PROGRESS_STEPS, lr_at, lr_at_progress


def test_warmup_then_cosine_to_the_floor():
    assert lr_at(0, 100, 1.0, 10, "cosine") == pytest.approx(0.1)
    assert lr_at(9, 100, 1.0, 10, "cosine") == pytest.approx(1.0)
    assert lr_at(10, 100, 1.0, 10, "cosine") == pytest.approx(1.0)
    assert lr_at(55, 100, 1.0, 10, "cosine") == pytest.approx(0.01 + 0.99 * 0.5)
    assert lr_at(100, 100, 1.0, 10, "cosine") == pytest.approx(0.01)
    assert lr_at(500, 100, 1.0, 10, "cosine") == pytest.approx(0.01)
    assert lr_at(55, 100, 2.0, 10, "poly") == pytest.approx(2.0 * (0.01 + 0.99 * 0.5 ** 0.9))
    assert lr_at(55, 100, 2.0, 10, "constant") == pytest.approx(2.0)
    with pytest.raises(ValueError, match="valid: cosine, poly, constant"):
        lr_at(20, 100, 1.0, 10, "step")


@pytest.mark.parametrize("progress", [0.0, 0.01, 0.049, 0.05, 0.3, 0.5, 0.97, 1.0, 1.5])
def test_progress_schedule_is_the_any_backend_trainers(progress):
    """What scripts/teacher_keras_backend.py computed with its own copy of the
    schedule (5% linear warm-up from 2%, cosine to 1%), now from lr_at."""
    def old(p, base=1e-3):
        if p < 0.05:
            return base * max(p / 0.05, 0.02)
        return base * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(1.0, (p - 0.05) / 0.95))))
    tolerance = 1.001e-3 / (0.05 * PROGRESS_STEPS)  # one step of the warm-up's resolution
    assert lr_at_progress(progress, 1e-3) == pytest.approx(old(progress), abs=tolerance)
