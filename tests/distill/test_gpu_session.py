"""Issue 21, item 4: the one prepared command for a few lent GPU minutes
(``scripts/gpu_session.sh``) packs the data, trains the teacher, trains the KD
and labels-only students beside each other and writes the commands that bring
every run back into roadseg. Here on the CPU with JAX (the backend the GPU
machine has), at a tiny size and a few seconds per stage; the import commands
it writes are then run and must give complete runs."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.integration


def test_gpu_session_trains_teacher_and_students_and_writes_working_imports(synth_camvid, tmp_path):
    pytest.importorskip("jax")
    out = tmp_path / "session"
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu", PYTHON=sys.executable, SIZE="64x128",
               TEACHER_ARCH="fpn-efficientnet-lite0", TEACHER_BATCH="2", BATCH="2", SEEDS="0",
               CONFIGS="lite0-kd lite0-nokd", HOLDOUT="synth_00005")
    r = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_session.sh"), str(synth_camvid), str(out), "0.15", "0.15"],
                       capture_output=True, text=True, env=env, timeout=900, cwd=tmp_path)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    teacher = json.loads((out / "teacher" / "train_log.json").read_text())
    assert teacher["backend"] == "jax" and teacher["arch"] == "fpn-efficientnet-lite0"
    kd = json.loads((out / "students" / "lite0-kd-s0" / "train_log.json").read_text())
    nokd = json.loads((out / "students" / "lite0-nokd-s0" / "train_log.json").read_text())
    assert kd["kd"] and kd["kd_stride"] == 4 and not nokd["kd"]
    script = (out / "import.sh").read_text().splitlines()
    cmds = [line.split()[0] for line in script if line.startswith(("roadseg-train", "roadseg-distill"))]
    assert cmds == ["roadseg-train", "roadseg-distill", "roadseg-distill"]
    # the session comes back from the GPU machine to another folder: import.sh still finds its weights,
    # and imports each run (evaluated on the held-out sequence, exported)
    moved = tmp_path / "fetched" / "session"
    moved.parent.mkdir()
    out.rename(moved)
    runs = tmp_path / "runs"
    env = dict(os.environ, KERAS_BACKEND="tensorflow",
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    r = subprocess.run(["bash", str(moved / "import.sh"), str(synth_camvid), str(runs)], capture_output=True, text=True,
                       timeout=900, env=env, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    for name in ("teacher", "lite0-kd-s0", "lite0-nokd-s0"):
        assert (runs / name / "export" / "saved_model.pb").is_file(), name
        assert 0 <= json.loads((runs / name / "metrics.json").read_text())["metrics"]["miou7"] <= 1
