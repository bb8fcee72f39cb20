"""Push the kept frames to the workstation (``roadseg-run --upload-url`` or
``--upload-presign``): the vehicle connects out, never listens; within a
byte budget per 24 hours (sliding, on the monotonic clock); resumable;
nothing lost, nothing kept twice; a full card does not stop it.

Two targets, both plain HTTP(S) PUT, so the vehicle needs nothing beyond the
standard library:

* :class:`WebDavTarget`: ``PUT <url>/<device-id>/<name>`` with HTTP Basic
  authentication as the device id (nginx's WebDAV module, docs/deploy.md);
* :class:`PresignedTarget`: the workstation's presigning service
  (:mod:`fleet.presign`) answers a bearer-authenticated request with a
  presigned S3 PUT URL for ``<device-id>/<name>``; the vehicle PUTs there.

How nothing is lost or sent twice: a frame leaves the store
(:class:`edge_runtime.flywheel.store.FrameStore`) only after the server
confirmed both its files (2xx), its record first (so the workstation never
holds a JPEG without the record that vouches for it); the names confirmed but not yet deleted and the
bytes sent are in a small journal (``<store>/.upload/journal``,
:mod:`edge_runtime.flywheel.journal`), so after a power cut the uploader
deletes what was confirmed instead of sending it again. A PUT whose answer was
lost (a dropped connection) is sent again under the same key: the server then
holds one copy, overwritten with the same bytes. Frames go one at a time,
the highest score first; a frame is small (a JPEG), so "resumable" is per
frame, not within one.

Redirects are never followed (a redirect would carry the request, and the
presigning service's bearer token, to another host): a 3xx is a failed try.
A frame the server refuses for itself (400, 413 too large, 414, 415, 422)
is left on the vehicle and not offered again until the next start (said
once in the log), so one frame the server will never take does not block
the others nor spend the budget pass after pass. Credentials the server
refuses (401, 403 from the WebDAV server or the presigning service: a changed
password, a revoked token) are not a moment's trouble either: the next try
waits ``auth_retry_s`` (an hour by default) instead of the short retries,
said in the log and :attr:`Uploader.problem`; a restart (with the new
credential) tries at once. A presigned URL the storage refuses (403: expired)
is an ordinary failed try: the next one gets a new URL.

The budget counts every byte handed to the network, failed tries included
(a metered link bills them); a try refused before anything was sent (the
server down), the JPEG of a frame whose record was refused, and a frame whose
presigned URL was refused cost nothing (the presigning request is a few
hundred bytes and is not counted). The frame about to be sent is written in the
journal first, so a power cut mid-send still counts it. The budget is a
sliding 24 hours on the boot clock, never the wall clock: a clock step (NTP
after a boot without a real-time clock, a machine that boots in 1970) grants
nothing, and a reboot carries the spending over (the journal module says how,
and what a reboot can cost).

A full card: the journal is written in place into blocks it already owns, so
a card filled to the last byte still takes it, and the frames are sent and
deleted, which frees the card. Where the journal file cannot even be made
(a full card on the first run: it needs 16 KiB), frames are sent unrecorded
(their bytes in memory only) until their deletions made that room: at most
16 KiB and one frame go unrecorded (a power cut then can forget those bytes,
and send those frames again under the same keys), and nothing more is sent
until the journal is written. A journal that cannot be
written at all (read-only card, I/O error) stops the sending: said once in
the log and by :attr:`Uploader.disk_fault` (``{"store": "upload-journal",
"path", "error", "since"}``), retried, and cleared by the first write that
succeeds. The old ``state.json`` (before the journal) is read once, its
bytes counted as sent now, and removed.
"""
from __future__ import annotations

import base64
import datetime as dt
import errno
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

from edge_runtime.flywheel.journal import (
    SLOT_BYTES,
    JournalFile,
    Spending,
    boot_clock,
    boot_id,
)
from edge_runtime.flywheel.keep import FaultReport
from edge_runtime import atomic
from edge_runtime.flywheel.store import NAME, FrameStore
from edge_runtime.io.outbox import utc_now

log = logging.getLogger("roadseg.upload")

#: the largest answer read from a server (bytes): answers are a status line or a small JSON
MAX_ANSWER_BYTES = 64 * 1024
#: the largest old-format state file read back (bytes)
MAX_STATE_BYTES = 256 * 1024
#: confirmed names kept in the journal at most (they are deleted right after confirmation)
MAX_ACKED = 16
#: HTTP answers that refuse the frame itself, not the vehicle or the moment: the frame is not offered again
FRAME_REFUSED = frozenset({400, 413, 414, 415, 422})
#: HTTP answers that refuse the vehicle's credentials: nothing goes until they change (a restart), so tries are rare
CREDENTIALS_REFUSED = frozenset({401, 403})
#: the journal's ``schema``
JOURNAL_SCHEMA = "roadseg.upload-journal/1"
#: the journal fault's ``store`` name
STORE_NAME = "upload-journal"


def _names(value) -> list[str]:
    """The kept-frame names of a journal's ``acked`` (a list), the last MAX_ACKED; anything that is not a
    kept frame's name (:data:`edge_runtime.flywheel.store.NAME`: no path) is dropped. Raises TypeError for
    a value that is not a list."""
    if not isinstance(value, list):
        raise TypeError(f"acked is a {type(value).__name__}, not a list")
    return [n for n in value if isinstance(n, str) and NAME.fullmatch(n)][-MAX_ACKED:]


class JournalRefused(OSError):
    """The disk refused the journal (its ``errno`` is the disk's)."""


class UploadError(Exception):
    """A PUT that did not succeed; ``sent``: whether bytes may have gone out (they count in the budget);
    ``status``: the HTTP status of the answer, None without one."""

    def __init__(self, message: str, sent: bool, status: int | None = None):
        super().__init__(message)
        self.sent, self.status = sent, status


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


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Follow no redirect: urllib then raises HTTPError for the 3xx itself."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def http_request(method: str, url: str, data: bytes | None, headers: dict[str, str], timeout: float) -> bytes:
    """One HTTP request, no redirect followed; returns at most MAX_ANSWER_BYTES of a 2xx answer's body.
    Raises UploadError (its message names the URL without its query, never a credential; a 3xx is one)."""
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with _OPENER.open(req, timeout=timeout) as resp:
            return resp.read(MAX_ANSWER_BYTES)
    except urllib.error.HTTPError as e:
        raise UploadError(f"{method} {_shown(url)}: HTTP {e.code} {e.reason}", sent=True, status=e.code) from None
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
        try:
            answer = http_request("POST", self.url, body, {"Authorization": self._auth,
                                                           "Content-Type": "application/json"}, self.timeout)
        except UploadError as e:  # the frame did not go (a small JSON did), and the frame was not refused
            raise UploadError(str(e), sent=False,
                              status=e.status if e.status in CREDENTIALS_REFUSED else None) from None
        try:
            url = PresignAnswer.model_validate_json(answer).urls[key]
            _check_url(url, "a presigned URL")
        except (ValidationError, KeyError, ValueError):
            raise UploadError(f"POST {_shown(self.url)}: an answer without a usable URL for {key}",
                              sent=False) from None
        try:
            http_request("PUT", url, data, {"Content-Type": content_type}, self.timeout)
        except UploadError as e:  # the storage refusing a presigned URL (expired: 403) is not the vehicle's token
            if e.status not in CREDENTIALS_REFUSED:
                raise
            raise UploadError(str(e), sent=e.sent) from None


class Uploader:
    """Sends the store's frames to ``target`` within ``bytes_per_day`` in any
    24 hours (sliding, on ``monotonic``: :func:`edge_runtime.flywheel.journal.boot_clock`,
    seconds), the journal in ``state_file`` (default ``<store>/.upload/journal``).
    ``clock`` is the wall clock (Unix seconds), only written into the journal
    for people to read; ``boot``: this boot's id (default the kernel's; tests
    inject clocks and boots). :meth:`step` sends what the budget allows now
    (tests call it directly); :meth:`start` runs it on a thread, again every
    ``poll_s`` seconds, after a failure ``retry_s`` (doubling up to 10x), after
    refused credentials (401, 403) ``auth_retry_s``, and when enough of the
    budget is free again. ``counts``: frames ``uploaded``,
    ``bytes_sent``, ``failures``; :attr:`problem` is None or the last failure,
    until a success; :attr:`disk_fault` is None or the journal's disk fault.
    Nothing raises into the caller's thread."""

    def __init__(self, store: FrameStore, target: Target, bytes_per_day: int, state_file: str | Path | None = None,
                 clock: Callable[[], float] = time.time, poll_s: float = 30.0, retry_s: float = 5.0,
                 monotonic: Callable[[], float] = boot_clock, boot: str | None = None, auth_retry_s: float = 3600.0):
        self.store, self.target, self.budget, self.clock = store, target, int(bytes_per_day), clock
        self.journal = JournalFile(state_file if state_file else store.folder / ".upload" / "journal")
        self.state_file = self.journal.path
        self.legacy_file = self.journal.path.with_name("state.json")
        self.poll_s, self.retry_s, self.auth_retry_s = poll_s, retry_s, auth_retry_s
        self.counts = {"uploaded": 0, "bytes_sent": 0, "failures": 0}
        self.problem: dict | None = None
        self.progress = threading.Condition()  # notified after every frame sent or failed
        self.spending = Spending(monotonic)
        self.acked: list[str] = []  # confirmed by the server, not yet deleted here
        self._boot = boot_id() if boot is None else boot
        self._fault = FaultReport(STORE_NAME, str(self.journal.path), log)
        self._unrecorded = 0  # bytes sent that no journal on disk holds yet
        self._failures_in_row = 0
        self._credentials_refused = False  # the last try's answer was 401/403: wait auth_retry_s
        self._not_offered: set[str] = set()  # this run: frames over a whole day's budget, or refused for themselves
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._load()

    @property
    def disk_fault(self) -> dict | None:
        """None, or ``{"store": "upload-journal", "path", "error", "since"}`` while the disk
        refuses the journal (sending waits for it)."""
        return self._fault.fault

    # -- the journal -------------------------------------------------------------------
    def _load(self) -> None:
        try:
            doc = self.journal.read()
            if doc is None:
                self._load_legacy()
                return
            if doc.get("schema") != JOURNAL_SCHEMA:
                raise ValueError(f"schema {str(doc.get('schema'))[:40]!r}")
            self.spending.load(doc, self._boot)
            self.acked = _names(doc.get("acked", []))
        except (OSError, ValueError, KeyError, TypeError) as e:
            self._unknown(self.journal.path, e)

    def _unknown(self, path: Path, e: Exception) -> None:
        # unknown spending: count the budget as spent now rather than overrun a metered link
        log.warning("upload journal %s unreadable (%s): counting the whole budget as spent now", path,
                    str(e).splitlines()[0] if str(e) else type(e).__name__)
        self.spending.add(self.budget)

    def _load_legacy(self) -> None:
        """The state file of before the journal: its bytes count as sent now, its confirmed names are kept."""
        try:
            raw = atomic.read_small_file(self.legacy_file, MAX_STATE_BYTES, "upload state", missing_ok=True)
            if raw is None:
                return
            old = json.loads(raw)
            sent = int(old.get("sent_bytes", 0)) + int((old.get("inflight") or {}).get("bytes", 0))
            acked = _names(old.get("acked", []))
        except (OSError, ValueError, TypeError, AttributeError, RecursionError) as e:
            self._unknown(self.legacy_file, e)
            return
        if sent:
            self.spending.add(max(0, sent))
        self.acked = acked

    def _save(self) -> None:
        """Write the journal; raises JournalRefused (said once, in :attr:`disk_fault`)."""
        try:  # for people to read only: the wall clock decides nothing here
            written = dt.datetime.fromtimestamp(self.clock(), dt.timezone.utc).isoformat(timespec="seconds")
        except (OverflowError, OSError, ValueError):
            written = ""
        doc = {"schema": JOURNAL_SCHEMA, **self.spending.dump(self._boot), "acked": self.acked[-MAX_ACKED:],
               "written_utc": written}
        try:
            self.journal.write(doc)
        except OSError as e:
            with self.progress:
                self._fault.failed(e)
                self.progress.notify_all()
            raise JournalRefused(e.errno, e.strerror or str(e)) from e
        self._unrecorded = 0
        if self._fault.fault is not None:
            with self.progress:
                self._fault.recovered()
                self.progress.notify_all()
        try:
            self.legacy_file.unlink(missing_ok=True)  # taken over: the journal holds its bytes and names now
        except OSError:
            pass

    def _save_if_can(self) -> None:
        """Write the journal if the disk takes it; the memory holds it otherwise (the fault says so)."""
        try:
            self._save()
        except JournalRefused:
            pass

    # -- one pass ----------------------------------------------------------------------
    def step(self) -> int:
        """Send frames, the highest score first, until the store is empty, the
        budget is spent or a PUT fails; returns the frames sent. A disk that
        refuses the journal (:attr:`disk_fault`) or the deletion of a sent frame
        stops the pass (also reported in :attr:`problem`)."""
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
        except JournalRefused as e:
            self._failed(f"upload journal {self.journal.path}: {e.strerror or e}")
        except OSError as e:
            self._failed(f"kept frames {self.store.folder}: {e.strerror or e}")
        return sent

    def budget_left(self) -> int:
        """Bytes that may still go now: the budget less what went in the last 24 hours."""
        return max(0, self.budget - self.spending.spent())

    def _finish_acked(self) -> None:
        """Delete what the server confirmed (a power cut may have come before the deletion)."""
        if self.acked:
            for name in list(self.acked):
                self.store.remove(name)
                self.acked.remove(name)
            self._save()

    def _send_one(self, name: str) -> int | None:
        """1 when sent, 0 when it was gone, None to stop the pass (budget or failure)."""
        size = self.store.size_of(name)
        if size is None or name in self._not_offered:
            return 0
        if size > self.budget:  # it would never go: leave it (the store's bound removes it in time), send the rest
            self._not_offered.add(name)
            log.warning("upload: %s (%d bytes) is larger than a whole day's budget (%d bytes): not sent",
                        name, size, self.budget)
            return 0
        if size > self.budget_left():
            return None
        files = self.store.read(name)
        if files is None:
            return 0
        self.spending.add(size)  # counted before it goes: a power cut mid-send still counts it
        self._unrecorded += size
        try:
            self._save()
        except JournalRefused as e:
            if e.errno != errno.ENOSPC or self._unrecorded - size >= 2 * SLOT_BYTES:
                self.spending.refund(size)
                self._unrecorded -= size
                raise
            # a full card without a journal file: the frames sent so far have not yet freed the journal's room
        unsent = size  # bytes of the frame that have not gone out (taken back from the budget on a failure)
        try:  # the record first: the workstation never holds a JPEG without the record that vouches for it
            for key, data, kind in ((f"{name}.json", files[1], "application/json"),
                                    (f"{name}.jpg", files[0], "image/jpeg")):
                self.target.put(key, data, kind)
                unsent -= len(data)
        except UploadError as e:
            if e.sent:
                unsent -= len(data)  # the file being sent when it failed may have gone out: it counts
            if unsent:
                self.spending.refund(unsent)
                self._unrecorded -= unsent
            self._save_if_can()
            if e.status in CREDENTIALS_REFUSED:
                self._failed(f"{e}: the server refused this vehicle's credentials, next try in "
                             f"{self.auth_retry_s:g} s", credentials=True)
            else:
                self._failed(str(e))
            if e.status in FRAME_REFUSED:  # this frame will never go: leave it here, send the others
                self._not_offered.add(name)
                log.warning("upload: the server refused %s (%s): kept here, not offered again until restart",
                            name, e)
                return 0
            return None
        self.acked.append(name)
        self._save_if_can()
        self.store.remove(name)  # only now: the server confirmed both files
        self.acked.remove(name)
        self._save_if_can()
        self._succeeded(size)
        return 1

    def _failed(self, message: str, credentials: bool = False) -> None:
        """Count a failed try; ``credentials``: the server refused the vehicle's credentials (the next try
        waits ``auth_retry_s``; said in the log when it starts, whatever failed before)."""
        with self.progress:
            self.counts["failures"] += 1
            self._failures_in_row += 1
            if credentials and not self._credentials_refused:
                log.warning("upload: %s", message)
            elif self.problem is None:
                log.warning("upload: %s; retrying", message)
            self._credentials_refused = credentials
            self.problem = {"error": message[:200], "since": utc_now()}
            self.progress.notify_all()

    def _succeeded(self, size: int) -> None:
        with self.progress:
            if self.problem is not None:
                log.info("upload: sending again")
            self.problem, self._failures_in_row, self._credentials_refused = None, 0, False
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
        if self._credentials_refused:
            return self.auth_retry_s
        if self._failures_in_row:
            return min(self.retry_s * 2 ** (self._failures_in_row - 1), 10 * self.retry_s)
        wait = self.poll_s
        names = self.store.names()
        need = (self.store.size_of(names[0]) or 0) if names else 0
        if need and self.budget_left() < need:
            wait = min(wait, self.spending.seconds_until(need, self.budget) + 1)
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

