"""edge_runtime.api.server: slow clients are dropped, connections are limited, the address is checked."""
import select
import socket
import time

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from edge_runtime.api import create_app  # noqa: E402
from edge_runtime.api.server import ServerLimits, parse_http  # noqa: E402
from tests.edge_runtime.api_serving import raw_request, read_response, served  # noqa: E402


@pytest.fixture(scope="module")
def seg(tiny_tflite):
    from edge_runtime.model.segmenter import DeviceSegmenter
    return DeviceSegmenter(tiny_tflite, threads=1)


def _dropped_while_dribbling(sock: socket.socket, data: bytes, every: float, give_up: float) -> float | None:
    """Send ``data`` a byte every ``every`` s; seconds until the server closed
    the connection (EOF or reset), None if it still held it after ``give_up`` s."""
    t0 = time.monotonic()
    for i in range(len(data)):
        readable, _, _ = select.select([sock], [], [], every)  # wakes at once when the server closes
        if readable or time.monotonic() - t0 > give_up:
            break
        try:
            sock.sendall(data[i:i + 1])
        except OSError:
            return time.monotonic() - t0
    try:
        gone = select.select([sock], [], [], max(0.0, give_up - (time.monotonic() - t0)))[0] and sock.recv(1) == b""
    except OSError:  # reset
        gone = True
    return time.monotonic() - t0 if gone else None


HEAD = b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-Pad-%d: %s\r\n" % (i, b"y" * 20) for i in range(40))


def test_a_client_dribbling_its_request_head_is_dropped(seg):
    limits = ServerLimits(header_timeout=1.0)
    with served(create_app(seg), limits) as (_, port):
        # a header byte every 0.2 s: each byte would restart uvicorn's own keep-alive timer
        with socket.create_connection(("127.0.0.1", port)) as sock:
            took = _dropped_while_dribbling(sock, HEAD, every=0.2, give_up=8.0)
        assert took is not None and took < 4.0, took
        # a connection that sends nothing at all
        with socket.create_connection(("127.0.0.1", port)) as sock:
            took = _dropped_while_dribbling(sock, b"", every=0.2, give_up=8.0)
        assert took is not None and took < 4.0, took
        # the second request of a kept-alive connection has its own deadline
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_response(sock)[0] == 200
            took = _dropped_while_dribbling(sock, HEAD, every=0.2, give_up=8.0)
        assert took is not None and took < 4.0, took
        # a prompt client is served as ever
        assert raw_request(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")[0] == 200


def test_a_slow_but_steady_request_is_not_cut_mid_response(seg):
    """The head deadline ends when the head is in: a request that then takes
    longer than the deadline to answer is not dropped."""
    limits = ServerLimits(header_timeout=0.5)
    with served(create_app(seg), limits) as (_, port):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            for _ in range(3):  # kept alive across requests, each answered
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                assert read_response(sock)[0] == 200


def test_connections_beyond_the_limit_get_503(seg):
    limits = ServerLimits(max_connections=4, header_timeout=30.0)
    with served(create_app(seg), limits) as (_, port):
        held = [socket.create_connection(("127.0.0.1", port)) for _ in range(4)]
        try:
            for s in held:
                s.sendall(b"GET /healthz HTTP/1.1\r\n")  # a head that never ends
            status, _, body = raw_request(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert status == 503, body
        finally:
            for s in held:
                s.close()


def test_an_oversized_request_head_is_refused(seg):
    limits = ServerLimits(max_header_bytes=8 * 1024)
    with served(create_app(seg), limits) as (_, port):
        # a head that keeps growing past the limit without ending: refused without waiting for its end
        big = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000
        assert raw_request(port, big)[0] == 431


@pytest.mark.parametrize("text,expected", [
    ("127.0.0.1:8080", ("127.0.0.1", 8080)), ("0.0.0.0:80", ("0.0.0.0", 80)), ("[::1]:8080", ("::1", 8080)),
    ("::1:8080", ("::1", 8080)), ("car1.local:65535", ("car1.local", 65535)),
])
def test_parse_http_accepts_host_port(text, expected):
    assert parse_http(text) == expected


@pytest.mark.parametrize("text", ["8080", ":8080", "host:", "host:http", "host:²", "host:٨٠", "host:0",
                                  "host:65536", "host:-1", "", "[]:80"])
def test_parse_http_refuses_anything_else_with_one_line(text):
    with pytest.raises(ValueError, match="is not HOST:PORT"):
        parse_http(text)
