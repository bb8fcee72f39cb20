"""The A/B model slots under ``<state-dir>/models/`` and the pointer that
says which one runs.

::

    <state-dir>/models/a/<name>.tflite, <name>.json, golden.npz, [<name>.md], release.json
    <state-dir>/models/b/...
    <state-dir>/models/current.json   {"slot", "previous", "state": "trial"|"committed", "version"}

A slot is *complete* when its ``release.json`` exists: it is written last,
after every file was written and flushed to disk, and it records each file's
sha256; a slot is first invalidated (``release.json`` removed, the folder
flushed) before anything in it changes. The pointer is replaced atomically
(temporary file, fsync, rename, fsync of the folder). So a power cut at any
instant leaves either the old pointer or the new one, each naming a complete
slot (or none: the model given at install, release 0).

At start (:meth:`Slots.boot`): a pointer still in ``trial`` means the process
stopped during probation (a crash, a power cut): the previous slot is taken
back, and the caller reports the trial rolled back. Every file of the chosen
slot is hashed against its ``release.json``; a slot that fails falls back to
the other complete slot, then to the install's model; a file that cannot be
read (an I/O error) fails the same way, named with its path and the error.

The disk may refuse any write (full, read-only, an I/O error): then the
pointer this process chose (a rollback at start, a fallback, a rollback
after probation) is kept in memory (:meth:`Slots.settle`): :meth:`Slots.pointer`
answers from it, :attr:`Slots.unrecorded` says why it is not on disk, and
:meth:`Slots.write_pending` records it once the disk takes writes. Nothing is
created in ``__init__`` (a read-only card still boots): :meth:`Slots.ensure`
creates the folders before a release is written.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from edge_runtime.atomic import durable_write, fsync_dir

SLOTS = ("a", "b")
POINTER = "current.json"
RELEASE = "release.json"
#: pointer and release records are a few hundred bytes
MAX_RECORD_BYTES = 64 * 1024


class SlotError(RuntimeError):
    """A slot whose files do not match its record or cannot be read, or that may not be written (one line)."""


def os_error_text(err: OSError) -> str:
    """One line for a disk error: the OS's text and the errno's name (``No space left on device
    (ENOSPC)``), without the path (callers name it)."""
    name = errno.errorcode.get(err.errno) if isinstance(err.errno, int) else None
    text = err.strerror or str(err) or type(err).__name__
    return f"{text} ({name})" if name else text


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _read_json(path: Path) -> dict | None:
    try:
        if path.stat().st_size > MAX_RECORD_BYTES:
            return None
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


_UNSET = object()


def _notes(notes: list[str], unrecorded: str | None) -> str:
    if unrecorded:
        notes = [*notes, f"not recorded on disk ({unrecorded}): kept in memory until the disk takes writes"]
    return "; ".join(notes)


@dataclass(frozen=True)
class Boot:
    """What :meth:`Slots.boot` chose: ``model`` (path, or None: the install's model),
    ``slot`` (a, b or None), ``release`` (the slot's record, or None), ``rolled_back``
    (the record of a trial the process did not finish, or None), ``note`` (why, for the log),
    ``unrecorded`` (one line: why the pointer on disk still says otherwise, or None)."""
    model: Path | None
    slot: str | None
    release: dict | None
    rolled_back: dict | None
    note: str
    #: why the choice is not on disk (the disk refused the pointer's write), or None: it is
    unrecorded: str | None = None


class Slots:
    """The slots of ``state_dir`` (``<state_dir>/models/``). Creates nothing: :meth:`ensure` does."""

    def __init__(self, state_dir: str | Path):
        self.root = Path(state_dir) / "models"
        self._memory: dict | None | object = _UNSET  # the pointer kept in memory while the disk refuses it
        #: one line: why the pointer in memory is not on disk (the disk refused it), or None
        self.unrecorded: str | None = None

    def ensure(self) -> None:
        """Create ``models/`` and its slot folders (0700) when missing.

        Raises:
            OSError: the disk refuses (read-only, full, an I/O error); folders that exist are fine.
        """
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        for s in SLOTS:
            (self.root / s).mkdir(exist_ok=True, mode=0o700)

    # -- reading --------------------------------------------------------------------------------
    def pointer(self) -> dict | None:
        """The pointer (``{"slot", "previous", "state", "version"}``) or None when there is none or
        it is unreadable (then the install's model runs). While the disk refused to record the
        pointer this process chose (:meth:`settle`), that one."""
        if self._memory is not _UNSET:
            return dict(self._memory) if self._memory else None  # type: ignore[arg-type]
        p = _read_json(self.root / POINTER)
        if p is None or p.get("slot") not in SLOTS or p.get("state") not in ("trial", "committed"):
            return None
        if p.get("previous") not in (*SLOTS, None):
            return None
        return p

    def record(self, slot: str) -> dict | None:
        """The slot's ``release.json`` (None: not a complete slot)."""
        rec = _read_json(self.root / slot / RELEASE)
        if rec is None or not isinstance(rec.get("files"), dict) or not isinstance(rec.get("model"), str):
            return None
        return rec

    def verify(self, slot: str) -> dict:
        """The slot's record after hashing every file it lists. Raises SlotError naming the first
        missing, altered or unreadable file (an I/O error: its path and the error)."""
        rec = self.record(slot)
        if rec is None:
            raise SlotError(f"slot {slot} is not complete (no readable {RELEASE})")
        for name, digest in rec["files"].items():
            path = self.root / slot / name
            try:
                if "/" in name or name.startswith(".") or not path.is_file():
                    raise SlotError(f"slot {slot}: {name} is missing")
                same = sha256_file(path) == digest
            except OSError as e:
                raise SlotError(f"slot {slot}: cannot read {path}: {os_error_text(e)}") from None
            if not same:
                raise SlotError(f"slot {slot}: {name} does not match its recorded sha256")
        if rec["model"] not in rec["files"]:
            raise SlotError(f"slot {slot}: the model {rec['model']} is not among its files")
        return rec

    def model_path(self, slot: str, rec: dict) -> Path:
        """The model file of ``slot`` as its record names it."""
        return self.root / slot / rec["model"]

    def inactive(self) -> str:
        """The slot that does not run now (the one a new release is written to)."""
        p = self.pointer()
        return "b" if p is not None and p["slot"] == "a" else "a"

    def boot(self) -> Boot:
        """The model to start on (see the module docstring); an interrupted trial is undone
        here, durably when the disk takes the write, else in memory (``Boot.unrecorded`` says
        why; :meth:`write_pending` records it later). Raises nothing for a disk that refuses
        reads or writes: a slot that cannot be read falls back as one that does not verify."""
        p = self.pointer()
        if p is None:
            return Boot(None, None, None, None, "no installed release: the install's model")
        rolled, unrecorded, notes = None, None, []
        if p["state"] == "trial":
            rolled = self.record(p["slot"])
            back = p["previous"] if p["previous"] and self.record(p["previous"]) is not None else None
            unrecorded = self.settle(back)
            notes.append(f"release {p.get('version')} was on trial when the process stopped: back to the previous "
                         "model")
            p = self.pointer()
            if p is None:
                return Boot(None, None, None, rolled, _notes(notes, unrecorded), unrecorded)
        for slot in (p["slot"], p["previous"]):
            if slot is None:
                continue
            try:
                rec = self.verify(slot)
            except SlotError as e:
                notes.append(str(e))
                continue
            if slot != p["slot"]:
                unrecorded = self.settle(slot) or unrecorded
            return Boot(self.model_path(slot, rec), slot, rec, rolled, _notes(notes, unrecorded) or f"slot {slot}",
                        unrecorded)
        unrecorded = self.settle(None) or unrecorded
        notes.append("no verified slot: the install's model")
        return Boot(None, None, None, rolled, _notes(notes, unrecorded), unrecorded)

    # -- writing --------------------------------------------------------------------------------
    def invalidate(self, slot: str) -> Path:
        """Make ``slot`` incomplete (``release.json`` first, durably), then empty it; returns its folder
        (created when missing, see :meth:`ensure`).

        Raises:
            SlotError: ``slot`` is the one the pointer runs.
            OSError: the disk refuses (what was removed stays removed: the slot is incomplete).
        """
        p = self.pointer()
        if p is not None and p["slot"] == slot:
            raise SlotError(f"slot {slot} runs now: a release is never written over the running model")
        self.ensure()
        folder = self.root / slot
        rec = folder / RELEASE
        if rec.exists():
            rec.unlink()
            fsync_dir(folder)
        for child in folder.iterdir():
            shutil.rmtree(child) if child.is_dir() else child.unlink()
        fsync_dir(folder)
        return folder

    def complete(self, slot: str, record: dict) -> dict:
        """Flush every file of ``slot`` to disk, hash them, and write ``release.json`` last.
        ``record``: what to keep about the release (version, target, name, sha256...) plus
        ``model`` (the model's file name). Returns the written record.

        Raises:
            OSError: a file cannot be read or flushed, or the record cannot be written.
        """
        folder = self.root / slot
        files = {}
        for path in sorted(folder.iterdir()):
            if path.name == RELEASE or path.name.startswith(".") or not path.is_file():
                continue
            with open(path, "rb") as f:
                os.fsync(f.fileno())
            files[path.name] = sha256_file(path)
        rec = dict(record, files=files)
        durable_write(folder / RELEASE, json.dumps(rec, indent=1, sort_keys=True).encode())
        return rec

    def set_pointer(self, slot: str, previous: str | None, state: str) -> None:
        """Point at complete ``slot`` (``state`` trial or committed; ``previous``: the slot to go back to),
        durably (see :func:`~edge_runtime.atomic.durable_write`).

        Raises:
            SlotError: ``slot`` is not complete.
            OSError: the disk refuses the write (then the pointer on disk is the old one).
        """
        rec = self.record(slot)
        if rec is None:
            raise SlotError(f"slot {slot} is not complete: the pointer never names an incomplete slot")
        durable_write(self.root / POINTER, json.dumps({"slot": slot, "previous": previous, "state": state,
                                                       "version": rec.get("version")}).encode())
        self._memory, self.unrecorded = _UNSET, None

    def clear_pointer(self) -> None:
        """Back to the install's model (release 0), durably.

        Raises:
            OSError: the disk refuses the unlink or its flush.
        """
        path = self.root / POINTER
        if path.exists():
            path.unlink()
            fsync_dir(self.root)
        self._memory, self.unrecorded = _UNSET, None

    def settle(self, slot: str | None, previous: str | None = None, state: str = "committed") -> str | None:
        """Point at complete ``slot`` (None: the install's model) as :meth:`set_pointer` /
        :meth:`clear_pointer` do; when the disk refuses (full, read-only, an I/O error), keep it in
        memory instead: :meth:`pointer` answers from memory and :attr:`unrecorded` says why until
        :meth:`write_pending` records it. Returns None when it is on disk, else that one line.
        Raises SlotError when ``slot`` is not complete (never for the disk)."""
        try:
            self.set_pointer(slot, previous, state) if slot is not None else self.clear_pointer()
            return None
        except OSError as e:
            rec = self.record(slot) if slot is not None else None
            self._memory = None if slot is None else {"slot": slot, "previous": previous, "state": state,
                                                      "version": (rec or {}).get("version")}
            self.unrecorded = os_error_text(e)
            return self.unrecorded

    def write_pending(self) -> None:
        """Record the pointer kept in memory (:meth:`settle`), if any; nothing to do otherwise.

        Raises:
            OSError: the disk still refuses (the pointer stays in memory).
        """
        if self._memory is _UNSET:
            return
        p = self._memory
        if p is None:
            self.clear_pointer()
        else:
            self.set_pointer(p["slot"], p["previous"], p["state"])  # type: ignore[index]

    def reclaimable(self, slot: str) -> int:
        """Bytes the files of ``slot`` take (what :meth:`invalidate` gives back); 0 when unreadable."""
        try:
            return sum(p.stat().st_size for p in (self.root / slot).iterdir() if p.is_file())
        except OSError:
            return 0

    def describe(self) -> dict:
        """``{"pointer", "a", "b"}``: the pointer and each slot's version, name and sha256 (None when
        empty or incomplete), for roadseg-doctor."""
        out: dict = {"pointer": self.pointer()}
        for s in SLOTS:
            rec = self.record(s)
            out[s] = None if rec is None else {k: rec.get(k) for k in ("version", "name", "sha256", "target")}
        return out
