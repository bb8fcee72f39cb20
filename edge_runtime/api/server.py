"""Serving the device API: uvicorn with timeouts and limits, in a thread
beside the live loop (``roadseg-run --http``) or in the foreground
(``roadseg-serve``).

A vehicle's process must survive its network neighbours, so the server
bounds what a client may hold (:class:`ServerLimits`):

* a request head (request line and headers) must arrive within
  ``header_timeout`` seconds of the connection opening, or of the previous
  response: a client dribbling a header byte every few seconds is dropped
  (uvicorn alone restarts its keep-alive timer on every byte);
* a head is at most ``max_header_bytes``, counted as it arrives, however it is
  split into writes (h11 alone bounds only a head still incomplete): larger is
  answered 431 and the connection closed;
* idle keep-alive connections close after ``keep_alive`` seconds;
* beyond ``max_connections`` open connections, requests get 503 (uvicorn's
  ``limit_concurrency``);
* one address holds at most ``max_per_address`` connections and all together
  at most twice ``max_connections``: a connection beyond either is closed as it
  is accepted, before a byte is read, so its descriptor is back at once (a Pi's
  systemd service has 1024; the camera and the broker connection need theirs);
* a response the client stops reading is abandoned: once the transport's
  buffer is full (the client's receive window closed), it must take bytes again
  within ``send_timeout`` seconds or the connection is aborted, so a live viewer
  that stops reading gives its slot and its descriptor back.

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
    Pi's 1024 descriptors to the camera, MQTT and the model, and
    ``max_per_address`` 16 keeps one client from taking them all (four live
    viewers, uploads and a docs page from one browser fit); ``send_timeout`` 10 s
    lets a viewer on a slow link fall behind for a moment, not hold a live-view
    slot for good."""

    header_timeout: float = 20.0
    keep_alive: int = 5
    max_connections: int = 64
    max_header_bytes: int = 16 * 1024
    max_per_address: int = 16
    send_timeout: float = 10.0


def parse_http(text: str) -> tuple[str, int]:
    """``"HOST:PORT"`` -> ``(host, port)``; IPv6 as ``[::1]:8080`` or
    ``::1:8080``. Raises ValueError naming the expected form."""
    host, _, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not host or not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536:
        raise ValueError(f"--http {text!r} is not HOST:PORT, e.g. 127.0.0.1:8080")
    return host, int(port)


class ConnectionCounts:
    """Open connections per client address, on the server's one event loop (no lock):
    :meth:`admit` says whether one more may open, :meth:`release` gives it back."""

    def __init__(self, per_address: int, total: int):
        self.per_address, self.total = per_address, total
        self._open: dict[str, int] = {}

    def admit(self, address: str) -> bool:
        """Count a new connection from ``address``; False (not counted) beyond either limit."""
        held = self._open.get(address, 0)
        if held >= self.per_address or sum(self._open.values()) >= self.total:
            return False
        self._open[address] = held + 1
        return True

    def release(self, address: str) -> None:
        """A counted connection from ``address`` closed."""
        left = self._open.get(address, 1) - 1
        if left > 0:
            self._open[address] = left
        else:
            self._open.pop(address, None)


class _SendStallGuard:
    """Mixin for uvicorn's protocol: a client that takes no bytes of its response for
    ``_send_timeout`` seconds (its receive buffer full, the transport paused) is dropped,
    so a viewer that stops reading frees its live-view slot and its descriptor."""
    _send_timeout = 10.0
    _stall_timer = None

    def pause_writing(self):
        # the transport holds more than its high-water mark: the client stopped taking bytes
        super().pause_writing()
        if self._stall_timer is None:
            self._stall_timer = self.loop.call_later(self._send_timeout, self._write_stalled)

    def resume_writing(self):
        super().resume_writing()
        self._cancel_stall()

    def _cancel_stall(self):
        if self._stall_timer is not None:
            self._stall_timer.cancel()
            self._stall_timer = None

    def _write_stalled(self):
        self._stall_timer = None
        log.info("dropped %s: it took no bytes of its response for %g s", self.client, self._send_timeout)
        self.transport.abort()  # close() would wait for the buffer to drain: never


def _answer_431(transport, max_header_bytes: int) -> None:
    """Refuse a request head over ``max_header_bytes`` and close the connection."""
    body = f"request head over {max_header_bytes} bytes\n".encode()
    transport.write(b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain\r\n"
                    b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(body), body))
    transport.close()


def protocol_class(limits: ServerLimits):
    """uvicorn's h11 protocol with a deadline on every request head: the
    head must be complete ``limits.header_timeout`` s after the connection
    opened or the previous response ended, however the bytes trickle in; a
    head over ``limits.max_header_bytes`` is answered 431; connections beyond
    ``limits.max_per_address`` from one address or twice ``limits.max_connections``
    in all are closed as they are accepted. Counts live on the server's one
    event loop (no lock needed)."""
    from uvicorn.protocols.http.h11_impl import H11Protocol
    counts = ConnectionCounts(limits.max_per_address, 2 * limits.max_connections)

    class HeadDeadlineH11Protocol(_SendStallGuard, H11Protocol):
        """uvicorn's H11Protocol plus one timer per awaited request head, connection counts and
        a bound on the time a response may wait for the client to read it."""
        _send_timeout = limits.send_timeout

        def connection_made(self, transport):
            peer = transport.get_extra_info("peername")
            self._address = peer[0] if isinstance(peer, tuple) else str(peer)
            self._counted = counts.admit(self._address)
            if not self._counted:  # refused before uvicorn knows it: no state, no log line per connection
                transport.abort()
                return
            super().connection_made(transport)
            self._head_timer, self._timed_cycle, self._head_bytes = None, None, 0
            self._arm_head_deadline()

        def _arm_head_deadline(self):
            self._disarm_head_deadline()
            self._timed_cycle = self.cycle  # a new request head makes a new cycle
            self._head_bytes = 0
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
            if not self._counted:
                return
            if self.cycle is self._timed_cycle:  # a head is being read: count its bytes, however split
                end = data.find(b"\r\n\r\n")
                self._head_bytes += len(data) if end < 0 else end + 4
                if self._head_bytes > limits.max_header_bytes:
                    self._disarm_head_deadline()
                    _answer_431(self.transport, limits.max_header_bytes)
                    return
            super().data_received(data)
            if self.cycle is not self._timed_cycle:  # the head is in: the application bounds the body
                self._disarm_head_deadline()

        def on_response_complete(self):
            answered = self.cycle
            super().on_response_complete()  # may parse a pipelined request head: a new cycle
            if self.cycle is answered and not self.transport.is_closing():
                self._arm_head_deadline()  # the next head has its own deadline, from now

        def connection_lost(self, exc):
            if not self._counted:
                return
            self._counted = False
            counts.release(self._address)
            self._disarm_head_deadline()
            self._cancel_stall()
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
