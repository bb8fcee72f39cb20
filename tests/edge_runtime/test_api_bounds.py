"""The device API against one client that wants its descriptors, its log or another vehicle's view
(issue 32 items 4 and 7): real uvicorn over real sockets, a signed URL names its device, and no
lifetime outlives a wall clock stepped back."""
import socket
import time

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from fastapi.testclient import TestClient

from edge_runtime.api import create_app
from edge_runtime.api.auth import Authenticator
from edge_runtime.api.server import ServerLimits
from tests.edge_runtime.api_serving import raw_request, served

TOKEN = "one-token-on-two-vehicles"


@pytest.fixture(scope="module")
def seg(tiny_tflite):
    from edge_runtime.model.segmenter import DeviceSegmenter
    return DeviceSegmenter(tiny_tflite, threads=1)


def _closed_at_once(sock: socket.socket, within: float = 5.0) -> bool:
    """True when the server closes ``sock`` (EOF or reset) before ``within`` s without a request."""
    sock.settimeout(within)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def test_one_address_cannot_hold_every_connection(seg):
    limits = ServerLimits(max_per_address=4, header_timeout=30.0)
    with served(create_app(seg), limits) as (_, port):
        held = [socket.create_connection(("127.0.0.1", port)) for _ in range(4)]  # idle: no head at all
        try:
            extra = socket.create_connection(("127.0.0.1", port))
            assert _closed_at_once(extra), "a fifth idle connection from one address was kept"
            extra.close()
            # another address is served meanwhile (127.0.0.2 is loopback too on Linux)
            with socket.create_connection(("127.0.0.1", port), source_address=("127.0.0.2", 0)) as other:
                other.settimeout(5)
                other.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                assert other.recv(12) == b"HTTP/1.1 200"
        finally:
            for s in held:
                s.close()
        # the slots are back once they close
        assert raw_request(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")[0] == 200


def test_a_request_head_over_16_kib_in_one_write_is_refused(seg):
    with served(create_app(seg)) as (_, port):  # the default limits: 16 KiB heads
        head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (100 * 1024) + b"\r\n\r\n"
        status, _, body = raw_request(port, head)
        assert status == 431 and b"16384" in body
        fits = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Fits: " + b"a" * (15 * 1024) + b"\r\n\r\n"
        assert raw_request(port, fits)[0] == 200


def test_many_query_fields_without_a_token_are_401_not_500(seg):
    with served(create_app(seg, token=TOKEN)) as (_, port):
        query = "&".join(f"f{i}=1" for i in range(40))
        for path in ("/docs", "/v1/stream.mjpg", "/openapi.json"):
            status, headers, _ = raw_request(port, f"GET {path}?{query} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            assert status == 401 and headers.get("www-authenticate") == "Bearer", (path, status)


def test_a_signed_url_of_one_vehicle_opens_no_other_with_the_same_token(seg):
    car1 = TestClient(create_app(seg, token=TOKEN, device_id="car1"))
    car2 = TestClient(create_app(seg, token=TOKEN, device_id="car2"))
    url = car1.post("/v1/docs-url", headers={"Authorization": f"Bearer {TOKEN}"}).json()["url"]
    assert car1.get(url).status_code == 200
    assert car2.get(url).status_code == 401


def test_a_wall_clock_stepped_back_makes_no_signed_url_live_longer(monkeypatch):
    auth = Authenticator(TOKEN, "car1")
    expires = int(auth.now()) + 10
    url = auth.sign("/docs", expires)
    query = url.partition("?")[2].encode()
    assert auth.signed_expiry("/docs", query) == expires
    real_time, real_monotonic = time.time, time.monotonic
    # 11 s pass on the monotonic clock while NTP steps the wall clock back an hour
    monkeypatch.setattr(time, "monotonic", lambda: real_monotonic() + 11)
    monkeypatch.setattr(time, "time", lambda: real_time() - 3600 + 11)
    assert auth.signed_expiry("/docs", query) is None


def test_stats_uptime_counts_on_the_monotonic_clock(seg, monkeypatch):
    c = TestClient(create_app(seg))
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() - 3600)  # the wall clock steps back an hour
    uptime = c.get("/v1/stats").json()["api"]["uptime_s"]
    assert 0 <= uptime < 600
