"""edge_runtime.api.app: the routes (segment, stats, health), inference off the event loop,
and the API beside a real run loop."""
import threading
import time

import cv2
import numpy as np
import pytest

pytest.importorskip("fastapi")
import httpx  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from edge_runtime.api import LiveState, create_app  # noqa: E402
from tests.edge_runtime.api_serving import free_port, png_bytes, served  # noqa: E402


@pytest.fixture(scope="module")
def seg(tiny_tflite):
    from edge_runtime.model.segmenter import DeviceSegmenter
    return DeviceSegmenter(tiny_tflite, threads=1)


def test_segment_json_and_png(seg):
    c = TestClient(create_app(seg))
    r = c.post("/v1/segment", files={"file": ("f.png", png_bytes(), "image/png")})
    assert r.status_code == 200, r.text
    body = r.json()
    assert sum(body["coverage"].values()) == pytest.approx(1.0, abs=1e-4)
    assert body["width"] == 192 and body["model"]["sha256"]
    r = c.post("/v1/segment?format=png", files={"file": ("f.png", png_bytes(), "image/png")})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    img = cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_COLOR)
    assert img.shape == (96, 192, 3)
    r = c.post("/v1/segment?format=png&view=mask", files={"file": ("f.png", png_bytes(), "image/png")})
    assert r.status_code == 200
    assert cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_COLOR).shape == (96, 192, 3)
    jpg = cv2.imencode(".jpg", cv2.imdecode(np.frombuffer(png_bytes(), np.uint8), cv2.IMREAD_COLOR))[1].tobytes()
    assert c.post("/v1/segment", files={"file": ("f.jpg", jpg, "image/jpeg")}).status_code == 200
    assert c.get("/openapi.json").json()["info"]["title"] == "roadseg device API"
    for bad in ("format=gif", "view=x", "format=png&view="):
        assert c.post(f"/v1/segment?{bad}", files={"file": ("f.png", png_bytes(), "image/png")}).status_code == 422


class GatedSegmenter:
    """The real segmenter, held at the start of each inference until ``release`` is set."""

    def __init__(self, seg):
        self.seg, self.started, self.release = seg, threading.Event(), threading.Event()

    def __getattr__(self, name):
        return getattr(self.seg, name)

    def segment(self, frame, order="rgb"):
        self.started.set()
        self.release.wait(timeout=30)
        return self.seg.segment(frame, order)


def test_inference_runs_off_the_event_loop_with_bounded_inflight(seg):
    gated = GatedSegmenter(seg)
    with served(create_app(gated, max_inflight=1)) as (url, _):
        results = []
        t = threading.Thread(target=lambda: results.append(
            httpx.post(f"{url}/v1/segment", files={"file": ("f.png", png_bytes(), "image/png")}, timeout=30)))
        t.start()
        try:
            assert gated.started.wait(timeout=10)  # the upload is being segmented now
            t0 = time.perf_counter()
            assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200
            assert time.perf_counter() - t0 < 0.5  # the event loop is free
            busy = httpx.post(f"{url}/v1/segment", files={"file": ("f.png", png_bytes(), "image/png")}, timeout=5)
            assert busy.status_code == 503 and busy.headers["retry-after"] == "1"
        finally:
            gated.release.set()
            t.join(timeout=30)
        assert results and results[0].status_code == 200


def test_stats_report_the_live_loops_model_not_the_upload_interpreters(seg, tiny_tflite):
    from edge_runtime.model.segmenter import DeviceSegmenter
    loop_seg = DeviceSegmenter(tiny_tflite, threads=2)
    live = LiveState(stats_fn=lambda: {"device_id": "car1", "frames": 3}, describe_fn=loop_seg.describe)
    body = TestClient(create_app(seg, live)).get("/v1/stats").json()
    assert body["model"]["threads"] == 2 and body["api"]["upload_threads"] == 1
    assert body["live"] == {"device_id": "car1", "frames": 3}
    alone = TestClient(create_app(seg)).get("/v1/stats").json()  # roadseg-serve: the upload interpreter is the model
    assert alone["model"]["threads"] == 1 and "live" not in alone


def test_run_and_serve_take_the_same_upload_flags():
    from edge_runtime.commands import run, serve
    flags = ("--max-upload-mb", "--max-pixels", "--max-inflight", "--api-token-file", "--http")
    for parser in (run.build_parser(), serve.build_parser()):
        assert all(f in parser._option_string_actions for f in flags), parser.prog


def test_run_with_http_serves_live_stats_and_stream(tiny_tflite, broker):
    from edge_runtime.commands.run import Vehicle
    from edge_runtime.commands.settings import load_settings
    port = free_port()
    s = load_settings({"model": str(tiny_tflite), "source": "synthetic:64x128@20", "fps": 10, "device_id": "web1",
                       "mqtt_host": "127.0.0.1", "mqtt_port": broker.port, "mqtt_protocol": "3.1.1",
                       "http": f"127.0.0.1:{port}", "duration": 6.0, "threads": 2, "max_upload_mb": 0.05},
                      None, env={})
    vehicle = Vehicle(s)
    t = threading.Thread(target=vehicle.run)
    t.start()
    try:
        assert vehicle.ready.wait(timeout=20)
        live = vehicle.live
        seq, _ = live.wait_next(-1, timeout=10)  # the first frame reached the live view
        assert live.wait_next(seq, timeout=10)[0] > seq  # and the next: the first is counted by then
        body = httpx.get(f"http://127.0.0.1:{port}/v1/stats", timeout=5).json()
        assert body["live"]["device_id"] == "web1" and body["live"]["frames"] > 0
        assert body["model"]["threads"] == 2 and body["api"]["upload_threads"] == 1  # the loop's, not the uploads'
        with httpx.stream("GET", f"http://127.0.0.1:{port}/v1/stream.mjpg", timeout=5) as r:
            first = next(r.iter_bytes())
            assert r.headers["content-type"].startswith("multipart/x-mixed-replace") and b"--frame" in first
        big = httpx.post(f"http://127.0.0.1:{port}/v1/segment", files={"file": ("b.png", b"\x89PNG" * 20_000)})
        assert big.status_code == 413 and "--max-upload-mb" in big.json()["detail"]  # the same flag as roadseg-serve
    finally:
        vehicle.request_stop()
        t.join(timeout=30)


@pytest.mark.parametrize("status,alive,code", [("ok", True, 200), ("camera_lost", True, 200),
                                               ("starting", False, 503), ("stalled", False, 503)])
def test_healthz_answers_with_the_live_loops_liveness(seg, status, alive, code):
    live = LiveState(liveness_fn=lambda: {"status": status, "alive": alive, "last_frame_s": 1.5})
    r = TestClient(create_app(seg, live)).get("/healthz")
    assert r.status_code == code and r.json()["status"] == status and r.json()["last_frame_s"] == 1.5
    alone = TestClient(create_app(seg)).get("/healthz")  # roadseg-serve: no loop, the server's own liveness
    assert alone.status_code == 200 and alone.json()["status"] == "ok"
    early = TestClient(create_app(seg, LiveState())).get("/healthz")  # roadseg-run before its loop is built
    assert early.status_code == 503 and early.json()["status"] == "starting"


@pytest.mark.parametrize("fps,since_ping,status", [(10, 7.0, "stalled"), (10, 2.0, "ok"), (0.1, 2.0, "ok"),
                                                    (0.1, 7.0, "stalled")])
def test_liveness_reads_the_pings_the_same_at_every_fps(tiny_tflite, fps, since_ping, status):
    """The loop pings every second between its frames too (tests/edge_runtime/test_loop.py, low --fps), so
    five seconds without a ping is a stalled loop at --fps 0.1 as at 10."""
    from edge_runtime.io.mqtt import NullPublisher
    from edge_runtime.commands.settings import load_settings
    from edge_runtime.loop import Runner
    s = load_settings({"model": str(tiny_tflite), "source": "synthetic:64x128@30", "fps": fps, "device_id": "lv"},
                      None, env={})
    runner = Runner(s, publisher=NullPublisher())
    runner._last_ping = time.monotonic() - since_ping
    assert runner.liveness()["status"] == status


def _healthz_until(url, pred, timeout=30.0):
    """The first /healthz answer (code, body) for which ``pred`` holds, or the last one after ``timeout`` s."""
    deadline, tick = time.monotonic() + timeout, threading.Event()
    while True:
        r = httpx.get(f"{url}/healthz", timeout=5)
        got = (r.status_code, r.json())
        if pred(*got) or time.monotonic() > deadline:
            return got
        tick.wait(0.05)


def _vehicle(tiny_tflite, source, port, **extra):
    from edge_runtime.commands.run import Vehicle
    from edge_runtime.commands.settings import load_settings
    s = load_settings({"model": str(tiny_tflite), "source": source, "fps": 20, "device_id": "hz1",
                       "http": f"127.0.0.1:{port}", "duration": 60.0, "threads": 1, **extra}, None, env={})
    vehicle = Vehicle(s)
    t = threading.Thread(target=vehicle.run)
    t.start()
    return vehicle, t


def test_healthz_of_a_vehicle_is_measured_on_frames_stalled_when_the_loop_is_stuck(tiny_tflite, monkeypatch):
    """/healthz said "ok" whatever the loop did (issue 31's adversary: 200 with the camera gone, 0 frames)."""
    from edge_runtime import loop
    from edge_runtime.model.segmenter import DeviceSegmenter
    monkeypatch.setattr(loop, "LIVENESS_S", 1.0)
    gate, stuck, real = threading.Event(), threading.Event(), DeviceSegmenter.segment

    def segment(self, *a, **k):  # an inference that hangs once the gate is closed (a delegate stuck in a driver)
        if not gate.is_set():
            stuck.set()
            gate.wait(60)
        return real(self, *a, **k)
    gate.set()
    monkeypatch.setattr(DeviceSegmenter, "segment", segment)
    port = free_port()
    vehicle, t = _vehicle(tiny_tflite, "synthetic:64x128@30", port)
    url = f"http://127.0.0.1:{port}"
    try:
        assert vehicle.ready.wait(timeout=20)
        code, body = _healthz_until(url, lambda c, b: b["status"] == "ok")
        assert code == 200 and body["status"] == "ok"
        gate.clear()
        assert stuck.wait(10)
        code, body = _healthz_until(url, lambda c, b: c == 503)
        assert code == 503 and body["status"] == "stalled" and body["last_frame_s"] > 0.5
        gate.set()
        code, body = _healthz_until(url, lambda c, b: c == 200)
        assert code == 200 and body["status"] == "ok"
    finally:
        gate.set()
        vehicle.request_stop()
        t.join(timeout=30)


def test_healthz_of_a_vehicle_whose_camera_is_away_says_camera_lost(tiny_tflite):
    port = free_port()
    vehicle, t = _vehicle(tiny_tflite, "v4l2:/dev/video97", port, camera_wait=60.0)
    url = f"http://127.0.0.1:{port}"
    try:
        assert vehicle.ready.wait(timeout=20)
        code, body = _healthz_until(url, lambda c, b: b["status"] == "camera_lost")
        assert code == 200 and body["status"] == "camera_lost"  # alive: it says so and reopens the camera
    finally:
        vehicle.request_stop()
        t.join(timeout=30)
