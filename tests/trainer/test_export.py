"""The export contract of a run directory."""
from __future__ import annotations

import numpy as np
import pytest


def test_export_refuses_frames_of_another_size(tiny_student_run):
    pytest.importorskip("tensorflow")
    from trainer.export import ExportedModel
    m = ExportedModel(tiny_student_run)
    assert m(np.zeros((2, *m.size, 3), np.uint8)).shape == (2, *m.size, 8)
    with pytest.raises(ValueError, match=r"takes uint8 RGB frames \[N,64,128,3\], got \[1, 128, 256, 3\]"):
        m(np.zeros((1, 128, 256, 3), np.uint8))
