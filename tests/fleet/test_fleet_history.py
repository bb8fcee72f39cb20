"""Long-term history goes to a store users already run, not one of ours:
the documented mqtt2prometheus config (docs/fleet/mqtt2prometheus.yaml) fed by
the vehicle's own stats payloads through a real mosquitto, scraped like
Prometheus does. The test waits on the exporter's own log lines (it says when
it listens and logs every message it ingests), never on a sleep."""
from __future__ import annotations

import json
import shutil
import subprocess
import threading
import urllib.request
from pathlib import Path

import pytest

from tests.fleet.messages import Raw

ROOT = Path(__file__).resolve().parents[2]
EXPORTER = shutil.which("prometheus-mqtt-exporter")


class ExporterLog:
    """The exporter's JSON log lines, read on a thread: what it announced and which topics it ingested."""

    def __init__(self, proc: subprocess.Popen):
        self.seen: set[str] = set()
        self.changed = threading.Condition()
        threading.Thread(target=self._read, args=(proc,), daemon=True).start()

    def _read(self, proc):
        for line in proc.stdout:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            with self.changed:
                self.seen.add(entry.get("topic") if entry.get("msg") == "Got message" else entry.get("msg"))
                self.changed.notify_all()

    def wait_for(self, *items: str, timeout: float = 30.0) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: set(items) <= self.seen, timeout)


@pytest.mark.skipif(EXPORTER is None, reason="needs Debian's prometheus-mqtt-exporter (scripts/test.sh installs it)")
def test_stats_reach_prometheus_through_the_documented_config(broker, tmp_path):
    from edge_runtime.contract import payloads
    from edge_runtime.io.broker import free_port
    cfg = (ROOT / "docs" / "fleet" / "mqtt2prometheus.yaml").read_text()
    cfg = cfg.replace("tcp://127.0.0.1:1883", f"tcp://127.0.0.1:{broker.port}")
    (tmp_path / "exporter.yaml").write_text(cfg)

    def stats(device):
        return json.dumps(payloads.stats(
            device, achieved_fps=14.0, target_fps=15, frames=900, dropped_frames=12, skipped_ticks=0,
            camera_reconnects=1, camera_state="live", latency_ms={"p50": 20.0, "p90": 25.0, "p99": 30.0},
            cpu_temp_c=71.5, memory={"rss_mb": 140.0}, uptime_s=61.0, mqtt={}, model={"name": "m"}))
    raw = Raw(broker.port)  # retained, so they wait for the exporter; zz9 after bus9: seen last
    raw.send(("roadseg/bus9/stats", stats("bus9"), True), ("roadseg/zz9/stats", stats("zz9"), True))
    port = free_port()
    exporter = subprocess.Popen([EXPORTER, "-config", str(tmp_path / "exporter.yaml"), "-listen-address",
                                 "127.0.0.1", "-listen-port", str(port), "-log-level", "debug", "-log-format", "json"],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        log = ExporterLog(exporter)
        # its MQTT handler runs messages in order: once zz9 is logged, bus9 has been ingested
        assert log.wait_for("Listening on", "roadseg/zz9/stats"), log.seen
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
        lines = {ln.split(" ")[0]: ln for ln in text.splitlines() if ln.startswith("roadseg_")}
        temp = next(v for k, v in lines.items() if k.startswith("roadseg_cpu_temperature_celsius")
                    and 'sensor="bus9"' in k)
        assert " 71.5 " in temp + " "
        assert any(k.startswith("roadseg_dropped_frames_total") and 'sensor="bus9"' in k and " 12 " in v + " "
                   for k, v in lines.items())
    finally:
        raw.close()
        exporter.terminate()
        exporter.wait(timeout=10)
