"""roadseg-doctor: check that the runtime's imports work together here.

    roadseg-doctor [--camera picamera2|csi|none] [--model dist/X.tflite] [--json]

On a Raspberry Pi or a Jetson the runtime lives in a venv that sees the
system site packages: NumPy, OpenCV and picamera2 come from apt (or
JetPack), built against the system's NumPy 1.x. A NumPy 2 that pip puts into
the venv shadows it, and apt's cv2 / picamera2 then fail to import
("numpy.dtype size changed", "compiled using NumPy 1.x"). This command
imports each piece in its own process (a crash in one cannot hide the
others), names what failed and prints the fix. ``scripts/install_pi.sh``
runs it after installing and refuses to enable the service when it fails.

Checks: numpy (version and where it comes from), cv2, GStreamer in cv2
(``--camera csi``: a Jetson CSI camera needs it), picamera2 (``--camera
picamera2``), the TFLite
interpreter (ai-edge-litert or tflite-runtime), onnxruntime when present,
and ``--model`` loading when given.
"""
from __future__ import annotations

import json
import subprocess
import sys

from edge_runtime.commands import cli
from edge_runtime.commands.launch import NUMPY_ABI_HINTS, numpy_abi_fix

PROBES = {
    "numpy": "import numpy, json; print(json.dumps({'version': numpy.__version__, 'path': numpy.__file__}))",
    "cv2": ("import cv2, json; from edge_runtime.io.sources import opencv_has_gstreamer; "
            "print(json.dumps({'version': cv2.__version__, 'path': cv2.__file__, "
            "'gstreamer': opencv_has_gstreamer()}))"),
    "picamera2": "import picamera2, json; print(json.dumps({'path': picamera2.__file__}))",
    "interpreter": ("import json; from edge_runtime.model.interpreter import interpreter_api; "
                    "_, _, b, v = interpreter_api(); print(json.dumps({'version': f'{b} {v}'}))"),
    "onnxruntime": ("import json, onnxruntime as o; "
                    "print(json.dumps({'version': o.__version__, 'providers': o.get_available_providers()}))"),
}


def probe(name: str, code: str, timeout: float = 120) -> dict:
    """Run ``code`` in a fresh interpreter: ``{"ok": bool, ...details or error}``."""
    try:
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"ok": False, "error": f"importing {name} did not finish in {timeout:.0f} s"}
    if r.returncode == 0:
        try:
            return {"ok": True, **json.loads(r.stdout.strip().splitlines()[-1])}
        except (ValueError, IndexError):
            return {"ok": True}
    err = (r.stderr or r.stdout).strip().splitlines()
    last = next((ln for ln in reversed(err) if ln.strip()), f"exit status {r.returncode}")
    return {"ok": False, "error": last[-400:], "numpy_abi": any(h in (r.stderr or "") for h in NUMPY_ABI_HINTS)}


def shipped_probe(folder: str | None = None) -> str:
    """Probe code that reads the shipped model's sidecar and checks the .tflite's sha256 against it
    (``folder``: another copy of ``edge_runtime/models``, for tests)."""
    where = "from edge_runtime.models import default_model; m = default_model()" if folder is None else \
        f"from pathlib import Path; m = Path({folder!r}) / 'roadseg-default.tflite'"
    return ("import json; from edge_runtime.contract.sidecar import read_sidecar; " + where + "; "
            "s = read_sidecar(m); assert s is not None, f'{m.name} has no sidecar'; "
            "print(json.dumps({'version': s['name'] + ' sha256 ' + s['sha256'][:12] + ' ok', 'path': str(m)}))")


def diagnose(camera: str = "none", model: str | None = None, shipped: str | None = None) -> dict:
    """Probe numpy, cv2, the interpreter, the shipped model's sha256 against
    its sidecar (in ``shipped``, default the package's), and picamera2 for ``camera``
    "picamera2", onnxruntime when installed, ``model`` when given, each in
    its own process. Returns ``{"python", "executable", "venv", "numpy_major",
    "checks": {name: probe result}, "problems": [one line with its fix, ...],
    "ok"}``; raises nothing (a failing probe is a problem, not an exception)."""
    checks = {n: probe(n, PROBES[n]) for n in ("numpy", "cv2", "interpreter")}
    checks["shipped"] = probe("shipped", shipped_probe(shipped))
    if camera == "picamera2":
        checks["picamera2"] = probe("picamera2", PROBES["picamera2"])
    ort = probe("onnxruntime", PROBES["onnxruntime"])
    if ort["ok"] or "No module named" not in ort.get("error", ""):
        checks["onnxruntime"] = ort  # optional: reported when installed (or broken)
    if camera == "csi":  # a row of its own: FAIL when this cv2 cannot open a CSI pipeline
        checks["gstreamer"] = _gstreamer_row(checks["cv2"])
    if model:
        checks["model"] = probe("model", "import json; from edge_runtime.model.segmenter import DeviceSegmenter; "
                                         f"d = DeviceSegmenter({model!r}, threads=1).describe(); "
                                         "print(json.dumps({'version': d['interpreter'], 'input': d['input_size']}))")
    problems = []
    np_info = checks["numpy"]
    in_venv = sys.prefix != sys.base_prefix
    np_major = int(np_info.get("version", "0").split(".")[0]) if np_info["ok"] else 0
    if any(c.get("numpy_abi") for c in checks.values()):
        problems.append(numpy_abi_fix())
    for name, c in checks.items():
        if not c["ok"] and not c.get("numpy_abi") and not c.get("follows"):
            hint = {"cv2": "apt install python3-opencv (Pi) or use JetPack's OpenCV (Jetson), in a venv made with "
                           "--system-site-packages; pip's opencv-python-headless elsewhere",
                    "picamera2": "apt install python3-picamera2, and make the venv with --system-site-packages",
                    "interpreter": "pip install ai-edge-litert (tflite-runtime where it has no wheel)",
                    "numpy": "apt install python3-numpy, or pip install numpy off the Pi/Jetson",
                    "onnxruntime": "pip install onnxruntime (onnxruntime-gpu from NVIDIA's Jetson index on a Jetson)",
                    "model": "check the file with roadseg-bench --model",
                    "shipped": "reinstall roadseg (pip install --force-reinstall '.[runtime]'): the shipped model "
                               "is missing or does not match its sidecar",
                    "gstreamer": "pip uninstall -y opencv-python-headless opencv-python in the venv, so JetPack's "
                                 "OpenCV (built with GStreamer) is the one imported"}.get(name, "")
            problems.append(f"{name}: {c['error']}" + (f". Fix: {hint}" if hint else ""))
    return {"python": sys.version.split()[0], "executable": sys.executable, "venv": in_venv,
            "numpy_major": np_major, "checks": checks, "problems": problems, "ok": not problems}


def _gstreamer_row(cv: dict) -> dict:
    """The ``gstreamer`` check (``--camera csi``) from the cv2 probe's result."""
    if not cv["ok"]:
        return {"ok": False, "error": "cv2 does not import (above), so a Jetson CSI camera (csi:0) cannot open",
                "follows": "cv2"}  # the cv2 row's problem says it, with its fix
    if cv.get("gstreamer"):
        return {"ok": True, "version": "cv2 built with GStreamer"}
    return {"ok": False, "error": f"cv2 {cv.get('version')} ({cv.get('path')}) has no GStreamer, so a Jetson CSI "
                                  "camera (csi:0) cannot open: pip's opencv-python-headless shadows JetPack's"}


def build_parser():
    """roadseg-doctor's parser."""
    p = cli.parser("roadseg-doctor", __doc__)
    p.add_argument("--camera", choices=["picamera2", "csi", "none"], default="none",
                   help="also check the camera stack this device uses")
    p.add_argument("--model", help="also load this .tflite or .onnx")
    p.add_argument("--trust-root", help="also show this TUF trust root (model updates: roadseg-run --trust-root)")
    p.add_argument("--state-dir", help="also show the running release and the A/B model slots kept here")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    return p


def main(argv: list[str] | None = None) -> int:
    """roadseg-doctor's entry point: 0 when everything imports together, 4 with
    one line per problem (and its fix) on stderr otherwise."""
    args = build_parser().parse_args(argv)

    def body() -> int:
        rep = diagnose(args.camera, args.model)
        if args.trust_root or args.state_dir:  # model updates (issue 29)
            from edge_runtime.update.compose import doctor_report
            rep["updates"] = doctor_report(args.trust_root, args.state_dir)
            if rep["updates"].get("trust_root", {}).get("error"):
                rep["problems"].append(f"trust root: {rep['updates']['trust_root']['error']}")
                rep["ok"] = False
        if args.json:
            print(json.dumps(rep))
        else:
            for name, c in rep["checks"].items():
                detail = c.get("version", "") + (f" ({c['path']})" if c.get("path") else "")
                print(f"{'ok  ' if c['ok'] else 'FAIL'} {name:12s} {detail if c['ok'] else c['error']}")
            for key, value in rep.get("updates", {}).items():
                print(f"     {key:12s} {json.dumps(value, sort_keys=True)}")
        for prob in rep["problems"]:
            print(f"roadseg-doctor: {prob}", file=sys.stderr)
        if not rep["ok"]:
            raise cli.RuntimeFailure(f"{len(rep['problems'])} problem(s); the runtime will not start here as it is")
        return 0

    return cli.run("roadseg-doctor", body)


if __name__ == "__main__":
    sys.exit(main())
