"""The folder of kept frames on the vehicle (``--keep-frames DIR``): one
full-size JPEG ``<name>.jpg`` and its record ``<name>.json``
(:class:`KeptRecord`) per frame, bounded in bytes.

The record is written after its JPEG, both durably
(:func:`edge_runtime.atomic.durable_write`: fsync, rename, fsync of the
folder): a frame exists once its record does. At start the folder is tidied:
temporary files, JPEGs without a record (a power cut between the two writes),
records without a JPEG (one between the two deletions), frames whose JPEG is
not the size its record says (a file system that lost the data after a power
cut) and bad records are removed, and the lowest-scoring frames are removed
until the store is within ``max_bytes`` (a restart with a smaller bound). Deleting removes the record first. The writer thread
(:mod:`edge_runtime.flywheel.keep`) adds, the uploader
(:mod:`edge_runtime.flywheel.upload`) reads and removes; one lock keeps the
byte count right between them.

A card that refuses (read-only, full, I/O error) does not stop the vehicle
from starting: the store is then *not ready* (:attr:`FrameStore.open_error`),
indexes what it can read, and :meth:`FrameStore.open` is tried again by the
writer thread until it succeeds. The store also leaves :data:`RESERVE_BYTES`
free on its file system (``statvfs``) for the offline queue, the logs and
the system: a frame that would take the free space under the reserve is
refused like a full disk (OSError ENOSPC), whatever ``max_bytes`` allows.
"""
from __future__ import annotations

import datetime as dt
import errno
import json
import logging
import os
import re
import threading
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from edge_runtime import atomic

log = logging.getLogger("roadseg.keep")

#: a kept frame's name (the stem of its two files): letters, digits, ., _ and -, as object store keys take them
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
#: the largest record read back (bytes): a record is ~400 bytes
MAX_RECORD_BYTES = 16 * 1024
#: the largest side of a kept frame (pixels): 8K video is 7680 wide
MAX_SIDE = 8192
#: bytes the store leaves free on its file system (the offline queue's default 32 MiB with SQLite's
#: overhead, the logs, the system): no frame is kept that would take the free space under it
RESERVE_BYTES = 64 * 2 ** 20


def reserve_text(reserve_bytes: int) -> str:
    """The fault's text when a frame would take the free space under the reserve (no byte
    count that changes from one look to the next: the status is published again on a change)."""
    return f"disk nearly full: keeping {reserve_bytes / 2 ** 20:g} MiB free for the rest of the vehicle"


class KeptRecord(BaseModel):
    """What a kept frame's ``.json`` says (one schema for the vehicle that
    writes it and the workstation that reads it): ``why`` (the score's
    signals, :class:`edge_runtime.flywheel.score.TeachScore`), ``captured_utc``
    (ISO 8601), the model that ran (name, sha256), ``score`` 0..1, the frame's
    ``size`` [height, width] in pixels, the JPEG's ``bytes`` and ``sha256``."""
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    schema_: str = Field("roadseg.kept/1", alias="schema", pattern=r"^roadseg\.kept/1$")
    name: str = Field(pattern=f"^{NAME.pattern}$")
    device_id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    captured_utc: str = Field(max_length=40)
    model: dict[str, str | None] = Field(max_length=8)
    score: float = Field(ge=0, le=1)
    why: dict[str, float] = Field(max_length=16)
    reason: str = Field(max_length=200)
    size: list[Annotated[int, Field(ge=1, le=MAX_SIDE)]] = Field(min_length=2, max_length=2)
    bytes: int = Field(ge=1)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")

    @field_validator("captured_utc")
    @classmethod
    def _iso_utc(cls, v: str) -> str:
        try:
            when = dt.datetime.fromisoformat(v)
        except ValueError:
            raise ValueError("not an ISO 8601 date and time") from None
        if when.utcoffset() is None:
            raise ValueError("no UTC offset")
        return v

    @model_validator(mode="after")
    def _named_by_its_vehicle(self) -> KeptRecord:
        if not self.name.startswith(f"{self.device_id}-"):
            raise ValueError(f"the name does not start with its device id {self.device_id!r}")
        return self

    def to_json(self) -> bytes:
        """The record as the ``.json`` file holds it (UTF-8)."""
        return self.model_dump_json(by_alias=True, indent=1).encode()


def read_record(path: str | Path) -> KeptRecord:
    """A record file: a regular file of at most MAX_RECORD_BYTES (checked on the open
    descriptor, so a FIFO or a link to a device costs no wait and no memory), then JSON,
    then the schema. Raises ValueError (one line: not a regular file, over the size,
    unreadable, not JSON, nested too deep, or not the schema; pydantic's
    ValidationError is a ValueError)."""
    data = atomic.read_small_file(path, MAX_RECORD_BYTES, "kept-frame record")
    try:
        doc = json.loads(data)
    except RecursionError:
        raise ValueError(f"{path}: JSON nested too deep") from None
    return KeptRecord.model_validate(doc)


class FrameStore:
    """The kept frames in ``folder`` (created), at most ``max_bytes`` (JPEGs and
    records together), leaving ``reserve_bytes`` free on the file system
    (default :data:`RESERVE_BYTES`). Thread-safe. Never raises for the disk at
    construction: a folder that cannot be created or tidied (read-only, full,
    I/O error) leaves the store not :attr:`ready`, with the error in
    :attr:`open_error`; :meth:`add` and :meth:`open` try again."""

    def __init__(self, folder: str | Path, max_bytes: int, reserve_bytes: int = RESERVE_BYTES):
        self.folder = Path(folder)
        self.max_bytes = int(max_bytes)
        self.reserve_bytes = int(reserve_bytes)
        self._lock = threading.Lock()
        self._scores: dict[str, float] = {}
        self._sizes: dict[str, int] = {}
        self.open_error: OSError | None = None
        self.open()

    @property
    def ready(self) -> bool:
        """True once the folder exists and was tidied (frames can be added)."""
        return self.open_error is None

    def open(self) -> bool:
        """Create and tidy the folder (again, after a failure); True when that worked.
        On an OSError the store indexes the whole frames it can read, keeps the error
        in :attr:`open_error` (logged the first time) and returns False."""
        with self._lock:
            try:
                self.folder.mkdir(parents=True, exist_ok=True)
                self._tidy()
            except OSError as e:
                if self.open_error is None:
                    log.warning("kept frames: cannot prepare %s (%s): keeping no frames until it can be written",
                                self.folder, e.strerror or e)
                self.open_error = e
                return False
            if self.open_error is not None:
                log.info("kept frames: %s can be written again", self.folder)
            self.open_error = None
            return True

    def _tidy(self) -> None:
        """Index the whole frames (name -> score, bytes), then remove the half-written
        ones. Raises the first OSError of a removal (after indexing what it could read)."""
        scores: dict[str, float] = {}
        sizes: dict[str, int] = {}
        doomed: list[tuple[Path, str]] = [(tmp, "") for tmp in self.folder.glob(".*.tmp*")]
        for rec in self.folder.glob("*.json"):
            jpg = rec.with_suffix(".jpg")
            try:
                r = read_record(rec)
                if r.name != rec.stem:
                    raise ValueError(f"the record names {r.name}")
                if not jpg.is_file():
                    raise ValueError("no JPEG")
                jpg_bytes = jpg.stat().st_size
                if jpg_bytes != r.bytes:
                    raise ValueError(f"the JPEG has {jpg_bytes} bytes, its record says {r.bytes}: "
                                     f"cut short when the power went?")
                size = rec.stat().st_size + jpg_bytes
            except (OSError, ValueError) as e:
                doomed.append((rec, str(e).splitlines()[0]))
                continue
            scores[rec.stem], sizes[rec.stem] = r.score, size
        doomed += [(jpg, "no record: written when the power went?") for jpg in self.folder.glob("*.jpg")
                   if jpg.stem not in scores]
        used = sum(sizes.values())
        for name in sorted(scores, key=lambda n: (scores[n], n)):  # the lowest-scoring first, as add() evicts
            if used <= self.max_bytes:
                break
            used -= sizes.pop(name)
            del scores[name]
            doomed += [(self.folder / f"{name}.json", f"over the store's {self.max_bytes} bytes"),
                       (self.folder / f"{name}.jpg", "")]
        self._scores, self._sizes = scores, sizes
        first: OSError | None = None
        for path, why in doomed:
            try:
                path.unlink(missing_ok=True)
                if why:
                    log.warning("kept frames: removed %s (%s)", path.name, why)
            except OSError as e:
                first = first or e
        if first is not None:
            raise first

    def check_room(self, need: int) -> None:
        """Raise OSError (ENOSPC, EROFS) when ``need`` more bytes would take the file
        system's free space under :attr:`reserve_bytes`, or it is read-only. ``need`` under 1
        (a frame that replaces larger ones) always fits a writable file system."""
        free, read_only = atomic.free_bytes(self.folder)
        if read_only:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self.folder))
        if need <= 0:
            return
        if free < need:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.folder))
        if free - need < self.reserve_bytes:
            raise OSError(errno.ENOSPC, reserve_text(self.reserve_bytes), str(self.folder))

    @property
    def bytes_used(self) -> int:
        """Bytes the kept frames take (JPEGs and records)."""
        with self._lock:
            return sum(self._sizes.values())

    def names(self) -> list[str]:
        """The kept frames, the highest score first (ties: the older first)."""
        with self._lock:
            return sorted(self._scores, key=lambda n: (-self._scores[n], n))

    def __len__(self) -> int:
        with self._lock:
            return len(self._scores)

    def add(self, name: str, jpeg: bytes, record: bytes, score: float) -> list[str]:
        """Keep a frame, making room by removing lower-scoring frames; returns the
        names removed. Raises ValueError for a bad name, OverflowError when it
        does not fit (larger than the store, or every kept frame scores at
        least as high), OSError when the disk refuses, the folder is not :attr:`ready`
        (:meth:`open` is tried first) or the frame would take the free space under
        the reserve (:meth:`check_room`; nothing is then kept)."""
        if not NAME.fullmatch(name):
            raise ValueError(f"bad kept-frame name {name!r}")
        need = len(jpeg) + len(record)
        if not self.ready and not self.open():
            raise self.open_error
        with self._lock:
            if need > self.max_bytes:
                raise OverflowError(f"a frame of {need} bytes is larger than the store ({self.max_bytes} bytes)")
            evict, used = [], sum(self._sizes.values())
            for other in sorted(self._scores, key=lambda n: (self._scores[n], n)):  # lowest first
                if used + need <= self.max_bytes or self._scores[other] >= score:
                    break
                evict.append(other)
                used -= self._sizes[other]
            if used + need > self.max_bytes:
                raise OverflowError("the store is full of frames that score at least as high")
            self.check_room(need - sum(self._sizes[o] for o in evict))
            for other in evict:
                self._remove_locked(other)
            atomic.durable_write(self.folder / f"{name}.jpg", jpeg)
            try:
                atomic.durable_write(self.folder / f"{name}.json", record)
            except OSError:
                (self.folder / f"{name}.jpg").unlink(missing_ok=True)
                raise
            self._scores[name], self._sizes[name] = score, need
            return evict

    def read(self, name: str) -> tuple[bytes, bytes] | None:
        """``(jpeg, record)`` of a kept frame, None when it is gone (removed meanwhile).
        Each file is read as a regular file of at most the bytes the store counted for the
        frame. Raises OSError when the disk fails to read it, or a file is no longer a
        regular file within that size (changed behind the store's back)."""
        with self._lock:
            if name not in self._scores:
                return None
            size = self._sizes[name]
        out = []
        for path in (self.folder / f"{name}.jpg", self.folder / f"{name}.json"):
            try:
                data = atomic.read_small_file(path, size, "kept frame", missing_ok=True)
            except ValueError as e:
                raise OSError(errno.EIO, str(e)) from None
            if data is None:
                return None
            out.append(data)
        return out[0], out[1]

    def size_of(self, name: str) -> int | None:
        """Bytes of a kept frame (JPEG and record), None when it is gone."""
        with self._lock:
            return self._sizes.get(name)

    def remove(self, name: str) -> None:
        """Delete a kept frame (record first); nothing when it is gone. Raises OSError;
        ValueError for a name that is not a kept frame's (:data:`NAME`: no path)."""
        if not NAME.fullmatch(name):
            raise ValueError(f"bad kept-frame name {name[:80]!r}")
        with self._lock:
            self._remove_locked(name)

    def _remove_locked(self, name: str) -> None:
        (self.folder / f"{name}.json").unlink(missing_ok=True)
        (self.folder / f"{name}.jpg").unlink(missing_ok=True)
        self._scores.pop(name, None)
        self._sizes.pop(name, None)
