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

import cv2
import numpy as np

from edge_runtime.model.interpreter import ModelError, describe_interpreter, make_interpreter
from edge_runtime.contract.labels import NUM_CLASSES
from edge_runtime.contract.preprocessing import preprocess
from edge_runtime.contract.sidecar import read_sidecar

log = logging.getLogger("roadseg.segmenter")


@dataclass
class Timing:
    preprocess_ms: float = 0.0
    invoke_ms: float = 0.0
    postprocess_ms: float = 0.0

    @property
    def total_ms(self) -> float:
        return self.preprocess_ms + self.invoke_ms + self.postprocess_ms


class DeviceSegmenter:
    def __init__(self, model_path: str | Path, threads: int | None = None, delegate: str | None = None,
                 delegate_options: dict | None = None,
                 verify_sidecar: bool = True, warn_without_sidecar: bool = True):
        self.path = Path(model_path)
        self.interpreter = make_interpreter(self.path, threads, delegate, delegate_options)
        self.threads = threads
        self.sidecar = read_sidecar(self.path, verify=verify_sidecar)
        if self.sidecar is None and warn_without_sidecar:
            log.warning("%s has no sidecar %s: running on assumptions (RGB input, stretch resize, the output kind "
                        "read from the tensor shape, this runtime's 8 categories, no sha256 check); "
                        "roadseg-calibrate writes the pair", self.path, self.path.with_suffix(".json").name)
        inp = self.interpreter.get_input_details()
        out = self.interpreter.get_output_details()
        if len(inp) != 1:
            raise ModelError(f"{self.path}: expected one input tensor, found {len(inp)}")
        shape = tuple(int(v) for v in inp[0]["shape"])
        if len(shape) != 4 or shape[3] != 3 or shape[0] != 1:
            raise ModelError(f"{self.path}: model input is not an image: shape {list(shape)}, "
                             "expected [1, H, W, 3]")
        self._in = inp[0]
        self.input_size = (shape[1], shape[2])
        self.input_dtype = np.dtype(inp[0]["dtype"])
        self.input_scale, self.input_zero = inp[0]["quantization"]
        o = out[0]
        oshape = tuple(int(v) for v in o["shape"])
        self.output_dtype = np.dtype(o["dtype"])
        if len(oshape) == 4 and oshape[3] == NUM_CLASSES:
            self.output_kind = (self.sidecar or {}).get("output", {}).get("kind", "logits")
        elif len(oshape) == 3 or (len(oshape) == 4 and oshape[3] == 1):
            self.output_kind = "class_map"
        else:
            raise ModelError(f"{self.path}: output shape {list(oshape)} is neither [1,h,w,{NUM_CLASSES}] "
                             "scores nor a [1,h,w] class map")
        self._out = o
        self.output_size = (oshape[1], oshape[2])
        self.output_scale, self.output_zero = o["quantization"]
        self.channel_order = (self.sidecar or {}).get("input", {}).get("channel_order", "rgb")
        if self.sidecar:
            si = self.sidecar["input"]
            if (si["height"], si["width"]) != self.input_size:
                raise ModelError(f"{self.path}: sidecar input {si['height']}x{si['width']} differs from "
                                 f"the model's {self.input_size[0]}x{self.input_size[1]}")
        self._in_buf = np.empty((1, *self.input_size, 3), self.input_dtype)
        self._rgb = np.empty((*self.input_size, 3), np.uint8)
        self._classes = np.empty(self.output_size, np.uint8)
        self._idx = np.empty(self.output_size, np.intp)
        self._direct = self.input_dtype == np.uint8 and (not self.input_scale or
                                                         (self.input_scale == 1.0 and self.input_zero == 0))
        self.timing = Timing()

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
        if self.output_kind == "class_map":
            np.copyto(self._classes, out.reshape(self.output_size), casting="unsafe")
        else:
            # argmax is invariant to the (positive-scale) dequantization
            np.argmax(out, axis=-1, out=self._idx)
            np.copyto(self._classes, self._idx, casting="unsafe")
        return self._classes

    # -- public API ----------------------------------------------------------
    def segment(self, frame: np.ndarray, frame_order: str = "rgb") -> np.ndarray:
        """Class map (uint8, output resolution) of one frame. The returned
        array is reused by the next call: copy it to keep it."""
        t0 = time.perf_counter()
        self._set_input(self._preprocess(frame, frame_order))  # no view of the tensor outlives this line
        t1 = time.perf_counter()
        self.interpreter.invoke()
        t2 = time.perf_counter()
        classes = self._postprocess()
        t3 = time.perf_counter()
        self.timing = Timing((t1 - t0) * 1e3, (t2 - t1) * 1e3, (t3 - t2) * 1e3)
        return classes

    def invoke_only(self) -> float:
        """Invoke on the current input; returns milliseconds (benchmarks)."""
        t0 = time.perf_counter()
        self.interpreter.invoke()
        return (time.perf_counter() - t0) * 1e3

    def scores(self) -> np.ndarray:
        """Dequantized output scores [h,w,C] of the last invoke (float32)."""
        out = self.interpreter.get_tensor(self._out["index"])[0].astype(np.float32)
        if self.output_scale:
            out = (out - self.output_zero) * self.output_scale
        return out

    def segment_classes(self, image_rgb: np.ndarray) -> np.ndarray:
        """Class map at the model's *input* resolution, for evaluation: scores
        are upsampled bilinearly before argmax, as the float export does."""
        classes = self.segment(image_rgb, "rgb")
        if self.output_size == self.input_size:
            return classes.copy()
        if self.output_kind == "class_map":
            h, w = self.input_size
            return cv2.resize(classes, (w, h), interpolation=cv2.INTER_NEAREST)
        h, w = self.input_size
        up = cv2.resize(self.scores(), (w, h), interpolation=cv2.INTER_LINEAR)
        return np.argmax(up, axis=-1).astype(np.uint8)

    def describe(self) -> dict:
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
