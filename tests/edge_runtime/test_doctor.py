"""roadseg-doctor: ok/FAIL lines, one line per problem with its fix, exit 4 when the runtime cannot start."""
from __future__ import annotations

import json

from edge_runtime.commands.doctor import main


def test_doctor_reports_each_piece_and_loads_a_model(tiny_tflite, capsys):
    assert main(["--model", str(tiny_tflite), "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["ok"] and rep["problems"] == []
    assert {"numpy", "cv2", "interpreter", "model"} <= set(rep["checks"])
    assert rep["checks"]["model"]["input"] == [64, 128]


def test_doctor_names_the_problem_and_its_fix_in_one_line(tmp_path, capsys):
    bad = tmp_path / "broken.tflite"
    bad.write_bytes(b"not a flatbuffer")
    assert main(["--model", str(bad)]) == 4
    out, err = capsys.readouterr()
    assert "FAIL model" in out and "ok   numpy" in out
    problems = [ln for ln in err.splitlines() if ln.startswith("roadseg-doctor: model:")]
    assert len(problems) == 1 and "Fix:" in problems[0] and "Traceback" not in err
