"""Long-term history goes to a store users already run, not one of ours:
the documented mqtt2prometheus config (docs/fleet/mqtt2prometheus.yaml) fed by
a real vehicle publisher through a real mosquitto, scraped like Prometheus does."""
from __future__ import annotations

import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXPORTER = shutil.which("prometheus-mqtt-exporter")


@pytest.mark.skipif(EXPORTER is None, reason="needs Debian's prometheus-mqtt-exporter (scripts/test.sh installs it)")
def test_stats_reach_prometheus_through_the_documented_config(broker, tmp_path):
    from edge_runtime.contract import payloads
    from edge_runtime.io.broker import free_port
    from edge_runtime.io.mqtt import MqttPublisher, MqttSettings
    cfg = (ROOT / "docs" / "fleet" / "mqtt2prometheus.yaml").read_text()
    cfg = cfg.replace("tcp://127.0.0.1:1883", f"tcp://127.0.0.1:{broker.port}")
    (tmp_path / "exporter.yaml").write_text(cfg)
    port = free_port()
    exporter = subprocess.Popen([EXPORTER, "-config", str(tmp_path / "exporter.yaml"), "-listen-address",
                                 "127.0.0.1", "-listen-port", str(port)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
    pub = MqttPublisher(MqttSettings(mqtt_port=broker.port, device_id="bus9", mqtt_protocol="3.1.1"))
    pub.start()
    try:
        assert pub.wait_connected(10)
        text, deadline = "", time.time() + 30
        while time.time() < deadline:
            pub.publish("stats", payloads.stats(
                "bus9", achieved_fps=14.0, target_fps=15, frames=900, dropped_frames=12, skipped_ticks=0,
                camera_reconnects=1, camera_state="live", latency_ms={"p50": 20.0, "p90": 25.0, "p99": 30.0},
                cpu_temp_c=71.5, memory={"rss_mb": 140.0}, uptime_s=61.0, mqtt={}, model={"name": "m"}))
            time.sleep(0.5)
            try:
                text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
            except OSError:
                continue
            if "roadseg_cpu_temperature_celsius" in text:
                break
        lines = {ln.split(" ")[0]: ln for ln in text.splitlines() if ln.startswith("roadseg_")}
        temp = next(v for k, v in lines.items() if k.startswith("roadseg_cpu_temperature_celsius"))
        assert 'sensor="bus9"' in temp and " 71.5 " in temp + " "
        assert any(k.startswith("roadseg_dropped_frames_total") and " 12 " in v + " " for k, v in lines.items())
    finally:
        pub.stop(1)
        exporter.terminate()
        exporter.wait(timeout=10)
