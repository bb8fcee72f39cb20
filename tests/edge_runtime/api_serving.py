"""Helpers of the device API's tests: a real uvicorn server on loopback, raw
HTTP/1.1 over a socket (to send a head without its body, or a body slowly),
a test image and a live feed."""
from __future__ import annotations

import contextlib
import http.client
import socket
import threading

import cv2

from edge_runtime.eval.synthetic import synthetic_scene


def png_bytes(h: int = 96, w: int = 192) -> bytes:
    """A synthetic street scene as PNG bytes."""
    return cv2.imencode(".png", cv2.cvtColor(synthetic_scene(3, h, w)[0], cv2.COLOR_RGB2BGR))[1].tobytes()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def served(app, limits=None):
    """``(base_url, port)`` of ``app`` served by uvicorn in a thread, as
    ``roadseg-run --http`` does; stopped at the end."""
    from edge_runtime.api import serve_in_thread
    port = free_port()
    kwargs = {} if limits is None else {"limits": limits}
    server = serve_in_thread(app, "127.0.0.1", port, **kwargs)
    try:
        yield f"http://127.0.0.1:{port}", port
    finally:
        server.should_exit = True


def raw_head(port: int, method: str, target: str, headers: dict[str, str] | None = None,
             timeout: float = 5.0) -> socket.socket:
    """A connected socket that has sent one request line and headers, no body."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    lines = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1"] + [f"{k}: {v}" for k, v in (headers or {}).items()]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    return sock


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Status, headers (lower-case names) and body of the answer on ``sock``;
    socket.timeout when none comes within the socket's timeout."""
    r = http.client.HTTPResponse(sock)
    r.begin()
    return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()


def raw_request(port: int, request: bytes, timeout: float = 5.0) -> tuple[int, dict[str, str], bytes]:
    """Send ``request`` (bytes exactly as given) and read the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        return read_response(sock)


class LiveFeed:
    """Feeds a LiveState with segmented synthetic frames from a thread, as the run loop does."""

    def __init__(self, live, seg, h: int = 64, w: int = 128):
        self.live, self.seg, self.frame = live, seg, synthetic_scene(1, h, w)[0]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        classes = self.seg.segment(self.frame, "rgb").copy()
        while not self.stop.wait(0.02):  # about 50 frames a second
            self.live.update(self.frame, "rgb", classes, 12.5)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(timeout=5)
