"""Regenerate the odd models under ``tests/data/odd/``: models from other
tools, whose contract differs from what ``roadseg-calibrate`` writes, that
the runtime must adapt to or refuse at load (issue 22, item 5).

    python tests/data/make_odd_models.py      # needs TensorFlow (.[train]) and onnx; a few seconds

Each is a few hundred bytes to a few KB, made by TensorFlow's real TFLite
converter (and ``onnx.helper`` for the ONNX one), so the runtime's tests read
them with the real LiteRT interpreter and ONNX Runtime, without TensorFlow.

=====================  ====================================================
``dynamic.tflite``     float32 input ``[1,1,1,3]`` with signature
                       ``[-1,-1,-1,3]`` (a Keras ``Input(shape=(None, None,
                       3))``), 8 logits at full resolution: category =
                       argmax of ``(r, g, b)`` mapped to flat, sky, vehicle
``dynamic.onnx``       the same model in ONNX, input ``[1,H,W,3]`` symbolic
``argmax21.onnx``      ``argmax21.tflite`` in ONNX (uint8 in, int64 ids out):
                       ONNX Runtime does not show the graph, so its 21
                       classes show only in the ids it returns
``argmax21.tflite``    uint8 ``[1,32,32,3]`` in, ArgMax over 21 PASCAL-VOC
                       classes in the graph, int64 ``[1,32,32]`` out: red
                       pixels are class 15 (person), green 8 (cat), blue 0
``logits21.tflite``    the same without the ArgMax: float32 ``[1,32,32,21]``
``unit_input.tflite``  full-int8 with a uint8 input quantized for 0..1
                       (scale 1/255): cannot represent 0..255 pixels
=====================  ====================================================
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent / "odd"

#: category per input channel in the dynamic model: red -> flat (1), green -> sky (5), blue -> vehicle (7)
RGB_TO_CATEGORY = (1, 5, 7)
#: PASCAL-VOC class per input channel in the 21-class models: red -> person, green -> cat, blue -> background
RGB_TO_VOC = (15, 8, 0)


def _channel_weights(classes: int, targets: tuple[int, int, int]) -> np.ndarray:
    """[3, classes] float32: input channel c votes for class ``targets[c]``;
    every other class scores below all three."""
    w = np.full((3, classes), -1.0, np.float32)
    for c, t in enumerate(targets):
        w[:, t] = 0.0
        w[c, t] = 1.0
    return w


def _convert(fn, representative=None, uint8_input: bool = False) -> bytes:
    import tensorflow as tf
    conv = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()], None)
    if representative is not None:
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = representative
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.uint8 if uint8_input else tf.int8
        conv.inference_output_type = tf.int8
    return conv.convert()


def dynamic_tflite() -> bytes:
    import tensorflow as tf
    w = tf.constant(_channel_weights(8, RGB_TO_CATEGORY))

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32, name="image")])
    def fn(image):
        return {"logits": tf.einsum("nhwc,ck->nhwk", image, w)}
    return _convert(fn)


def voc21_tflite(argmax: bool) -> bytes:
    import tensorflow as tf
    w = tf.constant(_channel_weights(21, RGB_TO_VOC))

    @tf.function(input_signature=[tf.TensorSpec([1, 32, 32, 3], tf.uint8 if argmax else tf.float32, name="image")])
    def fn(image):
        logits = tf.einsum("nhwc,ck->nhwk", tf.cast(image, tf.float32), w)
        if argmax:
            return {"classes": tf.argmax(logits, axis=-1)}
        return {"logits": logits}
    return _convert(fn)


def unit_input_tflite() -> bytes:
    """A model calibrated on 0..1 inputs, exported with a uint8 input: scale 1/255."""
    import tensorflow as tf
    w = tf.constant(_channel_weights(8, RGB_TO_CATEGORY))

    @tf.function(input_signature=[tf.TensorSpec([1, 16, 16, 3], tf.float32, name="image")])
    def fn(image):
        return {"logits": tf.einsum("nhwc,ck->nhwk", image, w)}
    rng = np.random.default_rng(0)

    def representative():
        for _ in range(8):
            yield [rng.random((1, 16, 16, 3), np.float32)]
    return _convert(fn, representative, uint8_input=True)


def dynamic_onnx() -> bytes:
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    w = numpy_helper.from_array(_channel_weights(8, RGB_TO_CATEGORY), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["image", "w"], ["logits"])], "dynamic",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, "height", "width", 3])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, "height", "width", 8])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    onnx.checker.check_model(model)
    return model.SerializeToString()


def argmax21_onnx() -> bytes:
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    w = numpy_helper.from_array(_channel_weights(21, RGB_TO_VOC), "w")
    nodes = [helper.make_node("Cast", ["image"], ["pixels"], to=TensorProto.FLOAT),
             helper.make_node("MatMul", ["pixels", "w"], ["logits"]),
             helper.make_node("ArgMax", ["logits"], ["classes"], axis=-1, keepdims=0)]
    graph = helper.make_graph(
        nodes, "argmax21", [helper.make_tensor_value_info("image", TensorProto.UINT8, [1, 32, 32, 3])],
        [helper.make_tensor_value_info("classes", TensorProto.INT64, [1, 32, 32])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    onnx.checker.check_model(model)
    return model.SerializeToString()


def main() -> int:
    """Write every odd model into ``tests/data/odd/`` (temporary name, then rename)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from edge_runtime.atomic import atomic_path
    OUT.mkdir(exist_ok=True)
    models = {"dynamic.tflite": dynamic_tflite, "argmax21.tflite": lambda: voc21_tflite(True),
              "logits21.tflite": lambda: voc21_tflite(False), "unit_input.tflite": unit_input_tflite,
              "dynamic.onnx": dynamic_onnx, "argmax21.onnx": argmax21_onnx}
    for name, make in models.items():
        data = make()
        with atomic_path(OUT / name) as tmp:
            tmp.write_bytes(data)
        print(f"wrote {OUT / name} ({len(data)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
