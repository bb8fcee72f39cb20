"""The model's contract, checked at load against what the runtime will do with it.

A model from another tool may differ from what ``roadseg-calibrate`` writes;
each difference is adapted when the runtime can do it right, refused with one
line otherwise, and never run blindly:

* input height/width that are dynamic (signature ``[-1,-1,-1,3]``, as a Keras
  ``Input(shape=(None, None, 3))`` exports) are resized to the size asked for
  (``size``) or the sidecar's, through the interpreter's
  ``resize_tensor_input``; with neither, the model is refused;
* an input whose quantization cannot represent the 0..255 pixels the
  runtime feeds (e.g. scale 1/255: a model normalized to 0..1) is refused;
* output class ids outside roadseg's 8 categories (a 21-class PASCAL-VOC
  model, with its ArgMax in the graph or as 21 score channels) are refused,
  or mapped through the sidecar's ``output.class_mapping``;
* the sidecar's blocks (sizes, dtypes, output kind) must match the tensors.

Errors: :class:`~edge_runtime.model.errors.ModelError` for the model,
:class:`~edge_runtime.contract.sidecar.SidecarError` naming the sidecar key
that disagrees with it (both one line; the commands exit 2).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_runtime.contract.labels import NUM_CLASSES
from edge_runtime.contract.sidecar import SidecarError
from edge_runtime.model.errors import ModelError

#: ops that carry class ids through unchanged (walked back from the output to find the ArgMax)
_ID_PRESERVING_OPS = {"CAST", "RESHAPE", "SQUEEZE", "EXPAND_DIMS", "RESIZE_NEAREST_NEIGHBOR", "IDENTITY"}


def _sidecar_size(sidecar: dict | None) -> tuple[int, int] | None:
    return None if sidecar is None else (sidecar["input"]["height"], sidecar["input"]["width"])


def fit_input(interp, path: Path, sidecar: dict | None, size: tuple[int, int] | None = None) -> dict:
    """Check that the model takes one image ``[1, H, W, 3]`` and fix H, W:
    dynamic ones are resized to ``size`` (height, width in pixels) or else the
    sidecar's, then the tensors are reallocated. Returns the input's details
    after the resize. Raises ModelError (not an image; dynamic with no size;
    a fixed size that ``size`` contradicts; a resize the model refuses) or
    SidecarError (the sidecar's size differs from a fixed model's)."""
    ins = interp.get_input_details()
    if len(ins) != 1:
        raise ModelError(f"{path}: expected one input tensor, found {len(ins)}")
    d = ins[0]
    shape = [int(v) for v in d["shape"]]
    sig = [int(v) for v in d.get("shape_signature", shape)]
    if len(shape) != 4 or shape[3] != 3 or sig[0] not in (1, -1):
        raise ModelError(f"{path}: model input is not an image: shape {sig if -1 in sig else shape}, "
                         "expected [1, H, W, 3]")
    declared = _sidecar_size(sidecar)
    if size is not None and declared is not None and tuple(size) != declared:
        raise SidecarError(f"size {size[0]}x{size[1]} differs from the sidecar's input.height/width "
                           f"{declared[0]}x{declared[1]}")
    want = tuple(size) if size is not None else declared
    if sig[1] > 0 and sig[2] > 0:  # fixed: nothing to choose
        fixed = (shape[1], shape[2])
        if size is not None and tuple(size) != fixed:
            raise ModelError(f"{path}: the model's input is fixed at {fixed[0]}x{fixed[1]}; size "
                             f"{size[0]}x{size[1]} cannot change it (convert the model at that size)")
        if declared is not None and declared != fixed:
            raise SidecarError(f"sidecar input.height/width {declared[0]}x{declared[1]} differs from the "
                               f"model's {fixed[0]}x{fixed[1]}")
        return d
    if want is None:
        raise ModelError(f"{path}: the input height and width are dynamic (signature {sig}) and no size to run "
                         "it at was given: write its sidecar with input.height and input.width (or pass a size)")
    try:
        interp.resize_tensor_input(d["index"], [1, want[0], want[1], 3])
        interp.allocate_tensors()
    except (ValueError, RuntimeError) as e:
        raise ModelError(f"{path}: cannot resize the dynamic input to {want[0]}x{want[1]}: {e}") from None
    return interp.get_input_details()[0]


def check_input_range(dtype, quantization: tuple[float, int], path: Path) -> None:
    """Refuse an input that cannot hold the runtime's 0..255 pixels: an
    integer input covers ``scale * (q - zero_point)`` for q over its type's
    range (TFLite's quantization, real = scale * (q - zero_point)), which must
    reach 0 and 255 within half a step. Float inputs take 0..255 as they are.
    Raises ModelError."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return
    if dtype.kind not in "iu":
        raise ModelError(f"{path}: input type {dtype} is not an image type (uint8, int8 or float)")
    scale, zero = quantization
    info = np.iinfo(dtype)
    step = scale or 1.0
    lo, hi = (info.min - zero) * step, (info.max - zero) * step
    if lo > step / 2 or hi < 255 - step / 2:
        raise ModelError(
            f"{path}: the {dtype} input (scale {scale:g}, zero point {zero}) represents {lo:g}..{hi:g}, not the "
            "0..255 pixels the runtime feeds: the model expects its own normalization (e.g. 0..1); export it "
            "taking 0..255 RGB with normalization inside, as roadseg-calibrate does")
    return


@dataclass
class OutputContract:
    """How the runtime reads the output: ``kind`` (logits, probabilities,
    class_map), ``size`` = (height, width) in cells, ``classes`` = the model's
    number of classes (None when a class map's cannot be read from the
    graph), ``lut`` = uint8 [classes] model class -> roadseg category, or None
    when the model's classes are roadseg's 8."""
    detail: dict
    kind: str
    size: tuple[int, int]
    classes: int | None
    lut: np.ndarray | None


def argmax_classes(interp, output_index: int) -> int | None:
    """The number of classes an ArgMax in the graph chooses among (its
    input's last dimension), walking back from ``output_index`` through
    id-preserving ops; None when there is no such ArgMax or the backend does
    not expose its graph (ONNX Runtime)."""
    ops_fn = getattr(interp, "_get_ops_details", None)
    if ops_fn is None:
        return None
    try:
        ops = ops_fn()
        tensors = {t["index"]: t for t in interp.get_tensor_details()}
    except (AttributeError, ValueError, RuntimeError):
        return None
    producer = {int(o): op for op in ops if op["op_name"] != "DELEGATE" for o in op["outputs"]}
    index = output_index
    for _ in range(8):
        op = producer.get(index)
        if op is None:
            return None
        if op["op_name"] in ("ARG_MAX", "ARG_MIN"):
            shape = tensors[int(op["inputs"][0])]["shape"]
            return int(shape[-1]) if len(shape) else None
        if op["op_name"] not in _ID_PRESERVING_OPS:
            return None
        index = int(op["inputs"][0])
    return None


def read_output(interp, path: Path, sidecar: dict | None) -> OutputContract:
    """The output's contract, from its tensor and the sidecar. Raises
    ModelError (no usable output; class ids outside the taxonomy with no
    mapping) or SidecarError (output.kind, size, dtype or class_mapping
    contradict the tensor)."""
    d = interp.get_output_details()[0]
    shape = tuple(int(v) for v in d["shape"])
    side = (sidecar or {}).get("output", {})
    if len(shape) == 4 and shape[3] > 1:
        kind, classes = side.get("kind", "logits"), shape[3]
        if kind == "class_map":
            raise SidecarError(f"sidecar output.kind is 'class_map' but {path.name}'s output {list(shape)} holds "
                               f"{shape[3]} scores per cell: it is logits or probabilities")
    elif len(shape) == 3 or (len(shape) == 4 and shape[3] == 1):
        kind, classes = "class_map", argmax_classes(interp, d["index"])
        if np.dtype(d["dtype"]).kind not in "iu":
            raise ModelError(f"{path}: the class map output is {np.dtype(d['dtype']).name}, not integer class ids")
        if side.get("kind", "class_map") != "class_map":
            raise SidecarError(f"sidecar output.kind is {side['kind']!r} but {path.name}'s output {list(shape)} "
                               "is a class map (one class id per cell)")
    else:
        raise ModelError(f"{path}: output shape {list(shape)} is neither [1,h,w,classes] scores nor a [1,h,w] "
                         "class map")
    size = (shape[1], shape[2])
    _check_declared(side, size, np.dtype(d["dtype"]).name, path)
    return OutputContract(d, kind, size, classes, _class_lut(side.get("class_mapping"), classes, path))


def _check_declared(side: dict, size: tuple[int, int], dtype: str, path: Path) -> None:
    if side.get("height") is not None and (side["height"], side.get("width")) != size:
        raise SidecarError(f"sidecar output.height/width {side['height']}x{side.get('width')} differs from "
                           f"{path.name}'s output {size[0]}x{size[1]}")
    if side.get("dtype") is not None and side["dtype"] != dtype:
        raise SidecarError(f"sidecar output.dtype {side['dtype']!r} differs from {path.name}'s output {dtype}")


def _class_lut(mapping: list[int] | None, classes: int | None, path: Path) -> np.ndarray | None:
    if mapping is None:
        if classes is not None and classes != NUM_CLASSES:
            raise ModelError(f"{path}: the model has {classes} classes, not roadseg's {NUM_CLASSES} categories; "
                             "give output.class_mapping in its sidecar (model class -> category 0..7)")
        return None
    if classes is not None and len(mapping) != classes:
        raise SidecarError(f"sidecar output.class_mapping has {len(mapping)} entries but {path.name} has "
                           f"{classes} classes")
    return np.asarray(mapping, np.uint8)


def check_input_declared(sidecar: dict | None, dtype, quantization: tuple[float, int], path: Path) -> None:
    """The sidecar's ``input.dtype`` and quantization must be the tensor's.
    Raises SidecarError naming the key."""
    if sidecar is None:
        return
    si = sidecar["input"]
    if si["dtype"] != np.dtype(dtype).name:
        raise SidecarError(f"sidecar input.dtype {si['dtype']!r} differs from {path.name}'s input "
                           f"{np.dtype(dtype).name}")
    scale, zero = quantization
    if si.get("scale") is not None and not np.isclose(si["scale"], scale, rtol=1e-6, atol=0.0):
        raise SidecarError(f"sidecar input.scale {si['scale']:g} differs from {path.name}'s {scale:g}")
    if si.get("zero_point") is not None and si["zero_point"] != zero:
        raise SidecarError(f"sidecar input.zero_point {si['zero_point']} differs from {path.name}'s {zero}")
