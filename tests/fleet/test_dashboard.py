"""The fleet dashboard with Streamlit's AppTest against a real broker."""
import time
from pathlib import Path

import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

APP = Path(__file__).resolve().parents[2] / "fleet" / "dashboard" / "app.py"


def test_dashboard_shows_vehicle(broker, monkeypatch):
    import numpy as np

    from edge_runtime.contract.coverage import CoverageAggregator
    from edge_runtime.io.publisher import MqttPublisher, MqttSettings
    monkeypatch.setenv("ROADSEG_DASH_MQTT_HOST", "127.0.0.1")
    monkeypatch.setenv("ROADSEG_DASH_MQTT_PORT", str(broker.port))
    pub = MqttPublisher(MqttSettings(port=broker.port, device_id="truck7", protocol="3.1.1"))
    pub.start({"model": {"name": "student-int8"}})
    assert pub.wait_connected(10)
    at = AppTest.from_file(str(APP), default_timeout=30)

    def truck7():
        at.run()
        if at.exception or not at.dataframe:
            return None
        df = at.dataframe[0].value
        rows = df[df["vehicle"] == "truck7"]
        return None if rows.empty else rows.iloc[0]

    # the dashboard's subscriber is in place once the retained status shows: only then publish summaries
    deadline = time.time() + 20
    while truck7() is None and time.time() < deadline:
        time.sleep(0.2)
    agg = CoverageAggregator()
    for seq in range(1, 4):
        agg.add(np.array([[1, 1, 7], [5, 5, 1]], np.uint8))
        s = agg.summary()
        pub.publish("coverage", {"schema": "roadseg.coverage/1", "device_id": "truck7", "seq": seq,
                                 "ts": f"2026-11-25T10:00:0{seq}.000Z", **s, "fps": 9.5,
                                 "model": {"name": "student-int8", "sha256": "x"}})
        agg.reset()
    deadline = time.time() + 20
    while ((row := truck7()) is None or row["summaries"] != 3) and time.time() < deadline:
        time.sleep(0.2)
    try:
        assert not at.exception
        assert row is not None
        assert row["state"] == "online" and row["fps"] == 9.5 and row["summaries"] == 3
        assert any("truck7" in h.value for h in at.subheader)
        assert any("vehicle" in m.value and "flat" in m.value for m in at.markdown)  # text legend
    finally:
        pub.stop(1)


def _stats(ts, achieved=15.0, target=15.0, temp=55.0, queued=0):
    return {"ts": ts, "fps": {"achieved": achieved, "target": target}, "cpu_temp_c": temp,
            "mqtt": {"queued": queued}}


def test_alerts_say_what_and_since_when():
    from fleet.dashboard.health import Thresholds, fleet_alerts, parse_ts
    now = parse_ts("2026-11-25T10:10:00Z")
    th = Thresholds(silent_after_s=30, min_fps_fraction=0.8, max_temp_c=80, max_queued=10)
    healthy = {"device_id": "ok1", "state": "online", "status": {"ts": "2026-11-25T10:00:00Z"}, "last_seen": now - 2,
               "stats_history": [_stats("2026-11-25T10:09:50Z")]}
    slow_hot = {"device_id": "slow", "state": "online", "status": {}, "last_seen": now - 1,
                "stats_history": [_stats("2026-11-25T10:09:30Z"),
                                  _stats("2026-11-25T10:09:40Z", achieved=3.0, temp=85.0),
                                  _stats("2026-11-25T10:09:50Z", achieved=2.9, temp=86.5)]}
    gone = {"device_id": "gone", "state": "offline", "last_seen": now - 500,
            "status": {"ts": "2026-11-25T10:01:40Z", "reason": "lost"}, "stats_history": []}
    silent = {"device_id": "quiet", "state": "online", "status": {}, "last_seen": now - 95, "stats_history": []}
    blind = {"device_id": "blind", "state": "camera_lost", "last_seen": now - 1,
             "status": {"ts": "2026-11-25T10:05:00Z", "error": "no such device"},
             "stats_history": [_stats(f"2026-11-25T10:0{i}:00Z", queued=q) for i, q in ((7, 5), (8, 20), (9, 40))]}
    alerts = fleet_alerts([healthy, slow_hot, gone, silent, blind], now, th)
    got = {(a.vehicle, a.kind): a for a in alerts}
    assert not any(a.vehicle == "ok1" for a in alerts)
    assert got[("gone", "offline")].message == "gone is offline (Last Will: connection lost)"
    assert got[("gone", "offline")].since_text == "10:01:40 UTC"
    assert "silent for 95 s" in got[("quiet", "offline")].message
    assert got[("slow", "fps_low")].since == parse_ts("2026-11-25T10:09:40Z")  # since the first slow report
    assert "2.9 FPS, target 15" in got[("slow", "fps_low")].message
    assert got[("slow", "hot")].since_text == "10:09:40 UTC" and "86 °C" in got[("slow", "hot")].message
    assert got[("blind", "camera_lost")].message == "blind lost its camera: no such device"
    assert got[("blind", "queue_growing")].since == parse_ts("2026-11-25T10:08:00Z")
    assert [a.since for a in alerts] == sorted(a.since for a in alerts)
    # thresholds are settings: a lenient FPS fraction and temperature silence those two
    lenient = fleet_alerts([slow_hot], now, Thresholds(min_fps_fraction=0.1, max_temp_c=90))
    assert lenient == []


def test_fleet_state_is_bounded_and_keeps_snapshots(broker):
    import paho.mqtt.client as mqtt

    import fleet.dashboard.state as state
    f = state.Fleet("127.0.0.1", broker.port)
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    c.connect("127.0.0.1", broker.port)
    c.loop_start()
    try:
        deadline = time.time() + 10
        while not f.connected and time.time() < deadline:
            time.sleep(0.05)
        jpg = b"\xff\xd8" + b"\x00" * 100 + b"\xff\xd9"
        c.publish("roadseg/cam1/snapshot", jpg, qos=1).wait_for_publish(5)
        c.publish("roadseg/cam1/snapshot", b"not a jpeg", qos=1).wait_for_publish(5)
        c.publish("roadseg/cam1/status", '{"state": "online", "api": "http://10.1.2.3:8080"}', qos=1).wait_for_publish(5)
        for i in range(state.HISTORY + 20):
            c.publish("roadseg/cam1/stats", '{"fps": {"achieved": 1, "target": 1}}', qos=0)
        deadline = time.time() + 10
        while len(f.stats_history("cam1")) < state.HISTORY and time.time() < deadline:
            time.sleep(0.05)
        v = f.view()[0]
        assert v["snapshot"] == jpg and len(v["stats_history"]) == state.HISTORY
        assert f.api_url("cam1") == "http://10.1.2.3:8080" and f.api_url("cam1", "http://x/") == "http://x"
    finally:
        c.loop_stop()
        c.disconnect()
