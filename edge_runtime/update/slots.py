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
the other complete slot, then to the install's model.
"""
from __future__ import annotations

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
    """A slot whose files do not match its record, or that cannot be written (one line)."""


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


@dataclass(frozen=True)
class Boot:
    """What :meth:`Slots.boot` chose: ``model`` (path, or None: the install's model),
    ``slot`` (a, b or None), ``release`` (the slot's record, or None), ``rolled_back``
    (the record of a trial the process did not finish, or None), ``note`` (why, for the log)."""
    model: Path | None
    slot: str | None
    release: dict | None
    rolled_back: dict | None
    note: str


class Slots:
    """The slots of ``state_dir`` (``<state_dir>/models/``, created 0700)."""

    def __init__(self, state_dir: str | Path):
        self.root = Path(state_dir) / "models"
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        for s in SLOTS:
            (self.root / s).mkdir(exist_ok=True, mode=0o700)

    # -- reading --------------------------------------------------------------------------------
    def pointer(self) -> dict | None:
        """The pointer (``{"slot", "previous", "state", "version"}``) or None when there is none or
        it is unreadable (then the install's model runs)."""
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
        missing or altered file."""
        rec = self.record(slot)
        if rec is None:
            raise SlotError(f"slot {slot} is not complete (no readable {RELEASE})")
        for name, digest in rec["files"].items():
            path = self.root / slot / name
            if "/" in name or name.startswith(".") or not path.is_file():
                raise SlotError(f"slot {slot}: {name} is missing")
            if sha256_file(path) != digest:
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
        here, durably, before the model starts."""
        p = self.pointer()
        if p is None:
            return Boot(None, None, None, None, "no installed release: the install's model")
        rolled = None
        if p["state"] == "trial":
            rolled = self.record(p["slot"])
            self.set_pointer(p["previous"], None, "committed") if p["previous"] else self.clear_pointer()
            note = f"release {p.get('version')} was on trial when the process stopped: back to the previous model"
            p = self.pointer()
            if p is None:
                return Boot(None, None, None, rolled, note)
        else:
            note = ""
        for slot in (p["slot"], p["previous"]):
            if slot is None:
                continue
            try:
                rec = self.verify(slot)
            except SlotError as e:
                note = (note + "; " if note else "") + str(e)
                continue
            if slot != p["slot"]:
                self.set_pointer(slot, None, "committed")
            return Boot(self.model_path(slot, rec), slot, rec, rolled, note or f"slot {slot}")
        self.clear_pointer()
        return Boot(None, None, None, rolled, (note + "; " if note else "") + "no verified slot: the install's model")

    # -- writing --------------------------------------------------------------------------------
    def invalidate(self, slot: str) -> Path:
        """Make ``slot`` incomplete (``release.json`` first, durably), then empty it; returns its folder.
        Refuses the slot the pointer runs."""
        p = self.pointer()
        if p is not None and p["slot"] == slot:
            raise SlotError(f"slot {slot} runs now: a release is never written over the running model")
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
        ``model`` (the model's file name). Returns the written record."""
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
        """Point at complete ``slot`` (``state`` trial or committed; ``previous``: the slot to go back to)."""
        rec = self.record(slot)
        if rec is None:
            raise SlotError(f"slot {slot} is not complete: the pointer never names an incomplete slot")
        durable_write(self.root / POINTER, json.dumps({"slot": slot, "previous": previous, "state": state,
                                                       "version": rec.get("version")}).encode())

    def clear_pointer(self) -> None:
        """Back to the install's model (release 0)."""
        path = self.root / POINTER
        if path.exists():
            path.unlink()
            fsync_dir(self.root)

    def describe(self) -> dict:
        """``{"pointer", "a", "b"}``: the pointer and each slot's version, name and sha256 (None when
        empty or incomplete), for roadseg-doctor."""
        out: dict = {"pointer": self.pointer()}
        for s in SLOTS:
            rec = self.record(s)
            out[s] = None if rec is None else {k: rec.get(k) for k in ("version", "name", "sha256", "target")}
        return out
