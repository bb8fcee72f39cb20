"""Loading a model on the device: a ``.tflite`` through ai-edge-litert
first, then tflite-runtime (never TensorFlow); a ``.onnx`` through ONNX
Runtime (:mod:`edge_runtime.model.onnx`), chosen by the file's extension."""
from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger("roadseg.interpreter")

TFLITE_MAGIC = b"TFL3"


from edge_runtime.model.errors import ModelError  # noqa: E402,F401  (re-exported: callers import it from here)


def interpreter_api():
    """Return ``(Interpreter class, load_delegate, backend name, version)``
    of ai-edge-litert, else tflite-runtime. Raises ImportError (one line,
    naming both packages) when neither is installed."""
    try:
        from ai_edge_litert import interpreter as mod
        import ai_edge_litert
        return mod.Interpreter, mod.load_delegate, "ai-edge-litert", getattr(ai_edge_litert, "__version__", "?")
    except ImportError as e1:
        try:
            from tflite_runtime import interpreter as mod
            import tflite_runtime
            return mod.Interpreter, mod.load_delegate, "tflite-runtime", getattr(tflite_runtime, "__version__", "?")
        except ImportError as e2:
            raise ImportError(
                "no TFLite interpreter: install ai-edge-litert (pip install ai-edge-litert) or, where it "
                f"has no wheel, tflite-runtime (pip install tflite-runtime) [{e1}; {e2}]") from None


def check_tflite_file(path: str | Path) -> Path:
    """``path`` as a Path when it is a file carrying the TFLite identifier
    (``TFL3`` at bytes 4..8 of the flatbuffer). Raises ModelError when it is
    missing or not a TFLite model."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"model not found: {path}")
    with path.open("rb") as f:
        head = f.read(8)
    if len(head) < 8 or head[4:8] != TFLITE_MAGIC:
        raise ModelError(f"{path} is not a TFLite model (no {TFLITE_MAGIC.decode()} identifier)")
    return path


def parse_delegate_options(items) -> dict[str, str]:
    """``["key=value", ...]`` (or one ``"k=v;k2=v2"`` string) -> options for
    an external delegate (empty for None). Raises ValueError for an item
    that is not KEY=VALUE."""
    if not items:
        return {}
    if isinstance(items, str):
        items = [i for i in items.split(";") if i]
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--delegate-option {item!r} is not KEY=VALUE (e.g. device=usb:0)")
        out[key.strip()] = value.strip()
    return out


def make_interpreter(path: str | Path, threads: int | None = None, delegate: str | None = None,
                     delegate_options: dict | None = None):
    """An allocated interpreter for ``path``. ``threads`` defaults to the
    number of cores; XNNPACK is the default CPU delegate of both TFLite
    backends; ``delegate`` is the path of an external delegate (e.g.
    ``libedgetpu.so.1``) and ``delegate_options`` its options (e.g.
    ``{"device": "usb:0"}`` for an Edge TPU). For a ``.onnx`` model,
    ``delegate`` names an ONNX Runtime execution provider instead. Raises
    ModelError (missing, not a model, corrupt, a delegate that does not
    load), ValueError (bad threads, options without a delegate) or
    ImportError (no interpreter installed)."""
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise ValueError(f"--threads {threads!r} must be a whole number of at least 1")
    if Path(path).suffix.lower() == ".onnx":
        from edge_runtime.model.onnx import OnnxInterpreter
        if not Path(path).is_file():
            raise ModelError(f"model not found: {path}")
        return OnnxInterpreter(Path(path), threads or os.cpu_count() or 1, delegate, delegate_options)
    path = check_tflite_file(path)
    Interpreter, load_delegate, backend, version = interpreter_api()
    threads = threads or os.cpu_count() or 1
    delegates = []
    if delegate_options and not delegate:
        raise ValueError("--delegate-option needs --delegate LIBRARY")
    if delegate:
        import ctypes
        try:  # first by ctypes: a Delegate that fails to load prints a traceback when collected
            ctypes.CDLL(delegate)
        except OSError as e:
            raise ModelError(f"cannot load delegate {delegate}"
                             f"{' with options ' + str(delegate_options) if delegate_options else ''}: {e}") from None
        try:
            delegates.append(load_delegate(delegate, options=delegate_options or None))
        except (ValueError, OSError, RuntimeError) as e:
            raise ModelError(f"cannot load delegate {delegate}"
                             f"{' with options ' + str(delegate_options) if delegate_options else ''}: {e}") from e
    try:
        interp = Interpreter(model_path=str(path), num_threads=threads,
                             experimental_delegates=delegates or None)
        interp.allocate_tensors()
    except (ValueError, RuntimeError) as e:
        raise ModelError(f"cannot load {path}: {e} (truncated or corrupt file?)") from e
    log.debug("loaded %s with %s %s, %d threads", path, backend, version, threads)
    return interp


def describe_interpreter(interp) -> str:
    """``"ai-edge-litert 2.3.0"`` or ``"onnxruntime 1.32.0 (CPUExecutionProvider)"``."""
    from edge_runtime.model.onnx import OnnxInterpreter
    if isinstance(interp, OnnxInterpreter):
        return interp.describe()
    _, _, backend, version = interpreter_api()
    return f"{backend} {version}"
