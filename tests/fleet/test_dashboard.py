"""The dashboard's state and page against a real broker and real vehicle
publishers: what any client on the broker sends is checked (size, then
schema) and counted, never kills the subscriber, never grows memory past a
bound in bytes, never evicts a tracked vehicle; the page (Streamlit's
AppTest) says what happened. Waits are on the fleet's condition, never sleeps."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from edge_runtime.contract import payloads
from edge_runtime.contract.coverage import CoverageAggregator
from tests.fleet.messages import (
    MODEL,
    Raw,
    coverage_body,
    jpeg,
    stats_body,
    status_body,
)

APP = Path(__file__).resolve().parents[2] / "fleet" / "dashboard" / "app.py"


def fleet_on(broker, protocol="3.1.1", **kw):
    """A dashboard Fleet subscribed to ``broker``, once its subscriptions are acknowledged."""
    from fleet.broker import BrokerSettings
    from fleet.dashboard.state import Fleet
    f = Fleet(BrokerSettings(port=broker.port, protocol=protocol), **kw)
    assert f.subscriber.wait_for(lambda: f.connected, 20), f.subscriber.error
    return f


# --- issue 23: one message stops it for good ------------------------------------------------

@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_hostile_retained_statuses_never_stop_the_subscriber(broker, protocol):
    from edge_runtime.io.mqtt import MqttPublisher, MqttSettings
    raw = Raw(broker.port)
    raw.send(("roadseg/x/status", b"[" * 50_000, True),                                  # RecursionError in json
             ("roadseg/y/status", '{"state": "online", "ts": 12345, "device_id": "y"}', True),  # AttributeError
             ("roadseg/z/status", b'{"a":' * 1500, True))                               # deep, within the cap
    for restart in range(2):  # the messages are retained: every start meets them again
        f = fleet_on(broker, protocol)
        pub = MqttPublisher(MqttSettings(mqtt_port=broker.port, device_id=f"car{restart}", mqtt_protocol="3.1.1"))
        pub.start({"model": {"name": "student-int8"}})
        try:
            assert f.wait_for(lambda s, car=f"car{restart}": any(v.device_id == car and v.status for v in s.view()), 20)
            drops = dict(f.intake.drops())
            assert set(drops) == {"x", "y", "z"} and "ts" in drops["y"].last_reason
            assert "50000 bytes" in drops["x"].last_reason  # refused by its size, never parsed
            assert f.connected and f.subscriber.stopped is None and f.subscriber.handler_errors == 0
        finally:
            pub.stop(1)
            f.close()
    raw.close()


def test_whatever_a_handler_raises_the_network_thread_goes_on(broker):
    from fleet.broker import BrokerSettings, BrokerSubscriber
    kinds = [RecursionError, AttributeError, KeyError, MemoryError, UnicodeDecodeError("utf-8", b"", 0, 1, "x")]
    seen = []

    def handler(topic, body, retained):
        seen.append(topic)
        raise kinds[len(seen) - 1] if len(seen) <= len(kinds) else ValueError

    sub = BrokerSubscriber(BrokerSettings(port=broker.port), ["roadseg/#"], handler)
    raw = Raw(broker.port)
    try:
        assert sub.wait_for(lambda: sub.connected, 20)
        raw.send(*[(f"roadseg/v{i}/status", b"{}") for i in range(len(kinds) + 1)])
        assert sub.wait_for(lambda: sub.messages == len(kinds) + 1, 20)
        assert sub.handler_errors == len(kinds) + 1 and sub.stopped is None and sub.thread.is_alive()
    finally:
        raw.close()
        sub.close()
    assert sub.stopped == "closed" and not sub.connected


# --- issue 23: wrong types blank the whole fleet ----------------------------------------------

def test_wrong_types_are_dropped_and_counted_per_sender(broker):
    f = fleet_on(broker)
    raw = Raw(broker.port)
    good = json.loads(stats_body("a"))
    bad = {"a": [json.dumps(good | {"fps": {"achieved": "fast", "target": 15}}),
                 json.dumps(good | {"cpu_temp_c": "hot"}),
                 json.dumps(good).replace('"uptime_s": 60.0', '"uptime_s": 1e400')],
           "b": [status_body("b").replace('"state"', '"model": "str", "state"')],
           "c": [json.dumps({k: v for k, v in json.loads(coverage_body("c")).items() if k != "zones"})],
           "d": [stats_body("e")]}  # d sending e's stats: the topic names the sender
    try:
        raw.send(*[(f"roadseg/{who}/{'stats' if who in 'ad' else 'status' if who == 'b' else 'coverage'}", body)
                   for who, bodies in bad.items() for body in bodies], ("roadseg/a/stats", json.dumps(good)))
        assert f.wait_for(lambda s: s.intake.dropped_total == 6 and any(v.stats for v in s.view()), 20)
        drops = dict(f.intake.drops())
        assert {k: d.count for k, d in drops.items()} == {"a": 3, "b": 1, "c": 1, "d": 1}
        assert "zones" in drops["c"].last_reason and "device_id" in drops["d"].last_reason
        (a,) = [v for v in f.view() if v.device_id == "a"]
        assert a.stats.uptime_s == 60.0 and len(a.stats_rows) == 1  # only the valid one was kept
    finally:
        raw.close()
        f.close()


# --- issue 23: memory bounded in bytes, not messages ------------------------------------------

def test_megabyte_messages_cost_no_memory(broker):
    big = b'{"schema": "roadseg.stats/1", "pad": "' + b"x" * 1_000_000 + b'"}'
    raw = Raw(broker.port)
    v311, v5 = fleet_on(broker, "3.1.1"), fleet_on(broker, "5")
    try:
        raw.send(*[("roadseg/fake/stats", big)] * 30, ("roadseg/real/stats", stats_body("real")))
        for f in (v311, v5):
            assert f.wait_for(lambda s: any(v.device_id == "real" for v in s.view()), 30)
        assert v311.intake.dropped_total == 30 and "more than the 16384" in dict(v311.intake.drops())["fake"].last_reason
        assert v5.subscriber.messages == 1  # MQTT 5 Maximum Packet Size: the broker never sent them
        for f in (v311, v5):
            assert f.bytes_used() < 100_000 and [v.device_id for v in f.view()] == ["real"]
    finally:
        raw.close()
        v311.close()
        v5.close()


def test_a_full_fleet_stays_within_its_byte_bound():
    from fleet.dashboard.state import HISTORY, RING_BYTES, FleetState
    n, budget = 40, 2_000_000
    f = FleetState(max_vehicles=n, snapshot_budget=budget)
    snap = jpeg(480, 360) + b"\x00" * 200_000  # trailing bytes after the image: still a JPEG, 200 KB
    for i in range(n + 10):
        d = f"v{i}"
        f.handle(f"roadseg/{d}/status", status_body(d, error="e" * 500).encode())
        f.handle(f"roadseg/{d}/snapshot", snap)
        for _ in range(3):
            f.handle(f"roadseg/{d}/coverage", coverage_body(d).encode())
            f.handle(f"roadseg/{d}/stats", stats_body(d).encode())
    caps = sum(payloads.MAX_BYTES[k] for k in ("status", "stats", "coverage"))
    assert len(f.view()) == n and f.bytes_used() <= n * (RING_BYTES + caps) + budget
    assert sum(len(v.snapshot or b"") for v in f.view()) <= budget
    assert RING_BYTES == HISTORY * 14 * 8  # fixed per vehicle, however many messages arrive


# --- issue 23: snapshots decoded blindly -------------------------------------------------------

def test_snapshots_are_checked_by_their_header_before_decoding():
    from fleet.dashboard.snapshot import SnapshotError, check_jpeg
    from fleet.dashboard.state import FleetState
    bombs = {"13000x13000": jpeg(claim=(13000, 13000)), "65500x65500": jpeg(claim=(65500, 65500)),
             "html": b"\xff\xd8<html><script>alert(1)</script></html>", "truncated": jpeg(64, 64)[:200],
             "png": b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, "2101x1000": jpeg(claim=(2101, 1000))}
    assert len(bombs["13000x13000"]) < 1000
    for data in bombs.values():
        with pytest.raises(SnapshotError):
            check_jpeg(data)
    assert check_jpeg(jpeg(1920, 1080)) == (1920, 1080)
    f = FleetState()
    for data in bombs.values():
        f.handle("roadseg/cam/snapshot", data)
    good = jpeg()
    f.handle("roadseg/cam/snapshot", good)
    (cam,) = f.view()
    assert cam.snapshot == good and dict(f.intake.drops())["cam"].count == len(bombs)


# --- issue 23: fake vehicles push real ones out --------------------------------------------------

def _app_env(monkeypatch, broker, **extra):
    monkeypatch.setenv("ROADSEG_DASH_MQTT_HOST", "127.0.0.1")
    monkeypatch.setenv("ROADSEG_DASH_MQTT_PORT", str(broker.port))
    monkeypatch.setenv("ROADSEG_DASH_MQTT_PROTOCOL", "3.1.1")
    for k in ("ROADSEG_MQTT_USERNAME", "ROADSEG_MQTT_PASSWORD", "ROADSEG_MQTT_PASSWORD_FILE"):
        monkeypatch.delenv(k, raising=False)
    for k, v in extra.items():
        monkeypatch.setenv(k, v)
    from fleet.broker import from_env
    from fleet.dashboard.state import shared_fleet
    known = tuple(x for x in extra.get("ROADSEG_DASH_VEHICLES", "").split(",") if x)
    f = shared_fleet(from_env(), known)
    assert f.subscriber.wait_for(lambda: f.connected, 20)
    return f


def _page():
    pytest.importorskip("streamlit")
    from streamlit.testing.v1 import AppTest
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.run()
    assert not at.exception, at.exception
    return at


def _texts(at, kind):
    """The text of each element of ``kind``, Markdown escapes removed (the page escapes what vehicles send)."""
    return [re.sub(r"\\(.)", r"\1", e.value) for e in getattr(at, kind)]


def test_ten_thousand_fake_ids_neither_evict_the_real_vehicle_nor_read_healthy(broker, monkeypatch):
    from edge_runtime.io.mqtt import MqttPublisher, MqttSettings
    from fleet.dashboard.state import FLEET_FULL, MAX_VEHICLES
    f = _app_env(monkeypatch, broker, ROADSEG_DASH_VEHICLES="car9")  # car9: listed, has not reported yet
    pub = MqttPublisher(MqttSettings(mqtt_port=broker.port, device_id="car1", mqtt_protocol="3.1.1"))
    pub.start({"model": {"name": "student-int8"}})
    try:
        assert f.wait_for(lambda s: any(v.device_id == "car1" and v.status for v in s.view()), 20)
        for i in range(10_000):  # what a flood over the broker hands the subscriber's handler, message by message
            f.handle(f"roadseg/fake{i}/status", status_body(f"fake{i}").encode())
        ids = {v.device_id for v in f.view()}
        assert len(ids) == MAX_VEHICLES and {"car1", "car9"} <= ids
        assert dict(f.intake.drops())[FLEET_FULL].count == 10_000 - (MAX_VEHICLES - 2)
        at = _page()
        assert not any("healthy" in s for s in _texts(at, "success"))
        assert any("car9 has sent nothing" in e for e in _texts(at, "error"))
        assert any("refused" in w and str(MAX_VEHICLES) in w for w in _texts(at, "warning"))
    finally:
        pub.stop(1)


# --- the page: dropped senders, a stopped subscriber, offline vehicles (issue 24) -------------------

def test_page_lists_dropped_senders_and_says_when_the_subscriber_stopped(broker, monkeypatch):
    f = _app_env(monkeypatch, broker)
    raw = Raw(broker.port)
    try:
        raw.send(("roadseg/evil/status", b"[" * 50_000, True), ("roadseg/ok1/stats", stats_body("ok1")))
        assert f.wait_for(lambda s: s.intake.dropped_total >= 1 and s.view(), 20)
        at = _page()
        assert any("1 messages dropped from 1 senders" in w for w in _texts(at, "warning"))
        assert any("evil" in str(df.value["sender"].tolist()) for df in at.dataframe)
        assert any("connected" in c for c in _texts(at, "caption"))
        f.subscriber.client.disconnect()  # the network loop ends, as if paho's thread had died
        assert f.subscriber.wait_for(lambda: f.subscriber.stopped is not None, 20)
        at.run()
        assert any("subscriber has stopped" in e and "nothing on this page updates" in e for e in _texts(at, "error"))
        assert not any("— connected" in c for c in _texts(at, "caption"))
    finally:
        raw.close()


def test_offline_vehicles_are_grey_acknowledgeable_and_a_deliberate_stop_is_no_alert(broker, monkeypatch):
    from edge_runtime.io.mqtt import MqttPublisher, MqttSettings
    f = _app_env(monkeypatch, broker)
    done = MqttPublisher(MqttSettings(mqtt_port=broker.port, device_id="done1", mqtt_protocol="3.1.1"))
    done.start({"model": {"name": "student-int8"}, "api": "http://10.0.0.8:8080"})
    assert f.wait_for(lambda s: any(v.device_id == "done1" and v.status for v in s.view()), 20)
    done.stop(2)  # a clean stop: offline, reason "stopped"
    raw = Raw(broker.port)
    raw.send(("roadseg/lost1/status", status_body("lost1", "offline", reason="lost", api="http://10.0.0.7:8080"),
              True), ("roadseg/lost1/stats", stats_body("lost1")))
    try:
        assert f.wait_for(lambda s: {v.device_id: (v.status.state if v.status else None) for v in s.view()}
                          == {"lost1": "offline", "done1": "offline"} and any(v.stats for v in s.view()), 20)
        at = _page()
        errors = _texts(at, "error")
        assert any("lost1 is offline (Last Will: connection lost)" in e for e in errors)
        assert not any("done1" in e for e in errors)  # stopped on purpose: no alert
        heads = _texts(at, "subheader")
        assert any(h.startswith(":gray[lost1") for h in heads) and any(h.startswith(":gray[done1") for h in heads)
        assert not any("Live view" in m for m in _texts(at, "markdown"))  # offline: no live-view link
        cam = [m for m in at.metric if m.label == "camera"]
        assert cam and all(m.value == "—" for m in cam)  # never "camera live" for an offline vehicle
        assert at.dataframe[0].value["live view"].isna().all()
        assert at.dataframe[0].proto.placeholder == "—"  # a missing value reads —, never "None"
        ack = [b for b in at.button if b.key.startswith("ack-lost1")]
        assert ack, [b.key for b in at.button]
        ack[0].click().run()
        assert not any("lost1" in e for e in _texts(at, "error"))  # acknowledged: hidden until it changes
        before = next(v.status.ts for v in f.view() if v.device_id == "lost1")
        raw.send(("roadseg/lost1/status", status_body("lost1", "offline", ts="2099-01-01T00:00:00.000Z",
                                                      reason="lost"), True))
        assert f.wait_for(lambda s: any(v.device_id == "lost1" and v.status.ts != before for v in s.view()), 20)
        at.run()
        assert any("lost1 is offline" in e for e in _texts(at, "error"))  # a new Last Will: a new alert
    finally:
        raw.close()


def test_alerts_say_what_and_since_when():
    from fleet.dashboard.health import Thresholds, fleet_alerts, parse_ts
    from fleet.dashboard.state import FleetState
    now = parse_ts("2026-11-25T10:10:00Z")
    f = FleetState(known=("never1",))
    f.started = now - 120
    for v in f.vehicles.values():
        v.first_seen = now - 120

    def feed(topic, body, at, retained=False):
        f.handle(topic, body.encode(), retained, now=at)
    feed("roadseg/ok1/status", status_body("ok1", ts="2026-11-25T10:00:00.000Z"), now - 2)
    feed("roadseg/ok1/stats", stats_body("ok1", ts="2026-11-25T10:09:50.000Z"), now - 2)
    feed("roadseg/slow/stats", stats_body("slow", ts="2026-11-25T10:09:30.000Z"), now - 21)
    feed("roadseg/slow/stats", stats_body("slow", ts="2026-11-25T10:09:40.000Z", achieved=3.0, temp=85.0), now - 11)
    feed("roadseg/slow/stats", stats_body("slow", ts="2026-11-25T10:09:50.000Z", achieved=2.9, temp=86.5), now - 1)
    feed("roadseg/gone/status", status_body("gone", "offline", ts="2026-11-25T10:01:40.000Z", reason="lost"),
         now - 500)
    feed("roadseg/quiet/status", status_body("quiet"), now - 95)
    feed("roadseg/blind/status", status_body("blind", "camera_lost", ts="2026-11-25T10:05:00.000Z",
                                             error="no such device"), now - 1)
    for i, q in ((7, 5), (8, 20), (9, 40)):
        feed("roadseg/blind/stats", stats_body("blind", ts=f"2026-11-25T10:0{i}:00.000Z", queued=q), now - 1)
    feed("roadseg/bye/status", status_body("bye", "offline", ts="2026-11-25T10:02:00.000Z", reason="stopped"),
         now - 480)
    th = Thresholds(silent_after_s=30, min_fps_fraction=0.8, max_temp_c=80, max_queued=10)
    alerts = fleet_alerts(f.view(), now, th)
    got = {(a.vehicle, a.kind): a for a in alerts}
    assert not any(a.vehicle in ("ok1", "bye") for a in alerts)  # healthy; stopped on purpose
    assert got[("gone", "offline")].message == "gone is offline (Last Will: connection lost)"
    assert got[("gone", "offline")].since_text == "10:01:40 UTC"
    assert "silent for 95 s" in got[("quiet", "offline")].message
    assert got[("never1", "never_seen")].since == now - 120
    assert got[("slow", "fps_low")].since == parse_ts("2026-11-25T10:09:40Z")  # since the first slow report
    assert "2.9 FPS, target 15" in got[("slow", "fps_low")].message
    assert got[("slow", "hot")].since_text == "10:09:40 UTC" and "86 °C" in got[("slow", "hot")].message
    assert got[("blind", "camera_lost")].message == "blind lost its camera"
    assert got[("blind", "camera_lost")].detail == "no such device"  # what the vehicle sent: shown as code
    assert got[("blind", "queue_growing")].since == parse_ts("2026-11-25T10:08:00Z")
    assert [a.since for a in alerts] == sorted(a.since for a in alerts)
    lenient = fleet_alerts([v for v in f.view() if v.device_id == "slow"], now,
                           Thresholds(min_fps_fraction=0.1, max_temp_c=90))
    assert lenient == []


def test_dashboard_shows_a_real_vehicle(broker, monkeypatch):
    from edge_runtime.io.mqtt import MqttPublisher, MqttSettings
    f = _app_env(monkeypatch, broker)
    pub = MqttPublisher(MqttSettings(mqtt_port=broker.port, device_id="truck7", mqtt_protocol="3.1.1"))
    pub.start({"model": {"name": "student-int8"}})
    try:
        assert f.wait_for(lambda s: any(v.device_id == "truck7" and v.status for v in s.view()), 20)
        agg = CoverageAggregator()
        for seq in range(1, 4):
            agg.add(np.array([[1, 1, 7], [5, 5, 1]], np.uint8))
            pub.publish("coverage", payloads.coverage("truck7", seq, agg.summary(), 9.5, MODEL))
            agg.reset()
        assert f.wait_for(lambda s: any(v.summaries == 3 for v in s.view()), 20)
        at = _page()
        row = at.dataframe[0].value.set_index("vehicle").loc["truck7"]
        assert row["state"] == "online" and row["fps"] == 9.5 and row["last seen s ago"] >= 0
        assert any("truck7" in h for h in _texts(at, "subheader"))
        assert any("vehicle" in m and "human" in m and "flat" in m for m in _texts(at, "markdown"))  # the legend
    finally:
        pub.stop(1)


@pytest.fixture(autouse=True)
def _fresh_shared_fleets():
    """Each test gets its own shared Fleet (the broker port differs anyway); closed afterwards."""
    yield
    from fleet.dashboard import state
    with state._shared_lock:
        fleets = list(state._shared.values())
        state._shared.clear()
    for f in fleets:
        f.close()


def test_error_details_are_off_and_bad_options_are_one_line(broker, monkeypatch, tmp_path):
    import os
    import subprocess
    import sys

    from streamlit import config
    _app_env(monkeypatch, broker)
    _page()
    assert config.get_option("client.showErrorDetails") == "none"  # "false" would still show the stack trace
    root = Path(__file__).resolve().parents[2]
    for args, needle in ((["--vehicle", "car 1"], "--vehicle"), (["--device-api", "javascript:alert(1)"], "--device-api"),
                         (["--device-api", "http://car1:8080/x"], "--device-api"),
                         (["--mqtt-password-file", str(tmp_path / "missing")], "password file")):
        r = subprocess.run([sys.executable, "-m", "fleet.dashboard.cli", *args], cwd=root, check=False,
                           env=dict(os.environ, PYTHONPATH=str(root)), capture_output=True, text=True, timeout=60)
        assert r.returncode == 2 and needle in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
