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


def test_doctor_checks_the_shipped_models_sha256(tmp_path, capsys):
    """Issue 21: roadseg-doctor verifies the shipped model against its sidecar; a tampered copy is one FAIL line."""
    import shutil

    from edge_runtime.commands.doctor import diagnose
    from edge_runtime.models import default_model
    good = diagnose()
    assert good["checks"]["shipped"]["ok"] and "sha256" in good["checks"]["shipped"]["version"]
    shutil.copyfile(default_model(), tmp_path / "roadseg-default.tflite")
    shutil.copyfile(default_model().with_suffix(".json"), tmp_path / "roadseg-default.json")
    with open(tmp_path / "roadseg-default.tflite", "r+b") as f:  # one flipped byte
        f.seek(1000)
        b = f.read(1)
        f.seek(1000)
        f.write(bytes([b[0] ^ 0xFF]))
    bad = diagnose(shipped=str(tmp_path))
    assert not bad["ok"] and not bad["checks"]["shipped"]["ok"]
    assert any(p.startswith("shipped:") and "does not match its sidecar" in p for p in bad["problems"])


def test_doctor_marks_the_gstreamer_row_failed_for_a_csi_camera(capsys):
    """Issue 31 (9): with pip's OpenCV (no GStreamer), ``--camera csi`` printed every row "ok" and exited 4;
    now the GStreamer row is FAIL, with one problem line naming the cause and its fix."""
    import pytest

    from edge_runtime.io.sources import opencv_has_gstreamer
    if opencv_has_gstreamer():
        pytest.skip("this cv2 has GStreamer")
    assert main(["--camera", "csi"]) == 4
    out, err = capsys.readouterr()
    rows = [ln for ln in out.splitlines() if ln.startswith(("ok", "FAIL"))]
    assert "FAIL gstreamer" in out and "has no GStreamer" in out and "ok   cv2" in out
    assert not all(r.startswith("ok") for r in rows)
    problems = [ln for ln in err.splitlines() if ln.startswith("roadseg-doctor: ")]
    assert len([p for p in problems if p.startswith("roadseg-doctor: gstreamer:")]) == 1
    assert "pip uninstall -y opencv-python-headless" in err and "Traceback" not in err
