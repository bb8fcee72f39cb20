"""One real-browser check: headless Chromium loads the dashboard, which shows
two vehicles that real publishers announced on a real broker: one healthy
with its own device API and stats, one that lost its camera (an alert)."""
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium (scripts/test.sh installs Debian's chromium)")
def test_browser_shows_vehicle_row(broker, tmp_path):
    pytest.importorskip("streamlit")
    from edge_runtime.io.broker import free_port
    from edge_runtime.io.mqtt import MqttPublisher, MqttSettings
    pub = MqttPublisher(MqttSettings(mqtt_port=broker.port, device_id="bus9", mqtt_protocol="3.1.1"))
    pub.start({"model": {"name": "student-int8"}, "api": "http://10.0.0.9:8080"})
    van = MqttPublisher(MqttSettings(mqtt_port=broker.port, device_id="van3", mqtt_protocol="3.1.1"))
    van.start({"model": {"name": "student-int8"}})
    van.set_state("camera_lost", error="no such device")
    port = free_port()
    env = dict(os.environ, ROADSEG_DASH_MQTT_HOST="127.0.0.1", ROADSEG_DASH_MQTT_PORT=str(broker.port))
    app = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(ROOT / "fleet/dashboard/app.py"),
                            "--server.headless", "true", "--server.port", str(port), "--server.address", "127.0.0.1",
                            "--browser.gatherUsageStats", "false", "--client.toolbarMode", "minimal"],
                           env=env, cwd=ROOT,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=1)
                break
            except OSError:
                time.sleep(0.3)
        import numpy as np

        from edge_runtime.contract import payloads
        from edge_runtime.contract.coverage import CoverageAggregator
        seq = [0]

        def vehicle_reports():
            """What bus9 sends every interval (not retained: the dashboard sees it once it subscribed)."""
            agg = CoverageAggregator()
            agg.add(np.array([[1, 1, 7, 5], [1, 1, 6, 4]], np.uint8), 5.0, 6.0)
            seq[0] += 1
            pub.publish("coverage", payloads.coverage("bus9", seq[0], agg.summary(), 14.2,
                                                      {"name": "student-int8", "sha256": "abc"}))
            pub.publish("stats", payloads.stats(
                "bus9", achieved_fps=14.2, target_fps=15, frames=900, dropped_frames=12, skipped_ticks=3,
                camera_reconnects=0, camera_state="live", latency_ms={"p50": 20.1, "p90": 25.0, "p99": 31.4},
                cpu_temp_c=71.5, memory={"rss_mb": 140.2}, uptime_s=61.0,
                mqtt={"queued": 0, "queued_total": 10, "sent": 10, "dropped": 0, "connected": True},
                model={"name": "student-int8", "sha256": "abc"}))

        flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,1400",
                 "--virtual-time-budget=45000"]  # virtual time: idle waits pass at once, real work gets up to 45 s
        url = f"http://127.0.0.1:{port}/"
        shot = tmp_path / "dashboard.png"
        dom = ""
        deadline = time.time() + 300  # a loaded CI machine starts Streamlit and Chromium slowly
        while time.time() < deadline:  # the first load also starts the dashboard's MQTT subscriber
            vehicle_reports()
            try:
                dom = subprocess.run(flags + ["--dump-dom", url], capture_output=True, text=True, timeout=120).stdout
            except subprocess.TimeoutExpired:
                continue
            if "bus9" in dom and "van3" in dom and "71.5" in dom:
                break
            time.sleep(2)
        for _ in range(3):  # a few points on the charts for the picture
            vehicle_reports()
            time.sleep(1)
        # The picture is for docs/img, not the test (the DOM above is): a fresh
        # browser on a loaded machine may catch Streamlit's skeleton, so try
        # for a while for a rendered page, but only the PNG itself is asserted.
        deadline = time.time() + 30
        while True:
            subprocess.run(flags + [f"--screenshot={shot}", url], capture_output=True, timeout=90)
            if (shot.is_file() and shot.stat().st_size > 30_000) or time.time() > deadline:
                break
            time.sleep(2)
        assert "bus9" in dom and "online" in dom, dom[-2000:]
        assert "van3" in dom and "van3 lost its camera: no such device" in dom  # the alert, with its cause
        assert "http://10.0.0.9:8080/v1/stream.mjpg" in dom  # bus9's own live view, from its status
        assert "71.5" in dom and "CPU °C" in dom  # a stats figure
        assert "<title>roadseg fleet</title>" in dom and "Deploy" not in dom
        assert shot.is_file() and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        out = os.environ.get("ROADSEG_SCREENSHOT_DIR")
        if out:  # refreshing docs/img: only a rendered page will do
            assert shot.stat().st_size > 30_000, "the dashboard did not render past its skeleton"
            shutil.copy(shot, Path(out) / "dashboard.png")
    finally:
        app.terminate()
        app.wait(timeout=10)
        pub.stop(1)
        van.stop(1)
