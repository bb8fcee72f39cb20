"""Console-script entry points for the vehicle's commands (roadseg-run,
roadseg-bench, roadseg-serve, roadseg-doctor).

They import the command's module inside a guard, so a broken install is one
clear line and exit 4 instead of a traceback: above all the NumPy mix-up of
Pi and Jetson installs, where a NumPy 2 in the venv shadows the system NumPy
1.x that apt's / JetPack's OpenCV and picamera2 were built against.
"""
from __future__ import annotations

import importlib
import sys

NUMPY_ABI_HINTS = ("numpy.dtype size changed", "compiled using NumPy 1.x", "numpy.core.multiarray failed to import",
                   "_ARRAY_API not found", "numpy.core._multiarray_umath")


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


def _launch(prog: str, module: str, argv: list[str] | None = None, preload: bool = True) -> int:
    try:
        if preload:  # the system libraries first: the commands import them lazily, deep inside main()
            import cv2  # noqa: F401
            import numpy  # noqa: F401
        main = importlib.import_module(module).main
    except (ImportError, AttributeError) as e:
        text = f"{type(e).__name__}: {e}"
        if any(h in text for h in NUMPY_ABI_HINTS):
            print(f"{prog}: error: {numpy_abi_fix()}", file=sys.stderr)
        else:
            print(f"{prog}: error: cannot start: {text}; roadseg-doctor shows which piece is missing", file=sys.stderr)
        return 4
    return main(argv)


def run(argv: list[str] | None = None) -> int:
    return _launch("roadseg-run", "edge_runtime.commands.run", argv)


def bench(argv: list[str] | None = None) -> int:
    return _launch("roadseg-bench", "edge_runtime.commands.bench", argv)


def serve(argv: list[str] | None = None) -> int:
    return _launch("roadseg-serve", "edge_runtime.api.app", argv)


def doctor(argv: list[str] | None = None) -> int:
    return _launch("roadseg-doctor", "edge_runtime.commands.doctor", argv, preload=False)  # it diagnoses them
