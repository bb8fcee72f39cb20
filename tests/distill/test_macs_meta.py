"""The export metadata's MACs carry the size they were counted at (issue 25 point 4): ``macs``
= {count, height, width}; old runs' ``macs_256x512`` is still read."""
from __future__ import annotations

import pytest


def test_macs_are_stored_with_their_size_and_old_runs_still_read():
    from trainer.export import macs_entry, macs_of
    assert macs_of({"macs": macs_entry(1_234_567, (352, 480))}) == (1_234_567, (352, 480))
    assert macs_of({"macs_256x512": 987}) == (987, (256, 512))  # runs exported before the size was recorded
    assert macs_of({"kind": "teacher"}) is None
    with pytest.raises(ValueError, match="'macs' is not"):
        macs_of({"macs": 5})


def test_the_count_depends_on_the_size_it_is_counted_at():
    """Why the size is stored: the same student costs about 4x the MACs at twice the height and width
    (not exactly: layers at 1/32 see rounded feature maps)."""
    from distill.students import build_student, count_macs
    from trainer.export import macs_entry
    model = build_student("roadseg-fast", width=0.25).model
    small, large = count_macs(model, (64, 96)), count_macs(model, (128, 192))
    assert 3.9 < large / small < 4.1
    assert macs_entry(small, (64, 96)) == {"count": small, "height": 64, "width": 96}
