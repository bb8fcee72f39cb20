"""Home Assistant MQTT discovery (edge_runtime/io/homeassistant.py), against mosquitto."""
from __future__ import annotations

import threading

import pytest

from tests.support import Broker, Subscriber

from edge_runtime.commands.settings import load_settings

from edge_runtime.commands.run import Vehicle


def _settings(model, broker, **kw):
    base = {"model": str(model), "source": "synthetic:64x128@30", "fps": 20, "device_id": "t1",
            "mqtt_host": "127.0.0.1", "mqtt_port": broker.port,
            "mqtt_protocol": "5" if broker.mqtt5 else "3.1.1", "publish_interval": 0.2}
    return load_settings(base | kw, None, env={})

def test_home_assistant_discovery_survives_broker_restart_and_follows_birth(tiny_tflite, tmp_path):
    import paho.mqtt.client as mqtt
    b = Broker(tmp_path, persistence=False).start()
    runner = Vehicle(_settings(tiny_tflite, b, duration=40.0, device_id="ha_car", ha_discovery=True,
                               ha_interval=1.0, mqtt_protocol="3.1.1"))
    t = threading.Thread(target=runner.run)
    t.start()
    try:
        sub = Subscriber(b.port, "homeassistant/#", client_id="ha-sub")
        # wait for the very message read next, not for any /config (they arrive one by one)
        assert sub.wait_for(lambda m: m[0].endswith("roadseg_ha_car_flat/config"), timeout=20)
        cfg = next(m[1] for m in sub.of("roadseg_ha_car_flat/config"))
        assert cfg["state_topic"] == "roadseg/ha_car/ha" and cfg["value_template"] == "{{ value_json.coverage.flat }}"
        sub.close()
        n = runner.ha.discoveries
        b.stop()  # no persistence: the retained configs are gone with it
        b.start()
        late = Subscriber(b.port, "homeassistant/sensor/#", client_id="ha-late")
        assert late.wait_for(lambda m: m[0].endswith("/config"), timeout=20), \
            "discovery not re-sent after the broker came back"
        late.close()
        assert runner.ha.discoveries > n
        n = runner.ha.discoveries
        again = Subscriber(b.port, "homeassistant/sensor/#", client_id="ha-again")
        # all eight configs are there (retained, or live if the re-discovery was still under way when it subscribed)
        with again.lock:
            assert again.lock.wait_for(lambda: len({m[0] for m in again.messages if m[0].endswith("/config")}) >= 8,
                                       20)
            live_before = sum(1 for m in again.messages if m[0].endswith("/config") and not m[2])
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        c.connect("127.0.0.1", b.port)
        c.loop_start()
        c.publish("homeassistant/status", "online", qos=1).wait_for_publish(5)  # Home Assistant restarted
        # sent again, live: eight more than were live before the birth message
        assert again.wait_for_count(lambda m: m[0].endswith("/config") and not m[2], live_before + 8)
        again.close()
        states = Subscriber(b.port, "roadseg/ha_car/ha", client_id="ha-states")
        assert states.wait_for_count(lambda m: m[0].endswith("/ha"), 4, timeout=20)
        assert runner.ha.discoveries == n + 1
        got, arrived = states.of("/ha"), states.arrival_times("/ha")
        states.close()
        c.loop_stop()
        c.disconnect()
        gaps = [b - a for a, b in zip(arrived, arrived[1:])]
        # once per --ha-interval (1 s here), not per summary (every 0.2 s at 5 FPS); loose for a loaded machine
        assert sum(gaps) / len(gaps) > 0.6, gaps
        assert all(v == round(v, 1) for v in got[-1][1]["coverage"].values())
    finally:
        runner.request_stop()
        t.join(timeout=30)
        b.stop()


STATES = [("online", {}), ("offline", {"reason": "stopped"}), ("offline", {"reason": "lost"}),
          ("camera_lost", {"error": "no frame"}), ("starting", {})]  # the last: a state a later version adds


def _available(cfg: dict, status_payload: bytes) -> bool:
    """What Home Assistant does with a status message: the availability template (Jinja2, as Home
    Assistant renders it) gives payload_available, payload_not_available, or neither (unknown)."""
    import json

    jinja2 = pytest.importorskip("jinja2")  # Home Assistant's template engine (dev extra)
    value = jinja2.Environment().from_string(cfg["availability_template"]).render(
        value_json=json.loads(status_payload))
    assert value in (cfg["payload_available"], cfg["payload_not_available"]), f"{value!r}: neither"
    return value == cfg["payload_available"]


def test_every_state_the_vehicle_publishes_is_available_or_not_and_values_expire(broker):
    """A sensor is available only while the vehicle says online: offline, camera_lost and states
    a later version may add all read as unavailable, and a state not refreshed expires."""
    import json

    from edge_runtime.io.homeassistant import EXPIRE_INTERVALS, HomeAssistant
    from edge_runtime.io.mqtt import MqttPublisher, MqttSettings
    pub = MqttPublisher(MqttSettings(mqtt_port=broker.port, device_id="ha2",
                                     mqtt_protocol="5" if broker.mqtt5 else "3.1.1"))
    ha = HomeAssistant(pub, "tiny", interval=20.0)
    sub = Subscriber(broker.port, "#", client_id="ha2-sub")
    pub.start({"source": "synthetic"})
    try:
        assert sub.wait_for(lambda m: m[0] == "homeassistant/sensor/roadseg_ha2_flat/config")
        cfg = next(m[1] for m in sub.of("roadseg_ha2_flat/config"))
        assert cfg["expire_after"] == EXPIRE_INTERVALS * 20 and ha.expire_after == 60
        for i, (state, extra) in enumerate(STATES):
            pub.set_state(state, **extra)
            assert sub.wait_for_count(lambda m: m[0] == "roadseg/ha2/status", i + 2)  # the announcement + i
            last = sub.of("roadseg/ha2/status")[-1][1]
            assert last["state"] == state
            assert _available(cfg, json.dumps(last).encode()) is (state == "online"), state
    finally:
        pub.stop(1)
        sub.close()
