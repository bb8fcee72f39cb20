"""Push the kept frames to the workstation (``roadseg-run --upload-url`` or
``--upload-presign``): the vehicle connects out, never listens; within a
byte budget per UTC day; resumable; nothing lost, nothing kept twice.

Two targets, both plain HTTP(S) PUT, so the vehicle needs nothing beyond the
standard library:

* :class:`WebDavTarget`: ``PUT <url>/<device-id>/<name>`` with HTTP Basic
  authentication as the device id (nginx's WebDAV module, docs/deploy.md);
* :class:`PresignedTarget`: the workstation's presigning service
  (:mod:`fleet.presign`) answers a bearer-authenticated request with a
  presigned S3 PUT URL for ``<device-id>/<name>``; the vehicle PUTs there.

How nothing is lost or sent twice: a frame leaves the store
(:class:`edge_runtime.flywheel.store.FrameStore`) only after the server
confirmed both its files (2xx); the names confirmed but not yet deleted and the
day's bytes are in a small state file written atomically
(``<store>/.upload/state.json``), so after a power cut the uploader deletes
what was confirmed instead of sending it again. A PUT whose answer was lost
(a dropped connection) is sent again under the same key: the server then
holds one copy, overwritten with the same bytes. Frames go one at a time,
the highest score first; a frame is small (a JPEG), so "resumable" is per
frame, not within one.

The budget counts every byte handed to the network, failed tries included
(a metered link bills them); a try refused before anything was sent (the
server down) costs nothing. The frame about to be sent is written in the
state first, so a power cut mid-send still counts it.
"""
from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edge_runtime import atomic
from edge_runtime.flywheel.store import FrameStore

log = logging.getLogger("roadseg.upload")

#: the largest answer read from a server (bytes): answers are a status line or a small JSON
MAX_ANSWER_BYTES = 64 * 1024
#: the largest state file read back (bytes)
MAX_STATE_BYTES = 256 * 1024
#: confirmed names kept in the state at most (they are deleted right after confirmation)
MAX_ACKED = 1000


class UploadError(Exception):
    """A PUT that did not succeed; ``sent``: whether bytes may have gone out (they count in the budget)."""

    def __init__(self, message: str, sent: bool):
        super().__init__(message)
        self.sent = sent


class Target(Protocol):
    """Where frames go: ``put(key, data, content_type)`` stores ``data`` under
    ``key`` (a kept frame's file name) or raises UploadError."""

    def put(self, key: str, data: bytes, content_type: str) -> None:
        """Store ``data`` under ``key``; raises UploadError."""


def _check_url(url: str, what: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{what} must be an http:// or https:// URL, got {url[:60]!r}")
    if parts.username or parts.password:
        raise ValueError(f"{what} must not hold credentials: give them in a file")
    return url.rstrip("/")


def _shown(url: str) -> str:
    """A URL as logs may show it: scheme, host and path, never a query (a presigned URL's signature)."""
    p = urllib.parse.urlsplit(url)
    return f"{p.scheme}://{p.netloc}{p.path}"


def http_request(method: str, url: str, data: bytes | None, headers: dict[str, str], timeout: float) -> bytes:
    """One HTTP request; returns at most MAX_ANSWER_BYTES of a 2xx answer's body.
    Raises UploadError (its message names the URL without its query, never a credential)."""
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.read(MAX_ANSWER_BYTES)
    except urllib.error.HTTPError as e:
        raise UploadError(f"{method} {_shown(url)}: HTTP {e.code} {e.reason}", sent=True) from None
    except urllib.error.URLError as e:
        refused = isinstance(e.reason, (ConnectionRefusedError, socket.gaierror))  # nothing went out
        raise UploadError(f"{method} {_shown(url)}: {e.reason}", sent=not refused) from None
    except (TimeoutError, ConnectionError, OSError) as e:
        raise UploadError(f"{method} {_shown(url)}: {e}", sent=True) from None


class WebDavTarget:
    """``PUT <base_url>/<device_id>/<key>`` with HTTP Basic authentication
    (user: the device id). Raises ValueError for a URL that is not http(s) or
    holds credentials."""

    def __init__(self, base_url: str, device_id: str, password: str, timeout: float = 30.0):
        self.base = _check_url(base_url, "--upload-url")
        self.device_id, self.timeout = device_id, timeout
        self._auth = "Basic " + base64.b64encode(f"{device_id}:{password}".encode()).decode()

    def put(self, key: str, data: bytes, content_type: str) -> None:
        """PUT ``data``; raises UploadError."""
        url = f"{self.base}/{urllib.parse.quote(self.device_id)}/{urllib.parse.quote(key)}"
        http_request("PUT", url, data, {"Authorization": self._auth, "Content-Type": content_type}, self.timeout)


class PresignAnswer(BaseModel):
    """The presigning service's answer: ``{"urls": {key: presigned PUT URL}}``."""
    model_config = ConfigDict(extra="forbid")
    urls: dict[str, str] = Field(max_length=16)


class PresignedTarget:
    """Asks ``presign_url`` (POST ``{"keys": [key]}``, ``Authorization: Bearer
    <token>``) for a presigned PUT URL, then PUTs there without credentials
    (the signature is the credential). Raises ValueError for a URL that is not
    http(s) or holds credentials."""

    def __init__(self, presign_url: str, token: str, timeout: float = 30.0):
        self.url = _check_url(presign_url, "--upload-presign")
        self.timeout = timeout
        self._auth = f"Bearer {token}"

    def put(self, key: str, data: bytes, content_type: str) -> None:
        """Presign, then PUT ``data``; raises UploadError (also for an answer that breaks the schema)."""
        body = json.dumps({"keys": [key]}).encode()
        answer = http_request("POST", self.url, body, {"Authorization": self._auth,
                                                       "Content-Type": "application/json"}, self.timeout)
        try:
            url = PresignAnswer.model_validate_json(answer).urls[key]
            _check_url(url, "a presigned URL")
        except (ValidationError, KeyError, ValueError):
            raise UploadError(f"POST {_shown(self.url)}: an answer without a usable URL for {key}",
                              sent=False) from None
        http_request("PUT", url, data, {"Content-Type": content_type}, self.timeout)


class UploadState(BaseModel):
    """``.upload/state.json``: the UTC ``day`` and the bytes sent on it, the
    names the server confirmed but not yet deleted here, and the frame being
    sent (``inflight``: its name and bytes), counted at start when a power
    cut interrupted it."""
    model_config = ConfigDict(extra="forbid")
    schema_: str = Field("roadseg.upload-state/1", alias="schema", pattern=r"^roadseg\.upload-state/1$")
    day: str = Field("", max_length=10)
    sent_bytes: int = Field(0, ge=0)
    acked: list[str] = Field(default_factory=list, max_length=MAX_ACKED)
    inflight: dict[str, str | int] | None = None


def utc_day(t: float) -> str:
    """The UTC date (``YYYY-MM-DD``) of Unix time ``t``."""
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).date().isoformat()


class Uploader:
    """Sends the store's frames to ``target`` within ``bytes_per_day`` (per UTC
    day of ``clock()``, Unix seconds), the state in ``state_file`` (default
    ``<store>/.upload/state.json``). :meth:`step` sends what the budget
    allows now (tests call it directly with an injected clock); :meth:`start`
    runs it on a thread, again every ``poll_s`` seconds, after a failure
    ``retry_s`` (doubling up to 10x), and at the next UTC day when the
    budget is spent. ``counts``: frames ``uploaded``, ``bytes_sent``,
    ``failures``; :attr:`problem` is None or the last failure, until a
    success. Nothing raises into the caller's thread."""

    def __init__(self, store: FrameStore, target: Target, bytes_per_day: int, state_file: str | Path | None = None,
                 clock: Callable[[], float] = time.time, poll_s: float = 30.0, retry_s: float = 5.0):
        self.store, self.target, self.budget, self.clock = store, target, int(bytes_per_day), clock
        self.state_file = Path(state_file) if state_file else store.folder / ".upload" / "state.json"
        self.poll_s, self.retry_s = poll_s, retry_s
        self.counts = {"uploaded": 0, "bytes_sent": 0, "failures": 0}
        self.problem: dict | None = None
        self.progress = threading.Condition()  # notified after every frame sent or failed
        self._failures_in_row = 0
        self._too_big: set[str] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.state = self._load()

    # -- the state file ------------------------------------------------------------
    def _load(self) -> UploadState:
        try:
            if self.state_file.stat().st_size > MAX_STATE_BYTES:
                raise ValueError(f"over {MAX_STATE_BYTES} bytes")
            state = UploadState.model_validate_json(self.state_file.read_bytes())
        except FileNotFoundError:
            return UploadState()
        except (OSError, ValueError) as e:
            # unknown spending: count today's budget as spent rather than overrun a metered link
            log.warning("upload state %s unreadable (%s): counting today's budget as spent", self.state_file,
                        str(e).splitlines()[0])
            return UploadState(day=utc_day(self.clock()), sent_bytes=self.budget)
        if state.inflight is not None:  # a power cut while sending: the bytes may have gone
            state.sent_bytes += int(state.inflight.get("bytes", 0))
            state.inflight = None
        return state

    def _save(self) -> None:
        atomic.write_text(self.state_file, self.state.model_dump_json(by_alias=True))

    # -- one pass ----------------------------------------------------------------------
    def step(self) -> int:
        """Send frames, the highest score first, until the store is empty, the
        day's budget is spent or a PUT fails; returns the frames sent. A disk
        that refuses the state file stops the pass (reported in :attr:`problem`)."""
        sent = 0
        try:
            self._finish_acked()
            for name in self.store.names():
                if self._stop.is_set():
                    break
                result = self._send_one(name)
                if result is None:
                    break
                sent += result
        except OSError as e:
            self._failed(f"state file {self.state_file}: {e.strerror or e}")
        return sent

    def budget_left(self) -> int:
        """Bytes that may still go today (UTC day of ``clock()``)."""
        self._roll_day()
        return max(0, self.budget - self.state.sent_bytes)

    def _roll_day(self) -> None:
        today = utc_day(self.clock())
        if self.state.day != today:
            self.state.day, self.state.sent_bytes = today, 0

    def _finish_acked(self) -> None:
        """Delete what the server confirmed (a power cut may have come before the deletion)."""
        if self.state.acked:
            for name in list(self.state.acked):
                self.store.remove(name)
            self.state.acked = []
            self._save()

    def _send_one(self, name: str) -> int | None:
        """1 when sent, 0 when it was gone, None to stop the pass (budget or failure)."""
        size = self.store.size_of(name)
        if size is None:
            return 0
        if size > self.budget:  # it would never go: leave it (the store's bound removes it in time), send the rest
            if name not in self._too_big:
                self._too_big.add(name)
                log.warning("upload: %s (%d bytes) is larger than a whole day's budget (%d bytes): not sent",
                            name, size, self.budget)
            return 0
        if size > self.budget_left():
            return None
        files = self.store.read(name)
        if files is None:
            return 0
        self.state.inflight = {"name": name, "bytes": size}
        self._save()
        try:
            self.target.put(f"{name}.jpg", files[0], "image/jpeg")
            self.target.put(f"{name}.json", files[1], "application/json")
        except UploadError as e:
            self.state.inflight = None
            self.state.sent_bytes += size if e.sent else 0
            self._save()
            self._failed(str(e))
            return None
        self.state.inflight, self.state.sent_bytes = None, self.state.sent_bytes + size
        self.state.acked.append(name)
        self._save()
        self.store.remove(name)  # only now: the server confirmed both files
        self.state.acked.remove(name)
        self._save()
        self._succeeded(size)
        return 1

    def _failed(self, message: str) -> None:
        with self.progress:
            self.counts["failures"] += 1
            self._failures_in_row += 1
            if self.problem is None:
                log.warning("upload: %s; retrying", message)
            self.problem = {"error": message, "since": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
            self.progress.notify_all()

    def _succeeded(self, size: int) -> None:
        with self.progress:
            if self.problem is not None:
                log.info("upload: sending again")
            self.problem, self._failures_in_row = None, 0
            self.counts["uploaded"] += 1
            self.counts["bytes_sent"] += size
            self.progress.notify_all()

    # -- the thread --------------------------------------------------------------------
    def start(self) -> Uploader:
        """Run :meth:`step` on a thread until :meth:`stop`; returns self."""
        self._thread = threading.Thread(target=self._loop, name="roadseg-uploader", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.step()
            except Exception:  # never let the thread die: log and go on at the next poll
                log.exception("upload: unexpected error")
            self._stop.wait(self._next_wait())

    def _next_wait(self) -> float:
        if self._failures_in_row:
            return min(self.retry_s * 2 ** (self._failures_in_row - 1), 10 * self.retry_s)
        wait = self.poll_s
        if self.store.names() and self.budget_left() < (self.store.size_of(self.store.names()[0]) or 0):
            now = self.clock()
            midnight = dt.datetime.fromtimestamp(now, dt.timezone.utc).replace(hour=0, minute=0, second=0,
                                                                              microsecond=0)
            wait = min(wait, (midnight + dt.timedelta(days=1)).timestamp() - now + 1)
        return max(wait, 0.05)

    def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Block until ``predicate()`` holds, checked after every frame sent or failed; False on timeout."""
        with self.progress:
            return self.progress.wait_for(predicate, timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop after the frame being sent (at most ``timeout`` seconds)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

