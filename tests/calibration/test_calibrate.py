"""int8 conversion, sidecar, accuracy gate, representative selection."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import trainer  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]


def test_int8_model_has_uint8_input_and_int8_internals(tiny_tflite):
    from calibration.convert import tensor_report
    rep = tensor_report(tiny_tflite.read_bytes())
    assert rep["input"]["dtype"] == "uint8"
    assert rep["input"]["quantization"] == [1.0, 0]  # raw pixels, no arithmetic on the device
    assert rep["output"]["dtype"] == "int8"
    assert rep["float_ops"] == [], rep
    assert "CONV_2D" in rep["ops"]


def test_sidecar_valid_and_sha256(tiny_tflite):
    from edge_runtime.contract.sidecar import (
        SidecarError,
        read_sidecar,
        sha256_file,
        validate,
    )
    meta = read_sidecar(tiny_tflite)
    assert meta["sha256"] == sha256_file(tiny_tflite)
    assert meta["input"]["height"] == 64 and meta["input"]["width"] == 128
    assert meta["output"]["kind"] == "logits" and meta["output"]["stride"] == 8
    assert meta["calibration"]["count"] == 4 and len(meta["calibration"]["files"]) == 4
    acc = meta["accuracy"]
    assert {"float", "quantized", "drop_points", "pixel_agreement", "per_class_iou_drop_points"} <= set(acc)
    bad = dict(meta, sha256="0" * 64)
    with pytest.raises(SidecarError, match="does not match"):
        validate(bad, tiny_tflite)
    with pytest.raises(SidecarError, match="schema"):
        validate(dict(meta, schema="other/1"))


def test_gate_refuses_blank_calibration(tiny_student_run, synth_cityscapes, tmp_path, monkeypatch):
    """Calibrating on blank frames clips every activation range: the gate must
    refuse the result and write nothing."""
    from calibration import calibrate as cal
    from calibration import representative_data as rd

    def blank(samples, fmt, size):
        for _ in samples:
            yield np.zeros((1, *size, 3), np.float32)

    monkeypatch.setattr(rd, "frames", blank)
    out = tmp_path / "dist" / "bad.tflite"
    with pytest.raises(cal.GateError, match="no model written"):
        cal.calibrate(str(tiny_student_run), str(synth_cityscapes), str(out), samples=4, max_drop=1.0, min_miou=0.0)
    assert not out.exists() and not out.with_suffix(".json").exists()
    leftovers = list((tmp_path / "dist").glob("*")) if (tmp_path / "dist").exists() else []
    assert leftovers == []


def test_gate_accepts_good_model_and_cli_exit_codes(tiny_student_run, synth_cityscapes, tmp_path, capsys):
    from calibration.commands.calibrate import main
    out = tmp_path / "good.tflite"
    rc = main(["--model", str(tiny_student_run), "--data", str(synth_cityscapes), "--out", str(out),
               "--samples", "4", "--max-drop", "2.0", "--min-miou", "0"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "accuracy gate" in captured.out and out.exists()
    assert main(["--model", str(tmp_path / "nope"), "--data", str(synth_cityscapes), "--out", str(out)]) == 2
    assert "no SavedModel export" in capsys.readouterr().err
    # a failing gate exits non-zero and leaves no file; --force writes anyway
    out2 = tmp_path / "neg.tflite"
    rc = main(["--model", str(tiny_student_run), "--data", str(synth_cityscapes), "--out", str(out2),
               "--samples", "4", "--max-drop", "-1000", "--min-miou", "0"])
    assert rc == 3 and not out2.exists() and "gate failed" in capsys.readouterr().err
    rc = main(["--model", str(tiny_student_run), "--data", str(synth_cityscapes), "--out", str(out2),
               "--samples", "4", "--max-drop", "-1000", "--force"])
    assert rc == 0 and out2.exists()


def test_floor_refuses_a_weak_float_model_however_small_its_drop(tiny_student_run, synth_cityscapes, tmp_path,
                                                                 capsys):
    """Issue 21: a model that labels nearly everything one class must not ship, even with a 0.0 int8 drop."""
    import json

    from calibration.commands.calibrate import main
    report = json.loads((tiny_student_run / "metrics.json").read_text())
    floor = report["metrics"]["miou7"] + 0.05  # just above what the tiny model scores
    out = tmp_path / "weak.tflite"
    rc = main(["--model", str(tiny_student_run), "--data", str(synth_cityscapes), "--out", str(out),
               "--samples", "4", "--max-drop", "100", "--min-agreement", "0", "--min-miou", f"{floor:.3f}"])
    err = capsys.readouterr().err
    assert rc == 3 and "under the floor --min-miou" in err and not out.exists(), err
    assert len(err.strip().splitlines()) == 1


def test_diverse_selection_reproducible(synth_cityscapes):
    from calibration.representative_data import select
    from trainer.datasets import list_samples
    fmt, samples = list_samples(synth_cityscapes, "train")
    a, sa = select(samples, fmt, 3, "diverse", seed=5)
    b, sb = select(samples, fmt, 3, "diverse", seed=5)
    assert [s.name for s in a] == [s.name for s in b] and sa == sb
    assert len({s.name for s in a}) == 3
    r, _ = select(samples, fmt, 3, "random", seed=5)
    assert len(r) == 3
    with pytest.raises(ValueError, match="selection"):
        select(samples, fmt, 3, "best")


def test_corrupt_and_truncated_tflite(tiny_tflite, tmp_path):
    from edge_runtime.model.interpreter import ModelError
    from edge_runtime.model.segmenter import DeviceSegmenter
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"this is not a model at all")
    with pytest.raises(ModelError, match="not a TFLite model"):
        DeviceSegmenter(junk)
    cut = tmp_path / "cut.tflite"
    cut.write_bytes(tiny_tflite.read_bytes()[: 4096])
    with pytest.raises(ModelError, match="cannot load|truncated"):
        DeviceSegmenter(cut)
    with pytest.raises(ModelError, match="not found"):
        DeviceSegmenter(tmp_path / "missing.tflite")


def test_eval_tflite_without_tensorflow(tiny_tflite, synth_cityscapes, tmp_path):
    """roadseg-eval on a .tflite needs only the runtime: TensorFlow blocked."""
    code = (
        "import sys\n"
        "for n in ('tensorflow', 'keras', 'tf_keras'): sys.modules[n] = None\n"
        "from trainer.commands.evaluate import main\n"
        f"sys.exit(main(['--model', {str(tiny_tflite)!r}, '--data', {str(synth_cityscapes)!r}, "
        f"'--split', 'val', '--json', '--out', {str(tmp_path)!r}]))\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    meta = json.loads(tiny_tflite.with_suffix(".json").read_text())
    assert report["metrics"]["miou8"] == pytest.approx(meta["accuracy"]["quantized"]["miou8"], abs=1e-6)
    assert (tmp_path / "metrics.json").is_file()
