"""Loading a TFLite model on the device: ai-edge-litert first, then
tflite-runtime; never TensorFlow."""
from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger("roadseg.interpreter")

TFLITE_MAGIC = b"TFL3"


class ModelError(ValueError):
    """The model file is missing, not a TFLite model, or not usable here."""


def interpreter_api():
    """Return ``(Interpreter class, load_delegate, backend name, version)``."""
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
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"model not found: {path}")
    with path.open("rb") as f:
        head = f.read(8)
    if len(head) < 8 or head[4:8] != TFLITE_MAGIC:
        raise ModelError(f"{path} is not a TFLite model (no {TFLITE_MAGIC.decode()} identifier)")
    return path


def make_interpreter(path: str | Path, threads: int | None = None, delegate: str | None = None):
    """An allocated interpreter for ``path``. ``threads`` defaults to the
    number of cores; XNNPACK is the default CPU delegate of both backends;
    ``delegate`` is the path of an external delegate (e.g. ``libedgetpu.so.1``)."""
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise ValueError(f"--threads {threads!r} must be a whole number of at least 1")
    path = check_tflite_file(path)
    Interpreter, load_delegate, backend, version = interpreter_api()
    threads = threads or os.cpu_count() or 1
    delegates = []
    if delegate:
        try:
            delegates.append(load_delegate(delegate))
        except (ValueError, OSError) as e:
            raise ModelError(f"cannot load delegate {delegate}: {e}") from e
    try:
        interp = Interpreter(model_path=str(path), num_threads=threads,
                             experimental_delegates=delegates or None)
        interp.allocate_tensors()
    except (ValueError, RuntimeError) as e:
        raise ModelError(f"cannot load {path}: {e} (truncated or corrupt file?)") from e
    log.debug("loaded %s with %s %s, %d threads", path, backend, version, threads)
    return interp
