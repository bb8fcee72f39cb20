"""Shared fixtures: synthetic datasets on disk, the checked-in tiny model, a real broker; tiny sizes."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@pytest.fixture(scope="session")
def synth_cityscapes(tmp_path_factory) -> Path:
    from edge_runtime.eval.synthetic import write_dataset
    return write_dataset(tmp_path_factory.mktemp("cs"), "cityscapes", {"train": 6, "val": 3}, 64, 128, seed=1)


@pytest.fixture(scope="session")
def synth_camvid(tmp_path_factory) -> Path:
    from edge_runtime.eval.synthetic import write_dataset
    return write_dataset(tmp_path_factory.mktemp("cv"), "camvid", {"train": 6, "val": 3}, 64, 128, seed=1)


@pytest.fixture(scope="session")
def tiny_student_run(synth_cityscapes, tmp_path_factory):
    """A roadseg-fast student trained briefly on labels (enough to predict
    more than one class), shared by the distillation, calibration and runtime
    tests."""
    import trainer  # noqa: F401
    from distill.distill import DistillConfig, distill
    out = tmp_path_factory.mktemp("runs") / "tiny-student"
    distill(DistillConfig(student="roadseg-fast", data=str(synth_cityscapes), out=str(out), size=(64, 128),
                          epochs=4, steps_per_epoch=6, batch=2, no_kd=True, width=0.5, lr=3e-3))
    return out


@pytest.fixture(scope="session")
def tiny_tflite(tmp_path_factory) -> Path:
    """The checked-in int8 .tflite + sidecar (``tests/data/make_tiny_model.py``
    regenerates them), copied so a test may write beside it. No TensorFlow."""
    import shutil
    out = tmp_path_factory.mktemp("dist") / "tiny.tflite"
    shutil.copyfile(DATA / "tiny-int8.tflite", out)
    shutil.copyfile(DATA / "tiny-int8.json", out.with_suffix(".json"))
    return out


@pytest.fixture
def broker(tmp_path):
    """A real mosquitto (or amqtt) on a free loopback port, stopped after the test."""
    from tests.support import Broker
    b = Broker(tmp_path).start()
    yield b
    b.stop()


@pytest.fixture(autouse=True)
def _own_state_dir(tmp_path_factory, monkeypatch):
    """Each test its own roadseg state directory (offline MQTT queue, installation id), also for the
    commands it starts: a queue left by one test must never be replayed into another's broker."""
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path_factory.mktemp("state")))
