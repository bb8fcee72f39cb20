"""Regenerate the models of ``tests/data/update/``: correctly made, calibrated
pairs (``.tflite`` + sidecar) that a signed release can carry and that are
broken only in what they do on the road (issue 29: probation).

    python tests/data/make_update_models.py     # needs TensorFlow (.[train]); a few seconds

Each is int8 with a uint8 RGB input of 64x128 (scale 1, zero point 0) and int8
logits of 8x16 cells over the 8 categories: the contract of
``tests/data/tiny-int8.tflite``, so they pass every load-time check and the
golden frames (``roadseg-release add`` records their own class maps). Made by
TensorFlow's real TFLite converter with a representative set of synthetic
street scenes, read by the runtime's tests with the real LiteRT interpreter.

==================  ==========================================================
``steady.tflite``   each 8x8 cell's mean colour votes: red -> flat, green ->
                    sky, blue -> vehicle (a cheap, working model)
``slow.tflite``     ``steady`` plus three 3x3 convolutions of 16 channels at full
                    resolution whose mean is added to every logit alike: the
                    same class maps, at least five times the time per frame
                    (this script measures the model alone and refuses less
                    than 5x: about 17x on x86; probation, which times the
                    frame's preprocessing too, measures 6-9x)
``flat.tflite``     says ``flat`` on every pixel of every frame (its logits
                    barely depend on the input)
==================  ==========================================================
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent / "update"
SIZE = (64, 128)
STRIDE = 8
#: category per input channel in ``steady`` and ``slow``: red -> flat, green -> sky, blue -> vehicle
RGB_TO_CATEGORY = (1, 5, 7)
#: the 3x3 convolutions that make ``slow`` slow, and their channels
SLOW_LAYERS, SLOW_CHANNELS = 3, 16
#: the least slowdown of ``slow`` over ``steady`` (time per frame through DeviceSegmenter, one thread)
MIN_SLOWDOWN = 5.0


def _votes() -> np.ndarray:
    w = np.full((3, 8), -1.0, np.float32)
    for c, t in enumerate(RGB_TO_CATEGORY):
        w[:, t] = 0.0
        w[c, t] = 4.0
    return w


def _representative():
    from edge_runtime.eval.synthetic import synthetic_scene
    for seed in range(16):
        rgb = synthetic_scene(seed, *SIZE)[0].astype(np.float32)
        rgb[0, 0], rgb[0, 1] = 0.0, 255.0  # the full pixel range: input scale 1, zero point 0
        yield [rgb[None]]


def _convert(fn) -> bytes:
    import tensorflow as tf
    conv = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()], None)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = _representative
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.uint8
    conv.inference_output_type = tf.int8
    return conv.convert()


def _model(kind: str) -> bytes:
    import tensorflow as tf
    votes = tf.constant(_votes())
    rng = np.random.default_rng(0)
    filters = [tf.constant(rng.normal(0, (2.0 / (9 * c_in)) ** 0.5, (3, 3, c_in, SLOW_CHANNELS)).astype(np.float32))
               for c_in in [3] + [SLOW_CHANNELS] * (SLOW_LAYERS - 1)]
    weak = tf.constant(np.full((3, 8), 0.05, np.float32))
    bias = tf.constant(np.array([0, 3, 0, 0, 0, 0, 0, 0], np.float32))

    @tf.function(input_signature=[tf.TensorSpec([1, *SIZE, 3], tf.float32, name="image")])
    def fn(image):
        x = image / 255.0
        cells = tf.nn.avg_pool2d(x, STRIDE, STRIDE, "VALID")
        if kind == "flat":
            return {"logits": tf.einsum("nhwc,ck->nhwk", cells, weak) + bias}
        logits = tf.einsum("nhwc,ck->nhwk", cells, votes)
        if kind == "slow":
            h = x
            for f in filters:
                h = tf.nn.relu(tf.nn.conv2d(h, f, 1, "SAME"))
            logits = logits + 0.01 * tf.reduce_mean(h)
        return {"logits": logits}
    return _convert(fn)


def _pair(kind: str, data: bytes) -> Path:
    from ai_edge_litert.interpreter import Interpreter

    from edge_runtime.contract.sidecar import build_sidecar, input_block, output_block, write_pair
    path = OUT / f"{kind}.tflite"
    it = Interpreter(model_content=data)
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    meta = build_sidecar(data, name=kind, precision="int8",
                         input=input_block(SIZE, "uint8", tuple(inp["quantization"])),
                         output=output_block("logits", tuple(out["shape"][1:3]), STRIDE, "int8",
                                             tuple(out["quantization"])),
                         source_run="tests/data/make_update_models.py")
    write_pair(data, meta, path)
    return path


def _ms_per_frame(path: Path) -> float:
    from edge_runtime.eval.synthetic import synthetic_scene
    from edge_runtime.model.segmenter import DeviceSegmenter
    seg = DeviceSegmenter(path, 1)
    frame = synthetic_scene(0, *SIZE)[0]
    for _ in range(10):
        seg.segment(frame, "rgb")
    times = []
    for _ in range(100):
        t0 = time.perf_counter()
        seg.segment(frame, "rgb")
        times.append(time.perf_counter() - t0)
    return float(np.median(times)) * 1e3


def main() -> int:
    """Write the three pairs into ``tests/data/update/`` and print their time per frame."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    OUT.mkdir(exist_ok=True)
    paths = {kind: _pair(kind, _model(kind)) for kind in ("steady", "slow", "flat")}
    ms = {kind: _ms_per_frame(p) for kind, p in paths.items()}
    for kind, p in paths.items():
        print(f"wrote {p} ({p.stat().st_size} bytes, {ms[kind]:.3f} ms per frame)")
    if ms["slow"] < MIN_SLOWDOWN * ms["steady"]:
        print(f"slow.tflite is only {ms['slow'] / ms['steady']:.1f}x steady's time: raise SLOW_LAYERS", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
