"""Snapshots over MQTT: what a vehicle sees, through the broker alone."""
from __future__ import annotations

import shutil
import subprocess
import sys
import threading
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


def _request(port: int, device: str, n: int = 1) -> None:
    import paho.mqtt.client as mqtt
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    c.connect("127.0.0.1", port)
    c.loop_start()
    for _ in range(n):
        c.publish(f"roadseg/{device}/snapshot/request", b"", qos=1).wait_for_publish(5)
    c.loop_stop()
    c.disconnect()


def _vehicle(tiny_tflite, broker, device: str, **kw):
    from edge_runtime.commands.run import Vehicle
    from edge_runtime.commands.settings import load_settings
    s = load_settings({"model": str(tiny_tflite), "source": "synthetic:64x128@30", "fps": 20, "device_id": device,
                       "mqtt_host": "127.0.0.1", "mqtt_port": broker.port, "mqtt_protocol": "3.1.1",
                       "publish_interval": 0.2, "duration": 30.0, **kw}, None, env={})
    vehicle = Vehicle(s)
    thread = threading.Thread(target=vehicle.run)
    thread.start()
    assert vehicle.ready.wait(30)
    return vehicle, thread


def test_snapshot_on_request_only_by_default(tiny_tflite, broker):
    from tests.support import Subscriber
    sub = Subscriber(broker.port, "roadseg/snap2/#", client_id="snap2-sub")
    vehicle, thread = _vehicle(tiny_tflite, broker, "snap2")
    try:
        assert sub.wait_for(lambda m: m[0].endswith("/status") and m[1]["state"] == "online")  # it listens
        assert sub.wait_for_count(lambda m: m[0].endswith("/coverage"), 10)  # 2 s of frames, and no snapshot
        assert sub.of("/snapshot") == [] and vehicle.snapshots.sent == 0  # off by default: metered links
        _request(broker.port, "snap2")
        assert sub.wait_for(lambda m: m[0].endswith("/snapshot"), timeout=10)
        assert sub.of("/snapshot")[0][1][:2] == b"\xff\xd8" and vehicle.snapshots.sent == 1
    finally:
        vehicle.request_stop()
        thread.join(timeout=30)
        sub.close()


def test_snapshot_requests_are_counted_not_served_within_the_minimum_interval(tiny_tflite, broker):
    """50 requests in a burst: one snapshot (--snapshot-min-interval, default 10 s), 49 counted."""
    from tests.support import Subscriber
    sub = Subscriber(broker.port, "roadseg/snap3/#", client_id="snap3-sub")
    vehicle, thread = _vehicle(tiny_tflite, broker, "snap3")
    try:
        pub = vehicle.publisher
        assert sub.wait_for(lambda m: m[0].endswith("/status") and m[1]["state"] == "online")  # it listens
        _request(broker.port, "snap3", 50)
        assert pub.wait_until(lambda c: c["requests"] + c["requests_limited"] == 50, timeout=10)
        assert sub.wait_for(lambda m: m[0].endswith("/snapshot"), timeout=10)
        seq = vehicle.runner.seq
        assert sub.wait_for(lambda m: m[0].endswith("/coverage") and m[1]["seq"] >= seq + 5, timeout=10)
        assert len(sub.of("/snapshot")) == 1 and vehicle.snapshots.sent == 1
        mqtt_stats = vehicle.runner.stats_payload()["mqtt"]
        assert (mqtt_stats["requests"], mqtt_stats["requests_limited"]) == (1, 49)
    finally:
        vehicle.request_stop()
        thread.join(timeout=30)
        sub.close()


def test_snapshot_fits_its_byte_limit():
    from edge_runtime.io.overlay import snapshot_jpeg
    rng = np.random.default_rng(0)
    noisy = rng.integers(0, 256, (720, 1280, 3), dtype=np.uint8)  # the worst case for JPEG
    classes = rng.integers(0, 8, (90, 160), dtype=np.uint8)
    jpg = snapshot_jpeg(noisy, classes, 12.0, max_width=480, max_bytes=20_000)
    img = cv2.imdecode(np.frombuffer(jpg, np.uint8), cv2.IMREAD_COLOR)
    assert len(jpg) <= 20_000 and img.shape[1] <= 480
