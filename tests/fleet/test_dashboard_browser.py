"""The dashboard in a real browser: headless Chromium loads it from a real
Streamlit server reading a real broker. First what a fleet looks like (a
healthy vehicle with its device API, one that lost its camera, one offline,
the legend), then what any client on the broker can send (issue 23): the
page keeps rendering every vehicle, shows broker strings as text, fetches
nothing an attacker names, and never shows error details."""
import http.server
import json
import os
import time
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import ClassVar

import pytest

from tests.fleet.browser import CHROMIUM, Browser
from tests.fleet.messages import (
    MODEL,
    Raw,
    coverage_body,
    jpeg,
    stats_body,
    status_body,
)

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium (scripts/test.sh installs Debian's chromium)")
CATEGORIES = ("void", "flat", "construction", "object", "nature", "sky", "human", "vehicle")


class Dashboard:
    """``streamlit run fleet/dashboard/app.py`` on a free port, open in a headless Chromium tab."""

    def __init__(self, broker, tmp_path, width: int = 1280, env: dict | None = None):
        pytest.importorskip("streamlit")
        pytest.importorskip("websockets")
        from edge_runtime.io.broker import free_port
        port = free_port()
        env = dict(os.environ, ROADSEG_DASH_MQTT_HOST="127.0.0.1", ROADSEG_DASH_MQTT_PORT=str(broker.port),
                   ROADSEG_DASH_MQTT_PROTOCOL="3.1.1", **(env or {}))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", str(ROOT / "fleet/dashboard/app.py"), "--server.headless",
             "true", "--server.port", str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats",
             "false", "--client.toolbarMode", "minimal"], env=env, cwd=ROOT, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True)
        for line in self.proc.stdout:  # the server says when it listens: no polling
            if "You can now view" in line:
                break
        else:
            raise AssertionError("streamlit did not start")
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()  # keep its pipe drained
        self.browser = Browser(tmp_path / "profile", width=width)
        self.page = self.browser.open(f"http://127.0.0.1:{port}/")

    def close(self):
        self.page.close()
        self.browser.close()
        self.proc.terminate()
        self.proc.wait(timeout=10)


def section(dom: str, heading: str) -> str:
    """The page's HTML from ``heading`` up to the next vehicle's heading (``<h3``)."""
    start = dom.find(heading)
    end = dom.find("<h3", start + 1)
    return dom[start:end if end > 0 else None] if start >= 0 else ""


#: the labels of a chart's legend (found by Vega's aria-label) that are drawn inside the chart's visible box
VISIBLE_LEGEND_JS = """(() => {
  const g = [...document.querySelectorAll('g.role-legend')]
    .find((e) => (e.getAttribute('aria-label') || '').includes(%s));
  if (!g) return null;
  const box = g.ownerSVGElement.closest('.vega-embed') || g.ownerSVGElement;
  const outer = box.getBoundingClientRect(), svg = g.ownerSVGElement.getBoundingClientRect();
  const inside = (r, b) => r.top >= b.top - 1 && r.bottom <= b.bottom + 1 && r.left >= b.left - 1 && r.right <= b.right + 1;
  return [...g.querySelectorAll('text')].filter((t) => {
    const r = t.getBoundingClientRect();
    return r.width > 0 && inside(r, svg) && inside(r, outer);
  }).map((t) => t.textContent);
})()"""


def legend_names(dom: str) -> list[str]:
    """The category names inside the page's colour legend (an HTML list, so it is read, not guessed)."""
    start = dom.find("aria-label=\"category colours\"")
    block = dom[start:dom.find("</div>", start)] if start >= 0 else ""
    return [c for c in CATEGORIES if f"</span> {c}</span>" in block]


def test_browser_shows_the_fleet(broker, tmp_path):
    from edge_runtime.contract import payloads
    from edge_runtime.io.mqtt import MqttPublisher, MqttSettings
    pub = MqttPublisher(MqttSettings(mqtt_port=broker.port, device_id="bus9", mqtt_protocol="3.1.1"))
    pub.start({"model": {"name": "student-int8"}, "api": "http://10.0.0.9:8080"})
    van = MqttPublisher(MqttSettings(mqtt_port=broker.port, device_id="van3", mqtt_protocol="3.1.1"))
    van.start({"model": {"name": "student-int8"}})
    van.set_state("camera_lost", error="no such device")
    raw = Raw(broker.port)  # a vehicle that went away (its Last Will), and one that has only announced itself
    raw.send(("roadseg/gone1/status", status_body("gone1", "offline", reason="lost", api="http://10.0.0.66:8080"),
              True), ("roadseg/gone1/stats", stats_body("gone1", temp=42.25), True),
             ("roadseg/new1/status", status_body("new1"), True))
    dash = Dashboard(broker, tmp_path)
    seq = [0]

    def vehicle_reports():
        """What bus9 sends every interval (not retained: the dashboard sees it once it subscribed)."""
        seq[0] += 1
        pub.publish("coverage", json.loads(coverage_body("bus9", seq[0])))
        pub.publish("stats", payloads.stats(
            "bus9", achieved_fps=14.2, target_fps=15, frames=900, dropped_frames=12, skipped_ticks=3,
            camera_reconnects=0, camera_state="live", latency_ms={"p50": 20.1, "p90": 25.0, "p99": 31.4},
            cpu_temp_c=71.5, memory={"rss_mb": 140.2}, uptime_s=61.0,
            mqtt={"queued": 0, "queued_total": 10, "sent": 10, "dropped": 0, "connected": True}, model=MODEL))

    try:
        dash.page.wait_for("— connected", "van3", "gone1")  # the subscriber is in place: now bus9 reports
        for _ in range(4):  # a few points on the charts for the picture
            vehicle_reports()
        dom = dash.page.wait_for("71.5", "bus9: coverage", "with 8 values")
        if os.environ.get("H4_DEBUG"):
            Path("/tmp/h4_dom1.html").write_text(dom)
        shot = tmp_path / "dashboard.png"
        dash.page.screenshot(shot)
        legend = dash.page.evaluate(VISIBLE_LEGEND_JS % json.dumps("with 8 values"))
        checks = {
            "bus9 shown online": "bus9 — online" in dom,
            "van3's alert with its cause": re.search(r"van3 lost its camera: <code[^>]*>no such device</code>", dom),
            "bus9's own live view, from its status": "http://10.0.0.9:8080/v1/stream.mjpg" in dom,
            "a stats figure": "71.5" in dom and "CPU °C" in dom,
            "title, no Deploy button": "<title>roadseg fleet</title>" in dom and "Deploy" not in dom,
            "issue 24: the legend names all eight categories": legend_names(dom) == list(CATEGORIES),
            "issue 24: the coverage chart's legend shows all eight, none clipped": legend == list(CATEGORIES),
            "issue 24: an offline vehicle says why": "gone1 is offline (Last Will: connection lost)" in dom,
            "issue 24: an offline vehicle is grey": re.search(r"color[^>]*>gone1 — offline<", dom),
            "issue 24: an offline vehicle has no live-view link": "10.0.0.66" not in dom,
            "issue 24: no camera live for an offline vehicle": "live" not in section(dom, "gone1 — offline"),
            "issue 24: no cell reads None": ">None<" not in dom,  # the grid draws — (test_dashboard checks)
            "no traceback": "Traceback" not in dom,
        }
        failed = [k for k, ok in checks.items() if not ok]
        if os.environ.get("H4_DEBUG"):
            shutil.copy(shot, "/tmp/h4_shot/dashboard.png")
        assert not failed, (failed, legend)
        assert shot.is_file() and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        out = os.environ.get("ROADSEG_SCREENSHOT_DIR")
        if out:  # refreshing docs/img: only a rendered page will do
            assert shot.stat().st_size > 30_000, "the dashboard did not render past its skeleton"
            shutil.copy(shot, Path(out) / "dashboard.png")
    finally:
        dash.close()
        raw.close()
        pub.stop(1)
        van.stop(1)


#: the health table's grid (glide-data-grid draws on a canvas and keeps an accessible table of the cells it shows):
#: its scrolled and visible widths, and the column headers it shows
HEALTH_TABLE_JS = """(() => {
  const s = document.querySelector('.dvn-scroller');
  if (!s) return null;
  const heads = [...document.querySelectorAll('[role="columnheader"]')].map((h) => h.textContent);
  return {scroll: s.scrollWidth, client: s.clientWidth, heads};
})()"""


def test_browser_health_table_fits_1400_px_and_an_unseen_vehicle_claims_no_figures(broker, tmp_path):
    """Issue 33: at 1,400 px every column of the health table is on screen (the last one, uptime's side, was
    cut off), and a listed vehicle that never sent anything says so, not "figures below are the last received"."""
    raw = Raw(broker.port)
    raw.send(("roadseg/bus9/status", status_body("bus9", api="http://10.0.0.9:8080"), True),
             ("roadseg/bus9/stats", stats_body("bus9", temp=66.5), True),
             ("roadseg/bus9/coverage", coverage_body("bus9", 1), True),
             ("roadseg/gone1/status", status_body("gone1", "offline", reason="lost"), True),
             ("roadseg/gone1/stats", stats_body("gone1", temp=42.25), True))
    dash = Dashboard(broker, tmp_path, width=1400, env={"ROADSEG_DASH_VEHICLES": "ghost1"})
    try:
        dom = dash.page.wait_for("— connected", "66.5", "ghost1 — never seen", "gone1 — offline")
        deadline = time.monotonic() + 20
        table = dash.page.evaluate(HEALTH_TABLE_JS)
        while (table is None or not table["heads"]) and time.monotonic() < deadline:  # the grid draws its heads late
            time.sleep(0.2)
            table = dash.page.evaluate(HEALTH_TABLE_JS)
        if os.environ.get("ROADSEG_SCREENSHOT_DIR"):
            dash.page.screenshot(Path(os.environ["ROADSEG_SCREENSHOT_DIR"]) / "dashboard-1400.png")
        assert table is not None and table["scroll"] <= table["client"] + 1, table  # nothing to scroll to
        assert table["heads"][0] == "vehicle" and "uptime min" in table["heads"] and len(table["heads"]) >= 15, table
        ghost = section(dom, "ghost1 — never seen")
        assert "nothing received from ghost1" in ghost and "last received" not in ghost, ghost[:3000]
        assert "figures below are the last received" in section(dom, "gone1 — offline")  # it did send figures
    finally:
        dash.close()
        raw.close()


class Attacker(http.server.BaseHTTPRequestHandler):
    """The site a hostile message points at: it counts what the operator's browser fetches."""
    hits: ClassVar[list[str]] = []

    def do_GET(self):
        Attacker.hits.append(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.end_headers()

    def log_message(self, *a):
        pass


def _poison(evil):
    return [("roadseg/x/status", b"[" * 50_000, True),                                        # RecursionError
            ("roadseg/y/status", '{"state": "online", "ts": 12345, "device_id": "y"}', True)]  # AttributeError


def _wrong_types(evil):
    good = json.loads(stats_body("w1"))
    return [("roadseg/w1/stats", json.dumps(good | {"fps": {"achieved": "fast", "target": 15}}), True),
            ("roadseg/w2/stats", json.dumps(good | {"device_id": "w2", "cpu_temp_c": "hot"}), True),
            ("roadseg/w3/stats", json.dumps(good | {"device_id": "w3"}).replace('"uptime_s": 60.0', '"uptime_s": 1e400'),
             True),
            ("roadseg/w4/status", status_body("w4").replace('"state"', '"model": "str", "state"'), True),
            ("roadseg/w5/coverage", json.dumps({k: v for k, v in json.loads(coverage_body("w5")).items()
                                                if k != "zones"}), True),
            ("roadseg/lamp2/status", status_body("lamp2", "camera_lost", error="no such device"), True)]


def _snapshots(evil):
    return [("roadseg/aaa1/status", status_body("aaa1"), True),
            ("roadseg/aaa1/snapshot", jpeg(claim=(13000, 13000)), True),   # 631 bytes, ~500 MB decoded
            ("roadseg/aaa2/status", status_body("aaa2"), True),
            ("roadseg/aaa2/snapshot", jpeg(claim=(65500, 65500)), True),   # Pillow raises
            ("roadseg/aaa3/status", status_body("aaa3"), True),
            ("roadseg/aaa3/snapshot", b"\xff\xd8<html><img src='" + evil.encode() + b"/h.png'></html>", True)]


def _markdown(evil):
    link, img = f"[Click to re-authenticate]({evil}/phish)", f"![]({evil}/t.png)"
    return [("roadseg/md1/status", status_body("md1", "camera_lost", error=link, source=img, model={"name": img}),
             True),
            ("roadseg/md2/status", status_body("md2", "offline", reason=img + " " + link), True),
            ("roadseg/md3/status", json.dumps(json.loads(status_body("md3")) | {"device_id": link}), True),
            ("roadseg/md3/stats", stats_body("md3"), True)]


def _api(evil):
    real = status_body("car5", api="http://10.0.0.5:8080")
    return [("roadseg/car5/status", real, True), ("roadseg/car5/stats", stats_body("car5"), True),
            ("roadseg/car5/status", real.replace("http://10.0.0.5:8080", "http://evil.example/phish"), True),
            ("roadseg/api1/status", status_body("api1").replace('"state"', '"api": "javascript:alert(1)", "state"'),
             True),
            ("roadseg/api2/status", status_body("api2").replace('"state"', '"api": "http://[::1]@evil.example", "state"'),
             True)]


#: issue 23's dashboard cases: what is sent (retained, so every restart meets it again), what the page must show
CASES = {
    "one message stops it for good": (_poison, [], lambda dom, evil: "subscriber has stopped" not in dom),
    "wrong types blank the whole fleet": (_wrong_types, ["lamp2 lost its camera"],
                                          lambda dom, evil: "messages dropped from 5 senders" in dom),
    "snapshots are decoded blindly": (_snapshots, [f"aaa{i} — online" for i in (1, 2, 3)],
                                      lambda dom, evil: "could not be drawn" not in dom),
    "strings from the broker are rendered as Markdown": (
        _markdown, ["md1 lost its camera", "md2 is offline", "md3 — "],
        lambda dom, evil: f'href="{evil}' not in dom and f'src="{evil}' not in dom
        and "[Click to re-authenticate](" in dom),
    "the announced api address is trusted": (
        _api, ["car5 — "], lambda dom, evil: "evil.example" not in dom and "javascript:" not in dom),
}


@pytest.mark.parametrize("case", list(CASES))
def test_browser_survives_what_anyone_on_the_broker_sends(case, broker, tmp_path):
    messages, shown, holds = CASES[case]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Attacker)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    evil = f"http://127.0.0.1:{server.server_address[1]}"
    Attacker.hits = []
    raw = Raw(broker.port)
    raw.send(*messages(evil))
    dash = Dashboard(broker, tmp_path)
    try:
        dash.page.wait_for("— connected")  # the subscriber is in place, the retained messages delivered to it
        raw.send(("roadseg/ok7/stats", stats_body("ok7", temp=63.5)))  # a vehicle reporting after all of them
        dom = dash.page.wait_for("63.5", *shown)
        missing = [s for s in ["63.5", *shown] if s not in dom]
        assert not missing, missing  # every vehicle rendered, ok7 (63.5 °C), which reported last, included
        assert holds(dom, evil), case
        assert Attacker.hits == []  # the operator's browser fetched nothing an attacker named
        assert "Traceback" not in dom and str(ROOT) not in dom  # no error details, no server paths
    finally:
        dash.close()
        raw.close()
        server.shutdown()
