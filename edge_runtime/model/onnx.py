"""ONNX Runtime behind the interpreter interface the segmenter uses.

A ``.onnx`` model runs through :class:`OnnxInterpreter`, which offers the
slice of LiteRT's ``Interpreter`` API that :class:`DeviceSegmenter` calls
(input/output details, ``tensor()`` for writing the input in place,
``set_tensor``, ``invoke``, ``get_tensor``), so the recipe (shared
preprocessing, argmax at the output stride, timings, sidecar) is one code
path for both backends.

The accelerator is chosen as for LiteRT: ``--delegate`` names an execution
provider instead of a library (``TensorrtExecutionProvider`` or
``CUDAExecutionProvider`` with ``onnxruntime-gpu`` on a Jetson) and
``--delegate-option KEY=VALUE`` passes its options (for TensorRT e.g.
``trt_fp16_enable=1`` and ``trt_engine_cache_enable=1``,
``trt_engine_cache_path=/var/cache/roadseg``). The CPU provider is always
appended as the fallback for operators the accelerator does not take.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from edge_runtime.model.errors import ModelError

_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(uint8)": np.uint8,
           "tensor(int8)": np.int8, "tensor(int32)": np.int32, "tensor(int64)": np.int64}


def onnxruntime_api():
    try:
        import onnxruntime
    except ImportError as e:
        raise ImportError(f"a .onnx model needs ONNX Runtime: pip install onnxruntime (onnxruntime-gpu on a Jetson "
                          f"or an NVIDIA machine) [{e}]") from None
    return onnxruntime


class OnnxInterpreter:
    """One ``onnxruntime.InferenceSession`` with a fixed-shape image input."""

    def __init__(self, path: Path, threads: int, provider: str | None = None, provider_options: dict | None = None):
        ort = onnxruntime_api()
        ort.set_default_logger_severity(3)  # errors only: tf2onnx graphs draw deprecation notes at load
        self.version = ort.__version__
        available = ort.get_available_providers()
        providers: list = []
        if provider:
            if provider not in available:
                raise ModelError(f"ONNX Runtime here has no {provider} (available: {', '.join(available)}); "
                                 "onnxruntime-gpu brings the CUDA and TensorRT providers")
            providers.append((provider, dict(provider_options or {})))
        elif provider_options:
            raise ValueError("--delegate-option needs --delegate PROVIDER for a .onnx model")
        providers.append("CPUExecutionProvider")
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self.session = ort.InferenceSession(str(path), sess_options=so, providers=providers)
        except Exception as e:  # onnxruntime raises its own exception types for bad files
            raise ModelError(f"cannot load {path}: {e} (truncated or corrupt file, or not an ONNX model?)") from None
        self.providers = self.session.get_providers()
        ins, outs = self.session.get_inputs(), self.session.get_outputs()
        if len(ins) != 1:
            raise ModelError(f"{path}: expected one input tensor, found {len(ins)}")

        def details(i, t):
            shape = [d if isinstance(d, int) else -1 for d in t.shape]
            if t.type not in _DTYPES:
                raise ModelError(f"{path}: tensor {t.name} has type {t.type}, which roadseg does not handle")
            return {"index": i, "name": t.name, "shape": np.array(shape), "dtype": _DTYPES[t.type],
                    "quantization": (0.0, 0)}

        self._inputs = [details(0, ins[0])]
        self._outputs = [details(i, t) for i, t in enumerate(outs)]
        if any(d < 1 for d in self._inputs[0]["shape"]):
            raise ModelError(f"{path}: the input shape {ins[0].shape} is not fixed; roadseg-calibrate exports "
                             "[1, H, W, 3] at the device's size")
        self._in = np.zeros(tuple(self._inputs[0]["shape"]), self._inputs[0]["dtype"])
        self._results: list[np.ndarray] = []
        self._names = [t.name for t in outs]

    # -- the LiteRT Interpreter subset -------------------------------------
    def get_input_details(self) -> list[dict]:
        return self._inputs

    def get_output_details(self) -> list[dict]:
        return self._outputs

    def tensor(self, index: int):
        return lambda: self._in

    def set_tensor(self, index: int, value: np.ndarray) -> None:
        np.copyto(self._in, value, casting="same_kind")

    def invoke(self) -> None:
        self._results = self.session.run(self._names, {self._inputs[0]["name"]: self._in})

    def get_tensor(self, index: int) -> np.ndarray:
        if not self._results:
            raise RuntimeError("get_tensor before invoke")
        return self._results[index]

    def describe(self) -> str:
        return f"onnxruntime {self.version} ({', '.join(self.providers)})"
