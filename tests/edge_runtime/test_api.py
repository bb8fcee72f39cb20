"""The device API with FastAPI's test client."""
import struct
import threading
import time
import zlib

import cv2
import numpy as np
import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from edge_runtime.api.app import LiveState, create_app  # noqa: E402
from edge_runtime.eval.synthetic import synthetic_scene  # noqa: E402




@pytest.fixture(scope="module")
def seg(tiny_tflite):
    from edge_runtime.model.segmenter import DeviceSegmenter
    return DeviceSegmenter(tiny_tflite, threads=1)


def _png(h=96, w=192):
    img = cv2.cvtColor(synthetic_scene(3, h, w)[0], cv2.COLOR_RGB2BGR)
    return cv2.imencode(".png", img)[1].tobytes()


def test_segment_json_and_png(seg):
    c = TestClient(create_app(seg))
    r = c.post("/v1/segment", files={"file": ("f.png", _png(), "image/png")})
    assert r.status_code == 200, r.text
    body = r.json()
    assert sum(body["coverage"].values()) == pytest.approx(1.0, abs=1e-4)
    assert body["width"] == 192 and body["model"]["sha256"]
    r = c.post("/v1/segment?format=png", files={"file": ("f.png", _png(), "image/png")})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    img = cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_COLOR)
    assert img.shape == (96, 192, 3)
    r = c.post("/v1/segment?format=png&view=mask", files={"file": ("f.png", _png(), "image/png")})
    assert r.status_code == 200
    jpg = cv2.imencode(".jpg", cv2.imdecode(np.frombuffer(_png(), np.uint8), cv2.IMREAD_COLOR))[1].tobytes()
    assert c.post("/v1/segment", files={"file": ("f.jpg", jpg, "image/jpeg")}).status_code == 200
    assert c.get("/openapi.json").json()["info"]["title"] == "roadseg device API"


def test_bad_type_bad_image_oversized(seg):
    c = TestClient(create_app(seg, max_upload=50_000))
    r = c.post("/v1/segment", files={"file": ("f.txt", b"hello", "text/plain")})
    assert r.status_code == 415 and "image/jpeg" in r.json()["detail"]
    r = c.post("/v1/segment", files={"file": ("f.png", b"not really a png", "image/png")})
    assert r.status_code == 422 and "not a decodable" in r.json()["detail"]
    big = _png(400, 800)
    assert len(big) > 50_000
    r = c.post("/v1/segment", files={"file": ("f.png", big, "image/png")})
    assert r.status_code == 413


def test_token_required_except_health(seg):
    c = TestClient(create_app(seg, token="s3cret"))
    assert c.get("/healthz").status_code == 200
    assert c.get("/v1/stats").status_code == 401
    # /docs must open in a browser: the schema is public and declares how to authenticate
    schema = c.get("/openapi.json").json()
    assert schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert c.get("/docs").status_code == 200
    assert c.get("/v1/stats", headers={"Authorization": "Bearer wrong"}).status_code == 401
    r = c.get("/v1/stats", headers={"Authorization": "Bearer s3cret"})
    assert r.status_code == 200 and r.json()["model"]["input_size"] == [64, 128]


def test_mjpeg_frames_arrive(seg):
    live = LiveState()
    stop = threading.Event()

    def feed():
        img = synthetic_scene(1, 64, 128)[0]
        while not stop.is_set():
            live.update(img, "rgb", seg.segment(img, "rgb"), 12.5)
            time.sleep(0.02)

    t = threading.Thread(target=feed, daemon=True)
    t.start()
    try:
        c = TestClient(create_app(seg, live))
        with c.stream("GET", "/v1/stream.mjpg") as r:
            assert r.status_code == 200 and "multipart/x-mixed-replace" in r.headers["content-type"]
            buf = b""
            for chunk in r.iter_bytes():
                buf += chunk
                if buf.count(b"\xff\xd9") >= 2:  # two complete JPEGs
                    break
        start = buf.index(b"\xff\xd8")
        frame = cv2.imdecode(np.frombuffer(buf[start:buf.index(b"\xff\xd9") + 2], np.uint8), cv2.IMREAD_COLOR)
        assert frame.shape == (64, 128, 3)
    finally:
        stop.set()
    assert TestClient(create_app(seg)).get("/v1/stream.mjpg").status_code == 503


def test_run_with_http_serves_live_stats_and_stream(tiny_tflite, broker):
    import httpx

    from edge_runtime.io.publisher import free_port
    from edge_runtime.commands.settings import load_settings
    from edge_runtime.commands.run import Vehicle
    port = free_port()
    s = load_settings({"model": str(tiny_tflite), "source": "synthetic:64x128@20", "fps": 10, "device_id": "web1",
                       "mqtt_host": "127.0.0.1", "mqtt_port": broker.port, "mqtt_protocol": "3.1.1",
                       "http": f"127.0.0.1:{port}", "duration": 6.0}, None, env={})
    runner = Vehicle(s)
    t = threading.Thread(target=runner.run)
    t.start()
    try:
        deadline = time.time() + 20
        body = None
        while time.time() < deadline:
            try:
                body = httpx.get(f"http://127.0.0.1:{port}/v1/stats", timeout=2).json()
                if body.get("live", {}).get("frames"):
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        assert body and body["live"]["device_id"] == "web1" and body["live"]["frames"] > 0
        with httpx.stream("GET", f"http://127.0.0.1:{port}/v1/stream.mjpg", timeout=5) as r:
            first = next(r.iter_bytes())
            assert r.headers["content-type"].startswith("multipart/x-mixed-replace") and b"--frame" in first
    finally:
        t.join(timeout=30)


def _png_header_only(w: int, h: int) -> bytes:
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + struct.pack(">IIBBBBB", w, h, 1, 0, 0, 0, 0)

def _bomb_png(w: int, h: int) -> bytes:
    """A real, decodable 1-bit PNG of w x h: a few tens of KB that decode to gigabytes."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    raw = zlib.compress(b"\x00" * ((w + 7) // 8 + 1) * h, 9)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 1, 0, 0, 0, 0))
            + chunk(b"IDAT", raw) + chunk(b"IEND", b""))

def test_decompression_bomb_and_empty_upload_are_4xx(seg):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from edge_runtime.api.app import create_app, image_dimensions
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

def test_inference_runs_off_the_event_loop_with_bounded_inflight(seg):
    pytest.importorskip("fastapi")
    import httpx

    from edge_runtime.api.app import create_app, serve_in_thread
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

    from edge_runtime.api.app import LiveState, create_app
    from edge_runtime.eval.synthetic import synthetic_scene
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
