"""The multi-machine path, for real: two local worker processes run the same
roadseg-train / roadseg-distill command under MultiWorkerMirroredStrategy
(TF_CONFIG on loopback ports). They train in step, the chief writes one
complete run directory, the other worker leaves nothing behind."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("tensorflow")

ROOT = Path(__file__).resolve().parents[2]
TINY_SF = {"num_stages": 2, "hidden_dims": [16, 32], "projection": 32}


def _cluster(module: str, args: list[str], tmp_path: Path, timeout: float = 420) -> list[subprocess.CompletedProcess]:
    from edge_runtime.io.broker import free_port
    workers = [f"127.0.0.1:{free_port()}" for _ in range(2)]
    procs = []
    for i in range(2):
        env = dict(os.environ, TF_CONFIG=json.dumps({"cluster": {"worker": workers},
                                                     "task": {"type": "worker", "index": i}}),
                   CUDA_VISIBLE_DEVICES="", TMPDIR=str(tmp_path / f"tmp{i}"))
        (tmp_path / f"tmp{i}").mkdir()
        procs.append(subprocess.Popen([sys.executable, "-m", module, *args], cwd=ROOT, env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    out = []
    try:
        for p in procs:
            so, se = p.communicate(timeout=timeout)
            out.append(subprocess.CompletedProcess(p.args, p.returncode, so, se))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    return out


def _check_run(run: Path, tmp_path: Path, results) -> None:
    for r in results:
        assert r.returncode == 0, r.stderr[-3000:]
    for f in ("config.json", "history.csv", "curves.png", "metrics.json", "best.weights.h5",
              "checkpoints/last.npz", "export/saved_model.pb", "export/roadseg.json"):
        assert (run / f).exists(), f
    history = (run / "history.csv").read_text().strip().splitlines()
    assert len(history) == 1 + 2, history  # header + 2 epochs, written once (by the chief)
    for r in results:  # both processes trained as one two-replica job
        assert "2 replica(s)" in r.stderr, r.stderr[-2000:]
    # the worker wrote its copies to scratch and removed them
    assert not any((tmp_path / "tmp1").iterdir()), list((tmp_path / "tmp1").iterdir())
    m = json.loads((run / "metrics.json").read_text())
    assert 0 <= m["metrics"]["miou8"] <= 1


@pytest.mark.slow
def test_train_two_workers_one_run_directory(synth_cityscapes, tmp_path):
    run = tmp_path / "runs" / "sf"
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"model_kwargs": TINY_SF}))
    res = _cluster("trainer.commands.train", ["--arch", "segformer-b0", "--data", str(synth_cityscapes), "--out", str(run),
                                     "--size", "64x128", "--epochs", "2", "--steps-per-epoch", "2", "--batch", "2",
                                     "--config", str(cfg)], tmp_path)
    _check_run(run, tmp_path, res)
    assert json.loads((run / "config.json").read_text())["arch"] == "segformer-b0"


@pytest.mark.slow  # two TensorFlow workers in subprocesses: ~20 s (CI runs -m slow)
def test_distill_two_workers_one_run_directory(synth_cityscapes, tmp_path):
    run = tmp_path / "runs" / "st"
    res = _cluster("distill.commands.distill", ["--student", "roadseg-fast", "--no-kd", "--width", "0.25",
                                       "--data", str(synth_cityscapes), "--out", str(run), "--size", "64x128",
                                       "--epochs", "2", "--steps-per-epoch", "2", "--batch", "2"], tmp_path)
    _check_run(run, tmp_path, res)
    assert json.loads((run / "export" / "roadseg.json").read_text())["output_stride"] == 8
