"""The vehicle's updater: announcement -> download -> verify -> install ->
check -> swap -> probation -> succeeded, rejected or rolled back.

:class:`Updater` runs on its own thread, never on the capture or loop
thread, and never on paho's (an announcement is parsed and stored there,
nothing more). Each step is reported as the retained model state
(``roadseg/<device-id>/model``, :func:`edge_runtime.contract.payloads.model_state`):

==============  ================================================================
queued          an announcement names a release this vehicle does not run
downloading     fetching through TUF (``bytes`` so far of ``total_bytes``)
verifying       signatures, hashes and lengths checked by TUF; version, runtime,
                the load-time contract and the golden frames checked here
trial           swapped into the loop; on probation for ``--probation`` seconds
succeeded       probation passed: it is the committed model
rejected        refused before it ran (the reason says which check)
rolled_back     failed probation (or the process stopped during it): the
                previous model runs again
==============  ================================================================

What it trusts: the trust root given at install (``--trust-root``, TUF root
metadata), and what python-tuf verifies from it; the TUF client's metadata
is kept in ``<state-dir>/tuf/`` so rollback and freeze protection survive a
restart. It runs a release only if the signed version is the announced one,
not lower than the running release's, its lowest runtime version is not
above this runtime's, and it works here (:mod:`edge_runtime.update.trial`).
A release that failed a check or probation is remembered
(``<state-dir>/update.json``) and not tried again; transient failures (the
network, metadata that expired before the operator re-signed it) are retried
every ``retry_s`` seconds.

The disk of ``<state-dir>`` may refuse any write (full: ENOSPC, read-only:
EROFS, an I/O error: EIO). That is never the release's fault and never stops
the vehicle: the model it runs goes on, and :attr:`Updater.disk_fault` is
``{"store": "model-update", "path", "error", "since"}`` (said once in the log)
until the disk takes writes again. Meanwhile what could not be recorded (a
rollback, a refusal) is kept in memory, and an announced release waits (state
``queued`` with the reason): before a download, the signed lengths of its
files plus ``reserve_bytes`` must fit in the free space (``statvfs``), else
it does not start; a write that fails during the download or the install
removes what was written (the room comes back). The updater's thread looks
at the disk every ``disk_check_s`` seconds and, once it takes writes (and has
room for the waiting release), records what was kept in memory and takes the
release up again, by itself.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from edge_runtime import __version__
from edge_runtime.atomic import durable_write, free_bytes
from edge_runtime.contract import release as contract
from edge_runtime.io.outbox import MIN_FREE_BYTES, disk_trouble, utc_now
from edge_runtime.update.slots import POINTER, SlotError, Slots, os_error_text
from edge_runtime.update.trial import CheckFailed, Limits, TrialSegmenter, check_release

log = logging.getLogger("roadseg.update")

#: a TUF root metadata file is a few KB; python-tuf's own bound for one is 512 KB
MAX_TRUST_ROOT_BYTES = 512_000
#: releases remembered as refused (oldest forgotten beyond)
MAX_REFUSED = 64
#: the :attr:`Updater.disk_fault` store name
FAULT_STORE = "model-update"


def probation_patience_s(probation_s: float, min_frames: int, fps_before: float | None) -> float:
    """Seconds past the end of probation that a trial may wait for ``min_frames`` frames before it is
    judged "not enough to judge" (a camera away): twice the probation and 10 s, or, at a low frame
    rate (``fps_before``: the loop's FPS before the trial), twice the time those frames take there
    (at --fps 0.05, 800 s for 20 frames; with the fixed bound alone, 190 s after a 60 s probation,
    every update rolled back below about 0.1 FPS)."""
    slow = 2.0 * min_frames / fps_before if fps_before and fps_before > 0 else 0.0
    return max(2.0 * probation_s + 10.0, slow)


class UpdateError(RuntimeError):
    """A release that is refused; ``transient`` ones are retried later. ``str()`` is the reason."""

    def __init__(self, reason: str, transient: bool = False):
        super().__init__(reason)
        self.transient = transient


class DiskError(UpdateError):
    """The state dir's disk refused a write (full, read-only, an I/O error) or has no room for the
    release: the release is not at fault, it waits for the disk. ``path``: the file or folder;
    ``error``: one line (the OS's text and errno name, or the room missing); ``before_writing``:
    True when refused before any write (no room for the release, or a disk that already refuses),
    False when a write failed. ``str()``: ``{what}: {path}: {error}``."""

    def __init__(self, what: str, path: str | Path, error: str, before_writing: bool = False):
        super().__init__(f"{what}: {path}: {error}", transient=True)
        self.path, self.error, self.before_writing = str(path), error, before_writing


@dataclasses.dataclass
class UpdateConfig:
    """The updater's settings. ``repos``: base URLs of the release repository (the
    first is the default; an announcement naming another is refused); ``trust_root``:
    the TUF root metadata file given at install; ``probation_s``: seconds on
    probation; ``max_bytes``: the most one release may download; ``timeout_s``:
    seconds any one file may take in all, ``socket_timeout_s`` between two reads;
    ``retry_s``: seconds before a transient failure is tried again; ``limits``:
    what probation tolerates; ``swap_timeout_s``: how long the loop may take to
    apply a swap; ``reserve_bytes``: free bytes a download must leave on the state dir's
    file system for the vehicle's other stores (offline queue, heartbeat, kept frames);
    ``disk_check_s``: seconds between two looks at a disk that refused (statvfs, then the
    writes that wait)."""
    state_dir: Path
    trust_root: Path
    repos: list[str]
    device_id: str
    probation_s: float = 60.0
    max_bytes: int = 64 << 20
    timeout_s: float = 300.0
    socket_timeout_s: float = 15.0
    retry_s: float = 300.0
    limits: Limits = dataclasses.field(default_factory=Limits)
    swap_timeout_s: float = 30.0
    reserve_bytes: int = 4 * MIN_FREE_BYTES
    disk_check_s: float = 5.0


def read_trust_root(path: str | Path) -> bytes:
    """The trust root's bytes, size first, then parsed as TUF root metadata. Raises ValueError
    (one line) for a file that is missing, too large or not root metadata."""
    from tuf.api.metadata import Metadata, Root

    from edge_runtime.atomic import read_small_file
    data = read_small_file(path, MAX_TRUST_ROOT_BYTES, "trust root")  # a regular file, size first
    try:
        md = Metadata.from_bytes(data)
    except Exception as e:  # tuf's DeserializationError and friends
        raise ValueError(f"trust root {path} is not TUF root metadata ({type(e).__name__})") from None
    if not isinstance(md.signed, Root):
        raise ValueError(f"trust root {path} is {md.signed.type} metadata, not root")
    return data


def describe_trust_root(path: str | Path) -> dict:
    """``{"path", "version", "expires", "keys": {role: [key id prefixes]}}`` of a trust root (roadseg-doctor).
    Raises ValueError as :func:`read_trust_root`."""
    from tuf.api.metadata import Metadata
    md = Metadata.from_bytes(read_trust_root(path))
    return {"path": str(path), "version": md.signed.version, "expires": md.signed.expires.isoformat(),
            "keys": {r: [k[:12] for k in role.keyids] for r, role in md.signed.roles.items()}}


class Updater:
    """See the module docstring. ``make_segmenter(path)``: a DeviceSegmenter for a model
    file (the run's threads and delegate); ``publish_state(payload)``: sends the
    retained model state; ``swap(segmenter, on_done)``: the run loop's
    ``Runner.request_swap`` (applied between two frames; ``on_done(old)`` after), None
    without a loop (a release that passes its check is then committed at once);
    ``fps_fn()``: the FPS the loop achieves now (probation compares), or None.
    ``running``: the release running at start (:meth:`boot`'s record), None for the
    install's model."""

    def __init__(self, config: UpdateConfig, *, make_segmenter: Callable[[Path], object],
                 publish_state: Callable[[dict], None], swap: Callable | None = None,
                 fps_fn: Callable[[], float] | None = None):
        self.c = config
        self.make_segmenter, self.publish_state, self.swap, self.fps_fn = make_segmenter, publish_state, swap, fps_fn
        self.state_dir = Path(config.state_dir)
        self.slots = Slots(self.state_dir)
        self.trust_root = read_trust_root(config.trust_root)
        self.tuf_dir = self.state_dir / "tuf"
        self._fault: dict | None = None
        self._fault_lock = threading.Lock()
        self._memory_unwritten = False  # update.json lacks a refusal kept in memory
        self._room: tuple | None = None  # (announcement key, free bytes its release waits for)
        self._deferred = False  # an announcement waits for the disk
        self._disk_failures = 0  # writes that failed in a row (the next look waits longer)
        self._disk_check_at = 0.0
        try:
            self._make_folders()
        except OSError as e:
            self._set_fault(e.filename or self.state_dir, os_error_text(e))
        self.running: dict | None = None  # the running release's record (None: the install's model)
        self.install_model: dict | None = None  # name and sha256 of the install's model
        self._anns: dict[str, contract.Announcement | None] = {"fleet": None, "device": None}
        self._lock = threading.Lock()
        self._wake, self._stop = threading.Event(), threading.Event()
        self._retry_at: float | None = None
        self._staging: str | None = None  # the slot a release is being written to
        self._handled: tuple | None = None
        self._thread: threading.Thread | None = None
        self._last_publish = 0.0
        self.state: dict = {}
        self._remembered = self._load_memory()

    # -- persistence ----------------------------------------------------------------------------
    def _memory_path(self) -> Path:
        return self.state_dir / "update.json"

    def _load_memory(self) -> dict:
        try:
            data = json.loads(self._memory_path().read_bytes()) if self._memory_path().stat().st_size < 1 << 20 \
                else {}
        except (OSError, ValueError):
            data = {}
        refused = data.get("refused") if isinstance(data, dict) else None
        return {"refused": {str(k): str(v)[:500] for k, v in (refused or {}).items()}}

    def _remember_refused(self, version: int, reason: str) -> None:
        """Remember ``version`` as refused: on disk when it takes the write, else in memory (a fault)."""
        refused = self._remembered["refused"]
        refused[str(version)] = reason[:500]
        while len(refused) > MAX_REFUSED:
            refused.pop(next(iter(refused)))
        try:
            self._write_memory()
        except OSError as e:
            self._memory_unwritten = True
            self._set_fault(self._memory_path(), f"release {version} refused, not recorded: {os_error_text(e)}")

    def _write_memory(self) -> None:
        durable_write(self._memory_path(), json.dumps(self._remembered).encode())
        self._memory_unwritten = False

    def _make_folders(self) -> None:
        self.slots.ensure()
        self.tuf_dir.mkdir(parents=True, exist_ok=True, mode=0o700)

    # -- the disk -------------------------------------------------------------------------------
    @property
    def disk_fault(self) -> dict | None:
        """None while the state dir's disk takes the updater's writes, else
        ``{"store": "model-update", "path", "error", "since"}`` (``since``: UTC, RFC 3339):
        updates wait, what could not be recorded is kept in memory, the running model goes
        on. Thread-safe; a copy."""
        f = self._fault
        return dict(f) if f else None

    def _set_fault(self, path: str | Path, error: str, replace: bool = False) -> None:
        """The disk refused (said once in the log); ``replace``: the error of this attempt replaces the
        one the fault began with (``since`` stays)."""
        with self._fault_lock:
            if self._fault is None:
                log.warning("model updates: cannot write %s (%s): updates wait until the disk takes writes; "
                            "the running model goes on", path, error)
                self._fault = {"store": FAULT_STORE, "path": str(path), "error": error[:200], "since": utc_now()}
                self._disk_check_at = time.monotonic() + self.c.disk_check_s
            elif replace:
                self._fault = dict(self._fault, path=str(path), error=error[:200])

    def _clear_fault(self) -> None:
        with self._fault_lock:
            if self._fault is not None:
                log.warning("model updates: the disk takes writes again (refused since %s)", self._fault["since"])
            self._fault, self._room = None, None

    def check_disk(self) -> bool:
        """Look at the state dir's disk after it refused: read-only or full (``statvfs``), room for
        the release that waits, then the writes that wait (the slots' folders, a pointer or a
        refusal kept in memory). Returns True, ending :attr:`disk_fault` (and taking a waiting
        announcement up again on the updater's thread), when nothing waits on the disk any more;
        False while it still refuses. Blocks while the disk does; never raises. The updater's
        thread calls it every ``disk_check_s`` seconds while there is a fault."""
        if self._fault is None:
            return True
        if disk_trouble(self.state_dir) is not None:
            return False
        room = self._room
        if room is not None and (_free_bytes(self.slots.root) or 0) < room[1]:
            return False
        try:
            self._make_folders()
            self.slots.write_pending()
            if self._memory_unwritten:
                self._write_memory()
        except OSError as e:
            self._set_fault(e.filename or self.state_dir, os_error_text(e))
            return False
        self._clear_fault()
        if self._deferred:
            self._deferred, self._handled = False, None
            self._wake.set()
        return True

    def _disk_error(self, what: str, err: OSError, path: str | Path | None = None) -> DiskError:
        return DiskError(what, err.filename or path or self.state_dir, os_error_text(err))

    # -- start, stop, announcements -------------------------------------------------------------
    def boot(self, install_model: dict | None = None) -> Path | None:
        """The model to start the loop on: the committed slot's, or None for the install's
        model (``install_model``: its ``{"name", "sha256"}`` for the state). Undoes a trial
        the process did not finish, and reports the state it starts in."""
        self.install_model = install_model
        b = self.slots.boot()
        self.running = b.release
        if b.note:
            log.info("model at start: %s", b.note)
        if b.unrecorded:
            self._set_fault(self.slots.root / POINTER, f"the model chosen at start is not recorded: {b.unrecorded}")
        if b.rolled_back is not None:
            version = b.rolled_back.get("version")
            reason = "the process stopped during probation (a crash or a power cut)"
            if isinstance(version, int):
                self._remember_refused(version, reason)
            self._report("rolled_back", trying=_ref(b.rolled_back), reason=reason)
        else:
            self._report("idle")
        return b.model

    def start(self) -> Updater:
        """Start the background thread; returns self."""
        self._thread = threading.Thread(target=self._run, name="roadseg-updater", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread (a download is cancelled at its next chunk)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def on_announcement(self, scope: str, payload: bytes) -> None:
        """An announcement arrived (``scope``: ``fleet`` or ``device``; an empty payload clears
        it). Parsed here (size, schema), handled on the updater's thread. Never raises."""
        try:
            ann = None if not payload else contract.parse_announcement(payload)
        except contract.ReleaseError as e:
            log.warning("ignored a %s release announcement: %s", scope, e)
            return
        with self._lock:
            self._anns[scope] = ann
        self._wake.set()

    def effective(self) -> contract.Announcement | None:
        """The announcement that applies: this vehicle's override, else the fleet's."""
        with self._lock:
            return self._anns["device"] or self._anns["fleet"]

    # -- the thread -----------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            due = [t for t in (self._retry_at, self._disk_check_at if self._fault else None) if t is not None]
            timeout = None if not due else max(0.0, min(due) - time.monotonic())
            self._wake.wait(timeout)
            self._wake.clear()
            if self._stop.is_set():
                return
            if self._fault is not None and time.monotonic() >= self._disk_check_at and not self.check_disk():
                self._disk_check_at = time.monotonic() + self.c.disk_check_s
            ann = self.effective()
            key = None if ann is None else _key(ann)
            retry = self._retry_at is not None and time.monotonic() >= self._retry_at
            if ann is None or (key == self._handled and not retry):
                continue
            self._retry_at, self._handled = None, key
            try:
                self.handle(ann)
                self._disk_failures = 0
            except DiskError as e:  # the release waits for the disk: check_disk takes it up again
                self._deferred = True
                if not e.before_writing:  # a write failed: the next looks come later and later (at most retry_s)
                    self._disk_failures += 1
                delay = min(self.c.retry_s, self.c.disk_check_s * 2 ** max(0, self._disk_failures - 1))
                self._disk_check_at = time.monotonic() + delay
                self._report("queued", trying=_ann_ref(ann), reason=f"waiting for the disk: {e}")
            except UpdateError as e:
                if e.transient:
                    self._retry_at = time.monotonic() + self.c.retry_s
                    self._report("rejected", trying=_ann_ref(ann), reason=f"{e}; retrying in {self.c.retry_s:g} s")
                else:
                    self._report("rejected", trying=_ann_ref(ann), reason=str(e))
            except Exception as e:  # never let the thread die: report, retry later
                log.exception("updater: unexpected error")
                self._retry_at = time.monotonic() + self.c.retry_s
                self._report("rejected", trying=_ann_ref(ann), reason=f"internal error: {type(e).__name__}: {e}")

    def handle(self, ann: contract.Announcement) -> str:
        """Take one announcement through every step (on the calling thread); returns the final
        state (succeeded, rolled_back, idle when it already runs). Raises UpdateError when it
        is refused; DiskError (an UpdateError, transient) when the state dir's disk refuses or
        has no room: then :attr:`disk_fault` says so and the release is not remembered as refused."""
        running_version = None if self.running is None else self.running.get("version")
        if running_version == ann.version:
            return "idle"
        refused = self._remembered["refused"].get(str(ann.version))
        if refused is not None:
            raise UpdateError(f"release {ann.version} was refused before: {refused}")
        if ann.repo.rstrip("/") not in [r.rstrip("/") for r in self.c.repos]:
            raise UpdateError("the announcement names a repository this vehicle is not configured with "
                              "(--update-repo)")
        if running_version is not None and ann.version < running_version:
            raise UpdateError(f"release {ann.version} is older than the running release {running_version}: "
                              "a rollback is refused")
        if self._room is not None and self._room[0] != _key(ann):
            self._room = None  # another release: its own room is looked at before its download
        if not self.check_disk():
            f = self._fault or {}
            raise DiskError("the disk refuses writes", f.get("path", self.state_dir), f.get("error", "refused"),
                            before_writing=True)
        self._report("queued", trying=_ann_ref(ann))
        try:
            slot, rec, seg = self._fetch_and_check(ann, running_version)
            return self._try(slot, rec, seg)
        except DiskError as e:
            self._set_fault(e.path, e.error, replace=True)
            raise

    # -- download and verify --------------------------------------------------------------------
    def _tuf(self, repo: str, progress: Callable[[int], None]):
        from tuf.ngclient import Updater as TufUpdater
        from tuf.ngclient import UpdaterConfig

        from edge_runtime.update.fetch import BoundedFetcher
        repo = repo.rstrip("/") + "/"
        fetcher = BoundedFetcher(self.c.socket_timeout_s, self.c.timeout_s, on_bytes=progress, cancel=self._stop,
                                 app_user_agent=f"roadseg/{__version__}")
        cfg = UpdaterConfig(max_root_rotations=32, root_max_length=MAX_TRUST_ROOT_BYTES,
                            timestamp_max_length=16 * 1024, snapshot_max_length=1 << 20,
                            targets_max_length=4 << 20)
        return TufUpdater(str(self.tuf_dir), repo + "metadata/", str(self.state_dir / "models"), repo + "targets/",
                          fetcher=fetcher, config=cfg, bootstrap=self.trust_root)

    def _fetch_and_check(self, ann: contract.Announcement, running_version: int | None):
        """Download, verify, check and install ``ann``'s release into the inactive slot; returns
        ``(slot, record, segmenter)``. Whatever fails after the slot was emptied empties it again
        (a partial download gives its room back). Raises UpdateError (DiskError for the disk)."""
        self._staging = None
        try:
            return self._fetch_and_check_on_disk(ann, running_version)
        except BaseException:
            self._discard(self._staging)
            raise

    def _fetch_and_check_on_disk(self, ann: contract.Announcement, running_version: int | None):
        from tuf.api import exceptions as tuf_errors
        got = {"bytes": 0, "total": None}
        trying = _ann_ref(ann)

        def progress(n: int) -> None:
            got["bytes"] += n
            if got["total"] is not None:
                self._report("downloading", trying=trying, bytes=got["bytes"], total_bytes=got["total"],
                             throttle=True)
                self._checkpoint("download-progress")
        try:
            tuf = self._tuf(ann.repo, progress)
            tuf.refresh()
            info = tuf.get_targetinfo(ann.target)
            if info is None:
                raise UpdateError(f"{ann.target} is not a target of the signed repository")
            try:
                rel = contract.parse_release_info(info.custom)
            except contract.ReleaseError as e:
                raise UpdateError(str(e)) from None
            self._check_release_info(ann, rel, running_version)
            files = {ann.target: info}
            for path in (rel.sidecar, rel.golden, rel.card):
                if path is None:
                    continue
                other = tuf.get_targetinfo(path)
                if other is None:
                    raise UpdateError(f"release {rel.version}: {path} is not a target of the signed repository")
                files[path] = other
            names = {p: PurePosixPath(p).name for p in files}
            model_name = names[ann.target]
            if names[rel.sidecar] != f"{PurePosixPath(model_name).stem}.json" or \
                    PurePosixPath(model_name).suffix not in (".tflite", ".onnx") or \
                    len(set(names.values())) != len(names) or names[rel.golden] != "golden.npz":
                raise UpdateError(f"release {rel.version}: its files are not a model, its sidecar and golden.npz")
            total = sum(i.length for i in files.values())
            if total > self.c.max_bytes:
                raise UpdateError(f"release {rel.version} is {total} bytes, more than the {self.c.max_bytes} "
                                  "allowed (--update-max-mb)")
            got["total"], got["bytes"] = total, 0  # from here on: the release's files, not metadata
            trying = {**trying, "name": rel.name, "sha256": info.hashes.get("sha256")}
            self._check_room(ann, rel.version, total, self.slots.inactive())
            slot = self._staging = self.slots.inactive()
            folder = self.slots.invalidate(slot)
            self._report("downloading", trying=trying, bytes=0, total_bytes=total)
            for path, tinfo in files.items():
                dest = folder / names[path]
                try:
                    tuf.download_target(tinfo, str(dest))
                except OSError as e:  # a failed write() names no file: this one
                    raise DiskError(f"release {ann.version} cannot be written", e.filename or dest,
                                    os_error_text(e)) from None
        except tuf_errors.DownloadError as e:
            detail = str(e) or (f"no data for more than {self.c.socket_timeout_s:g} s (the server stalled)"
                                if isinstance(e, tuf_errors.SlowRetrievalError) else "no detail")
            raise UpdateError(f"download failed: {type(e).__name__}: {detail}", transient=True) from None
        except tuf_errors.RepositoryError as e:
            raise UpdateError(f"the signed repository refused it: {type(e).__name__}: {e}", transient=True) from None
        except OSError as e:  # the disk (TUF's metadata, the slot): network errors come as DownloadError
            raise self._disk_error(f"release {ann.version} cannot be written", e, self.tuf_dir) from None
        try:
            return self._verify_and_complete(ann, rel, info, slot, folder, model_name, trying, got["bytes"], total)
        except OSError as e:
            raise self._disk_error(f"release {ann.version} cannot be installed", e, folder) from None

    def _verify_and_complete(self, ann, rel, info, slot: str, folder: Path, model_name: str, trying: dict,
                             got: int, total: int):
        self._checkpoint("downloaded")
        self._report("verifying", trying=trying, bytes=got, total_bytes=total)
        golden_path = folder / "golden.npz"
        if golden_path.stat().st_size > contract.MAX_GOLDEN_BYTES:
            raise self._refuse(rel.version, "golden.npz is larger than golden frames may be")
        try:
            golden = contract.read_golden(golden_path.read_bytes())
            seg = check_release(folder / model_name, golden, rel.golden_agreement, self.make_segmenter,
                                (rel.input.height, rel.input.width))
        except (CheckFailed, contract.ReleaseError) as e:
            raise self._refuse(rel.version, str(e)) from None
        seg.release = rel.version  # the loop's model info names it (stats, status, /v1/stats)
        rec = self.slots.complete(slot, {"version": rel.version, "target": ann.target, "name": rel.name,
                                         "sha256": info.hashes.get("sha256"), "model": model_name, "repo": ann.repo})
        self._checkpoint("verified")
        return slot, rec, seg

    def _check_room(self, ann: contract.Announcement, version: int, total: int, slot: str) -> None:
        """Refuse to start a download of ``total`` bytes (the signed lengths) that would leave less than
        ``reserve_bytes`` free on the slots' file system (the files of ``slot``, overwritten, count as
        free). Raises DiskError (``before_writing``) and remembers the room the release waits for."""
        free = _free_bytes(self.slots.root)
        if free is None:
            return  # cannot look: the writes say
        reclaim = self.slots.reclaimable(slot)
        need = total + self.c.reserve_bytes
        if free + reclaim < need:
            self._room = (_key(ann), need - reclaim)
            raise DiskError(f"no room for release {version}", self.slots.root,
                            f"{total} bytes and a reserve of {self.c.reserve_bytes} needed, {free + reclaim} free",
                            before_writing=True)

    def _discard(self, slot: str | None) -> None:
        """Remove what a failed download or install left in ``slot`` (the room comes back); never raises."""
        if slot is None:
            return
        try:
            self.slots.invalidate(slot)
        except (OSError, SlotError) as e:  # a read-only disk: the slot stays incomplete, never booted
            log.warning("model updates: cannot empty slot %s (%s)", slot,
                        os_error_text(e) if isinstance(e, OSError) else e)

    def _check_release_info(self, ann, rel: contract.ReleaseInfo, running_version: int | None) -> None:
        if rel.version != ann.version:
            raise UpdateError(f"the announcement says release {ann.version}, the signed target is release "
                              f"{rel.version}")
        if running_version is not None and rel.version < running_version:
            raise UpdateError(f"release {rel.version} is older than the running release {running_version}")
        if contract.version_tuple(rel.min_runtime) > contract.version_tuple(__version__):
            raise self._refuse(rel.version, f"needs runtime {rel.min_runtime} or newer, this is {__version__}")

    def _refuse(self, version: int, reason: str) -> UpdateError:
        self._remember_refused(version, reason)
        return UpdateError(reason)

    # -- swap and probation ---------------------------------------------------------------------
    def _swap_to(self, seg, on_old: Callable | None = None) -> object:
        """Ask the loop to run ``seg``; returns the segmenter it replaced (``on_old(old)`` is
        called with it on the loop's thread, before its next frame). Raises TimeoutError."""
        done, box = threading.Event(), {}

        def on_done(old) -> None:
            box["old"] = old
            if on_old is not None:
                on_old(old)
            done.set()
        self.swap(seg, on_done)
        if not done.wait(self.c.swap_timeout_s):
            raise TimeoutError(f"the run loop did not take the model within {self.c.swap_timeout_s:g} s")
        return box["old"]

    def _try(self, slot: str, rec: dict, seg) -> str:
        previous = self.slots.pointer()
        prev_slot = previous["slot"] if previous is not None else None
        trying = _ref(rec)
        if self.swap is None:  # no loop: checked is all we can do
            self._set_pointer(slot, prev_slot, "committed", rec)
            self.running = rec
            self._report("succeeded", reason="checked; runs from the next start")
            return "succeeded"
        self._set_pointer(slot, prev_slot, "trial", rec)
        self._checkpoint("pointer-trial")
        fps_before = self.fps_fn() if self.fps_fn is not None else None
        trial = TrialSegmenter(seg, None, self.c.limits)
        try:
            old = self._swap_to(trial, on_old=trial.set_previous)
        except TimeoutError as e:
            self._undo(slot, prev_slot)
            raise UpdateError(str(e), transient=True) from None
        self._checkpoint("swapped")
        self._report("trial", trying=trying)
        reason = self._probation(trial, fps_before)
        if self._stop.is_set():  # the process is stopping: the pointer stays on trial, undone at the next start
            return "stopped"
        if reason is None:
            self._swap_to(seg)
            unrecorded = self.slots.settle(slot, prev_slot, "committed")
            if unrecorded:  # it runs; until recorded, a restart would take it for an unfinished trial
                self._set_fault(self.slots.root / POINTER, f"release {rec.get('version')} passed probation, its "
                                f"commit is not recorded: {unrecorded}")
            self.running = rec
            self._checkpoint("committed")
            self._report("succeeded", reason=_summary(trial))
            return "succeeded"
        self._swap_to(old)
        self._undo(slot, prev_slot)
        self._remember_refused(rec["version"], reason)
        self._report("rolled_back", trying=trying, reason=reason)
        return "rolled_back"

    def _probation(self, trial: TrialSegmenter, fps_before: float | None) -> str | None:
        """Watch ``trial`` for ``probation_s`` seconds (longer when too few frames come: a
        camera away); the reason it failed, or None."""
        deadline = time.monotonic() + self.c.probation_s
        give_up = deadline + probation_patience_s(self.c.probation_s, self.c.limits.min_frames, fps_before)
        while not self._stop.is_set():
            reason = trial.failure(fps_before)
            if reason is not None:
                return reason
            now = time.monotonic()
            if now >= deadline and trial.snapshot()["frames"] >= self.c.limits.min_frames:
                return None
            if now >= give_up:
                return (f"only {trial.snapshot()['frames']} frames in {now - deadline + self.c.probation_s:.0f} s of "
                        "probation (camera away?): not enough to judge")
            self._stop.wait(0.2)
        return None

    def _set_pointer(self, slot: str, prev_slot: str | None, state: str, rec: dict) -> None:
        try:
            self.slots.set_pointer(slot, prev_slot, state)
        except OSError as e:
            raise self._disk_error(f"release {rec.get('version')} cannot be pointed at", e,
                                   self.slots.root / POINTER) from None

    def _undo(self, slot: str, prev_slot: str | None) -> None:
        """Back to ``prev_slot`` (None: the install's model): on disk, else in memory (a fault)."""
        unrecorded = self.slots.settle(prev_slot)
        if unrecorded:
            self._set_fault(self.slots.root / POINTER, f"the rollback is not recorded: {unrecorded}")

    def _checkpoint(self, step: str) -> None:
        """A named step of the update (download-progress, downloaded, verified, pointer-trial, swapped,
        committed): nothing here; the power-cut tests stop the process at each."""

    # -- the model state ------------------------------------------------------------------------
    def running_ref(self) -> dict:
        """The running release as the model state names it."""
        if self.running is not None:
            return _ref(self.running)
        m = self.install_model or {}
        return {k: v for k, v in (("name", m.get("name")), ("sha256", m.get("sha256"))) if v}

    def _report(self, state: str, *, trying: dict | None = None, reason: str | None = None, bytes: int = 0,
                total_bytes: int | None = None, throttle: bool = False) -> None:
        now = time.monotonic()
        if throttle and now - self._last_publish < 1.0:
            return
        self._last_publish = now
        from edge_runtime.contract import payloads
        payload = payloads.model_state(self.c.device_id, state, self.running_ref(), trying=trying, reason=reason,
                                       bytes=bytes, total_bytes=total_bytes)
        self.state = payload
        if state in ("rejected", "rolled_back"):
            log.warning("model update %s: %s", state, reason)
        elif not throttle:
            log.info("model update: %s%s", state, f" ({reason})" if reason else "")
        try:
            self.publish_state(payload)
        except Exception as e:  # the report must never stop the update
            log.warning("cannot publish the model state: %s", e)


def _free_bytes(folder: Path) -> int | None:
    """Bytes this user may still write on the file system of ``folder`` (its nearest existing
    parent), from ``statvfs``; None when it cannot be looked at."""
    for f in (folder, *folder.parents):
        try:
            return free_bytes(f)[0]
        except FileNotFoundError:
            continue
        except OSError:
            return None
    return None


def _key(ann: contract.Announcement) -> tuple:
    return (ann.version, ann.target, ann.repo)


def _ref(rec: dict) -> dict:
    return {k: rec[k] for k in ("version", "name", "sha256", "target") if rec.get(k) is not None}


def _ann_ref(ann: contract.Announcement) -> dict:
    return {"version": ann.version, "target": ann.target}


def _summary(trial) -> str | None:
    if trial is None:
        return None
    s = trial.snapshot()
    agree = f", agreement {s['agreement']:.1%}" if s["agreement"] is not None else ""
    agree += f", class IoU {s['class_iou']:.1%}" if s.get("class_iou") is not None else ""
    return f"probation passed: {s['frames']} frames, {s['errors']} errors{agree}"
