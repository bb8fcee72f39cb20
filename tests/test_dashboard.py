"""The fleet dashboard with Streamlit's AppTest against a real broker."""
import time
from pathlib import Path

import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

APP = Path(__file__).resolve().parents[1] / "fleet" / "dashboard" / "app.py"


def test_dashboard_shows_vehicle(broker, monkeypatch):
    from edge_runtime.coverage import CoverageAggregator
    from edge_runtime.io.publisher import MqttPublisher, MqttSettings
    import numpy as np
    monkeypatch.setenv("ROADSEG_DASH_MQTT_HOST", "127.0.0.1")
    monkeypatch.setenv("ROADSEG_DASH_MQTT_PORT", str(broker.port))
    pub = MqttPublisher(MqttSettings(port=broker.port, device_id="truck7", protocol="3.1.1"))
    pub.start({"model": {"name": "student-int8"}})
    assert pub.wait_connected(10)
    at = AppTest.from_file(str(APP), default_timeout=30)
    at.run()  # starts the dashboard's subscriber
    agg = CoverageAggregator()
    for seq in range(1, 4):
        agg.add(np.array([[1, 1, 7], [5, 5, 1]], np.uint8))
        s = agg.summary()
        pub.publish("coverage", {"schema": "roadseg.coverage/1", "device_id": "truck7", "seq": seq,
                                 "ts": f"2026-11-25T10:00:0{seq}.000Z", **s, "fps": 9.5,
                                 "model": {"name": "student-int8", "sha256": "x"}})
        agg.reset()
    time.sleep(2.0)
    at.run()
    try:
        assert not at.exception
        df = at.dataframe[0].value
        row = df[df["vehicle"] == "truck7"].iloc[0]
        assert row["state"] == "online" and row["fps"] == 9.5 and row["summaries"] == 3
        assert any("truck7" in h.value for h in at.subheader)
        assert any("vehicle" in m.value and "flat" in m.value for m in at.markdown)  # text legend
    finally:
        pub.stop(1)
