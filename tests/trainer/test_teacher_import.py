"""Weights trained by the any-backend trainer (``python -m
distill.commands.keras_backend``, TensorFlow-free, for GPU machines with JAX
or PyTorch) come back through
``roadseg-train --init-weights ... --epochs 0`` as a complete run: the same
model, the same held-out score, exported like any other teacher."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
BACKEND = ["-m", "distill.commands.keras_backend"]


ENV = dict(os.environ, KERAS_BACKEND="tensorflow")
JAX_ENV = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu")  # the backend the GPU runs use
SPLIT = ["--train-split", "except:synth_00005", "--val-split", "holdout:synth_00005"]


@pytest.fixture(scope="module")
def packed_teacher(synth_camvid, tmp_path_factory):
    """The dataset packed and a tiny FPN-EfficientNet-Lite0 teacher trained by the script."""
    tmp_path = tmp_path_factory.mktemp("backend")
    env = ENV
    packed, out = tmp_path / "packed", tmp_path / "teacher"
    r = subprocess.run([sys.executable, *BACKEND, "pack", str(synth_camvid), str(packed)],
                       capture_output=True, text=True, env=env, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    assert len(list(packed.glob("*.jpg"))) == 9 and len(list(packed.glob("*.png"))) == 9  # train and val apart
    r = subprocess.run([sys.executable, *BACKEND, "train", str(packed), str(out), "--arch", "fpn-efficientnet-lite0",
                        "--encoder-weights", "none", "--size", "64x128", "--holdout", "synth_00005", "--epochs", "1",
                        "--batch", "2", "--workers", "1", "--eval-every", "1"],
                       capture_output=True, text=True, env=env, timeout=600, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    log = json.loads((out / "train_log.json").read_text())
    assert log["backend"] == "tensorflow" and len(log["epochs"]) == 1
    parts = [str(out / f) for f in log["weight_files"]]
    assert all(Path(p).is_file() for p in parts) and not list(out.glob(".weights-*"))  # renamed when complete
    return packed, log, parts


def test_weights_from_the_backend_free_trainer_import_as_a_run(packed_teacher, synth_camvid, tmp_path, capsys):
    from trainer.commands.train import main
    _, log, parts = packed_teacher
    run = tmp_path / "run"
    split = SPLIT
    rc = main(["--arch", "fpn-efficientnet-lite0", "--data", str(synth_camvid), "--size", "64x128", "--epochs", "0",
               "--out", str(run), *split, *sum((["--init-weights", p] for p in parts), [])])
    assert rc == 0
    report = json.loads((run / "metrics.json").read_text())
    assert abs(report["metrics"]["miou7"] - log["epochs"][-1]["holdout_miou7"]) < 0.01  # the same model
    assert (run / "export" / "saved_model.pb").is_file()

    # the wrong architecture is refused, naming the mismatch, and leaves no run behind
    bad = tmp_path / "bad"
    rc = main(["--arch", "fpn-efficientnet-lite2", "--data", str(synth_camvid), "--size", "64x128", "--epochs", "0",
               "--out", str(bad), *split, *sum((["--init-weights", p] for p in parts), [])])
    assert rc == 2
    assert "another architecture" in capsys.readouterr().err
    assert not (bad / "export").exists()


@pytest.mark.slow  # a JAX training in a subprocess: ~35 s (CI runs -m slow)
def test_student_distilled_by_the_backend_free_trainer_imports_as_a_student_run(packed_teacher, synth_camvid,
                                                                                 tmp_path):
    """A roadseg-fast student trained on JAX (the GPU machines' backend) with
    KD from that teacher (trained on TensorFlow; frozen, run on the student's
    own batches; the KD loss is distill.losses.pixel_kd), saved with float16
    kernels, comes back through ``roadseg-distill --init-weights ... --epochs 0``."""
    pytest.importorskip("jax")
    from distill.commands.distill import main
    packed, teacher_log, teacher_parts = packed_teacher
    out = tmp_path / "student"
    r = subprocess.run([sys.executable, *BACKEND, "train", str(packed), str(out), "--arch", "roadseg-fast",
                        "--width", "0.5", "--encoder-weights", "none", "--size", "64x128", "--holdout", "synth_00005",
                        "--epochs", "2", "--batch", "2", "--workers", "1", "--eval-every", "1", "--float16-kernels",
                        "--teacher-arch", "fpn-efficientnet-lite0", "--temperature", "2", "--alpha", "0.5",
                        *sum((["--teacher-weights", p] for p in teacher_parts), [])],
                       capture_output=True, text=True, env=JAX_ENV, timeout=600, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    log = json.loads((out / "train_log.json").read_text())
    assert log["backend"] == "jax" and log["kd"] and log["output_stride"] == 8 and len(log["epochs"]) == 2
    assert log["kd_stride"] == 4  # the KD term at the upsampled output (--kd-stride, default 4)
    assert all(np.isfinite(e["kd"]) and e["kd"] >= 0 and np.isfinite(e["ce"]) for e in log["epochs"])
    parts = [str(out / f) for f in log["weight_files"]]
    with np.load(parts[0]) as z:  # kernels in float16, BatchNormalization statistics in float32
        dtypes = {z[k].ndim >= 2: z[k].dtype for k in z.files}
    assert dtypes == {True: np.float16, False: np.float32}

    run = tmp_path / "run"
    rc = main(["--student", "roadseg-fast", "--width", "0.5", "--no-kd", "--data", str(synth_camvid), "--size",
               "64x128", "--epochs", "0", "--out", str(run), *SPLIT, *sum((["--init-weights", p] for p in parts), [])])
    assert rc == 0
    report = json.loads((run / "metrics.json").read_text())
    assert abs(report["metrics"]["miou7"] - log["epochs"][-1]["holdout_miou7"]) < 0.01  # the same model
    assert json.loads((run / "export" / "roadseg.json").read_text())["output_stride"] == 8
