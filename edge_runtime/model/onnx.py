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
    """The ``onnxruntime`` module. Raises ImportError (one line: what to
    install) when ONNX Runtime is not installed."""
    try:
        import onnxruntime
    except ImportError as e:
        raise ImportError(f"a .onnx model needs ONNX Runtime: pip install onnxruntime (onnxruntime-gpu on a Jetson "
                          f"or an NVIDIA machine) [{e}]") from None
    return onnxruntime


class OnnxInterpreter:
    """One ``onnxruntime.InferenceSession`` behind LiteRT's interpreter API.

    Symbolic input dimensions are reported as -1 in ``shape_signature`` (and
    1 in ``shape``) until :meth:`resize_tensor_input` fixes them, as LiteRT
    does for a dynamic ``.tflite``. Raises ModelError for a file ONNX Runtime
    cannot load, a provider it lacks, more than one input or an unhandled
    tensor type; ValueError for options without a provider."""

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
            sig = [d if isinstance(d, int) and d > 0 else -1 for d in t.shape]
            if t.type not in _DTYPES:
                raise ModelError(f"{path}: tensor {t.name} has type {t.type}, which roadseg does not handle")
            return {"index": i, "name": t.name, "shape": np.array([max(d, 1) for d in sig]),
                    "shape_signature": np.array(sig), "dtype": _DTYPES[t.type], "quantization": (0.0, 0)}

        self._inputs = [details(0, ins[0])]
        self._outputs = [details(i, t) for i, t in enumerate(outs)]
        self._results: list[np.ndarray] = []
        self._names = [t.name for t in outs]
        self._in = np.zeros(tuple(self._inputs[0]["shape"]), self._inputs[0]["dtype"])
        if (self._inputs[0]["shape_signature"][1:] > 0).all():  # a symbolic batch runs as 1
            try:  # output shapes may be symbolic even for a fixed input: learn them
                self.allocate_tensors()
            except RuntimeError as e:
                raise ModelError(f"{path}: {e}") from None

    # -- the LiteRT Interpreter subset -------------------------------------
    def get_input_details(self) -> list[dict]:
        """One dict per input: index, name, shape, shape_signature, dtype, quantization (always (0.0, 0))."""
        return self._inputs

    def get_output_details(self) -> list[dict]:
        """One dict per output, as :meth:`get_input_details`; shapes as of the last allocate_tensors."""
        return self._outputs

    def resize_tensor_input(self, index: int, shape) -> None:
        """Fix the input's shape (e.g. ``[1, H, W, 3]`` for a model whose
        height and width are symbolic); dimensions fixed in the graph must
        keep their size. Raises ValueError. Call :meth:`allocate_tensors` after."""
        sig = self._inputs[0]["shape_signature"]
        shape = [int(v) for v in shape]
        if len(shape) != len(sig) or any(s > 0 and s != v for s, v in zip(sig, shape)) or min(shape) < 1:
            raise ValueError(f"cannot resize input {list(sig)} to {shape}")
        self._inputs[0]["shape"] = np.array(shape)
        self._in = np.zeros(tuple(shape), self._inputs[0]["dtype"])

    def allocate_tensors(self) -> None:
        """Run once on zeros to learn the output shapes at the current input
        shape (ONNX Runtime sizes outputs per run). Raises RuntimeError when
        the model cannot run at that shape."""
        try:
            results = self.session.run(self._names, {self._inputs[0]["name"]: self._in})
        except Exception as e:  # onnxruntime raises its own exception types
            raise RuntimeError(f"cannot run at input shape {list(self._in.shape)}: {e}") from None
        for d, r in zip(self._outputs, results):
            d["shape"] = np.array(r.shape)

    def tensor(self, index: int):
        """A callable returning the input buffer (the segmenter writes frames into it in place)."""
        return lambda: self._in

    def set_tensor(self, index: int, value: np.ndarray) -> None:
        """Copy ``value`` (the input's shape and a same-kind dtype) into the input buffer."""
        np.copyto(self._in, value, casting="same_kind")

    def invoke(self) -> None:
        """Run the session on the input buffer; outputs are kept for :meth:`get_tensor`."""
        self._results = self.session.run(self._names, {self._inputs[0]["name"]: self._in})

    def get_tensor(self, index: int) -> np.ndarray:
        """Output ``index`` of the last invoke. Raises RuntimeError before the first invoke."""
        if not self._results:
            raise RuntimeError("get_tensor before invoke")
        return self._results[index]

    def describe(self) -> str:
        """``"onnxruntime 1.x (Provider, ...)"``: the version and the providers in use."""
        return f"onnxruntime {self.version} ({', '.join(self.providers)})"
