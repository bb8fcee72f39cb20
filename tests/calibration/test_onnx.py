"""The ONNX Runtime backend: roadseg-calibrate --out NAME.onnx (tf2onnx),
the same segmenter recipe through the real onnxruntime, roadseg-run streaming
coverage from it, and roadseg-bench with both backends side by side."""
from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("tf2onnx")

from tests.support import Subscriber  # noqa: E402


@pytest.fixture(scope="module")
def pair(tiny_student_run, synth_cityscapes, tmp_path_factory):
    """The tiny student as fp32 .onnx and fp32 .tflite, both through calibration's gate."""
    from calibration.calibrate import calibrate
    d = tmp_path_factory.mktemp("onnx")
    onnx = calibrate(str(tiny_student_run), str(synth_cityscapes), str(d / "tiny.onnx"), samples=4, min_miou=0.0)
    tfl = calibrate(str(tiny_student_run), str(synth_cityscapes), str(d / "tiny-fp32.tflite"), precision="fp32",
                    samples=4, min_miou=0.0)
    return d / "tiny.onnx", d / "tiny-fp32.tflite", onnx, tfl


def test_onnx_export_agrees_with_tflite_fp32(pair, synth_cityscapes):
    from edge_runtime.eval.datasets import list_samples, load_sample
    from edge_runtime.model.segmenter import DeviceSegmenter
    onnx_path, tfl_path, side, _ = pair
    assert side["precision"] == "fp32" and side["conversion"]["input"]["dtype"] == "uint8"
    assert side["accuracy"]["pixel_agreement"] >= 0.995  # the gate: ONNX vs the float SavedModel
    a, b = DeviceSegmenter(onnx_path, threads=1), DeviceSegmenter(tfl_path, threads=1)
    assert a.describe()["interpreter"].startswith("onnxruntime") and "CPUExecutionProvider" in a.describe()["interpreter"]
    assert a.output_size == b.output_size and a.input_dtype == np.uint8
    fmt, samples = list_samples(synth_cityscapes, "val")
    frames = [load_sample(s, fmt)[0] for s in samples]
    rng = np.random.default_rng(0)
    frames += [rng.integers(0, 256, (120, 160, 3), np.uint8) for _ in range(3)]  # other sizes: resized alike
    same = total = 0
    for f in frames:
        ca = a.segment(f).copy()
        cb = b.segment(f)
        same += int((ca == cb).sum())
        total += ca.size
        np.testing.assert_allclose(a.scores(), b.scores(), atol=1e-3)
    assert same / total >= 0.995


def test_onnx_refusals(tiny_student_run, synth_cityscapes, tmp_path, capsys):
    from calibration.commands.calibrate import main as cal_main
    from edge_runtime.model.interpreter import ModelError
    from edge_runtime.model.segmenter import DeviceSegmenter
    assert cal_main(["--model", str(tiny_student_run), "--data", str(synth_cityscapes), "--out",
                     str(tmp_path / "x.onnx"), "--precision", "int8"]) == 2
    assert "not made for .onnx" in capsys.readouterr().err and not (tmp_path / "x.onnx").exists()
    twin = tmp_path / "twin.tflite"
    twin.write_bytes(b"x")
    assert cal_main(["--model", str(tiny_student_run), "--data", str(synth_cityscapes), "--out",
                     str(tmp_path / "twin.onnx")]) == 2  # would take twin.tflite's sidecar
    assert "give the .onnx another name (e.g. twin-ort.onnx)" in capsys.readouterr().err
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(ModelError, match="cannot load"):
        DeviceSegmenter(junk)


def test_onnx_provider_that_is_missing_is_named(pair):
    from edge_runtime.model.interpreter import ModelError
    from edge_runtime.model.segmenter import DeviceSegmenter
    with pytest.raises(ModelError, match="no TensorrtExecutionProvider.*available: .*CPUExecutionProvider"):
        DeviceSegmenter(pair[0], delegate="TensorrtExecutionProvider", delegate_options={"trt_fp16_enable": "1"})


def test_run_streams_coverage_from_onnx(pair, broker):
    from edge_runtime.commands.run import main as run_main
    sub = Subscriber(broker.port, "roadseg/onnx1/#")
    try:
        rc = run_main(["--model", str(pair[0]), "--mqtt-host", "127.0.0.1", "--mqtt-port", str(broker.port),
                       "--mqtt-protocol", "5" if broker.mqtt5 else "3.1.1", "--source", "synthetic:64x128@40",
                       "--fps", "20", "--device-id", "onnx1", "--max-frames", "20", "--publish-interval", "0.25"])
        assert rc == 0
        assert sub.wait_for(lambda m: m[0].endswith("/status") and m[1]["state"] == "offline")
        cov = [m[1] for m in sub.of("/coverage")]
        assert cov and sum(p["frames"] for p in cov) == 20
        assert all(p["schema"] == "roadseg.coverage/1" and abs(sum(p["coverage"].values()) - 1) < 0.01 for p in cov)
        online = sub.of("/status")[0][1]
        sidecar = json.loads(pair[0].with_suffix(".json").read_text())
        assert online["model"]["sha256"] == sidecar["sha256"]
    finally:
        sub.close()


def test_bench_compares_both_backends(pair, tmp_path, capsys):
    from edge_runtime.commands.bench import main as bench_main
    out = tmp_path / "b.json"
    assert bench_main(["--model", str(pair[0]), "--model", str(pair[1]), "--threads", "1", "--frames", "10",
                       "--warmup", "2", "--rounds", "2", "--frame-size", "120x160", "--out", str(out)]) == 0
    table = capsys.readouterr().out
    assert "onnxruntime" in table and "ai-edge-litert" in table or "tflite-runtime" in table
    rep = json.loads(out.read_text())
    backends = {r["model"]: r["backend"] for r in rep["results"]}
    assert backends["tiny"].startswith("onnxruntime") and not backends["tiny-fp32"].startswith("onnxruntime")
    assert all(r["e2e_fps"] > 0 for r in rep["results"])
