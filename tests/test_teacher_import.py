"""Weights trained by scripts/teacher_keras_backend.py (the TensorFlow-free
trainer for GPU machines with JAX or PyTorch) come back through
``roadseg-train --init-weights ... --epochs 0`` as a complete run: the same
model, the same held-out score, exported like any other teacher."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "teacher_keras_backend.py"


def test_weights_from_the_backend_free_trainer_import_as_a_run(synth_camvid, tmp_path, capsys):
    from trainer.train import main
    env = dict(os.environ, KERAS_BACKEND="tensorflow")  # the backend CI has; the GPU run used jax
    packed, out = tmp_path / "packed", tmp_path / "teacher"
    r = subprocess.run([sys.executable, str(SCRIPT), "pack", str(synth_camvid), str(packed)],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert len(list(packed.glob("*.jpg"))) == 9 and len(list(packed.glob("*.png"))) == 9  # train and val apart
    r = subprocess.run([sys.executable, str(SCRIPT), "train", str(packed), str(out), "--arch", "fpn-efficientnet-lite0",
                        "--encoder-weights", "none", "--size", "64x128", "--holdout", "synth_00005", "--epochs", "2",
                        "--batch", "2", "--workers", "1", "--eval-every", "1"],
                       capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    log = json.loads((out / "train_log.json").read_text())
    assert log["backend"] == "tensorflow" and len(log["epochs"]) == 2
    parts = [str(out / f) for f in log["weight_files"]]
    assert all(Path(p).is_file() for p in parts) and not list(out.glob(".weights-*"))  # renamed when complete

    run = tmp_path / "run"
    split = ["--train-split", "except:synth_00005", "--val-split", "holdout:synth_00005"]
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
