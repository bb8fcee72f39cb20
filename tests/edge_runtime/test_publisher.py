"""The MQTT publisher: queueing, drops, reconnection, an unreachable broker."""
from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from tests.support import Subscriber

from edge_runtime.commands.settings import load_settings

from edge_runtime.commands.run import Vehicle


def test_drops_are_logged_and_queued_is_the_queue_length(caplog):
    from edge_runtime.io.publisher import MqttPublisher, MqttSettings, free_port
    pub = MqttPublisher(MqttSettings(port=free_port(), max_queued=3, device_id="q"))
    pub.start()
    try:
        with caplog.at_level("WARNING", logger="roadseg.mqtt"):
            for i in range(6):
                pub.publish("coverage", {"seq": i})
        assert pub.counts["queued"] == 3 and pub.counts["queued_total"] == 6 and pub.counts["dropped"] == 3
        assert any("dropped" in r.message and "--max-queued" in r.message for r in caplog.records)
        assert sum("dropped" in r.message for r in caplog.records) == 1  # rate-limited
    finally:
        pub.stop(timeout=0.1)
    with pytest.raises(ValueError, match="max_queued"):
        MqttPublisher(MqttSettings(max_queued=0))

def _settings(model, broker, **kw):
    base = {"model": str(model), "source": "synthetic:64x128@30", "fps": 20, "device_id": "t1",
            "mqtt_host": "127.0.0.1", "mqtt_port": broker.port,
            "mqtt_protocol": "5" if broker.mqtt5 else "3.1.1", "publish_interval": 0.2}
    return load_settings(base | kw, None, env={})

def test_summaries_resume_within_5s_of_the_broker(tiny_tflite, broker):
    vehicle = Vehicle(_settings(tiny_tflite, broker, duration=30.0, device_id="rc1"))
    t = threading.Thread(target=vehicle.run)
    t.start()
    sub = Subscriber(broker.port, "roadseg/rc1/coverage", client_id="rc-sub")
    try:
        assert vehicle.ready.wait(30)
        runner = vehicle.runner
        assert sub.wait_for(lambda m: True, timeout=20)
        broker.stop()
        time.sleep(6)  # long enough for the reconnect back-off to grow
        broker.start()
        back = time.monotonic()
        seq = runner.seq
        while not any(m[1]["seq"] > seq for m in sub.of("/coverage")) and time.monotonic() - back < 15:
            time.sleep(0.05)
        assert time.monotonic() - back < 5, "summaries resumed too late"
    finally:
        vehicle.request_stop()
        t.join(timeout=30)
        sub.close()

def test_broker_outage_loses_nothing_within_queue(tiny_tflite, broker):
    sub = Subscriber(broker.port, "roadseg/car4/coverage", client_id="outage-sub")
    settings = load_settings({"model": str(tiny_tflite), "source": "synthetic:64x128@30", "fps": 20,
                              "device_id": "car4", "mqtt_host": "127.0.0.1", "mqtt_port": broker.port,
                              "mqtt_protocol": "5" if broker.mqtt5 else "3.1.1", "publish_interval": 0.2,
                              "duration": 9.0, "max_queued": 500}, None, env={})
    vehicle = Vehicle(settings)
    t = threading.Thread(target=vehicle.run)
    t.start()
    try:
        assert vehicle.ready.wait(30)
        runner = vehicle.runner
        assert sub.wait_for(lambda m: True, timeout=30)
        time.sleep(1.0)
        broker.stop()
        time.sleep(3.0)  # summaries pile up in the runtime's queue
        broker.start()
        t.join(timeout=60)
        assert not t.is_alive()
        time.sleep(2.0)
        seqs = sorted(m[1]["seq"] for m in sub.of("/coverage"))
        assert runner.publisher.counts["dropped"] == 0
        assert seqs[-1] == runner.seq  # the last summary arrived
        assert seqs == list(range(seqs[0], seqs[-1] + 1)), f"gaps in {seqs}"
        assert len(seqs) >= runner.seq - 1  # at most the first one, sent before the subscriber's session
    finally:
        vehicle.request_stop()
        t.join(timeout=30)
        sub.close()

def test_bounded_queue_drops_oldest_and_counts():
    from edge_runtime.io.publisher import MqttPublisher, MqttSettings, free_port
    pub = MqttPublisher(MqttSettings(port=free_port(), max_queued=3, device_id="q"))
    pub.start()
    try:
        for i in range(5):
            pub.publish("coverage", {"seq": i})
        assert pub.counts["dropped"] == 2
        assert [json.loads(b)["seq"] for _, b, _ in pub._queue] == [2, 3, 4]
    finally:
        pub.stop(timeout=0.1)

ROOT = Path(__file__).resolve().parents[2]

def _run_cli(*args, timeout=60):
    return subprocess.run([sys.executable, "-m", "edge_runtime.commands.run", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)

def test_unreachable_broker_keeps_running_and_says_so(tiny_tflite):
    from edge_runtime.io.publisher import free_port
    port = free_port()
    r = _run_cli("--model", str(tiny_tflite), "--source", "synthetic:64x128@30", "--fps", "10",
                 "--mqtt-host", "127.0.0.1", "--mqtt-port", str(port), "--duration", "3",
                 "--device-id", "car6")
    assert r.returncode == 0, r.stderr
    assert "unreachable" in r.stderr and "retrying" in r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["frames"] > 0 and out["mqtt"]["queued"] > 0 and out["mqtt"]["sent"] == 0
