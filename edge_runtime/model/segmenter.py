"""The inference recipe on the device:
``preprocess -> _set_input -> invoke() -> _postprocess``.

Frames go through :func:`edge_runtime.contract.preprocessing.preprocess`, the same
function training and evaluation use; for a raw-pixel uint8 input (as
calibration makes it) it writes straight into the interpreter's input tensor.
Input dtype, size, scale and zero point come from the interpreter (and the
sidecar when present), never assumed. Buffers are allocated once. The class
map is computed at the model's output resolution; upsampling to full frame
happens only when asked (evaluation, preview).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_runtime.contract.labels import NUM_CLASSES
from edge_runtime.contract.preprocessing import preprocess, resize_mask, scores_to_classes
from edge_runtime.contract.sidecar import input_block, output_block, read_sidecar
from edge_runtime.model import checks
from edge_runtime.model.interpreter import ModelError, describe_interpreter, make_interpreter

log = logging.getLogger("roadseg.segmenter")


@dataclass
class Timing:
    """Milliseconds spent on the last frame in each step of the recipe."""
    preprocess_ms: float = 0.0
    invoke_ms: float = 0.0
    postprocess_ms: float = 0.0

    @property
    def total_ms(self) -> float:
        """preprocess + invoke + postprocess, in milliseconds."""
        return self.preprocess_ms + self.invoke_ms + self.postprocess_ms


class DeviceSegmenter:
    """One model (``.tflite`` or ``.onnx``) with its sidecar, ready to segment frames.

    At load the model's contract is checked against what the runtime does
    with it (:mod:`edge_runtime.model.checks`): a dynamic input height and
    width are fixed to ``size`` (height, width in pixels) or the sidecar's;
    an input that cannot hold 0..255 pixels, class ids outside the 8
    categories without the sidecar's ``output.class_mapping``, and a sidecar
    that contradicts the tensors are refused.

    Attributes: ``input_size``/``output_size`` (height, width), ``input_dtype``,
    ``input_scale``/``input_zero``, ``output_kind`` (logits, probabilities,
    class_map), ``output_dtype``, ``output_scale``/``output_zero``,
    ``channel_order``, ``model_classes`` (the model's own number of classes,
    None when unknown), ``sidecar`` (the validated dict or None), ``timing``,
    ``last_output`` (the raw output of the last frame in ``output_dtype``,
    still quantized: [h, w, C] scores, or [h, w] / [h, w, 1] ids for a
    class map; a new array each frame, None before the first).

    Raises ModelError (a file it cannot use), SidecarError (a sidecar that
    breaks the schema or contradicts the model), ValueError (bad threads or
    delegate options), ImportError (no interpreter installed)."""

    def __init__(self, model_path: str | Path, threads: int | None = None, delegate: str | None = None,
                 delegate_options: dict | None = None,
                 verify_sidecar: bool = True, warn_without_sidecar: bool = True,
                 size: tuple[int, int] | None = None):
        self.path = Path(model_path)
        self.interpreter = make_interpreter(self.path, threads, delegate, delegate_options)
        self.threads = threads
        self.sidecar = read_sidecar(self.path, verify=verify_sidecar)
        if self.sidecar is None and warn_without_sidecar:
            log.warning("%s has no sidecar %s: running on assumptions (RGB input, stretch resize, the output kind "
                        "read from the tensor shape, this runtime's 8 categories, no sha256 check); "
                        "roadseg-calibrate writes the pair", self.path, self.path.with_suffix(".json").name)
        self._in = checks.fit_input(self.interpreter, self.path, self.sidecar, size)
        self.input_size = (int(self._in["shape"][1]), int(self._in["shape"][2]))
        self.input_dtype = np.dtype(self._in["dtype"])
        self.input_scale, self.input_zero = self._in["quantization"]
        checks.check_input_range(self.input_dtype, (self.input_scale, self.input_zero), self.path)
        checks.check_input_declared(self.sidecar, self.input_dtype, (self.input_scale, self.input_zero), self.path)
        out = checks.read_output(self.interpreter, self.path, self.sidecar)
        self._out, self.output_kind, self.output_size = out.detail, out.kind, out.size
        self.model_classes, self._lut = out.classes, out.lut
        self._ids = len(out.lut) if out.lut is not None else (out.classes or NUM_CLASSES)
        self.output_dtype = np.dtype(self._out["dtype"])
        self.output_scale, self.output_zero = self._out["quantization"]
        self.channel_order = (self.sidecar or {}).get("input", {}).get("channel_order", "rgb")
        self._in_buf = np.empty((1, *self.input_size, 3), self.input_dtype)
        self._rgb = np.empty((*self.input_size, 3), np.uint8)
        self._classes = np.empty(self.output_size, np.uint8)
        self._idx = np.empty(self.output_size, np.intp)
        self._direct = self.input_dtype == np.uint8 and (not self.input_scale or
                                                         (self.input_scale == 1.0 and self.input_zero == 0))
        self.timing = Timing()
        self.last_output: np.ndarray | None = None

    # -- the recipe --------------------------------------------------------
    def _preprocess(self, frame: np.ndarray, frame_order: str) -> np.ndarray:
        """The shared preprocessing, into the input tensor when it takes raw pixels."""
        dst = self.interpreter.tensor(self._in["index"])()[0] if self._direct else self._rgb
        # a model taking BGR (never made by calibration) sees the frame with its channels swapped
        order = frame_order if self.channel_order == "rgb" else {"rgb": "bgr", "bgr": "rgb"}[frame_order]
        return preprocess(frame, self.input_size, order, out=dst)

    def _set_input(self, rgb: np.ndarray) -> None:
        if self._direct:
            return  # already in the input tensor
        if self.input_dtype in (np.uint8, np.int8) and self.input_scale:
            # quantized input: q = x / scale + zero_point
            q = np.round(rgb.astype(np.float32) / self.input_scale + self.input_zero)
            info = np.iinfo(self.input_dtype)
            self._in_buf[0] = np.clip(q, info.min, info.max)
        else:  # uint8 without quantization, or float models taking 0..255 RGB
            self._in_buf[0] = rgb
        self.interpreter.set_tensor(self._in["index"], self._in_buf)

    def _postprocess(self) -> np.ndarray:
        out = self.interpreter.get_tensor(self._out["index"])[0]
        self.last_output = out  # the copy get_tensor made: kept for the frame selection (edge_runtime.flywheel)
        if self.output_kind == "class_map":
            ids = out.reshape(self.output_size)
            lo, hi = int(ids.min()), int(ids.max())
            if lo < 0 or hi >= self._ids:  # never index (or colour, or count) an id outside the taxonomy
                raise ModelError(f"{self.path}: the model returned class id {hi if hi >= self._ids else lo}, "
                                 f"outside 0..{self._ids - 1}; give output.class_mapping in its sidecar")
            if self._lut is None:
                np.copyto(self._classes, ids, casting="unsafe")
            else:
                np.take(self._lut, ids, out=self._classes)
            return self._classes
        # argmax is invariant to the (positive-scale) dequantization
        np.argmax(out, axis=-1, out=self._idx)
        if self._lut is None:
            np.copyto(self._classes, self._idx, casting="unsafe")
        else:
            np.take(self._lut, self._idx, out=self._classes)
        return self._classes

    # -- public API ----------------------------------------------------------
    def prepare(self, frame: np.ndarray, frame_order: str = "rgb") -> np.ndarray:
        """The shared preprocessing of ``frame`` (uint8 [H, W, 3] in ``frame_order``) into a new
        uint8 [h, w, 3] array at the model's input size and channel order: what a source's reader
        thread computes beside the model (thread-safe: it touches no interpreter state), so that
        :meth:`segment` with ``prepared=`` only copies it in. Raises ValueError as :meth:`segment`."""
        order = frame_order if self.channel_order == "rgb" else {"rgb": "bgr", "bgr": "rgb"}[frame_order]
        return preprocess(frame, self.input_size, order)

    def segment(self, frame: np.ndarray, frame_order: str = "rgb", prepared: np.ndarray | None = None) -> np.ndarray:
        """Class map (uint8 categories 0..7, [h, w] at the output resolution)
        of one uint8 [H, W, 3] frame in ``frame_order`` (rgb or bgr). The
        returned array is reused by the next call: copy it to keep it.
        ``prepared``: :meth:`prepare`'s result for this frame, made off this
        thread (ignored when its size is not this model's, e.g. after a swap).
        Raises ValueError for a frame that is not uint8 [H, W, 3] and
        ModelError when a class-map model returns an id outside its classes."""
        t0 = time.perf_counter()
        if prepared is not None and prepared.shape[:2] == tuple(self.input_size):
            if self._direct:
                np.copyto(self.interpreter.tensor(self._in["index"])()[0], prepared)
            self._set_input(prepared)
        else:
            self._set_input(self._preprocess(frame, frame_order))  # no view of the tensor outlives this line
        t1 = time.perf_counter()
        self.interpreter.invoke()
        t2 = time.perf_counter()
        classes = self._postprocess()
        t3 = time.perf_counter()
        self.timing = Timing((t1 - t0) * 1e3, (t2 - t1) * 1e3, (t3 - t2) * 1e3)
        return classes

    def invoke_only(self) -> float:
        """Invoke on the current input; returns the wall time in milliseconds (benchmarks)."""
        t0 = time.perf_counter()
        self.interpreter.invoke()
        return (time.perf_counter() - t0) * 1e3

    def scores(self) -> np.ndarray:
        """Dequantized output scores of the last invoke: float32 [h, w, C] at
        the output resolution, C = the model's own classes (before any
        ``class_mapping``). Only for logits/probabilities outputs."""
        out = self.interpreter.get_tensor(self._out["index"])[0].astype(np.float32)
        if self.output_scale:
            out = (out - self.output_zero) * self.output_scale
        return out

    def segment_classes(self, image_rgb: np.ndarray) -> np.ndarray:
        """Class map (uint8 categories 0..7, [H, W] at the model's *input*
        resolution) of an RGB uint8 image, for evaluation: scores are
        upsampled bilinearly before argmax, as the float export does; a class
        map is resized nearest. Raises ModelError as :meth:`segment`."""
        classes = self.segment(image_rgb, "rgb")
        if self.output_size == self.input_size:
            return classes.copy()
        if self.output_kind == "class_map":
            return resize_mask(classes, self.input_size)
        ids = scores_to_classes(self.scores(), self.input_size)
        return (ids if self._lut is None else self._lut[ids]).astype(np.uint8)

    def sidecar_blocks(self, kind: str | None = None) -> dict:
        """The sidecar's ``input`` and ``output`` blocks for this model as
        loaded (sizes, dtypes, quantization, stride = input height / output
        height), for :func:`edge_runtime.contract.sidecar.build_sidecar`;
        ``kind`` overrides the output kind read from the tensor (e.g.
        ``probabilities``). Raises SidecarError for a kind the schema lacks."""
        return {
            "input": input_block(self.input_size, self.input_dtype.name, (float(self.input_scale),
                                                                          int(self.input_zero)), self.channel_order),
            "output": output_block(kind or self.output_kind, self.output_size,
                                   self.input_size[0] // self.output_size[0], self.output_dtype.name,
                                   (float(self.output_scale), int(self.output_zero)),
                                   None if self._lut is None else self._lut.tolist()),
        }

    def describe(self) -> dict:
        """What runs: file, name, sha256 and precision (from the sidecar),
        input/output sizes (height, width), dtypes, output kind, backend and
        threads. JSON-serializable."""
        return {
            "model": self.path.name,
            "name": (self.sidecar or {}).get("name", self.path.stem),
            "sha256": (self.sidecar or {}).get("sha256"),
            "precision": (self.sidecar or {}).get("precision", str(self.input_dtype)),
            "input_size": list(self.input_size),
            "input_dtype": str(self.input_dtype),
            "output_size": list(self.output_size),
            "output_kind": self.output_kind,
            "interpreter": describe_interpreter(self.interpreter),
            "threads": self.threads,
        }
