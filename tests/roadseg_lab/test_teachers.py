"""teacher-eval: each teacher, with test-time augmentation, and the combination, through distill.Teachers."""
from __future__ import annotations

import json

import pytest

pytest.importorskip("tensorflow")


def test_each_teacher_its_tta_and_the_combination(tiny_student_run, synth_cityscapes, tmp_path, capsys):
    from roadseg_lab.cli import main
    out = tmp_path / "t.json"
    run = str(tiny_student_run)
    assert main(["teacher-eval", "--teacher", run, "--teacher", run, "--data", str(synth_cityscapes),
                 "--split", "val", "--size", "64x128", "--tta", "flip", "--out", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert [len(r["teachers"]) for r in rows] == [1, 1, 1, 1, 2] and [r["tta"] for r in rows] == ["", "", "flip",
                                                                                               "flip", "flip"]
    assert all(0 <= r["miou7"] <= 1 and set(r["iou7"]) == {"flat", "construction", "object", "nature", "sky",
                                                            "human", "vehicle"} for r in rows)
    # a teacher combined with itself is that teacher: the combination is an average of distributions
    assert rows[4]["miou7"] == pytest.approx(rows[2]["miou7"], abs=1e-6)
    assert len(capsys.readouterr().out.strip().splitlines()) == 5
    assert main(["teacher-eval", "--teacher", run, "--data", str(synth_cityscapes), "--split", "val",
                 "--tta", "mirror"]) == 2
