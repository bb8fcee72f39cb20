"""The offline queue: messages waiting for the broker, kept on disk so that a
power cut in a tunnel loses none of them, replayed in order after a restart.

SQLite from the standard library, one file per device id in the state
directory (``<state_dir>/outbox-<device_id>.sqlite``; ``None``: in memory, as
for an embedded broker). Table ``outbox(id, topic, payload, qos)``: ``id``
(AUTOINCREMENT) is the order of publication. A row leaves the table when
the broker acknowledged it (QoS 1/2) or when it was handed to the network
(QoS 0), when the broker refused it, or when the queue is full: the oldest
rows waiting are dropped first (and counted) so the queue stays under
``max_bytes`` (payload + topic bytes) and ``max_count`` rows.

Rows handed to the client but not yet acknowledged are *in flight*: they
stay on disk (a restart sends them again: a duplicate a reader recognises
by the coverage ``seq``) but are not handed out twice in one process.

The ``meta`` table keeps sequence numbers across restarts (:meth:`next_seq`):
blocks of :data:`SEQ_BLOCK` are reserved with one write each, so a crash
skips at most that many numbers and never reuses one.

Journal: WAL with ``synchronous=FULL`` (a committed row survives a power
cut; SQLite's documentation, "Write-Ahead Logging"). Writes happen only
while the broker is away. One process at a time per file (an advisory
``flock`` on ``<file>.lock``): a second one gets :class:`OutboxBusy`.
"""
from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("roadseg.mqtt")

#: sequence numbers reserved per write of the ``meta`` table
SEQ_BLOCK = 100

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


class Outbox:
    """A bounded FIFO of ``(topic, payload, qos)`` on disk (``path``) or in
    memory (``path=None``). Thread-safe. ``dropped`` counts rows removed
    because the queue was full (or one message alone was over ``max_bytes``).

    Raises OutboxBusy when another process holds ``path``, OSError when the
    file cannot be created. A file that is not a readable SQLite database is
    moved aside (``.corrupt-<time>``) with a warning and a new one started."""

    def __init__(self, path: str | Path | None, max_bytes: int, max_count: int):
        if max_bytes < 1 or max_count < 1:
            raise ValueError(f"queue bounds must be at least 1, got {max_bytes} bytes and {max_count} messages")
        self.path = Path(path) if path is not None else None
        self.max_bytes, self.max_count = max_bytes, max_count
        self.dropped = 0
        self._lock = threading.Lock()
        self._lockfile = None
        if self.path is not None:
            self._lockfile = _lock(self.path)
        self._db = self._open()
        self._cursor = 0  # rows with id <= cursor are in flight in this process
        self._count, self._bytes = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(LENGTH(payload) + LENGTH(CAST(topic AS BLOB))), 0) FROM outbox").fetchone()
        self._seq = self._seq_reserved = self._meta("seq")

    def _open(self) -> sqlite3.Connection:
        if self.path is None:
            db = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
            db.executescript(_SCHEMA)
            return db
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            return _connect(self.path)
        except sqlite3.DatabaseError as e:
            aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
            os.replace(self.path, aside)
            log.warning("the offline queue %s is not readable (%s): moved to %s, starting an empty one",
                        self.path, e, aside)
            return _connect(self.path)

    # -- queueing ---------------------------------------------------------------------
    def append(self, topic: str, payload: bytes, qos: int) -> bool:
        """Queue one message behind the others, dropping the oldest waiting
        (counted in ``dropped``) to make room; False (and counted) when the
        message alone is over ``max_bytes``. Raises sqlite3.Error when the
        disk refuses the write."""
        size = len(payload) + len(topic.encode())
        with self._lock:
            if size > self.max_bytes:
                self.dropped += 1
                return False
            dropped = 0
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                while self._count and (self._count + 1 > self.max_count or self._bytes + size > self.max_bytes):
                    dropped += self._drop_oldest()
                self._db.execute("INSERT INTO outbox (topic, payload, qos) VALUES (?, ?, ?)",
                                 (topic, sqlite3.Binary(payload), qos))
            self._count += 1
            self._bytes += size
            self.dropped += dropped
            return True

    def _drop_oldest(self) -> int:
        """Delete the oldest row waiting (else the oldest in flight); inside the caller's transaction."""
        row = self._db.execute("SELECT id, LENGTH(payload) + LENGTH(CAST(topic AS BLOB)) FROM outbox "
                               "ORDER BY (id <= ?), id LIMIT 1", (self._cursor,)).fetchone()
        self._db.execute("DELETE FROM outbox WHERE id = ?", (row[0],))
        self._count -= 1
        self._bytes -= row[1]
        return 1

    def take(self, n: int) -> list[Row]:
        """Up to ``n`` rows waiting, oldest first, now marked in flight (not handed out again)."""
        with self._lock:
            rows = [Row(*r) for r in self._db.execute(
                "SELECT id, topic, payload, qos FROM outbox WHERE id > ? ORDER BY id LIMIT ?", (self._cursor, n))]
            if rows:
                self._cursor = rows[-1].id
            return rows

    def remove(self, row_id: int) -> None:
        """The row was delivered or refused: delete it (no-op when it is gone already)."""
        with self._lock, self._db:
            got = self._db.execute("SELECT LENGTH(payload) + LENGTH(CAST(topic AS BLOB)) FROM outbox WHERE id = ?",
                                   (row_id,)).fetchone()
            if got is not None:
                self._db.execute("DELETE FROM outbox WHERE id = ?", (row_id,))
                self._count -= 1
                self._bytes -= got[0]

    def give_back(self, row_id: int) -> None:
        """A row taken but not handed to the network (the link went down): it waits again, in its place."""
        with self._lock:
            self._cursor = min(self._cursor, row_id - 1)

    @property
    def waiting(self) -> int:
        """Rows not yet handed out."""
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM outbox WHERE id > ?", (self._cursor,)).fetchone()[0]

    def __len__(self) -> int:
        return self._count

    @property
    def bytes(self) -> int:
        """Payload + topic bytes of every row (waiting and in flight)."""
        return self._bytes

    # -- sequence numbers -------------------------------------------------------------
    def next_seq(self) -> int:
        """The next sequence number of this device (1, 2, ...; continued after a
        restart, a crash skipping at most SEQ_BLOCK - 1 numbers)."""
        with self._lock:
            self._seq += 1
            if self._seq > self._seq_reserved:
                self._seq_reserved = self._seq + SEQ_BLOCK - 1
                self._set_meta("seq", self._seq_reserved)
            return self._seq

    def _meta(self, key: str) -> int:
        got = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return int(got[0]) if got else 0

    def _set_meta(self, key: str, value: int) -> None:
        with self._db:
            self._db.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET "
                             "value = excluded.value", (key, value))

    def close(self) -> None:
        """Record the last sequence number used (the next start continues from it) and close the file."""
        with self._lock:
            try:
                self._set_meta("seq", self._seq)
            except sqlite3.Error as e:  # a full disk: the reserved block still prevents reuse
                log.warning("cannot record the last sequence number in %s: %s", self.path, e)
            self._db.close()
            if self._lockfile is not None:
                self._lockfile.close()
                self._lockfile = None


def _connect(path: Path) -> sqlite3.Connection:
    """Open (or create) the queue file, owner-only: SQLite gives its -wal and -shm files the same mode."""
    os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
    os.chmod(path, 0o600)
    db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=5)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    if db.execute("PRAGMA quick_check").fetchone()[0] != "ok":
        db.close()
        raise sqlite3.DatabaseError("quick_check failed")
    db.executescript(_SCHEMA)
    return db


def _lock(path: Path):
    """An exclusive advisory lock on ``<path>.lock`` held while the queue is open."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    f = open(path.with_name(path.name + ".lock"), "a")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.close()
        raise OutboxBusy(f"another process is using the offline queue {path} (the same device id and state "
                         "directory)") from None
    return f
