"""Console-script entry points of every ``roadseg-*`` command
(pyproject.toml ``[project.scripts]`` points here).

Each command's module is imported inside a guard, so an install that lacks
a piece is one clear line instead of a traceback:

* a command whose extra is not installed (``roadseg-train`` after ``pip
  install "roadseg[runtime]"``) names the extra to add, exit 2;
* the NumPy mix-up of Pi and Jetson installs, where a NumPy 2 in the venv
  shadows the system NumPy 1.x that apt's / JetPack's OpenCV and picamera2
  were built against, prints the documented fix, exit 4;
* anything else that cannot be imported: what, and that roadseg-doctor
  shows which piece is missing, exit 4.

``--help`` and ``--version`` import nothing heavy: the vehicle's system
libraries (cv2, NumPy) are loaded first only for a real run.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
from dataclasses import dataclass

NUMPY_ABI_HINTS = ("numpy.dtype size changed", "compiled using NumPy 1.x", "numpy.core.multiarray failed to import",
                   "_ARRAY_API not found", "numpy.core._multiarray_umath")

#: the extra that brings each optional top-level package (pyproject.toml [project.optional-dependencies])
EXTRA_OF = {"tensorflow": "train", "tf_keras": "train", "keras": "train", "keras_hub": "train",
            "segmentation_models": "train", "cityscapesscripts": "train", "matplotlib": "plot",
            "fastapi": "api", "uvicorn": "api", "multipart": "api", "streamlit": "dashboard", "pandas": "dashboard",
            "httpx": "dashboard", "PIL": "dashboard", "onnxruntime": "onnx", "onnx": "onnx", "tf2onnx": "onnx",
            "amqtt": "runtime", "paho": "runtime", "cv2": "runtime", "ai_edge_litert": "runtime",
            "pydantic": "runtime", "tuf": "runtime", "securesystemslib": "runtime", "cryptography": "runtime"}


@dataclass(frozen=True)
class Command:
    """A console script: its module (with ``main(argv) -> int``), the extra
    that installs what it needs, the top-level packages checked before it is
    imported, and whether the vehicle's system libraries load first."""
    module: str
    extra: str
    needs: tuple[str, ...] = ()
    system_libs: bool = False


TRAIN_NEEDS = ("tensorflow", "keras")
COMMANDS = {
    "roadseg-run": Command("edge_runtime.commands.run", "runtime", ("cv2", "numpy", "paho"), system_libs=True),
    "roadseg-bench": Command("edge_runtime.commands.bench", "runtime", ("cv2", "numpy"), system_libs=True),
    "roadseg-serve": Command("edge_runtime.commands.serve", "api", ("fastapi", "uvicorn"), system_libs=True),
    "roadseg-doctor": Command("edge_runtime.commands.doctor", "runtime"),  # it diagnoses the system libraries
    "roadseg-monitor": Command("fleet.monitor", "runtime", ("paho",)),
    "roadseg-dashboard": Command("fleet.dashboard.cli", "dashboard", ("streamlit", "pandas", "httpx")),
    "roadseg-data": Command("trainer.commands.data", "runtime", ("cv2", "numpy")),  # stats, preview, synth
    "roadseg-train": Command("trainer.commands.train", "train", TRAIN_NEEDS),
    # a .tflite is scored with the runtime alone (on the device); a SavedModel run names the train extra itself
    "roadseg-eval": Command("trainer.commands.evaluate", "runtime", ("cv2", "numpy")),
    "roadseg-distill": Command("distill.commands.distill", "train", TRAIN_NEEDS),
    "roadseg-calibrate": Command("calibration.commands.calibrate", "train", TRAIN_NEEDS),
    "roadseg-release": Command("calibration.commands.release", "runtime", ("tuf", "cryptography", "cv2")),
    "roadseg-rollout": Command("fleet.commands.rollout", "runtime", ("paho", "tuf")),
}


def numpy_abi_fix() -> str:
    """The documented message for the NumPy mix-up (docs/deploy.md)."""
    try:
        import numpy
        which = f"NumPy {numpy.__version__} ({numpy.__file__})"
    except Exception:  # numpy itself may be what is broken
        which = "the NumPy on the path"
    return (f"{which} is not the NumPy that the system's cv2/picamera2 were built against (Raspberry Pi OS and "
            f"JetPack ship NumPy 1.x). Fix: remove the venv's copy so the system's is used again ({sys.executable} "
            "-m pip uninstall -y numpy), and install with the platform's constraints: pip install -c "
            "constraints/debian-bookworm.txt '.[runtime-system]' (constraints/jetpack6.txt on a Jetson); "
            "roadseg-doctor checks the result; see docs/deploy.md")


def missing_extra(prog: str, package: str, extra: str) -> str:
    """The one line for a command run without its extra."""
    return (f"{prog}: error: {prog} needs the {extra} extra ({package} is not installed here): "
            f"pip install \"roadseg[{extra}]\"")


def _only_help(argv: list[str]) -> bool:
    return any(a in ("-h", "--help", "--version") for a in argv)


def launch(prog: str, argv: list[str] | None = None) -> int:
    """Import ``prog``'s module under the guard and run its ``main(argv)``;
    returns the exit code. A missing extra found before the import or raised
    as ModuleNotFoundError while the command starts is one line naming it."""
    cmd = COMMANDS[prog]
    args = list(sys.argv[1:] if argv is None else argv)
    help_only = _only_help(args)
    if not help_only:
        for package in cmd.needs:
            if importlib.util.find_spec(package) is None:
                print(missing_extra(prog, package, EXTRA_OF.get(package, cmd.extra)), file=sys.stderr)
                return 2
    try:
        if cmd.system_libs and not help_only:  # first: the commands import them lazily, deep inside main()
            import cv2  # noqa: F401
            import numpy  # noqa: F401
        main = importlib.import_module(cmd.module).main
        return main(args)
    except ModuleNotFoundError as e:
        top = (e.name or "").split(".")[0]
        if top in EXTRA_OF:
            print(missing_extra(prog, top, EXTRA_OF.get(top, cmd.extra)), file=sys.stderr)
            return 2
        return _cannot_start(prog, e)
    except (ImportError, AttributeError) as e:
        return _cannot_start(prog, e)


def _cannot_start(prog: str, e: BaseException) -> int:
    text = f"{type(e).__name__}: {e}"
    if any(h in text for h in NUMPY_ABI_HINTS):
        print(f"{prog}: error: {numpy_abi_fix()}", file=sys.stderr)
    else:
        print(f"{prog}: error: cannot start: {text}; roadseg-doctor shows which piece is missing", file=sys.stderr)
    return 4


def _entry(prog: str, name: str):
    def entry(argv: list[str] | None = None) -> int:
        return launch(prog, argv)
    entry.__name__ = entry.__qualname__ = name
    entry.__doc__ = f"The ``{prog}`` console script: :func:`launch` (argv None: sys.argv[1:]); the exit code."
    return entry


run = _entry("roadseg-run", "run")
bench = _entry("roadseg-bench", "bench")
serve = _entry("roadseg-serve", "serve")
doctor = _entry("roadseg-doctor", "doctor")
monitor = _entry("roadseg-monitor", "monitor")
dashboard = _entry("roadseg-dashboard", "dashboard")
data = _entry("roadseg-data", "data")
train = _entry("roadseg-train", "train")
evaluate = _entry("roadseg-eval", "evaluate")
distill = _entry("roadseg-distill", "distill")
calibrate = _entry("roadseg-calibrate", "calibrate")
release = _entry("roadseg-release", "release")
rollout = _entry("roadseg-rollout", "rollout")
