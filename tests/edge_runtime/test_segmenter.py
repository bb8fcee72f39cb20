"""The device segmenter: model, sidecar, delegates, one-line errors."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_runtime.model.errors import ModelError


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


# --- models from other tools: adapted or refused at load (issue 22 item 5) ------------------------------------

ODD = ROOT / "tests" / "data" / "odd"  # made by tests/data/make_odd_models.py (TensorFlow's converter, onnx.helper)
#: PASCAL-VOC's 21 classes -> roadseg categories (void flat construction object nature sky human vehicle)
VOC_TO_CATEGORY = [0, 7, 7, 4, 7, 3, 7, 7, 4, 3, 4, 3, 4, 4, 7, 6, 4, 4, 3, 7, 3]


def _halves(h=24, w=40):
    """Left half red, right half blue (uint8 RGB): the odd models' classes follow the colour."""
    img = np.zeros((h, w, 3), np.uint8)
    img[:, : w // 2, 0] = 200
    img[:, w // 2:, 2] = 200
    return img


def _with_sidecar(tmp_path, name, size, kind, out_size, dtype, mapping=None, in_dtype="float32"):
    """Copy an odd model and give it a sidecar built by the contract's builder."""
    from edge_runtime.contract.sidecar import build_sidecar, input_block, output_block, write_pair
    data = (ODD / name).read_bytes()
    meta = build_sidecar(data, name=Path(name).stem, input=input_block(size, in_dtype),
                         output=output_block(kind, out_size, size[0] // out_size[0], dtype, class_mapping=mapping),
                         precision="fp32")
    return write_pair(data, meta, tmp_path / name)[0]


@pytest.mark.parametrize("name", ["dynamic.tflite", "dynamic.onnx"])
def test_dynamic_input_is_resized_to_the_size_asked_or_the_sidecars(name, tmp_path):
    from edge_runtime.model.segmenter import DeviceSegmenter
    if name.endswith(".onnx"):
        pytest.importorskip("onnxruntime")
    with pytest.raises(ModelError, match=r"dynamic \(signature .*\) and no size .* sidecar with input.height and input.width"):
        DeviceSegmenter(ODD / name, threads=1, warn_without_sidecar=False)
    seg = DeviceSegmenter(ODD / name, threads=1, warn_without_sidecar=False, size=(6, 10))
    assert seg.input_size == (6, 10) and seg.output_size == (6, 10)
    classes = seg.segment(_halves(), "rgb")
    assert (classes[:, :5] == 1).all() and (classes[:, 5:] == 7).all()  # red -> flat, blue -> vehicle: not 1x1
    paired = _with_sidecar(tmp_path, name, (12, 20), "logits", (12, 20), "float32")
    seg = DeviceSegmenter(paired, threads=1)
    assert seg.input_size == (12, 20) and seg.segment_classes(_halves()).shape == (12, 20)
    from edge_runtime.contract.sidecar import SidecarError
    with pytest.raises(SidecarError, match="differs from the sidecar"):
        DeviceSegmenter(paired, threads=1, size=(6, 10))


def test_a_fixed_input_cannot_be_resized(tiny_tflite, tmp_path):
    from edge_runtime.contract.sidecar import SidecarError
    from edge_runtime.model.segmenter import DeviceSegmenter
    with pytest.raises(SidecarError, match="size 32x64 differs from the sidecar's input.height/width 64x128"):
        DeviceSegmenter(tiny_tflite, threads=1, size=(32, 64))
    bare = tmp_path / "bare.tflite"
    bare.write_bytes(tiny_tflite.read_bytes())
    with pytest.raises(ModelError, match="fixed at 64x128; size 32x64 cannot change it"):
        DeviceSegmenter(bare, threads=1, size=(32, 64), warn_without_sidecar=False)
    assert DeviceSegmenter(bare, threads=1, size=(64, 128), warn_without_sidecar=False).input_size == (64, 128)


@pytest.mark.parametrize("name", ["argmax21.tflite", "logits21.tflite"])
def test_classes_outside_the_taxonomy_are_refused_or_mapped(name, tmp_path):
    from edge_runtime.contract.coverage import frame_coverage
    from edge_runtime.contract.labels import colorize
    from edge_runtime.model.segmenter import DeviceSegmenter
    with pytest.raises(ModelError, match="has 21 classes, not roadseg's 8 .*class_mapping"):
        DeviceSegmenter(ODD / name, threads=1, warn_without_sidecar=False)
    argmax = name.startswith("argmax")
    paired = _with_sidecar(tmp_path, name, (32, 32), "class_map" if argmax else "logits", (32, 32),
                           "int64" if argmax else "float32", VOC_TO_CATEGORY, "uint8" if argmax else "float32")
    seg = DeviceSegmenter(paired, threads=1)
    assert seg.model_classes == 21
    classes = seg.segment(_halves(), "rgb")
    assert (classes[:, :16] == 6).all() and (classes[:, 16:] == 0).all()  # person -> human, background -> void
    shares = frame_coverage(classes)[0]
    assert abs(shares.sum() - 1) < 1e-6 and colorize(classes).shape == (32, 32, 3)
    assert seg.segment_classes(_halves()).max() < 8
    from edge_runtime.contract.sidecar import SidecarError
    short = _with_sidecar(tmp_path / "short", name, (32, 32), "class_map" if argmax else "logits", (32, 32),
                          "int64" if argmax else "float32", VOC_TO_CATEGORY[:8], "uint8" if argmax else "float32")
    with pytest.raises(SidecarError, match="class_mapping has 8 entries but .* has 21 classes"):
        DeviceSegmenter(short, threads=1)


def test_class_ids_the_graph_hides_are_caught_before_use():
    """ONNX Runtime does not show the ArgMax: the ids are checked on every frame instead of indexed blindly."""
    pytest.importorskip("onnxruntime")
    from edge_runtime.model.segmenter import DeviceSegmenter
    seg = DeviceSegmenter(ODD / "argmax21.onnx", threads=1, warn_without_sidecar=False)
    blue = np.zeros((32, 32, 3), np.uint8)
    blue[..., 2] = 200
    assert (seg.segment(blue, "rgb") == 0).all()  # background: id 0 is in range
    with pytest.raises(ModelError, match="returned class id 15, outside 0..7"):
        seg.segment(_halves(), "rgb")


@pytest.mark.parametrize("dtype,quant,ok", [
    (np.uint8, (1 / 255, 0), False),     # normalized to 0..1
    (np.int8, (2 / 255, 0), False),      # normalized to -1..1
    (np.int8, (0.0, 0), False),          # unquantized int8: -128..127
    (np.uint8, (1.0, 128), False),       # -128..127
    (np.uint8, (0.5, 0), False),         # 0..127.5
    (np.int16, (0.0, 0), True),
    (np.uint8, (1.0, 0), True),          # what roadseg-calibrate makes
    (np.uint8, (0.0, 0), True),
    (np.int8, (1.0, -128), True),
    (np.uint8, (1.0039, 0), True),
    (np.float32, (0.0, 0), True),
])
def test_input_quantization_must_represent_0_to_255(dtype, quant, ok):
    from edge_runtime.model.checks import check_input_range
    if ok:
        check_input_range(dtype, quant, Path("m.tflite"))
    else:
        with pytest.raises(ModelError, match="not the 0..255 pixels"):
            check_input_range(dtype, quant, Path("m.tflite"))


@pytest.mark.parametrize("entry,model,extra,needle", [
    ("run", "dynamic.tflite", [], "dynamic"),
    ("run", "argmax21.tflite", ["--preview", "PREVIEW"], "has 21 classes"),
    ("serve", "argmax21.tflite", [], "has 21 classes"),
    ("run", "unit_input.tflite", [], "not the 0..255 pixels"),
])
def test_odd_models_exit_2_with_one_line(entry, model, extra, needle, tmp_path):
    extra = [str(tmp_path / "p.mp4") if a == "PREVIEW" else a for a in extra]
    argv = ["--model", str(ODD / model), *extra]
    if entry == "run":
        argv += ["--source", "synthetic", "--max-frames", "2"]
    r = subprocess.run([sys.executable, "-c", f"import sys; from edge_runtime.commands.launch import {entry}; "
                        f"sys.exit({entry}(sys.argv[1:]))", *argv], cwd=ROOT, capture_output=True, text=True,
                       timeout=120)
    errors = [ln for ln in r.stderr.splitlines() if "error" in ln.lower()]
    assert r.returncode == 2 and len(errors) == 1 and needle in errors[0], r.stderr
    assert "Traceback" not in r.stderr and "IndexError" not in r.stderr


@pytest.mark.parametrize("entry", ["run", "bench"])
def test_size_flag_runs_a_dynamic_model_at_that_size(entry, tmp_path):
    """Issue 22 item 5: a model with dynamic height and width runs at --size (roadseg-serve takes it too)."""
    argv = {"run": ["--source", "synthetic:64x128@50", "--max-frames", "3", "--no-realtime", "--mqtt-host",
                    "127.0.0.1", "--mqtt-port", "1", "--stop-timeout", "0", "--json"],
            "bench": ["--frames", "4", "--warmup", "1", "--rounds", "1", "--threads", "1", "--json"]}[entry]
    r = subprocess.run([sys.executable, "-c", f"import sys; from edge_runtime.commands.launch import {entry}; "
                        f"sys.exit({entry}(sys.argv[1:]))", "--model", str(ODD / "dynamic.tflite"),
                        "--size", "32x64", *argv], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert "no size" not in r.stderr and "Traceback" not in r.stderr, r.stderr
    if entry == "bench":
        assert r.returncode == 0 and json.loads(r.stdout)["results"][0]["input"] == "32x64", r.stderr
    elif entry == "run":
        assert "32x64" in r.stderr  # the start-up line names the input size it runs at
