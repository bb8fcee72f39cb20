"""Snapshots over MQTT: what a vehicle sees, through the broker alone."""
from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
MOSQUITTO_SUB = shutil.which("mosquitto_sub")


@pytest.mark.skipif(MOSQUITTO_SUB is None or shutil.which("mosquitto") is None,
                    reason="needs mosquitto and mosquitto-clients (scripts/test.sh installs them)")
def test_mosquitto_sub_receives_a_jpeg_snapshot(tiny_tflite, broker):
    run = subprocess.Popen([sys.executable, "-m", "edge_runtime.commands.run", "--model", str(tiny_tflite), "--source",
                            "synthetic:240x320@20", "--fps", "10", "--device-id", "snap1", "--mqtt-host", "127.0.0.1",
                            "--mqtt-port", str(broker.port), "--snapshot-interval", "1", "--duration", "20"],
                           cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        sub = subprocess.run([MOSQUITTO_SUB, "-p", str(broker.port), "-t", "roadseg/+/snapshot", "-C", "1",
                              "-W", "30"], capture_output=True, timeout=40)
        jpg = sub.stdout.rstrip(b"\n")  # mosquitto_sub ends each payload with a newline
        assert jpg[:2] == b"\xff\xd8", sub.stdout[:40]
        assert len(jpg) <= 48 * 1024
        img = cv2.imdecode(np.frombuffer(jpg, np.uint8), cv2.IMREAD_COLOR)
        assert img is not None and img.shape[1] <= 480 and img.shape[0] > 100
    finally:
        run.terminate()
        run.wait(timeout=30)


def test_snapshot_on_request_only_by_default(tiny_tflite, broker):
    import paho.mqtt.client as mqtt

    from edge_runtime.commands.settings import load_settings

    from edge_runtime.commands.run import Vehicle
    got = []
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    c.on_message = lambda c_, u, m: got.append(m.payload)
    c.connect("127.0.0.1", broker.port)
    c.subscribe("roadseg/snap2/snapshot", qos=1)
    c.loop_start()
    s = load_settings({"model": str(tiny_tflite), "source": "synthetic:64x128@30", "fps": 20, "device_id": "snap2",
                       "mqtt_host": "127.0.0.1", "mqtt_port": broker.port, "mqtt_protocol": "3.1.1",
                       "duration": 8.0}, None, env={})
    vehicle = Vehicle(s)
    t = threading.Thread(target=vehicle.run)
    t.start()
    try:
        assert vehicle.ready.wait(30)
        deadline = time.time() + 20
        while not vehicle.publisher.connected and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(2.0)
        assert got == [] and vehicle.snapshots.sent == 0  # off by default: metered links
        c.publish("roadseg/snap2/snapshot/request", b"", qos=1)
        deadline = time.time() + 10
        while not got and time.time() < deadline:
            time.sleep(0.05)
        assert got and got[0][:2] == b"\xff\xd8" and vehicle.snapshots.sent == 1
    finally:
        vehicle.request_stop()
        t.join(timeout=30)
        c.loop_stop()
        c.disconnect()


def test_snapshot_fits_its_byte_limit():
    from edge_runtime.io.overlay import snapshot_jpeg
    rng = np.random.default_rng(0)
    noisy = rng.integers(0, 256, (720, 1280, 3), dtype=np.uint8)  # the worst case for JPEG
    classes = rng.integers(0, 8, (90, 160), dtype=np.uint8)
    jpg = snapshot_jpeg(noisy, classes, 12.0, max_width=480, max_bytes=20_000)
    img = cv2.imdecode(np.frombuffer(jpg, np.uint8), cv2.IMREAD_COLOR)
    assert len(jpg) <= 20_000 and img.shape[1] <= 480
