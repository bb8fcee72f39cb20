"""Home Assistant MQTT discovery."""
from __future__ import annotations

import threading
import time

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
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        c.connect("127.0.0.1", b.port)
        c.loop_start()
        c.publish("homeassistant/status", "online", qos=1).wait_for_publish(5)  # Home Assistant restarted
        deadline = time.time() + 10
        while runner.ha.discoveries == n and time.time() < deadline:
            time.sleep(0.05)
        assert runner.ha.discoveries == n + 1
        states = Subscriber(b.port, "roadseg/ha_car/ha", client_id="ha-states")
        assert states.wait_for_count(lambda m: m[0].endswith("/ha"), 4, timeout=20)
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
