"""The offline queue: messages waiting for the broker, kept on disk so that a
power cut in a tunnel loses none of them, replayed in order after a restart.

Memory first, disk behind: the queue the publisher works with is in memory
(bounded by ``max_bytes`` payload + topic bytes and ``max_count`` rows: the
oldest rows waiting are dropped first, and counted); a writer thread of its
own mirrors it into SQLite (``<state_dir>/outbox-<device_id>.sqlite``, table
``outbox(id, topic, payload, qos)``, ``id`` the order of publication), so
the thread that calls :meth:`Outbox.append` (the camera loop) never waits on
a disk: a slow fsync, a full disk (ENOSPC), a card remounted read-only
(EROFS) or an I/O error (EIO) costs it nothing. While the disk refuses, the
queue lives in memory within the same bounds; :attr:`Outbox.fault` says so
(store, path, error, since) and the writer tries again every
:data:`RETRY_SECONDS`; when the disk takes writes again the file is made
equal to the memory queue in one transaction, by itself. The writer also looks
at the file system every :data:`CHECK_SECONDS` while it has nothing to write
(``statvfs``: read-only, or under :data:`MIN_FREE_BYTES` free), so a full or
read-only card is a fault within seconds even while every message is
delivered before it needs the disk. A file that cannot
be written at start (read-only card) is read if it can be, so the messages
and the sequence number it holds are not lost: the vehicle starts and says so.

A row leaves the queue when the broker acknowledged it (QoS 1/2), when it was
handed to the network (QoS 0), when the broker refused it, or when the queue
is full. Rows handed to the client but not yet acknowledged are *in flight*:
they stay in the file (a restart sends them again: a duplicate a reader
recognises by the coverage ``seq``) but are not handed out twice in one process.

The ``meta`` table keeps sequence numbers across restarts (:meth:`Outbox.next_seq`):
blocks of :data:`SEQ_BLOCK` are reserved ahead of use, so a crash skips at
most that many numbers and never reuses one, as long as the disk takes
writes; a crash while the disk refuses every write can reuse the numbers
handed out since it began refusing (they were never recorded).

Journal: WAL with ``synchronous=FULL`` (a committed row survives a power
cut; SQLite's documentation, "Write-Ahead Logging"). One process at a time
per file (an advisory ``flock`` on ``<file>.lock``): a second one gets
:class:`OutboxBusy`.
"""
from __future__ import annotations

import collections
import fcntl
import logging
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from edge_runtime import atomic

log = logging.getLogger("roadseg.mqtt")

#: sequence numbers reserved per write of the ``meta`` table
SEQ_BLOCK = 100
#: seconds between attempts to write to a disk that refused (full, read-only, I/O error)
RETRY_SECONDS = 5.0
#: seconds between the writer's looks at the queue's file system (statvfs) while it has nothing to write
CHECK_SECONDS = 1.0
#: seconds a write (one transaction and its fsyncs) may take before the disk counts as slow: a fault
#: while one takes longer, or until a write is quick again (SD cards commit in milliseconds; 2 s is
#: the watchdog's own tolerance for a stalled loop)
SLOW_WRITE_S = 2.0
#: free bytes under which the queue's file system counts as full: room for one WAL commit of a
#: queue of small messages, its checkpoint and SQLite's page cache spill (SQLite's default page is 4 KiB)
MIN_FREE_BYTES = 256 * 1024
#: a full disk's fault ends only when this much is free again (hysteresis: a card hovering at the
#: threshold does not flap the fault, nor the retained status, at every look)
CLEAR_FREE_BYTES = 2 * MIN_FREE_BYTES
#: WAL pages (4 KiB) after which a commit checkpoints the log back into the queue file; SQLite's default,
#: 1000, let the log of a queue holding a few hundred bytes grow to 4 MB on the card and stay that size
#: (https://sqlite.org/pragma.html#pragma_wal_autocheckpoint)
WAL_CHECKPOINT_PAGES = 64
#: bytes the WAL file is truncated to when a checkpoint resets it (https://sqlite.org/pragma.html#pragma_journal_size_limit):
#: the queue's footprint on the card is its rows plus at most about this much log
WAL_SIZE_LIMIT = 512 * 1024
#: seconds a slow write keeps the "slow disk" fault after it ended, unless a quick write ends it
#: sooner (a connected vehicle writes rarely: one sequence reservation per 50 summaries)
SLOW_HOLD_S = 60.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL,
                                   payload BLOB NOT NULL, qos INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


class OutboxBusy(RuntimeError):
    """Another process holds this queue file (same device id and state directory)."""


@dataclass(frozen=True)
class Row:
    """One queued message: ``id`` its place in the order, ``size`` payload + topic bytes."""
    id: int
    topic: str
    payload: bytes
    qos: int

    @property
    def size(self) -> int:
        """Payload + UTF-8 topic bytes: what counts against ``max_bytes``."""
        return len(self.payload) + len(self.topic.encode())


def utc_now(offset_s: float = 0.0) -> str:
    """The current UTC time (plus ``offset_s`` seconds) as RFC 3339 with milliseconds (a fault's ``since``)."""
    import datetime as dt
    t = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=offset_s)
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Outbox:
    """A bounded FIFO of ``(topic, payload, qos)`` in memory, mirrored to
    ``path`` by a writer thread (``path=None``: memory only). Thread-safe;
    no method but :meth:`close` touches the disk. ``dropped`` counts rows
    removed because the queue was full (or one message alone was over
    ``max_bytes``); :attr:`fault` is None or ``{"store": "offline-queue",
    "path", "error", "since"}`` while the disk refuses writes.

    Raises OutboxBusy when another process holds ``path``, ValueError for
    bounds under 1. A file that is not a readable SQLite database is moved
    aside (``.corrupt-<time>``) with a warning and a new one started; a
    file or folder that cannot be written at all is a :attr:`fault`, not an
    error."""

    def __init__(self, path: str | Path | None, max_bytes: int, max_count: int, retry: float = RETRY_SECONDS,
                 check: float = CHECK_SECONDS):
        if max_bytes < 1 or max_count < 1:
            raise ValueError(f"queue bounds must be at least 1, got {max_bytes} bytes and {max_count} messages")
        self.path = Path(path) if path is not None else None
        self.max_bytes, self.max_count, self.retry, self.check = max_bytes, max_count, retry, check
        self.dropped = 0
        self._lock = threading.Lock()
        self._rows: collections.OrderedDict[int, Row] = collections.OrderedDict()  # id order
        self._bytes = 0
        self._cursor = 0  # rows with id <= cursor are in flight in this process
        self._next_id = 1
        self._seq = self._seq_recorded = 0
        self._fault: dict | None = None
        self._fault_looked = False  # the fault was seen by a look at the file system, not by a failed write
        self._write_began: float | None = None  # monotonic start of the write in progress
        self._in_write = False  # the writer took rows out of the to-do sets and has not committed them yet
        self._slow: dict | None = None  # a write took over SLOW_WRITE_S: {"since" (UTC), "ended" (monotonic)}
        # what the file lacks: rows to insert, ids to delete, the seq reservation to record
        self._to_insert: dict[int, Row] = {}
        self._to_delete: set[int] = set()
        self._seq_wanted = 0
        self._resync = False  # the file must be made equal to the memory queue (after a failure)
        self._db: sqlite3.Connection | None = None
        self._lockfile = None
        self._wake = threading.Condition(self._lock)
        self._written = threading.Condition(self._lock)  # notified after every write that succeeded
        self._closing = False
        self._writer: threading.Thread | None = None
        if self.path is not None:
            self._start_from_disk()
            self._writer = threading.Thread(target=self._write_loop, name="outbox-writer", daemon=True)
            self._writer.start()

    # -- start: read what the last run left, even from a disk that takes no writes ---------------
    def _start_from_disk(self) -> None:
        try:
            self._lockfile = _lock(self.path)
        except OutboxBusy:
            raise
        except OSError as e:  # a read-only card cannot hold the lock file: nothing else can write either
            self._set_fault(e)
        try:
            # a first start has nothing to read: the writer thread creates the file, so a card whose every
            # fsync takes seconds (several for a new WAL database) holds up the writer, not the start
            if self._lockfile is not None and self.path.exists():
                self._db = self._open()
        except (sqlite3.Error, OSError) as e:
            self._set_fault(e)
        rows, seq = self._read_back()
        for row in rows:
            self._rows[row.id] = row
            self._bytes += row.size
        self._next_id = (rows[-1].id + 1) if rows else 1
        self._seq = self._seq_recorded = seq
        if self._db is None:
            self._resync = True  # written when the disk takes writes again

    def _open(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            return _connect(self.path)
        except sqlite3.DatabaseError as e:
            if _is_disk_error(e):
                raise
            aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
            os.replace(self.path, aside)
            log.warning("the offline queue %s is not readable (%s): moved to %s, starting an empty one",
                        self.path, e, aside)
            return _connect(self.path)

    def _read_back(self) -> tuple[list[Row], int]:
        """The rows and the recorded sequence number in the file: through the open
        connection, else read-only (a card remounted read-only still reads)."""
        db, close = self._db, False
        if db is None:
            if not self.path.exists():
                return [], 0
            for uri in (f"file:{self.path}?mode=ro", f"file:{self.path}?immutable=1"):
                try:
                    db = sqlite3.connect(uri, uri=True, check_same_thread=False)
                    db.execute("SELECT 1 FROM meta LIMIT 1")
                    break
                except sqlite3.Error:
                    db = None
            if db is None:
                log.warning("the offline queue %s cannot be read either: starting empty in memory", self.path)
                return [], 0
            close = True
        try:
            rows = [Row(*r) for r in db.execute("SELECT id, topic, payload, qos FROM outbox ORDER BY id")]
            got = db.execute("SELECT value FROM meta WHERE key = 'seq'").fetchone()
            return rows, int(got[0]) if got else 0
        except sqlite3.Error as e:
            log.warning("the offline queue %s cannot be read (%s): starting empty in memory", self.path, e)
            return [], 0
        finally:
            if close:
                db.close()

    # -- queueing (memory only: called from the camera loop) ------------------------------------------
    def append(self, topic: str, payload: bytes, qos: int) -> bool:
        """Queue one message behind the others, dropping the oldest waiting
        (counted in ``dropped``) to make room; False (and counted) when the
        message alone is over ``max_bytes``. Never touches the disk."""
        size = len(payload) + len(topic.encode())
        with self._lock:
            if size > self.max_bytes:
                self.dropped += 1
                return False
            while self._rows and (len(self._rows) + 1 > self.max_count or self._bytes + size > self.max_bytes):
                self._drop_oldest()
            row = Row(self._next_id, topic, bytes(payload), qos)
            self._next_id += 1
            self._rows[row.id] = row
            self._bytes += size
            self._to_insert[row.id] = row
            self._wake.notify()
            return True

    def _drop_oldest(self) -> None:
        """Remove the oldest row waiting (else the oldest in flight); caller holds the lock."""
        victim = next((i for i in self._rows if i > self._cursor), None)
        if victim is None:
            victim = next(iter(self._rows))
        self._forget(victim)
        self.dropped += 1

    def _forget(self, row_id: int) -> None:
        row = self._rows.pop(row_id)
        self._bytes -= row.size
        if self._to_insert.pop(row_id, None) is None and not self._resync:
            self._to_delete.add(row_id)  # it is (or may be) in the file; a resync rewrites the file anyway
        self._wake.notify()

    def take(self, n: int) -> list[Row]:
        """Up to ``n`` rows waiting, oldest first, now marked in flight (not handed out again)."""
        with self._lock:
            rows = []
            for row_id, row in self._rows.items():
                if row_id > self._cursor:
                    rows.append(row)
                    if len(rows) == n:
                        break
            if rows:
                self._cursor = rows[-1].id
            return rows

    def remove(self, row_id: int) -> None:
        """The row was delivered or refused: delete it (no-op when it is gone already)."""
        with self._lock:
            if row_id in self._rows:
                self._forget(row_id)

    def give_back(self, row_id: int) -> None:
        """A row taken but not handed to the network (the link went down): it waits again, in its place."""
        with self._lock:
            self._cursor = min(self._cursor, row_id - 1)

    @property
    def waiting(self) -> int:
        """Rows not yet handed out."""
        with self._lock:
            n = 0
            for row_id in reversed(self._rows):  # id order: the waiting rows are the newest
                if row_id <= self._cursor:
                    break
                n += 1
            return n

    def __len__(self) -> int:
        return len(self._rows)

    @property
    def bytes(self) -> int:
        """Payload + topic bytes of every row (waiting and in flight)."""
        return self._bytes

    @property
    def fault(self) -> dict | None:
        """None while the file holds the queue (or there is no file), else
        ``{"store": "offline-queue", "path", "error", "since"}``: the disk refuses
        writes (the queue is kept in memory meanwhile), or it is slow: a write in
        progress for more than :data:`SLOW_WRITE_S` seconds, or one that took longer
        within the last :data:`SLOW_HOLD_S` seconds (a quick write since ends it)."""
        if self._fault:
            return dict(self._fault)
        began, slow = self._write_began, self._slow
        # one text while it lasts: the retained status is published again only when a fault's text changes
        error = f"slow disk: writes take more than {SLOW_WRITE_S:g} s (fsync)"
        if began is not None and time.monotonic() - began > SLOW_WRITE_S:
            since = slow["since"] if slow is not None else utc_now(began - time.monotonic())
            return {"store": "offline-queue", "path": str(self.path), "error": error, "since": since}
        if slow is not None and time.monotonic() - slow["ended"] <= SLOW_HOLD_S:
            return {"store": "offline-queue", "path": str(self.path), "error": error, "since": slow["since"]}
        return None

    @property
    def unwritten(self) -> int:
        """Rows in memory that the file does not hold yet (all of them while the disk refuses)."""
        with self._lock:
            return len(self._rows) if self._resync else len(self._to_insert)

    def flush(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds until the file holds the memory queue
        (True; also without a file), for a caller that may wait (a stop, a test);
        False when the disk did not take it in time."""
        if self._writer is None:
            return True
        with self._lock:
            self._wake.notify()
            return self._written.wait_for(lambda: not self._pending() and not self._in_write, timeout)

    # -- sequence numbers -------------------------------------------------------------------------
    def next_seq(self) -> int:
        """The next sequence number of this device (1, 2, ...; continued after a
        restart, a crash skipping at most SEQ_BLOCK - 1 numbers). Never touches
        the disk: the writer records the reservation ahead of use."""
        with self._lock:
            self._seq += 1
            if self._seq + SEQ_BLOCK // 2 > max(self._seq_recorded, self._seq_wanted):
                self._seq_wanted = self._seq + SEQ_BLOCK - 1
                self._wake.notify()
            return self._seq

    # -- the writer thread -----------------------------------------------------------------------------
    def _pending(self) -> bool:
        return bool(self._resync or self._to_insert or self._to_delete or self._seq_wanted > self._seq_recorded)

    def _write_loop(self) -> None:
        next_try = next_look = 0.0
        while True:
            with self._lock:
                while not self._closing:
                    now = time.monotonic()
                    write = self._pending() and now >= next_try
                    if write or now >= next_look:
                        break
                    until = min(next_look, next_try) if self._pending() else next_look
                    self._wake.wait(max(until - now, 0.0))
                if self._closing:
                    return
            if not write:
                self._look()
                next_look = time.monotonic() + self.check
            elif not self._write_once():
                next_try = time.monotonic() + self.retry

    def _look(self) -> None:
        """The writer's look at the file system between writes: a full or read-only one becomes the
        fault (said once, as a failed write would be); one seen this way ends when a look finds
        :data:`CLEAR_FREE_BYTES` free (not merely over the threshold: no flapping)."""
        trouble = disk_trouble(self.path.parent, CLEAR_FREE_BYTES if self._fault is not None else MIN_FREE_BYTES)
        with self._lock:
            if trouble is not None and self._fault is None:
                self._set_fault(trouble)
                self._fault_looked = True
            elif trouble is None and self._fault is not None and self._fault_looked:
                self._clear_fault()

    def _write_once(self, final: bool = False) -> bool:
        """Bring the file up to the memory queue in one transaction; False (and a
        fault) when the disk refused. ``final``: record the last sequence number
        used rather than the reservation (a clean stop continues without a gap)."""
        with self._lock:
            resync = self._resync
            inserts = list(self._rows.values()) if resync else list(self._to_insert.values())
            deletes = set() if resync else set(self._to_delete)
            seq = self._seq if final else max(self._seq_wanted, self._seq, self._seq_recorded)
            self._to_insert.clear()
            self._to_delete.clear()
            self._resync = False
            self._in_write = True  # flush() waits for the commit, not for the to-do sets to empty
        self._write_began = began = time.monotonic()
        try:
            if self._db is None:
                if self._lockfile is None:
                    self._lockfile = _lock(self.path)
                self._db = self._open()
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                if resync:
                    self._db.execute("DELETE FROM outbox")
                if deletes:
                    self._db.executemany("DELETE FROM outbox WHERE id = ?", [(i,) for i in deletes])
                if inserts:
                    self._db.executemany("INSERT OR REPLACE INTO outbox (id, topic, payload, qos) VALUES (?, ?, ?, ?)",
                                         [(r.id, r.topic, sqlite3.Binary(r.payload), r.qos) for r in inserts])
                self._db.execute("INSERT INTO meta (key, value) VALUES ('seq', ?) ON CONFLICT(key) DO UPDATE SET "
                                 "value = excluded.value", (seq,))
        except (sqlite3.Error, OSError) as e:
            self._write_began = None
            with self._lock:
                self._resync = True  # whatever this transaction held, the next one writes everything
                self._to_insert.clear()
                self._to_delete.clear()
                self._in_write = False
                self._set_fault(e)
            if self._db is not None:
                try:
                    self._db.close()
                except sqlite3.Error:
                    pass
                self._db = None
            return False
        self._write_began, took = None, time.monotonic() - began
        self._note_speed(took)
        self._trim_log()
        trouble = disk_trouble(self.path.parent, CLEAR_FREE_BYTES) if self._fault is not None else None
        with self._lock:
            self._seq_recorded = max(seq, self._seq_recorded) if not final else seq
            self._in_write = False
            self._written.notify_all()
            if self._fault is not None:
                if trouble is None:
                    self._clear_fault()
                else:  # written into the last bytes: the fault stays until there is room (no flapping)
                    self._fault_looked = True
        return True

    def _trim_log(self) -> None:
        """A large transaction (a resync after an outage) leaves the WAL over :data:`WAL_SIZE_LIMIT`
        until the next commit, which a connected vehicle makes rarely: checkpoint and truncate it now
        (https://sqlite.org/pragma.html#pragma_wal_checkpoint). A failure here loses nothing (the
        rows are committed); the next write or look says what the disk does."""
        try:
            if os.path.getsize(f"{self.path}-wal") > WAL_SIZE_LIMIT:
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except (OSError, sqlite3.Error):
            pass

    def _note_speed(self, took: float) -> None:
        """A write took ``took`` s: slow (over SLOW_WRITE_S) begins or ends, said once each way."""
        if took > SLOW_WRITE_S and self._slow is None:
            log.warning("offline queue: a write to %s took %.1f s (a slow or failing card): the camera loop does "
                        "not wait on it; messages wait in memory meanwhile", self.path, took)
            self._slow = {"since": utc_now(-took), "ended": time.monotonic()}
        elif took > SLOW_WRITE_S:
            self._slow["ended"] = time.monotonic()
        elif self._slow is not None:
            log.warning("offline queue: writes to %s are quick again (%.2f s; slow since %s)", self.path, took,
                        self._slow["since"])
            self._slow = None

    def _clear_fault(self) -> None:
        """The disk takes writes again: said once; caller holds the lock."""
        since = self._fault["since"]
        self._fault, self._fault_looked = None, False
        log.warning("offline queue: %s takes writes again (refused since %s); %d messages kept on disk",
                    self.path, since, len(self._rows))

    def _set_fault(self, err: BaseException | str) -> None:
        """Note (once, in the log) that the disk refuses writes (``err``: what failed, or the
        text of :func:`disk_trouble`); caller holds the lock or is starting."""
        text = err if isinstance(err, str) else _describe(err, self.path.parent if self.path is not None else None)
        if self._fault is not None:  # said once; the cause may read differently on the next try
            self._fault["error"] = text
            self._fault_looked = False  # a write failed: only a write that succeeds ends it
            return
        log.warning("offline queue: cannot write %s (%s): messages are kept in memory (at most %d, %.1f MiB) "
                    "and written when the disk takes writes again", self.path, text, self.max_count,
                    self.max_bytes / 1048576)
        self._fault = {"store": "offline-queue", "path": str(self.path), "error": text, "since": utc_now()}

    def close(self, timeout: float = 5.0) -> None:
        """Write what the file lacks (the last sequence number used included, so the
        next start continues from it) within ``timeout`` seconds, then close it.
        What could not be written is lost, and said once."""
        done = threading.Event()
        if self._writer is not None:
            with self._lock:
                self._closing = True
                self._wake.notify_all()
            deadline = time.monotonic() + timeout
            self._writer.join(timeout)  # it stops between two writes

            def last_write():
                if self._write_once(final=True):
                    done.set()
            if not self._writer.is_alive():
                t = threading.Thread(target=last_write, name="outbox-close", daemon=True)
                t.start()
                t.join(max(deadline - time.monotonic(), 0.1))
            if not done.is_set():
                why = (self._fault or {}).get("error", "the disk is too slow")
                if self.unwritten:
                    log.warning("offline queue: %d messages could not be written to %s at stop (%s): lost",
                                self.unwritten, self.path, why)
                else:
                    log.warning("offline queue: the last sequence number could not be recorded in %s at stop (%s; "
                                "no message lost; the next start continues from the last number recorded)",
                                self.path, why)
        if self._db is not None and (done.is_set() or self._writer is None):
            try:
                self._db.close()
            except sqlite3.Error:
                pass
            self._db = None
        if self._lockfile is not None:
            self._lockfile.close()
            self._lockfile = None


def _is_disk_error(e: BaseException) -> bool:
    """True for the errors that mean "the disk refuses" rather than "the file is damaged"."""
    if isinstance(e, OSError):
        return True
    code = getattr(e, "sqlite_errorcode", None)
    return code is not None and (code & 0xFF) in (sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_READONLY,
                                                   sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_PERM, sqlite3.SQLITE_BUSY)


def disk_trouble(folder: Path, min_free: int = MIN_FREE_BYTES) -> str | None:
    """Why the file system holding ``folder`` will refuse the next write, from
    ``statvfs(2)`` alone (no write, so it is safe on a card that errs): ``"read-only
    file system"``, ``"disk full (N bytes free)"`` under ``min_free`` bytes (the
    blocks this user may take: root also takes ext4's reserved blocks), or None.
    A folder that cannot be looked at is None here: the next write says why.
    Blocks while the file system does (call it off the camera loop's thread)."""
    try:
        free, read_only = atomic.free_bytes(folder)
    except OSError:
        return None
    if read_only:
        return "read-only file system"
    if free < min_free:
        return f"disk full ({free} bytes free)"
    return None


def _describe(err: BaseException, folder: Path | None = None) -> str:
    """One short line for a disk error: ``disk full``, ``read-only file system``, the error's
    own text. SQLite often says only "disk I/O error": the file system of ``folder`` tells which."""
    import errno
    no = getattr(err, "errno", None)
    read_only, free = False, None
    if folder is not None:
        try:
            free, read_only = atomic.free_bytes(folder)
        except OSError:
            pass
    if no == errno.EROFS or "readonly" in str(err) or "read-only" in str(err) or read_only:
        return f"read-only file system ({err})"[:200]
    if no == errno.ENOSPC or "disk is full" in str(err) or free == 0:
        return f"disk full ({err})"[:200]
    return (str(err) or type(err).__name__)[:200]


def _connect(path: Path) -> sqlite3.Connection:
    """Open (or create) the queue file, owner-only: SQLite gives its -wal and -shm files the same mode."""
    os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
    os.chmod(path, 0o600)
    db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=5)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_PAGES}")
        db.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
        if db.execute("PRAGMA quick_check").fetchone()[0] != "ok":
            raise sqlite3.DatabaseError("quick_check failed")
        db.executescript(_SCHEMA)
    except BaseException:
        db.close()
        raise
    return db


def _lock(path: Path):
    """An exclusive advisory lock on ``<path>.lock`` held while the queue is open.
    Raises OutboxBusy when another process holds it, OSError when it cannot be made."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    f = open(path.with_name(path.name + ".lock"), "a")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.close()
        raise OutboxBusy(f"another process is using the offline queue {path} (the same device id and state "
                         "directory)") from None
    return f
