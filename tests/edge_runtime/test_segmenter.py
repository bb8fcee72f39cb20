"""The device segmenter: model, sidecar, delegates, one-line errors."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest


def test_tflite_without_sidecar_says_so(tiny_tflite, tmp_path, caplog):
    import shutil

    from edge_runtime.model.segmenter import DeviceSegmenter
    bare = tmp_path / "bare.tflite"
    shutil.copy(tiny_tflite, bare)
    with caplog.at_level("WARNING", logger="roadseg.segmenter"):
        DeviceSegmenter(bare)
    assert any("no sidecar" in r.message and "assumptions" in r.message for r in caplog.records)

ROOT = Path(__file__).resolve().parents[2]

def _run_cli(*args, timeout=60, env=None):
    import os
    return subprocess.run([sys.executable, "-m", "edge_runtime.commands.run", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, env=dict(os.environ, **(env or {})))

def test_delegate_options_are_parsed_and_a_missing_library_is_one_line(tiny_tflite):
    from edge_runtime.model.interpreter import parse_delegate_options
    assert parse_delegate_options(["device=usb:0", "k = v"]) == {"device": "usb:0", "k": "v"}
    assert parse_delegate_options("a=1;b=2") == {"a": "1", "b": "2"}
    with pytest.raises(ValueError, match="is not KEY=VALUE"):
        parse_delegate_options(["novalue"])
    r = _run_cli("--model", str(tiny_tflite), "--source", "synthetic", "--delegate", "/nonexistent/libedgetpu.so.1",
                 "--delegate-option", "device=usb:0")
    assert r.returncode == 2 and "cannot load delegate /nonexistent/libedgetpu.so.1 with options" in r.stderr
    assert "Traceback" not in r.stderr
    r = _run_cli("--model", str(tiny_tflite), "--source", "synthetic", "--delegate-option", "device=usb:0")
    assert r.returncode == 2 and "--delegate-option needs --delegate" in r.stderr

def test_segmenter_reads_interpreter_and_sidecar(tiny_tflite):
    from edge_runtime.eval.synthetic import synthetic_scene
    from edge_runtime.model.segmenter import DeviceSegmenter
    seg = DeviceSegmenter(tiny_tflite, threads=1)
    assert seg.input_size == (64, 128) and seg.output_size == (8, 16) and seg.output_kind == "logits"
    img, _ = synthetic_scene(0, 120, 240)
    a = seg.segment(img, "rgb").copy()
    b = seg.segment(cv2.cvtColor(img, cv2.COLOR_RGB2BGR), "bgr").copy()
    assert a.shape == (8, 16) and a.dtype == np.uint8 and np.array_equal(a, b)
    assert seg.segment_classes(img).shape == (64, 128)
    assert seg.timing.invoke_ms > 0

def _run_cli(*args, timeout=60):
    return subprocess.run([sys.executable, "-m", "edge_runtime.commands.run", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)

def test_missing_and_non_tflite_model(tmp_path):
    r = _run_cli("--model", str(tmp_path / "missing.tflite"), "--source", "synthetic")
    assert r.returncode == 2 and "model not found" in r.stderr
    junk = tmp_path / "x.tflite"
    junk.write_text("hello")
    r = _run_cli("--model", str(junk), "--source", "synthetic")
    assert r.returncode == 2 and "not a TFLite model" in r.stderr

def test_model_input_not_an_image(tmp_path):
    tf = pytest.importorskip("tensorflow")

    @tf.function(input_signature=[tf.TensorSpec([1, 10], tf.float32)])
    def f(x):
        return {"y": x * 2.0}
    conv = tf.lite.TFLiteConverter.from_concrete_functions([f.get_concrete_function()], None)
    path = tmp_path / "vec.tflite"
    path.write_bytes(conv.convert())
    r = _run_cli("--model", str(path), "--source", "synthetic")
    assert r.returncode == 2 and "not an image" in r.stderr
