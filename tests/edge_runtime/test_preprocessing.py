"""Golden test of the one preprocessing contract: the bytes that reach the
interpreter on the vehicle are the bytes the training pipeline feeds the model,
for a BGR camera frame and for an RGB file frame."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from edge_runtime.contract.preprocessing import preprocess


def _input_bytes(seg) -> np.ndarray:
    """What the interpreter's input tensor holds now."""
    return seg.interpreter.get_tensor(seg.interpreter.get_input_details()[0]["index"])[0].copy()


def _bilinear_reference(img: np.ndarray, h: int, w: int) -> np.ndarray:
    """Bilinear resize with half-pixel centres, in float64 numpy: what
    INTER_LINEAR computes, independently of OpenCV's fixed-point code."""
    H, W = img.shape[:2]
    ys = np.clip((np.arange(h) + 0.5) * H / h - 0.5, 0, H - 1)
    xs = np.clip((np.arange(w) + 0.5) * W / w - 0.5, 0, W - 1)
    y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
    y1, x1 = np.minimum(y0 + 1, H - 1), np.minimum(x0 + 1, W - 1)
    fy, fx = (ys - y0)[:, None, None], (xs - x0)[None, :, None]
    f = img.astype(np.float64)
    top = f[y0][:, x0] * (1 - fx) + f[y0][:, x1] * fx
    bot = f[y1][:, x0] * (1 - fx) + f[y1][:, x1] * fx
    return top * (1 - fy) + bot * fy


@pytest.fixture(scope="module")
def frame_rgb():
    from edge_runtime.eval.synthetic import synthetic_scene
    return synthetic_scene(7, 240, 320)[0]


def test_vehicle_bytes_equal_training_pipeline_bytes(tiny_tflite, synth_cityscapes, frame_rgb, tmp_path):
    pytest.importorskip("tensorflow")
    import trainer  # noqa: F401
    from edge_runtime.model.segmenter import DeviceSegmenter
    from trainer.datasets import Sample
    from trainer.pipeline import make_dataset
    seg = DeviceSegmenter(tiny_tflite)
    assert seg._direct, "calibration makes a raw-pixel uint8 input: frames go straight into the tensor"
    h, w = seg.input_size
    # the training/evaluation pipeline on the same frame, read from a file
    img_path, lab_path = tmp_path / "f_leftImg8bit.png", tmp_path / "f_gtFine_labelIds.png"
    cv2.imwrite(str(img_path), cv2.cvtColor(frame_rgb, cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(lab_path), np.full(frame_rgb.shape[:2], 7, np.uint8))
    x, _ = next(iter(make_dataset([Sample("f", img_path, lab_path)], "cityscapes", (h, w), batch=1)))
    pipeline = x.numpy()[0]
    seg.segment(np.ascontiguousarray(frame_rgb[..., ::-1]), "bgr")   # a camera: OpenCV / picamera2 RGB888
    from_camera = _input_bytes(seg)
    seg.segment(frame_rgb, "rgb")                                     # a decoded file, already RGB
    from_file = _input_bytes(seg)
    np.testing.assert_array_equal(from_camera, pipeline)
    np.testing.assert_array_equal(from_file, pipeline)
    # and what that is: a bilinear resize of the RGB frame, within one grey level
    ref = _bilinear_reference(frame_rgb, h, w)
    assert np.abs(pipeline.astype(np.float64) - ref).max() <= 1.0
    assert pipeline[..., 0].mean() == pytest.approx(ref[..., 0].mean(), abs=0.5)  # R stays R


def test_frame_at_model_size_reaches_the_model_unchanged(tiny_tflite):
    from edge_runtime.eval.synthetic import synthetic_scene
    from edge_runtime.model.segmenter import DeviceSegmenter
    seg = DeviceSegmenter(tiny_tflite)
    rgb = synthetic_scene(3, *seg.input_size)[0]
    seg.segment(rgb, "rgb")
    np.testing.assert_array_equal(_input_bytes(seg), rgb)
    seg.segment(np.ascontiguousarray(rgb[..., ::-1]), "bgr")
    np.testing.assert_array_equal(_input_bytes(seg), rgb)


def test_preprocess_writes_into_out_and_refuses_bad_input(frame_rgb):
    out = np.zeros((64, 128, 3), np.uint8)
    got = preprocess(frame_rgb, (64, 128), "rgb", out=out)
    assert got is out and out.any()
    np.testing.assert_array_equal(preprocess(np.ascontiguousarray(frame_rgb[..., ::-1]), (64, 128), "bgr"), out)
    with pytest.raises(ValueError, match="out must be"):
        preprocess(frame_rgb, (64, 128), out=np.zeros((64, 64, 3), np.uint8))
    with pytest.raises(ValueError, match="channel order"):
        preprocess(frame_rgb, (64, 128), "yuv")
    with pytest.raises(ValueError, match="uint8"):
        preprocess(frame_rgb.astype(np.float32), (64, 128))
