"""What adversarial probing and days of unattended running broke (issue 14),
each against the real thing: real LiteRT, real mosquitto, real uvicorn on
loopback, a faked camera behind the real camera interface."""
from __future__ import annotations

import json
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

from conftest import Broker, Subscriber
from edge_runtime.io.sources import LatestFrameSource, SyntheticCamera, open_source, redact
from edge_runtime.run import Runner, load_settings

ROOT = Path(__file__).resolve().parents[1]


def _run_cli(*args, timeout=60, env=None):
    import os
    return subprocess.run([sys.executable, "-m", "edge_runtime.run", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, env=dict(os.environ, **(env or {})))


def _settings(model, broker, **kw):
    base = {"model": str(model), "source": "synthetic:64x128@30", "fps": 20, "device_id": "t1",
            "mqtt_host": "127.0.0.1", "mqtt_port": broker.port,
            "mqtt_protocol": "5" if broker.mqtt5 else "3.1.1", "publish_interval": 0.2}
    return load_settings(base | kw, None, env={})


def _png_header_only(w: int, h: int) -> bytes:
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + struct.pack(">IIBBBBB", w, h, 1, 0, 0, 0, 0)


def _bomb_png(w: int, h: int) -> bytes:
    """A real, decodable 1-bit PNG of w x h: a few tens of KB that decode to gigabytes."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    raw = zlib.compress(b"\x00" * ((w + 7) // 8 + 1) * h, 9)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 1, 0, 0, 0, 0))
            + chunk(b"IDAT", raw) + chunk(b"IEND", b""))


# --- 1, 2, 9: the HTTP API ----------------------------------------------------------------

@pytest.fixture(scope="module")
def seg(tiny_tflite):
    from edge_runtime.model.segmenter import DeviceSegmenter
    return DeviceSegmenter(tiny_tflite, threads=1)


def test_decompression_bomb_and_empty_upload_are_4xx(seg):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from edge_runtime.api import create_app, image_dimensions
    bomb = _bomb_png(20000, 20000)
    assert len(bomb) < 200_000 and image_dimensions(bomb) == ("png", 20000, 20000)
    c = TestClient(create_app(seg), raise_server_exceptions=False)
    for body in (bomb, _png_header_only(40000, 40000)):
        r = c.post("/v1/segment?format=png", files={"file": ("b.png", body, "image/png")})
        assert r.status_code == 413 and "--max-pixels" in r.json()["detail"], r.text
    r = c.post("/v1/segment", files={"file": ("e.png", b"", "image/png")})
    assert r.status_code == 422 and "empty" in r.json()["detail"]
    r = c.post("/v1/segment", files={"file": ("t.jpg", b"\xff\xd8\xff\xe0\x00\x10JFIF", "image/jpeg")})
    assert r.status_code == 422
    import cv2
    jpg = cv2.imencode(".jpg", np.zeros((30, 50, 3), np.uint8))[1].tobytes()
    assert image_dimensions(jpg) == ("jpeg", 50, 30)


class SlowSegmenter:
    def __init__(self, seg, delay):
        self.seg, self.delay = seg, delay

    def __getattr__(self, name):
        return getattr(self.seg, name)

    def segment(self, frame, order="rgb"):
        time.sleep(self.delay)
        return self.seg.segment(frame, order)


def _png(h=96, w=192):
    import cv2
    from edge_runtime.synthetic import synthetic_scene
    return cv2.imencode(".png", synthetic_scene(3, h, w)[0])[1].tobytes()


def test_inference_runs_off_the_event_loop_with_bounded_inflight(seg):
    pytest.importorskip("fastapi")
    import httpx

    from edge_runtime.api import create_app, serve_in_thread
    from edge_runtime.io.publisher import free_port
    port = free_port()
    server = serve_in_thread(create_app(SlowSegmenter(seg, 1.5), max_inflight=1), "127.0.0.1", port)
    url = f"http://127.0.0.1:{port}"
    try:
        results = []
        t = threading.Thread(target=lambda: results.append(
            httpx.post(f"{url}/v1/segment", files={"file": ("f.png", _png(), "image/png")}, timeout=30)))
        t.start()
        time.sleep(0.4)  # the upload is being segmented now
        t0 = time.perf_counter()
        assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200
        assert time.perf_counter() - t0 < 0.5  # the event loop is free
        busy = httpx.post(f"{url}/v1/segment", files={"file": ("f.png", _png(), "image/png")}, timeout=5)
        assert busy.status_code == 503 and busy.headers["retry-after"] == "1"
        t.join(timeout=30)
        assert results and results[0].status_code == 200
    finally:
        server.should_exit = True


def test_protected_live_view_opens_from_a_signed_url(seg):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from edge_runtime.api import LiveState, create_app
    from edge_runtime.synthetic import synthetic_scene
    live = LiveState()
    img = synthetic_scene(1, 64, 128)[0]
    live.update(img, "rgb", seg.segment(img, "rgb"), 10.0)
    c = TestClient(create_app(seg, live, token="s3cret-token"))
    assert c.post("/v1/live-url").status_code == 401
    got = c.post("/v1/live-url?ttl=60", headers={"Authorization": "Bearer s3cret-token"}).json()
    assert "s3cret-token" not in got["url"] and got["expires"] > time.time()
    with c.stream("GET", got["url"]) as r:  # no header: what an <img> in a browser does
        assert r.status_code == 200
        assert b"--frame" in next(r.iter_bytes())
    assert c.get(got["url"].replace("sig=", "sig=0")).status_code == 401
    path, query = got["url"].split("?")
    assert c.get(f"{path}?expires={int(time.time()) - 5}&{query.split('&')[1]}").status_code == 401
    assert c.get("/v1/stats?" + query).status_code == 401  # the signature opens the live view only


# --- 3: bounded memory ---------------------------------------------------------------------

def test_latency_windows_are_bounded(tiny_tflite, monkeypatch):
    import edge_runtime.run as run
    from edge_runtime.io.publisher import NullPublisher
    monkeypatch.setattr(run, "LATENCY_WINDOW", 50)
    s = load_settings({"model": str(tiny_tflite), "source": "synthetic:64x128@1000", "fps": 0,
                       "max_frames": 200, "device_id": "mem"}, None, env={})
    runner = Runner(s, publisher=NullPublisher())
    summary = runner.run()
    assert summary["frames"] == 200
    assert len(runner.latencies) == 50 and len(runner.inference) == 50


# --- 4, 5: secrets and exits ---------------------------------------------------------------

def test_credentials_in_a_stream_url_never_leave_the_process(tiny_tflite, broker):
    assert redact("rtsp://admin:hunter2@10.0.0.5:554/live") == "rtsp://***@10.0.0.5:554/live"
    sub = Subscriber(broker.port, "roadseg/cam9/status", client_id="secret-sub")
    try:
        r = _run_cli("--model", str(tiny_tflite), "--mqtt-host", "127.0.0.1", "--mqtt-port", str(broker.port),
                     "--mqtt-protocol", "3.1.1", "--device-id", "cam9", "--source",
                     "rtsp://admin:hunter2@127.0.0.1:1/live", "--camera-wait", "2", timeout=90)
        assert r.returncode == 4 and "within --camera-wait" in r.stderr, r.stderr
        assert "hunter2" not in r.stderr + r.stdout and "***@127.0.0.1" in r.stderr
        assert sub.wait_for(lambda m: m[1] and m[1].get("state") == "camera_lost", timeout=10)
        assert all("hunter2" not in json.dumps(m[1]) for m in sub.messages)
    finally:
        sub.close()


@pytest.mark.parametrize("args,message", [
    (["--max-queued", "0"], "--max-queued 0 must be at least 1"),
    (["--max-queued", "-5"], "--max-queued -5 must be at least 1"),
    (["--fps", "nan"], "--fps nan must be a finite number"),
    (["--fps", "inf"], "--fps inf must be a finite number"),
    (["--threads", "-3"], "--threads -3 must be at least 1"),
    (["--mqtt-password-file", "/nonexistent/pw"], "--mqtt-password-file: no such file"),
    (["--tls-ca", "/nonexistent/ca.pem"], "--tls-ca: no such file"),
    (["--device-id", "car/1"], "--device-id 'car/1'"),
])
def test_bad_settings_are_one_line_and_exit_2(tiny_tflite, args, message):
    r = _run_cli("--model", str(tiny_tflite), "--source", "synthetic", *args)
    assert r.returncode == 2, r.stderr
    assert message in r.stderr and "Traceback" not in r.stderr and "FATAL" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_http_port_in_use_fails_with_exit_4(tiny_tflite, broker):
    pytest.importorskip("fastapi")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = _run_cli("--model", str(tiny_tflite), "--source", "synthetic:64x128@30", "--mqtt-host", "127.0.0.1",
                     "--mqtt-port", str(broker.port), "--mqtt-protocol", "3.1.1", "--http", f"127.0.0.1:{port}",
                     "--max-frames", "5")
    assert r.returncode == 4 and f"--http 127.0.0.1:{port}: cannot listen there" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


# --- 6: camera outages ------------------------------------------------------------------------

class Watchdog:
    """A NOTIFY_SOCKET as systemd provides it: counts WATCHDOG=1 pings."""

    def __init__(self, path: Path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.pings: list[float] = []
        self.stop = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while not self.stop.is_set():
            try:
                if b"WATCHDOG=1" in self.sock.recv(256):
                    self.pings.append(time.monotonic())
            except OSError:
                pass


def _states(sub):
    return [m[1]["state"] for m in sub.of("/status") if m[1]]


def test_camera_lost_is_a_state_with_watchdog_pings_and_recovery(tiny_tflite, broker, tmp_path, monkeypatch):
    wd = Watchdog(tmp_path / "notify")
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify"))
    cam = SyntheticCamera((64, 128), 30.0)
    cam.unplug()  # not there at start: the first open retries too
    source = LatestFrameSource(cam, "usb-cam").start(wait=False)
    sub = Subscriber(broker.port, "roadseg/t1/#", client_id="cam-sub")
    runner = Runner(_settings(tiny_tflite, broker, duration=40.0, camera_wait=30.0), source=source)
    t = threading.Thread(target=runner.run)
    t.start()
    try:
        assert sub.wait_for(lambda m: m[0].endswith("/status") and m[1]["state"] == "camera_lost", timeout=15)
        cam.plug()
        t_back = time.monotonic()
        assert sub.wait_for(lambda m: m[0].endswith("/coverage"), timeout=10)
        assert time.monotonic() - t_back < 5
        assert _states(sub)[-1] == "online"
        n = runner.frames
        last_cov = sub.of("/coverage")[-1][1]["ts"]
        cam.unplug()  # unplugged while running
        t_lost = time.monotonic()
        assert sub.wait_for(lambda m: m[0].endswith("/status") and m[1]["state"] == "camera_lost"
                            and m[1]["ts"] > last_cov, timeout=10)
        time.sleep(3)
        pings_while_lost = [p for p in wd.pings if p > t_lost + 1]
        assert len(pings_while_lost) >= 2  # systemd keeps hearing from the loop
        cam.plug()
        t_back = time.monotonic()
        while runner.frames <= n + 5 and time.monotonic() - t_back < 10:
            time.sleep(0.05)
        assert runner.frames > n + 5 and time.monotonic() - t_back < 5
        assert source.reconnects >= 1 and t.is_alive()
    finally:
        runner.request_stop()
        t.join(timeout=30)
        sub.close()
        wd.stop.set()
    # the retained status a newcomer sees is the latest
    late = Subscriber(broker.port, "roadseg/t1/status", client_id="late-cam")
    try:
        assert late.wait_for(lambda m: m[2] and m[1]["state"] == "offline", timeout=10)
    finally:
        late.close()


def test_device_node_is_a_camera_not_a_file():
    src = open_source("/dev/video99", (64, 128), wait=False)
    try:
        assert isinstance(src, LatestFrameSource) and not src.finite
        time.sleep(0.3)
        assert src.state == "opening" and "cannot open camera" in src.last_error
    finally:
        src.stop()


# --- 7: drops logged, queue length, fast reconnection ------------------------------------------

def test_drops_are_logged_and_queued_is_the_queue_length(caplog):
    from edge_runtime.io.publisher import MqttPublisher, MqttSettings, free_port
    pub = MqttPublisher(MqttSettings(port=free_port(), max_queued=3, device_id="q"))
    pub.start()
    try:
        with caplog.at_level("WARNING", logger="roadseg.mqtt"):
            for i in range(6):
                pub.publish("coverage", {"seq": i})
        assert pub.counts["queued"] == 3 and pub.counts["queued_total"] == 6 and pub.counts["dropped"] == 3
        assert any("dropped" in r.message and "--max-queued" in r.message for r in caplog.records)
        assert sum("dropped" in r.message for r in caplog.records) == 1  # rate-limited
    finally:
        pub.stop(timeout=0.1)
    with pytest.raises(ValueError, match="max_queued"):
        MqttPublisher(MqttSettings(max_queued=0))


def test_summaries_resume_within_5s_of_the_broker(tiny_tflite, broker):
    runner = Runner(_settings(tiny_tflite, broker, duration=30.0, device_id="rc1"))
    t = threading.Thread(target=runner.run)
    t.start()
    sub = Subscriber(broker.port, "roadseg/rc1/coverage", client_id="rc-sub")
    try:
        assert sub.wait_for(lambda m: True, timeout=20)
        broker.stop()
        time.sleep(6)  # long enough for the reconnect back-off to grow
        broker.start()
        back = time.monotonic()
        seq = runner.seq
        while not any(m[1]["seq"] > seq for m in sub.of("/coverage")) and time.monotonic() - back < 15:
            time.sleep(0.05)
        assert time.monotonic() - back < 5, "summaries resumed too late"
    finally:
        runner.request_stop()
        t.join(timeout=30)
        sub.close()


# --- 8: Home Assistant ---------------------------------------------------------------------------

def test_home_assistant_discovery_survives_broker_restart_and_follows_birth(tiny_tflite, tmp_path):
    import paho.mqtt.client as mqtt
    b = Broker(tmp_path, persistence=False).start()
    runner = Runner(_settings(tiny_tflite, b, duration=40.0, device_id="ha_car", ha_discovery=True,
                              ha_interval=1.0, mqtt_protocol="3.1.1"))
    t = threading.Thread(target=runner.run)
    t.start()
    try:
        sub = Subscriber(b.port, "homeassistant/#", client_id="ha-sub")
        assert sub.wait_for(lambda m: m[0].endswith("/config"), timeout=20)
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
        time.sleep(3.5)
        got = states.of("/ha")
        states.close()
        c.loop_stop()
        c.disconnect()
        assert 2 <= len(got) <= 5  # once per --ha-interval (1 s here), not per summary (5 per second)
        assert all(v == round(v, 1) for v in got[-1][1]["coverage"].values())
    finally:
        runner.request_stop()
        t.join(timeout=30)
        b.stop()


# --- 10: model contracts ---------------------------------------------------------------------------

def test_tflite_without_sidecar_says_so(tiny_tflite, tmp_path, caplog):
    import shutil

    from edge_runtime.model.segmenter import DeviceSegmenter
    bare = tmp_path / "bare.tflite"
    shutil.copy(tiny_tflite, bare)
    with caplog.at_level("WARNING", logger="roadseg.segmenter"):
        DeviceSegmenter(bare)
    assert any("no sidecar" in r.message and "assumptions" in r.message for r in caplog.records)


def test_export_refuses_frames_of_another_size(tiny_student_run):
    pytest.importorskip("tensorflow")
    from trainer.export import ExportedModel
    m = ExportedModel(tiny_student_run)
    assert m(np.zeros((2, *m.size, 3), np.uint8)).shape == (2, *m.size, 8)
    with pytest.raises(ValueError, match=r"takes uint8 RGB frames \[N,64,128,3\], got \[1, 128, 256, 3\]"):
        m(np.zeros((1, 128, 256, 3), np.uint8))


def test_delegate_options_are_parsed_and_a_missing_library_is_one_line(tiny_tflite):
    from edge_runtime.model.interpreter import parse_delegate_options
    assert parse_delegate_options(["device=usb:0", "k = v"]) == {"device": "usb:0", "k": "v"}
    assert parse_delegate_options("a=1;b=2") == {"a": "1", "b": "2"}
    with pytest.raises(ValueError, match="is not KEY=VALUE"):
        parse_delegate_options(["novalue"])
    r = _run_cli("--model", str(tiny_tflite), "--source", "synthetic", "--delegate", "/nonexistent/libedgetpu.so.1",
                 "--delegate-option", "device=usb:0")
    assert r.returncode == 2 and "cannot load delegate /nonexistent/libedgetpu.so.1 with options" in r.stderr
    assert "Traceback" not in r.stderr
    r = _run_cli("--model", str(tiny_tflite), "--source", "synthetic", "--delegate-option", "device=usb:0")
    assert r.returncode == 2 and "--delegate-option needs --delegate" in r.stderr
