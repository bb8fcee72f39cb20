"""TFLite (and ONNX) conversion of a run's SavedModel export.

Students' exports carry a size-agnostic ``logits`` signature (float32 RGB
0..255 in, logits at the model's output stride out), converted here at the
device's size; other exports are converted through ``serving_default`` at
their fixed size (probabilities out)."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import tensorflow as tf

log = logging.getLogger("roadseg.calibration")
PRECISIONS = ("int8", "fp16", "fp32", "dynamic")
OUTPUTS = ("logits", "class_map")


def _signature_fn(exported, size: tuple[int, int], output: str):
    h, w = size
    if exported.logits is not None:
        sig = exported.logits

        @tf.function(input_signature=[tf.TensorSpec([1, h, w, 3], tf.float32, name="image")])
        def fn(image):
            logits = sig(images=image)["logits"]
            if output == "class_map":
                return {"classes": tf.argmax(logits, axis=-1, output_type=tf.int32)}
            return {"logits": logits}
        kind = "logits"
    else:
        if exported.size != (h, w):
            raise ValueError(f"{exported.path} has a fixed input of {exported.size[0]}x{exported.size[1]} and no "
                             f"size-agnostic 'logits' signature; convert it at that size, not {h}x{w}")

        @tf.function(input_signature=[tf.TensorSpec([1, h, w, 3], tf.float32, name="image")])
        def fn(image):
            probs = exported(tf.cast(tf.round(image), tf.uint8))
            if output == "class_map":
                return {"classes": tf.argmax(probs, axis=-1, output_type=tf.int32)}
            return {"probabilities": probs}
        kind = "probabilities"
    return fn, ("class_map" if output == "class_map" else kind)


def convert(export, size: tuple[int, int], precision: str = "int8",
            representative=None, output: str = "logits") -> tuple[bytes, str]:
    """Convert ``export`` (a ``trainer.export.ExportedModel`` or its folder)
    at ``size`` = (height, width) to TFLite: ``(tflite bytes, output kind)``
    with the kind ``logits``, ``probabilities`` or ``class_map``.

    ``precision``: ``fp32``, ``fp16`` (float16 weights), ``dynamic``
    (int8 weights, float activations) or ``int8``: full-integer
    post-training quantization (Jacob et al. 2018; weights per channel,
    activations per tensor, calibrated on ``representative()``, an iterable
    of float32 ``[1,h,w,3]`` RGB 0..255), uint8 input, int8 output,
    TFLITE_BUILTINS_INT8 ops only.

    Raises:
        ValueError: an unknown ``precision`` or ``output``, int8 without
            ``representative``, or a fixed-size export asked for another size.
        FileNotFoundError: ``export`` is a folder without a SavedModel.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; valid: {', '.join(PRECISIONS)}")
    if output not in OUTPUTS:
        raise ValueError(f"unknown output {output!r}; valid: {', '.join(OUTPUTS)}")
    from trainer.export import ExportedModel
    exported = export if isinstance(export, ExportedModel) else ExportedModel(export)
    fn, kind = _signature_fn(exported, size, output)
    conv = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()], exported.loaded)
    if precision == "fp16":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
    elif precision == "dynamic":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
    elif precision == "int8":
        if representative is None:
            raise ValueError("int8 conversion needs a representative dataset")
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = lambda: ([x] for x in representative())
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.uint8
        if kind != "class_map":
            conv.inference_output_type = tf.int8
    return conv.convert(), kind


def convert_onnx(export, size: tuple[int, int], output: str = "logits", opset: int = 17) -> tuple[bytes, str]:
    """The same graph as :func:`convert` (same signature, same output), as
    ONNX through tf2onnx (fp32, ``opset``), taking uint8 RGB ``[1,h,w,3]``
    so the device writes pixels straight into the input. Return ``(onnx
    bytes, output kind)``. Raises ``ImportError`` (naming the extra) without
    tf2onnx, ``ValueError`` for an unknown ``output`` or a size a fixed-size
    export cannot take."""
    if output not in OUTPUTS:
        raise ValueError(f"unknown output {output!r}; valid: {', '.join(OUTPUTS)}")
    try:
        import tf2onnx
    except ImportError as e:
        raise ImportError(f"--out NAME.onnx needs tf2onnx: pip install 'roadseg[onnx]' [{e}]") from None
    from trainer.export import ExportedModel
    exported = export if isinstance(export, ExportedModel) else ExportedModel(export)
    fn, kind = _signature_fn(exported, size, output)
    spec = [tf.TensorSpec([1, *size, 3], tf.uint8, name="image")]

    @tf.function(input_signature=spec)
    def pixels(image):
        return fn(tf.cast(image, tf.float32))

    proto, _ = tf2onnx.convert.from_function(pixels, input_signature=spec, opset=opset)
    return proto.SerializeToString(), kind


def onnx_report(model: bytes) -> dict:
    """Ops and tensor types of an ONNX model, like :func:`tensor_report`:
    ``{"ops", "opset", "initializers", "input", "output"}`` (each I/O with
    its dtype name and shape). Raises ``onnx``'s ``DecodeError`` for bytes
    that are not a model."""
    import onnx
    m = onnx.load_from_string(model)
    kinds = {v: k for k, v in onnx.TensorProto.DataType.items()}

    def io(v):
        t = v.type.tensor_type
        return {"dtype": kinds.get(t.elem_type, "?").lower(), "shape": [d.dim_value for d in t.shape.dim]}

    return {"ops": sorted({n.op_type for n in m.graph.node}), "opset": max(o.version for o in m.opset_import),
            "initializers": len(m.graph.initializer), "input": io(m.graph.input[0]), "output": io(m.graph.output[0])}


def tensor_report(tflite: bytes) -> dict:
    """What runs in int8 in a TFLite model: ``{"tensor_dtypes": {dtype:
    count}, "ops", "float_ops"`` (ops with a float32 output; empty for a
    full-integer model), ``"input"``/``"output"`` dtype, shape and
    ``(scale, zero_point)``}. Raises ``ValueError`` for bytes the
    interpreter cannot load."""
    from edge_runtime.model.interpreter import interpreter_api
    Interpreter, *_ = interpreter_api()
    it = Interpreter(model_content=tflite)
    it.allocate_tensors()
    dtypes: dict[str, int] = {}
    for t in it.get_tensor_details():
        k = np.dtype(t["dtype"]).name
        dtypes[k] = dtypes.get(k, 0) + 1
    details = {t["index"]: t for t in it.get_tensor_details()}
    op_list = it._get_ops_details()
    ops = sorted({d["op_name"] for d in op_list})
    float_ops = sorted({d["op_name"] for d in op_list if d["op_name"] != "DELEGATE" and any(
        np.dtype(details[i]["dtype"]) == np.float32 for i in d["outputs"] if i in details)})
    return {"tensor_dtypes": dtypes, "ops": ops, "float_ops": float_ops,
            "input": {"dtype": np.dtype(it.get_input_details()[0]["dtype"]).name,
                      "quantization": list(it.get_input_details()[0]["quantization"])},
            "output": {"dtype": np.dtype(it.get_output_details()[0]["dtype"]).name,
                       "shape": it.get_output_details()[0]["shape"].tolist(),
                       "quantization": list(it.get_output_details()[0]["quantization"])}}
