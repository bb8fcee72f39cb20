"""The Pi install on the Pi's own mechanism, here: Debian 12's python3 with
apt's python3-numpy and python3-opencv (as on Raspberry Pi OS Bookworm), a
venv with --system-site-packages made by scripts/install_pi.sh --venv-only,
then cv2 and roadseg-bench must work on the system's NumPy 1.x, and a NumPy 2
forced into the venv must fail with the documented message."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SYSTEM_PY = Path("/usr/bin/python3")
ENV = dict(os.environ, PATH="/usr/bin:/bin:" + os.environ.get("PATH", ""), PIP_DISABLE_PIP_VERSION_CHECK="1")
ENV.pop("VIRTUAL_ENV", None)
ENV.pop("PYTHONPATH", None)


def system_stack_problem() -> str | None:
    """Why this machine cannot run the Debian system-site install (``None`` when it can)."""
    if not SYSTEM_PY.is_file() or not Path("/etc/debian_version").is_file():
        return "not a Debian system"
    r = subprocess.run([str(SYSTEM_PY), "-c", "import numpy, cv2; print(numpy.__version__, numpy.__file__)"],
                       capture_output=True, text=True)
    if r.returncode:
        return "apt's python3-numpy / python3-opencv are not installed (scripts/test.sh installs them)"
    if not r.stdout.startswith("1.") or "/usr/lib/python3/dist-packages" not in r.stdout:
        return f"the system NumPy is not apt's 1.x: {r.stdout.strip()}"
    return None


@pytest.mark.integration
@pytest.mark.skipif(system_stack_problem() is not None, reason=str(system_stack_problem()))
def test_pi_install_keeps_the_system_numpy_and_opencv(tiny_tflite, tmp_path):
    prefix = tmp_path / "opt"
    model = tmp_path / "m" / "student.tflite"
    model.parent.mkdir()
    shutil.copy(tiny_tflite, model)
    shutil.copy(tiny_tflite.with_suffix(".json"), model.with_suffix(".json"))
    r = subprocess.run(["bash", str(ROOT / "scripts" / "install_pi.sh"), "--venv-only", "--prefix", str(prefix),
                        "--platform", "debian-bookworm", "--source", "synthetic", "--model", str(model)],
                       cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    assert "ok   cv2" in r.stdout and "ok   interpreter" in r.stdout  # roadseg-doctor ran as the last step
    py = prefix / "venv" / "bin" / "python"
    where = subprocess.run([str(py), "-c", "import json, numpy, cv2; print(json.dumps([numpy.__version__, "
                            "numpy.__file__, cv2.__file__]))"], capture_output=True, text=True, env=ENV)
    version, np_file, cv_file = json.loads(where.stdout)
    assert version.startswith("1.") and np_file.startswith("/usr/lib/python3/dist-packages"), where.stdout
    assert cv_file.startswith("/usr/lib/python3/dist-packages"), cv_file  # apt's OpenCV, not pip's
    bench = subprocess.run([str(prefix / "venv" / "bin" / "roadseg-bench"), "--model", str(model), "--threads", "1",
                            "--frames", "5", "--warmup", "1", "--rounds", "1", "--frame-size", "120x160", "--json"],
                           capture_output=True, text=True, env=ENV, timeout=300)
    assert bench.returncode == 0, bench.stderr[-3000:]
    assert json.loads(bench.stdout)["results"][0]["e2e_fps"] > 0

    # what the Pi users hit: a NumPy 2 in the venv shadows apt's 1.x
    forced = subprocess.run([str(py), "-m", "pip", "install", "-q", "numpy>=2"], capture_output=True, text=True,
                            env=ENV, timeout=600)
    assert forced.returncode == 0, forced.stderr[-2000:]
    for cmd in (["roadseg-doctor"], ["roadseg-bench", "--model", str(model), "--frames", "2"]):
        bad = subprocess.run([str(prefix / "venv" / "bin" / cmd[0]), *cmd[1:]], capture_output=True, text=True,
                             env=ENV, timeout=300)
        assert bad.returncode == 4, (cmd, bad.stdout, bad.stderr[-2000:])
        assert "is not the NumPy that the system's cv2/picamera2 were built against" in bad.stderr, bad.stderr[-2000:]
        assert "pip uninstall -y numpy" in bad.stderr and "constraints/debian-bookworm.txt" in bad.stderr
        assert "Traceback" not in bad.stderr.split("roadseg-")[-1]  # our line comes last, no traceback after it
