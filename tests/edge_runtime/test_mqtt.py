"""The vehicle's MQTT side (edge_runtime/io/mqtt.py) against a real mosquitto: queueing and
reconnection, refusals handled once, connection failures named, one client id per installation,
a session takeover backed off, the queue kept over a restart, snapshot requests rate-limited."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from tests.support import Broker, Subscriber

from edge_runtime.commands.run import Vehicle
from edge_runtime.commands.settings import load_settings
from edge_runtime.io.broker import free_port
from edge_runtime.io.mqtt import MqttPublisher, MqttSettings

ROOT = Path(__file__).resolve().parents[2]
needs_mosquitto = pytest.mark.skipif(shutil.which("mosquitto") is None and not Path("/usr/sbin/mosquitto").exists(),
                                     reason="needs mosquitto (apt install mosquitto mosquitto-clients)")


def _settings(model, broker, **kw):
    base = {"model": str(model), "source": "synthetic:64x128@30", "fps": 20, "device_id": "t1",
            "mqtt_host": "127.0.0.1", "mqtt_port": broker.port,
            "mqtt_protocol": "5" if broker.mqtt5 else "3.1.1", "publish_interval": 0.2}
    return load_settings(base | kw, None, env={})


def _run_cli(*args, timeout=60, env=None):
    import os
    return subprocess.run([sys.executable, "-m", "edge_runtime.commands.run", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, env=dict(os.environ, **(env or {})))


class Running:
    """A Vehicle on a thread, stopped and joined on exit."""

    def __init__(self, settings):
        self.vehicle = Vehicle(settings)
        self.result: dict = {}
        self.thread = threading.Thread(target=lambda: self.result.update(self.vehicle.run()))

    def __enter__(self):
        self.thread.start()
        assert self.vehicle.ready.wait(30)
        return self.vehicle

    def __exit__(self, *exc):
        self.vehicle.request_stop()
        self.thread.join(timeout=30)


# -- queueing and reconnection ------------------------------------------------------------------
def test_drops_are_logged_and_queued_is_the_queue_length(caplog):
    pub = MqttPublisher(MqttSettings(mqtt_port=free_port(), max_queued=3, device_id="q"))
    pub.start()
    try:
        with caplog.at_level("WARNING", logger="roadseg.mqtt"):
            for i in range(6):
                pub.publish("coverage", {"seq": i})
        assert pub.counts["queued"] == 3 and pub.counts["queued_total"] == 6 and pub.counts["dropped"] == 3
        assert any("dropped" in r.message and "--max-queued" in r.message for r in caplog.records)
        assert sum("dropped" in r.message for r in caplog.records) == 1  # rate-limited
        assert [json.loads(r.payload)["seq"] for r in pub.outbox.take(10)] == [3, 4, 5]  # the oldest went
    finally:
        pub.stop(timeout=0.1)
    with pytest.raises(ValueError, match="max_queued"):
        MqttSettings(max_queued=0)


def test_summaries_resume_within_5s_of_the_broker(tiny_tflite, broker):
    sub = Subscriber(broker.port, "roadseg/rc1/coverage", client_id="rc-sub")
    with Running(_settings(tiny_tflite, broker, duration=30.0, device_id="rc1")) as vehicle:
        pub = vehicle.publisher
        assert sub.wait_for(lambda m: True, timeout=20)
        broker.stop()
        failures = pub.counts["connect_failures"]
        assert pub.wait_until(lambda c: c["connect_failures"] >= failures + 2, timeout=20)  # at its longest (2 s)
        broker.start()
        seq = vehicle.runner.seq
        assert sub.wait_for(lambda m: m[1]["seq"] > seq, timeout=5), "summaries resumed too late"
    sub.close()


def test_broker_outage_loses_nothing_within_queue(tiny_tflite, broker):
    sub = Subscriber(broker.port, "roadseg/car4/coverage", client_id="outage-sub")
    run = Running(_settings(tiny_tflite, broker, device_id="car4", duration=30.0, max_queued=500))
    with run as vehicle:
        pub = vehicle.publisher
        assert sub.wait_for(lambda m: True, timeout=30)
        broker.stop()
        assert pub.wait_until(lambda c: not c["connected"] and c["queued"] >= 5, timeout=20)  # they pile up
        broker.start()
        assert pub.wait_until(lambda c: c["connected"] and c["queued"] == 0, timeout=20)
    last = vehicle.runner.seq
    assert sub.wait_for(lambda m: m[1]["seq"] == last, timeout=20)  # the last summary arrived
    seqs = sorted({m[1]["seq"] for m in sub.of("/coverage")})  # at least once: a duplicate has its seq
    assert pub.counts["dropped"] == 0
    assert seqs == list(range(seqs[0], last + 1)), f"gaps in {seqs}"
    sub.close()


def test_unreachable_broker_keeps_running_says_why_and_exits_4(tiny_tflite):
    port = free_port()
    r = _run_cli("--model", str(tiny_tflite), "--source", "synthetic:64x128@30", "--fps", "10",
                 "--mqtt-host", "127.0.0.1", "--mqtt-port", str(port), "--duration", "3", "--device-id", "car6")
    assert r.returncode == 4, r.stderr
    warnings = [line for line in r.stderr.splitlines() if "WARNING roadseg.mqtt" in line and "unreachable" in line]
    assert len(warnings) == 1 and "connection refused (no broker listening there?)" in warnings[0]  # rate-limited
    assert "nothing was delivered to the MQTT broker" in r.stderr.splitlines()[-1]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["frames"] > 0 and out["mqtt"]["queued"] > 0 and out["mqtt"]["sent"] == 0
    assert out["mqtt"]["connected"] is False and "unreachable" in out["mqtt"]["last_error"]


# -- what the broker refuses is checked first, and refused once (issue 22, item 1) --------------------
def _request_snapshot(port: int, device: str) -> None:
    import paho.mqtt.client as mqtt
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    c.connect("127.0.0.1", port)
    c.loop_start()
    c.publish(f"roadseg/{device}/snapshot/request", b"", qos=1).wait_for_publish(5)
    c.loop_stop()
    c.disconnect()


@needs_mosquitto
@pytest.mark.parametrize("packet_kb", [None, 7])
def test_a_snapshot_over_the_brokers_size_limit_costs_nothing_else(tiny_tflite, tmp_path, packet_kb):
    """mosquitto refuses messages over 8000 bytes. The snapshot goes at QoS 0: the vehicle stays
    connected, nothing is resent, coverage is not duplicated; told the limit, it fits the picture."""
    b = Broker(tmp_path, message_size_limit=8000).start()
    sub = Subscriber(b.port, "roadseg/big1/#", client_id="big-sub")
    extra = {"mqtt_max_packet_kb": packet_kb, "snapshot_max_kb": 6} if packet_kb else {}
    try:
        run = Running(_settings(tiny_tflite, b, device_id="big1", source="synthetic:480x640@30", duration=30,
                                **extra))
        with run as vehicle:
            pub = vehicle.publisher
            assert sub.wait_for(lambda m: m[0].endswith("/status") and m[1]["state"] == "online")  # it listens
            _request_snapshot(b.port, "big1")
            assert pub.wait_until(lambda c: c["requests"] == 1, timeout=10)
            seq = vehicle.runner.seq
            assert sub.wait_for(lambda m: m[0].endswith("/coverage") and m[1]["seq"] >= seq + 5, timeout=20)
            assert pub.counts["connections"] == 1 and pub.connected  # never dropped
        snaps = sub.of("/snapshot")
        if packet_kb:
            assert len(snaps) == 1 and snaps[0][1][:2] == b"\xff\xd8" and len(snaps[0][1]) <= 7 * 1024
        else:
            assert snaps == []  # over 8000 bytes: the broker dropped it, once
        seqs = [m[1]["seq"] for m in sub.of("/coverage")]
        assert len(seqs) == len(set(seqs)), "coverage was resent"
        assert [m[1]["state"] for m in sub.of("/status")] == ["online", "offline"]
        assert run.result["mqtt"]["sent"] > 0 and run.result["mqtt"]["refused"] == 0
    finally:
        sub.close()
        b.stop()


@needs_mosquitto
def test_a_message_the_broker_refuses_is_not_resent(tmp_path, caplog):
    """At QoS 1 over MQTT 5, mosquitto answers a message over its limit with a PUBACK reason paho
    cannot parse, and paho drops the connection and would resend it after every reconnection."""
    b = Broker(tmp_path, message_size_limit=8000).start()
    sub = Subscriber(b.port, "roadseg/ref1/#", client_id="ref-sub")
    pub = MqttPublisher(MqttSettings(mqtt_port=b.port, device_id="ref1"))  # the broker's limit unknown
    try:
        pub.start()
        assert pub.wait_connected(10)
        with caplog.at_level("WARNING", logger="roadseg.mqtt"):
            assert pub.publish("coverage", {"seq": 1, "pad": "x" * 20_000})
            assert pub.wait_until(lambda c: c["refused"] == 1, timeout=20)
            for i in range(2, 6):
                pub.publish("coverage", {"seq": i})
            assert sub.wait_for_count(lambda m: m[0].endswith("/coverage"), 4, timeout=20)
        assert pub.counts["connections"] <= 3  # refused the second time it came up: not resent again
        assert [m[1]["seq"] for m in sub.of("/coverage")] == [2, 3, 4, 5]
        assert sum("dropped, not resent" in r.message for r in caplog.records) == 1
        size = len(json.dumps({"seq": 1, "pad": "x" * 20_000}))
        assert f"refused a {size}-byte message on roadseg/ref1/coverage" in pub.counts["last_error"]
        n = pub.counts["connections"]
        pub.publish("coverage", {"seq": 6})
        assert sub.wait_for(lambda m: m[0].endswith("/coverage") and m[1]["seq"] == 6)
        assert pub.counts["connections"] == n and pub.counts["refused"] == 1
    finally:
        pub.stop(1)
        sub.close()
        b.stop()


@needs_mosquitto
def test_a_message_over_a_known_limit_is_never_sent(tmp_path):
    b = Broker(tmp_path, message_size_limit=8000).start()
    sub = Subscriber(b.port, "roadseg/ref2/#", client_id="ref2-sub")
    pub = MqttPublisher(MqttSettings(mqtt_port=b.port, device_id="ref2", mqtt_max_packet_kb=7))
    try:
        pub.start()
        assert pub.wait_connected(10)
        assert pub.payload_limit("snapshot") == 7 * 1024 - packet_size_overhead("roadseg/ref2/snapshot")
        assert not pub.publish("coverage", {"pad": "x" * 8000})
        assert not pub.publish("snapshot", b"\xff" * 7200, qos=0, queue=False)
        assert pub.publish("coverage", {"seq": 1})
        assert sub.wait_for(lambda m: m[0].endswith("/coverage"))
        c = pub.counts
        assert (c["oversize"], c["refused"], c["connections"], c["queued"]) == (2, 0, 1, 0)
        assert "over the 7168 bytes the broker accepts" in c["last_error"]
    finally:
        pub.stop(1)
        sub.close()
        b.stop()


def test_counts_fit_the_stats_schema_whatever_the_error():
    """A refusal names the topic, which may be 1000 bytes long: stats must still be buildable."""
    from edge_runtime.contract import payloads
    pub = MqttPublisher(MqttSettings(topic_prefix="fleet/" + "n" * 1000, mqtt_max_packet_kb=1))
    assert not pub.publish("coverage", {"pad": "x" * 2000})
    assert len(pub.last_error) > 1000 and pub.counts["oversize"] == 1
    payloads.MqttCounters.model_validate(pub.counts)
    pub.outbox.close()


def packet_size_overhead(topic: str) -> int:
    """A QoS 0 MQTT 5 PUBLISH's bytes besides its payload, for a payload near 7 KiB: 1 + 2 (Remaining
    Length) + 2 + topic + 1 (property length), OASIS MQTT 5.0 3.3."""
    return 1 + 2 + 2 + len(topic) + 1


@needs_mosquitto
def test_a_puback_refusal_is_counted_once_and_not_resent(tmp_path):
    """An ACL that lets the vehicle publish its status and coverage but not its stats: MQTT 5
    answers the stats with PUBACK "Not authorized", counted as refused, the connection kept."""
    b = Broker(tmp_path, acl="topic readwrite roadseg/acl1/status\ntopic readwrite roadseg/acl1/coverage\n"
                             "topic read #\n").start()
    sub = Subscriber(b.port, "roadseg/acl1/#", client_id="acl-sub")
    pub = MqttPublisher(MqttSettings(mqtt_port=b.port, device_id="acl1"))
    try:
        pub.start()
        assert pub.wait_connected(10)
        pub.publish("stats", {"n": 1})
        pub.publish("coverage", {"seq": 1})
        assert pub.wait_until(lambda c: c["refused"] == 1 and c["sent"] >= 2, timeout=10)
        assert sub.wait_for(lambda m: m[0].endswith("/coverage"))
        assert "Not authorized" in pub.counts["last_error"] and pub.counts["connections"] == 1
    finally:
        pub.stop(1)
        sub.close()
        b.stop()


# -- connection failures say why, and a run that delivered nothing fails (item 2) --------------------
@needs_mosquitto
def test_a_wrong_password_is_named_once_and_the_run_exits_4(tiny_tflite, tmp_path):
    b = Broker(tmp_path, users={"car1": "right-password"}).start()
    try:
        r = _run_cli("--model", str(tiny_tflite), "--source", "synthetic:64x128@30", "--fps", "10", "--device-id",
                     "car1", "--mqtt-host", "127.0.0.1", "--mqtt-port", str(b.port), "--duration", "4",
                     env={"ROADSEG_MQTT_USERNAME": "car1", "ROADSEG_MQTT_PASSWORD": "hunter2xyzzy"})
        assert r.returncode == 4, r.stderr
        warned = [line for line in r.stderr.splitlines() if "WARNING roadseg.mqtt" in line and "not authorised" in line]
        assert len(warned) == 1 and "wrong user name or password" in warned[0]
        assert "nothing was delivered" in r.stderr.splitlines()[-1] and "hunter2xyzzy" not in r.stderr
        mqtt_stats = json.loads(r.stdout.strip().splitlines()[-1])["mqtt"]
        assert mqtt_stats["connected"] is False and "not authorised" in mqtt_stats["last_error"]
        pub = MqttPublisher(MqttSettings(mqtt_port=b.port, device_id="car1"), ("car1", "right-password"))
        pub.start()
        assert pub.wait_connected(10)  # the same broker, the right password
        pub.stop(1)
    finally:
        b.stop()


def _failure(settings: MqttSettings, credentials=(None, None)) -> str:
    pub = MqttPublisher(settings, credentials)
    pub.start()
    try:
        assert pub.wait_until(lambda c: c["connect_failures"] >= 1, timeout=15)
        assert not pub.connected
        return pub.counts["last_error"]
    finally:
        pub.stop(0.1)


@needs_mosquitto
def test_tls_mismatches_are_named(tmp_path):
    from tests.support import make_ca
    tls_broker = Broker(tmp_path / "tls", tls=True).start()
    plain = Broker(tmp_path / "plain").start()
    other_ca = make_ca(tmp_path / "other", "other")["ca"]
    try:
        assert "a TLS port? (give --tls-ca)" in _failure(MqttSettings(mqtt_port=tls_broker.port, device_id="t"))
        assert "does not speak TLS" in _failure(MqttSettings(mqtt_port=plain.port, tls_ca=str(tls_broker.tls["ca"])))
        assert "certificate is not trusted" in _failure(MqttSettings(mqtt_port=tls_broker.port, tls_ca=str(other_ca)))
        assert "anonymous" not in _failure(MqttSettings(mqtt_port=free_port()))
        pub = MqttPublisher(MqttSettings(mqtt_port=tls_broker.port, tls_ca=str(tls_broker.tls["ca"])))
        pub.start()
        assert pub.wait_connected(10)  # the right CA
        pub.stop(1)
    finally:
        tls_broker.stop()
        plain.stop()


@needs_mosquitto
def test_a_plain_client_at_a_tls_listener_exits_4_saying_so(tiny_tflite, tmp_path):
    b = Broker(tmp_path, tls=True).start()
    try:
        r = _run_cli("--model", str(tiny_tflite), "--source", "synthetic:64x128@30", "--fps", "10", "--device-id",
                     "car2", "--mqtt-host", "127.0.0.1", "--mqtt-port", str(b.port), "--duration", "3")
        assert r.returncode == 4, r.stderr
        assert sum("a TLS port? (give --tls-ca)" in line for line in r.stderr.splitlines()
                   if "WARNING" in line) == 1, r.stderr
    finally:
        b.stop()


# -- one client id per installation; a takeover is backed off, not fought (item 3) -------------------
def test_the_client_id_is_per_installation_and_kept(tmp_path):
    from edge_runtime.io.identity import installation_id
    a, b = tmp_path / "a", tmp_path / "b"
    first = installation_id(str(a))
    assert first == installation_id(str(a)) == (a / "installation-id").read_text().strip()
    assert installation_id(str(b)) != first  # another SD card, another id
    assert installation_id(None) != installation_id(None)  # no state directory: random per process (told apart)
    pub = MqttPublisher(MqttSettings(device_id="car1", state_dir=str(a)))
    assert pub.client_id == f"roadseg-car1-{first}"
    assert MqttPublisher(MqttSettings(device_id="car1", mqtt_client_id="fleet-7")).client_id == "fleet-7"


@needs_mosquitto
def test_two_vehicles_with_one_device_id_back_off_instead_of_fighting(tiny_tflite, broker, caplog):
    """Two runners with one device id and one installation id (a cloned SD card): the broker
    hands the session from one to the other; after a few takeovers one of them says why and backs
    off, and the other keeps the session."""
    status = Subscriber(broker.port, "roadseg/car1/status", client_id="twin-sub")
    cov = Subscriber(broker.port, "roadseg/car1/coverage", client_id="twin-cov")
    settings = _settings(tiny_tflite, broker, device_id="car1", duration=60.0)
    told = "another client is using device id car1"
    with caplog.at_level("WARNING", logger="roadseg.mqtt"), Running(settings) as one, Running(settings) as two:
        a, b = one.publisher, two.publisher
        assert a.client_id == b.client_id
        assert a.wait_until(lambda c: told in str(c["last_error"]) or told in str(b.counts["last_error"]), 30)
        backed, kept = (a, b) if told in str(a.counts["last_error"]) else (b, a)
        assert kept.wait_until(lambda c: c["connected"], timeout=10)
        seq = max(m[1]["seq"] for m in cov.of("/coverage"))
        assert cov.wait_for(lambda m: m[1]["seq"] >= seq + 5, timeout=20)  # its announcement has arrived
        connections, flips = kept.counts["connections"], len(status.of("/status"))
        assert cov.wait_for(lambda m: m[1]["seq"] >= seq + 20, timeout=20)  # 3 s of summaries later
        assert kept.counts["connections"] == connections and kept.connected and not backed.connected
        assert len(status.of("/status")) == flips  # the retained status no longer flips
    assert sum(told in r.message for r in caplog.records) == 1
    assert flips <= 12, [m[1]["state"] for m in status.of("/status")]
    status.close()
    cov.close()


# -- the offline queue is kept over a restart (item 8) -----------------------------------------------
@needs_mosquitto
def test_summaries_queued_for_an_absent_broker_arrive_in_order_after_a_restart(tiny_tflite, tmp_path):
    port = free_port()
    first = Running(load_settings({"model": str(tiny_tflite), "source": "synthetic:64x128@30", "fps": 20,
                                   "device_id": "tun1", "mqtt_host": "127.0.0.1", "mqtt_port": port,
                                   "publish_interval": 0.2, "duration": 1.5}, None, env={}))
    with first:
        first.thread.join(30)
    queued = first.result["mqtt"]["queued"]
    assert first.result["mqtt"]["sent"] == 0 and queued >= 5
    b = Broker(tmp_path)
    b.port = port  # the broker comes back where the vehicle expects it
    b.start()
    sub = Subscriber(port, "roadseg/tun1/coverage", client_id="tun-sub")
    second = Running(_settings(tiny_tflite, b, device_id="tun1", duration=1.5))
    try:
        with second as vehicle:
            second.thread.join(30)
        last = vehicle.runner.seq
        assert sub.wait_for(lambda m: m[1]["seq"] == last, timeout=20)
        seqs = [m[1]["seq"] for m in sub.of("/coverage")]  # in the order they arrived
        assert seqs == list(range(1, last + 1)) and last > queued
    finally:
        sub.close()
        b.stop()
