"""edge_runtime.api.live: MJPEG frames, and viewer slots that come back when a viewer leaves."""
import gc
import socket

import cv2
import numpy as np
import pytest

pytest.importorskip("fastapi")
import httpx  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from edge_runtime.api import LiveState, create_app  # noqa: E402
from tests.edge_runtime.api_serving import LiveFeed, served  # noqa: E402


@pytest.fixture(scope="module")
def seg(tiny_tflite):
    from edge_runtime.model.segmenter import DeviceSegmenter
    return DeviceSegmenter(tiny_tflite, threads=1)


def _first_jpeg(chunks) -> np.ndarray:
    buf = b""
    for chunk in chunks:
        buf += chunk
        if buf.count(b"\xff\xd9") >= 2:  # two complete JPEGs
            break
    start = buf.index(b"\xff\xd8")
    return cv2.imdecode(np.frombuffer(buf[start:buf.index(b"\xff\xd9") + 2], np.uint8), cv2.IMREAD_COLOR)


def test_mjpeg_frames_arrive(seg):
    live = LiveState()
    with LiveFeed(live, seg):
        c = TestClient(create_app(seg, live))
        with c.stream("GET", "/v1/stream.mjpg") as r:
            assert r.status_code == 200 and "multipart/x-mixed-replace" in r.headers["content-type"]
            assert _first_jpeg(r.iter_bytes()).shape == (64, 128, 3)
    r = TestClient(create_app(seg)).get("/v1/stream.mjpg")  # roadseg-serve: no live loop, and none coming
    assert r.status_code == 404 and "no live view on roadseg-serve" in r.json()["detail"], r.text


def _watch_a_little(url: str, nbytes: int) -> int:
    """Open the stream, read about ``nbytes`` and close: the status."""
    with httpx.stream("GET", f"{url}/v1/stream.mjpg", timeout=10) as r:
        if r.status_code == 200:
            got = 0
            for chunk in r.iter_raw():
                got += len(chunk)
                if got >= nbytes:
                    break
        return r.status_code


@pytest.fixture
def no_cyclic_gc():
    """A quiet vehicle process may not run Python's cyclic garbage collector
    for minutes: a slot must not wait for it (before the fix it did)."""
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def test_a_viewer_that_goes_away_gives_its_slot_back(seg, no_cyclic_gc):
    live = LiveState()
    app = create_app(seg, live, max_viewers=4)
    slots = app.state.device.viewers
    with LiveFeed(live, seg), served(app) as (url, _):
        for viewer in range(6):  # six viewers, one after the other, read 20 KB and leave
            assert _watch_a_little(url, 20_000) == 200, viewer
            assert slots.wait_idle(timeout=10), f"viewer {viewer}'s slot still taken after it left"
        # four at once are served again, the fifth is told the limit
        streams = [httpx.stream("GET", f"{url}/v1/stream.mjpg", timeout=10) for _ in range(5)]
        try:
            opened = [s.__enter__() for s in streams]
            assert [r.status_code for r in opened] == [200, 200, 200, 200, 503]
            assert _first_jpeg(opened[0].iter_bytes()).shape == (64, 128, 3)
        finally:
            for s in streams:
                s.__exit__(None, None, None)
        assert app.state.device.viewers.wait_idle(timeout=10)
        assert _watch_a_little(url, 1) == 200  # the seventh viewer
        assert app.state.device.viewers.wait_idle(timeout=10)
        assert httpx.get(f"{url}/v1/stats", timeout=5).json()["api"]["viewers"] == 0


def _stalled_viewer(port: int) -> socket.socket:
    """A viewer that asks for the stream, reads its status line and never reads again: a 4 KiB
    receive buffer (set before connecting, so the window is small from the handshake on) fills."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", port))
    sock.sendall(b"GET /v1/stream.mjpg HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert sock.recv(12) == b"HTTP/1.1 200"
    return sock


def test_viewers_that_stop_reading_lose_their_slots_within_the_send_timeout(seg):
    """Issue 32 item 6: four viewers with full receive buffers held all four slots for minutes; now a
    part the transport has not taken within ``send_timeout`` s closes that stream, and a fifth is served."""
    from edge_runtime.api.server import ServerLimits
    live = LiveState()
    app = create_app(seg, live, max_viewers=4)
    slots = app.state.device.viewers
    limits = ServerLimits(send_timeout=2.0)
    with LiveFeed(live, seg, h=240, w=320), served(app, limits) as (url, port):
        stalled = [_stalled_viewer(port) for _ in range(4)]
        try:
            assert slots.in_use == 4
            with httpx.stream("GET", f"{url}/v1/stream.mjpg", timeout=10) as r:
                assert r.status_code == 503  # all four slots held, as before
            # the buffers fill within a few frames; then each stream has send_timeout s to move on
            assert slots.wait_idle(timeout=limits.send_timeout + 15), "stalled viewers still hold their slots"
            with httpx.stream("GET", f"{url}/v1/stream.mjpg", timeout=10) as r:
                assert r.status_code == 200
                assert _first_jpeg(r.iter_bytes()).shape == (240, 320, 3)
        finally:
            for s in stalled:
                s.close()
