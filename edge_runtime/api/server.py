"""Serving the device API: uvicorn with timeouts and limits, in a thread
beside the live loop (``roadseg-run --http``) or in the foreground
(``roadseg-serve``).

A vehicle's process must survive its network neighbours, so the server
bounds what a client may hold (:class:`ServerLimits`):

* a request head (request line and headers) must arrive within
  ``header_timeout`` seconds of the connection opening, or of the previous
  response: a client dribbling a header byte every few seconds is dropped
  (uvicorn alone restarts its keep-alive timer on every byte);
* a head is at most ``max_header_bytes`` (h11's limit: larger is 400);
* idle keep-alive connections close after ``keep_alive`` seconds;
* beyond ``max_connections`` open connections, requests get 503 (uvicorn's
  ``limit_concurrency``); a Pi's default is 1024 descriptors per process.

Request bodies are bounded by the application (:mod:`edge_runtime.api.uploads`).
"""
from __future__ import annotations

import logging
import socket
import threading
import time
from dataclasses import dataclass

log = logging.getLogger("roadseg.api")


@dataclass(frozen=True)
class ServerLimits:
    """What one client may hold of the server; seconds and bytes.

    ``header_timeout`` 20 s is Apache mod_reqtimeout's default first header
    deadline (``header=20-40``); ``keep_alive`` 5 s and ``max_header_bytes``
    16 KiB are uvicorn's and h11's defaults; ``max_connections`` 64 leaves a
    Pi's 1024 descriptors to the camera, MQTT and the model."""

    header_timeout: float = 20.0
    keep_alive: int = 5
    max_connections: int = 64
    max_header_bytes: int = 16 * 1024


def parse_http(text: str) -> tuple[str, int]:
    """``"HOST:PORT"`` -> ``(host, port)``; IPv6 as ``[::1]:8080`` or
    ``::1:8080``. Raises ValueError naming the expected form."""
    host, _, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not host or not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536:
        raise ValueError(f"--http {text!r} is not HOST:PORT, e.g. 127.0.0.1:8080")
    return host, int(port)


def protocol_class(limits: ServerLimits):
    """uvicorn's h11 protocol with a deadline on every request head: the
    head must be complete ``limits.header_timeout`` s after the connection
    opened or the previous response ended, however the bytes trickle in."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class HeadDeadlineH11Protocol(H11Protocol):
        """uvicorn's H11Protocol plus one timer per awaited request head."""

        def connection_made(self, transport):
            super().connection_made(transport)
            self._head_timer, self._timed_cycle = None, None
            self._arm_head_deadline()

        def _arm_head_deadline(self):
            self._disarm_head_deadline()
            self._timed_cycle = self.cycle  # a new request head makes a new cycle
            self._head_timer = self.loop.call_later(limits.header_timeout, self._head_too_slow)

        def _disarm_head_deadline(self):
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_too_slow(self):
            self._head_timer = None
            if not self.transport.is_closing():
                log.debug("dropped %s: no complete request head within %g s", self.client, limits.header_timeout)
                self.transport.close()

        def data_received(self, data):
            super().data_received(data)
            if self.cycle is not self._timed_cycle:  # the head is in: the application bounds the body
                self._disarm_head_deadline()

        def on_response_complete(self):
            answered = self.cycle
            super().on_response_complete()  # may parse a pipelined request head: a new cycle
            if self.cycle is answered and not self.transport.is_closing():
                self._arm_head_deadline()  # the next head has its own deadline, from now

        def connection_lost(self, exc):
            self._disarm_head_deadline()
            super().connection_lost(exc)

    return HeadDeadlineH11Protocol


def _config(app, host: str, port: int, limits: ServerLimits, log_level: str):
    import uvicorn
    return uvicorn.Config(app, host=host, port=port, log_level=log_level, http=protocol_class(limits),
                          timeout_keep_alive=limits.keep_alive, limit_concurrency=limits.max_connections,
                          h11_max_incomplete_event_size=limits.max_header_bytes, server_header=False)


def _probe(host: str, port: int) -> None:
    """Bind once so a busy port is one clear error, not a log line in a thread."""
    from edge_runtime.errors import RuntimeFailure
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError as e:
        raise RuntimeFailure(f"--http {host}:{port}: cannot listen there ({e.strerror or e})") from None


def _start(app, host: str, port: int, limits: ServerLimits | None, log_level: str, timeout: float):
    """uvicorn in a thread (it installs no signal handlers there): ``(server, thread)`` once it listens."""
    import uvicorn

    from edge_runtime.errors import RuntimeFailure
    _probe(host, port)
    server = uvicorn.Server(_config(app, host, port, limits or ServerLimits(), log_level))
    thread = threading.Thread(target=server.run, name="http", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:  # uvicorn offers no event for this; it flips a flag
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeFailure(f"--http {host}:{port}: the device API did not start")
        time.sleep(0.02)
    return server, thread


def serve_in_thread(app, host: str, port: int, timeout: float = 15.0, limits: ServerLimits | None = None):
    """Run uvicorn beside the live loop; returns the ``uvicorn.Server``
    (``should_exit = True`` stops it). Raises RuntimeFailure when the port
    cannot be bound or the server has not started within ``timeout`` s."""
    server, _ = _start(app, host, port, limits, "warning", timeout)
    log.info("device API on http://%s:%d (stream: /v1/stream.mjpg, docs: /docs)", host, port)
    return server


def serve_forever(app, host: str, port: int, limits: ServerLimits | None = None, timeout: float = 15.0) -> None:
    """Run uvicorn until SIGINT or SIGTERM, then stop it cleanly and return
    (``roadseg-serve`` exits 0; uvicorn alone would re-raise the signal).
    Raises RuntimeFailure when the port cannot be bound."""
    import signal
    server, thread = _start(app, host, port, limits, "info", timeout)

    def stop(signum, _frame):
        """Signal handler: let uvicorn finish its requests and return."""
        log.info("%s: stopping", signal.Signals(signum).name)
        server.should_exit = True

    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        thread.join()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
