"""Shared fixtures: synthetic datasets on disk, tiny sizes."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@pytest.fixture(scope="session")
def synth_cityscapes(tmp_path_factory) -> Path:
    from edge_runtime.synthetic import write_dataset
    return write_dataset(tmp_path_factory.mktemp("cs"), "cityscapes", {"train": 6, "val": 3}, 64, 128, seed=1)


@pytest.fixture(scope="session")
def synth_camvid(tmp_path_factory) -> Path:
    from edge_runtime.synthetic import write_dataset
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
def tiny_tflite(tiny_student_run, synth_cityscapes, tmp_path_factory):
    """An int8 .tflite + sidecar of the tiny student, written by the real calibration."""
    from calibration.calibrate import calibrate
    out = tmp_path_factory.mktemp("dist") / "tiny.tflite"
    calibrate(str(tiny_student_run), str(synth_cityscapes), str(out), samples=4, max_drop=100.0, min_agreement=0.0)
    return out


# --- MQTT broker: real mosquitto on a free loopback port ---------------------------

class Broker:
    """A broker the tests can stop and restart on the same port: mosquitto
    (edge_runtime.io.broker), or the embedded amqtt where mosquitto is missing."""

    def __init__(self, workdir, persistence: bool = True):
        from edge_runtime.io.broker import mosquitto_path
        from edge_runtime.io.publisher import free_port
        self.persistence = persistence
        self.kind = "mosquitto" if mosquitto_path() else "amqtt"
        self.port = free_port()
        self.workdir = Path(workdir)
        self.process = None
        self.embedded = None

    @property
    def mqtt5(self) -> bool:
        return self.kind == "mosquitto"

    def start(self):
        if self.kind == "amqtt":
            from edge_runtime.io.publisher import EmbeddedBroker
            self.embedded = EmbeddedBroker("127.0.0.1", self.port).start()
            return self
        from edge_runtime.io.broker import MosquittoProcess
        self.process = MosquittoProcess(self.workdir, self.port, self.persistence).start()
        return self

    def stop(self):
        if self.embedded is not None:
            self.embedded.stop()
            self.embedded = None
        if self.process is not None:
            self.process.stop()
            self.process = None


@pytest.fixture
def broker(tmp_path):
    b = Broker(tmp_path).start()
    yield b
    b.stop()


class Subscriber:
    """A real MQTT client collecting messages (persistent session, QoS 1)."""

    def __init__(self, port, topic="roadseg/#", client_id="test-sub"):
        import threading
        import paho.mqtt.client as mqtt
        self.messages = []
        self.lock = threading.Lock()
        self.topic = topic
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False,
                             protocol=mqtt.MQTTv311)
        self.c.on_connect = lambda c, u, f, rc, p=None: c.subscribe(topic, qos=1)
        self.c.on_message = self._on_message
        self.c.reconnect_delay_set(0.2, 1)
        self.c.connect("127.0.0.1", port, keepalive=5)
        self.c.loop_start()

    def _on_message(self, c, u, msg):
        import json
        with self.lock:
            self.messages.append((msg.topic, json.loads(msg.payload) if msg.payload else None, msg.retain))

    def of(self, suffix):
        with self.lock:
            return [m for m in self.messages if m[0].endswith(suffix)]

    def wait_for(self, pred, timeout=20.0):
        import time
        deadline = time.time() + timeout
        while time.time() < deadline:
            with self.lock:
                if any(pred(m) for m in self.messages):
                    return True
            time.sleep(0.05)
        return False

    def close(self):
        self.c.loop_stop()
        self.c.disconnect()
