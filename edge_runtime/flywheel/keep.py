"""Keep the frames the model is unsure of (``roadseg-run --keep-frames DIR``):
a FrameView of the run loop (edge_runtime/loop.py) that scores every frame
(:class:`edge_runtime.flywheel.score.TeachScorer`, on the loop's thread: well
under a millisecond) and hands the chosen ones to a writer thread.

Which frames: time is cut into windows of ``3600 / per_hour`` seconds; the
highest-scoring frame of each window (at least ``min_score``) is a candidate
when the window closes. A candidate is kept unless it looks like the last kept
frame (mean absolute difference of 32x24 grey thumbnails below
``similarity`` grey levels: not fifty frames of one traffic jam) or
``per_hour`` frames were already kept in the last hour (sliding). The store
(:class:`edge_runtime.flywheel.store.FrameStore`) stays within its bytes by
dropping its lowest-scoring frames for better ones.

Time: windows and the hourly limit run on the monotonic clock
(``time.monotonic``), so a wall-clock step (NTP after a boot without a
real-time clock) neither stops nor floods the keeping; the wall clock only
names the frames and dates them (``captured_utc``).

The writer thread encodes the full-size JPEG and writes JPEG and record
atomically, off the loop's thread; its queue is bounded (a full queue drops
and counts). A disk that refuses (ENOSPC, EROFS, EIO, a folder that cannot
be made at start, free space under the store's reserve) is said once in the
log and by :attr:`KeepFrames.disk_fault`, and retried every ``retry_s``
seconds; while it has nothing to write, the writer also looks at the file
system every ``check_s`` seconds (``statvfs``: read-only, or free space
under the reserve), so a card that went bad is a fault within seconds and
one that recovered is used again by itself (free space under the reserve
ends with a margin over it: :data:`RESERVE_MARGIN_BYTES`). A candidate that
the full store refuses (every kept frame scores higher) says nothing about
the disk: a fault stays. Nothing raises into the loop,
and :meth:`KeepFrames.close` never waits long on a disk that refuses.
"""
from __future__ import annotations

import collections
import datetime as dt
import hashlib
import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pydantic

from edge_runtime import atomic
from edge_runtime.atomic import free_bytes
from edge_runtime.flywheel.score import TeachScorer
from edge_runtime.flywheel.store import FrameStore, KeptRecord, reserve_text
from edge_runtime.io.outbox import utc_now

log = logging.getLogger("roadseg.keep")

#: the fault's ``store`` name (the same shape as the other stores' disk faults)
STORE_NAME = "kept-frames"
#: the wall-clock times of the last hour's written frames, under the store (a restart keeps the hourly limit)
RECENT_FILE = ".keep/recent.json"
#: the largest such file read (bytes): per_hour floats
MAX_RECENT_BYTES = 64 * 1024
_RECENT = pydantic.TypeAdapter(list[pydantic.FiniteFloat])
#: hysteresis of the free-space reserve: a "disk nearly full" fault that a look found (free space under
#: the store's reserve) ends only when a look finds free space at least the reserve plus
#: :func:`reserve_margin` (the larger of this many bytes and RESERVE_MARGIN_FRACTION of the reserve), so a
#: card hovering around the reserve is one fault, not one said and published again every few seconds
RESERVE_MARGIN_BYTES = 8 * 2 ** 20
#: see RESERVE_MARGIN_BYTES (64 MiB reserve: 8 MiB)
RESERVE_MARGIN_FRACTION = 0.125


def reserve_margin(reserve_bytes: int) -> int:
    """Free bytes over the reserve that a look needs to end a "disk nearly full" fault it found."""
    return max(RESERVE_MARGIN_BYTES, int(reserve_bytes * RESERVE_MARGIN_FRACTION))


@dataclass(frozen=True)
class KeepPolicy:
    """How many frames and which: ``per_hour`` frames at most in any hour,
    ``min_score`` (0..1) the least score worth keeping, ``similarity`` grey
    levels (0..255) of thumbnail difference below which a frame repeats the
    last kept one, ``jpeg_quality`` 1..100, ``queue`` frames waiting for the
    writer at most, ``retry_s`` seconds between tries of a refusing disk,
    ``check_s`` seconds between the idle writer's looks at the file system."""
    per_hour: int = 30
    min_score: float = 0.0
    similarity: float = 6.0
    jpeg_quality: int = 90
    queue: int = 4
    retry_s: float = 5.0
    check_s: float = 1.0

    @property
    def window_s(self) -> float:
        """Seconds per window: one candidate per window."""
        return 3600.0 / self.per_hour


def thumbnail(frame: np.ndarray, order: str) -> np.ndarray:
    """A 24x32 float32 grey thumbnail (0..255) of a uint8 [H, W, 3] frame, for the similarity check."""
    import cv2
    grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY if order == "rgb" else cv2.COLOR_BGR2GRAY)
    return cv2.resize(grey, (32, 24), interpolation=cv2.INTER_AREA).astype(np.float32)


class FaultReport:
    """A disk fault of one store, reported once: :attr:`fault` is None or
    ``{"store", "path", "error", "since"}`` (``since``: UTC RFC 3339,
    :func:`edge_runtime.io.outbox.utc_now`). ``logger``: where it is said."""

    def __init__(self, store: str, path: str, logger: logging.Logger = log):
        self.store, self.path, self.log = store, path, logger
        self.fault: dict | None = None
        self.looked = False  # the fault was seen by a look at the file system, not by a failed write

    def failed(self, error: OSError | str, looked: bool = False) -> None:
        """Record a failure (``error``: what failed, or a look's text; logged the first
        time only). ``looked``: seen by a look, so a look that finds room ends it."""
        if isinstance(error, OSError):
            text = f"{error.strerror or error} (errno {error.errno})" if error.errno else str(error)
        else:
            text = str(error)
        text = text[:200]  # payloads.Fault's bound
        if self.fault is None:
            self.fault = {"store": self.store, "path": self.path, "error": text, "since": utc_now()}
            self.log.warning("%s: cannot write to %s: %s; retrying", self.store, self.path, text)
        elif self.fault["error"] != text:  # said once; the cause may read differently on the next try
            self.fault = dict(self.fault, error=text)  # a new dict: readers on other threads see one or the other
        self.looked = looked

    def recovered(self) -> None:
        """The store writes again (logged once)."""
        if self.fault is not None:
            self.log.info("%s: %s writes again", self.store, self.path)
            self.fault, self.looked = None, False


class KeepFrames:
    """The FrameView that keeps frames (see the module). ``store``: a
    FrameStore; ``segmenter``: the loop's DeviceSegmenter (its
    ``last_output``, output kind and quantization, and its model's name and
    sha256); ``clock``: Unix seconds (time.time; tests inject one).
    ``sha256``; ``clock``: the wall clock, Unix seconds (time.time), for
    ``captured_utc`` and the file names only; ``monotonic``: seconds
    (time.monotonic) for the windows and the hourly limit (tests inject
    both). ``counts``: frames ``seen``, ``candidates``, ``kept``, dropped as
    ``similar``, over the hourly ``rate``, because the writer's queue was
    ``queue_full``, because the store was ``store_full``, ``evicted``
    (removed for better ones), and ``not_written`` (still waiting for a
    refusing disk at :meth:`close`). :meth:`close` keeps the last window's
    candidate and stops the writer. A store that could not be prepared
    (:attr:`FrameStore.open_error`) is a :attr:`disk_fault` from the start."""

    def __init__(self, store: FrameStore, segmenter, device_id: str, policy: KeepPolicy = KeepPolicy(),
                 clock: Callable[[], float] = time.time, monotonic: Callable[[], float] = time.monotonic):
        self.store, self.seg, self.device_id, self.policy, self.clock = store, segmenter, device_id, policy, clock
        self.monotonic = monotonic
        self.scorer = TeachScorer.for_segmenter(segmenter)
        d = segmenter.describe()
        self.model = {"name": d["name"], "sha256": d["sha256"]}
        self.counts = dict.fromkeys(("seen", "candidates", "kept", "similar", "rate", "queue_full", "store_full",
                                     "evicted", "not_written"), 0)
        self._fault = FaultReport(STORE_NAME, str(store.folder))
        if store.open_error is not None:  # a read-only or full card at start: the vehicle starts and says so
            self._fault.failed(store.open_error)
        self._last_open_try = monotonic()
        self.uploader = None  # the Uploader sending this store's frames, when one is set (edge_runtime.flywheel)
        self._window_end: float | None = None
        self._best: dict | None = None  # the window's best frame so far
        now_wall, now_mono = clock(), monotonic()
        self._recent_wall = self._load_recent(now_wall)  # the writer's: wall-clock times of this hour's frames
        self._kept_times: collections.deque[float] = collections.deque(
            now_mono - (now_wall - t) for t in self._recent_wall)  # each within the hour, none ahead of now
        self._last_thumb: np.ndarray | None = None
        self._queue: queue.Queue = queue.Queue(maxsize=policy.queue)
        self.written = threading.Condition()  # notified after every write the writer tried
        self._pending = 0  # frames queued or being written
        self._stop = threading.Event()
        self._writer = threading.Thread(target=self._write_loop, name="roadseg-keep-writer", daemon=True)
        self._writer.start()

    # -- the hourly count across restarts ------------------------------------------------
    def _recent_path(self):
        return self.store.folder / RECENT_FILE

    def _load_recent(self, now: float) -> list[float]:
        """The wall-clock times of the frames written in the hour before this start (a restart does not reset
        the hourly limit): ``<store>/.keep/recent.json``, a list of at most MAX_RECENT_BYTES; unreadable, not
        the schema, or missing: none (said in the log). Times ahead of ``now`` (the wall clock, seconds; a step
        back) count as now."""
        try:
            raw = atomic.read_small_file(self._recent_path(), MAX_RECENT_BYTES, "kept-frame times", missing_ok=True)
            times = [] if raw is None else _RECENT.validate_json(raw)
        except (ValueError, RecursionError) as e:  # pydantic's ValidationError is a ValueError
            log.warning("kept frames: %s", str(e).splitlines()[0] if str(e) else type(e).__name__)
            return []
        # a time ahead of the clock (written under a clock since stepped back) counts as now, and is saved as
        # now, so that it ages out within the hour instead of holding the limit until the clock gets there
        recent = sorted(min(t, now) for t in times if now - t < 3600.0)[-self.policy.per_hour:]
        if any(t > now for t in times):
            self._save_recent(recent)
        return recent

    def _remember(self, wall: float) -> None:
        """On the writer's thread, after a frame was written: its time joins the hour's, saved for a restart
        (a failure to save is logged, not raised: the frame is kept)."""
        self._recent_wall = [t for t in self._recent_wall if wall - t < 3600.0][-(self.policy.per_hour - 1):] + [wall]
        self._save_recent(self._recent_wall)

    def _save_recent(self, times: list[float]) -> None:
        """Write the hour's times (atomically); a disk that refuses is logged, not raised."""
        try:
            self._recent_path().parent.mkdir(exist_ok=True)
            atomic.write_text(self._recent_path(), json.dumps(times))
        except OSError as e:
            log.debug("kept frames: cannot save the hour's times (%s)", e)

    @property
    def pending(self) -> int:
        """Frames handed to the writer and not yet written (or dropped)."""
        with self.written:
            return self._pending

    @property
    def disk_fault(self) -> dict | None:
        """None, or ``{"store": "kept-frames", "path", "error", "since"}`` while the disk refuses."""
        return self._fault.fault

    @property
    def disk_faults(self) -> list[dict]:
        """Every disk fault of the flywheel: the kept frames' and, when an uploader is
        set, its journal's (:attr:`edge_runtime.flywheel.upload.Uploader.disk_fault`)."""
        found = [self._fault.fault, getattr(self.uploader, "disk_fault", None)]
        return [f for f in found if f]

    # -- on the loop's thread ------------------------------------------------------
    def update(self, frame: np.ndarray, order: str, classes: np.ndarray, fps: float) -> None:
        """Score one frame (uint8 [H,W,3] in ``order``, its class map [h,w]); keep it as the
        window's candidate when it scores best so far. Never raises for a disk problem."""
        now = self.monotonic()
        if self._window_end is None:
            self._window_end = now + self.policy.window_s
        elif now >= self._window_end:
            self._close_window()
            self._window_end = now + self.policy.window_s
        s = self.scorer(getattr(self.seg, "last_output", None), classes)
        self.counts["seen"] += 1
        if s.score < self.policy.min_score or (self._best is not None and s.score <= self._best["score"].score):
            return
        buf = self._best["frame"] if self._best is not None and self._best["frame"].shape == frame.shape else None
        if buf is None:
            buf = np.empty_like(frame)
        np.copyto(buf, frame)
        self._best = {"frame": buf, "order": order, "score": s, "time": now, "wall": self.clock()}

    def _close_window(self) -> None:
        """The window's candidate: checked for rate and similarity, then queued for the writer."""
        best, self._best = self._best, None
        if best is None:
            return
        self.counts["candidates"] += 1
        now = best["time"]
        while self._kept_times and now - self._kept_times[0] >= 3600.0:
            self._kept_times.popleft()
        if len(self._kept_times) >= self.policy.per_hour:
            self.counts["rate"] += 1
            return
        thumb = thumbnail(best["frame"], best["order"])
        if self._last_thumb is not None and float(np.mean(np.abs(thumb - self._last_thumb))) < self.policy.similarity:
            self.counts["similar"] += 1
            return
        with self.written:
            try:
                self._queue.put_nowait(best)
            except queue.Full:
                self.counts["queue_full"] += 1
                return
            self._pending += 1
        self._kept_times.append(now)
        self._last_thumb = thumb

    def close(self, timeout: float = 3.0) -> None:
        """Queue the open window's candidate, let the writer finish what is queued (at most
        ``timeout`` seconds), stop it. A disk that refuses is not waited for: the writer
        is woken at once, and the frames it could not write are counted in
        ``not_written`` and said once in the log."""
        if self._window_end is not None:
            self._close_window()
        self._stop.set()  # wakes a writer waiting to retry a refusing disk: it gives up at once
        try:
            self._queue.put_nowait(None)
        except queue.Full:  # the writer sees the stop after the frame it is writing
            pass
        self._writer.join(timeout)
        if self._writer.is_alive():
            log.warning("kept frames: the writer did not finish within %g s (a slow disk?): %d frame(s) may be lost",
                        timeout, self.pending)

    def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Block until ``predicate()`` holds, checked after every write the writer tries and every
        change of :attr:`disk_fault`; False on timeout (seconds)."""
        with self.written:
            return self.written.wait_for(predicate, timeout)

    # -- on the writer's thread ------------------------------------------------------
    def _write_loop(self) -> None:
        while True:
            if self._stop.is_set() and self._queue.empty():  # closed, and the end marker found no room
                return
            try:
                item = self._queue.get(timeout=self.policy.check_s)
            except queue.Empty:
                self._look()
                continue
            if item is None:
                return
            try:
                name, jpeg, record = self._encode(item)
            except Exception:  # a frame that cannot be encoded must not stop the writer
                log.exception("kept frames: cannot encode a frame")
                self._done_with(True)  # dropped: no longer pending
                continue
            while not self._write(name, jpeg, record, item["score"].score, item["wall"]):
                if self._stop.wait(self.policy.retry_s):
                    self._give_up()
                    return

    def _give_up(self) -> None:
        """At close, with the disk refusing: drop what waits, count it, say it once."""
        lost = 1  # the frame being retried
        while True:
            try:
                lost += self._queue.get_nowait() is not None
            except queue.Empty:
                break
        with self.written:
            self.counts["not_written"] += lost
            self._pending = 0
            self.written.notify_all()
        fault = self._fault.fault
        log.warning("kept frames: %d frame(s) not written at stop: %s refuses (%s)", lost, self.store.folder,
                    fault["error"] if fault else "unknown")

    def _look(self) -> None:
        """The idle writer's look at the file system (statvfs, no write): read-only, or free
        space under the store's reserve, is a fault; a look that finds room ends a fault
        that a look found (free space under the reserve: only with :func:`reserve_margin`
        over it), and prepares a store that could not be prepared before."""
        before = self._fault.fault
        self._look_once()
        if self._fault.fault is not before:
            with self.written:
                self.written.notify_all()

    def _look_once(self) -> None:
        try:
            free, read_only = free_bytes(self.store.folder if self.store.folder.exists() else
                                         _existing_parent(self.store.folder))
        except OSError:
            return  # cannot be looked at: the next write says why
        reserve = self.store.reserve_bytes
        fault = self._fault.fault
        if fault is not None and self._fault.looked and fault["error"] == reserve_text(reserve):
            reserve += reserve_margin(reserve)  # hysteresis: ends only with a margin over the reserve
        trouble = "read-only file system" if read_only else (
            reserve_text(self.store.reserve_bytes) if free < reserve else None)
        if trouble is not None:
            if self._fault.fault is None or self._fault.looked:
                self._fault.failed(trouble, looked=True)
            return
        if not self.store.ready:
            now = self.monotonic()
            if now - self._last_open_try < self.policy.retry_s:
                return
            self._last_open_try = now
            if not self.store.open():
                self._fault.failed(self.store.open_error)
                return
            self._fault.recovered()
        elif self._fault.looked:
            self._fault.recovered()

    def _encode(self, item: dict) -> tuple[str, bytes, bytes]:
        import cv2
        frame = item["frame"] if item["order"] == "bgr" else cv2.cvtColor(item["frame"], cv2.COLOR_RGB2BGR)
        ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, self.policy.jpeg_quality])
        if not ok:
            raise ValueError("JPEG encoding failed")
        jpeg = buf.tobytes()
        when = dt.datetime.fromtimestamp(item["wall"], dt.timezone.utc)
        name = f"{self.device_id}-{when:%Y%m%dT%H%M%S.%f}Z"
        s = item["score"]
        record = KeptRecord(
            name=name, device_id=self.device_id, captured_utc=when.isoformat(timespec="microseconds"),
            model=self.model, score=round(min(1.0, max(0.0, s.score)), 4), why=s.why(),
            reason=f"highest score of its {self.policy.window_s:g} s window", size=list(frame.shape[:2]),
            bytes=len(jpeg), sha256=hashlib.sha256(jpeg).hexdigest())
        return name, jpeg, record.to_json()

    def _write(self, name: str, jpeg: bytes, record: bytes, score: float, wall: float) -> bool:
        """True when done with the frame (kept, or dropped for room); False to retry (the disk refused)."""
        done = self._try_write(name, jpeg, record, score, wall)
        self._done_with(done)
        return done

    def _done_with(self, done: bool) -> None:
        """Wake the waiters after a try; ``done``: the frame is no longer pending."""
        with self.written:
            self._pending -= 1 if done else 0
            self.written.notify_all()

    def _try_write(self, name: str, jpeg: bytes, record: bytes, score: float, wall: float) -> bool:
        try:
            evicted = self.store.add(name, jpeg, record, score)
        except OverflowError:  # refused before any write: no evidence that a disk fault ended
            self.counts["store_full"] += 1
            return True
        except OSError as e:
            self._fault.failed(e)
            return False
        except ValueError:  # a bad name (a device id the store refuses): nothing to retry
            log.exception("kept frames: cannot keep %s", name)
            return True
        self._fault.recovered()
        self.counts["kept"] += 1
        self.counts["evicted"] += len(evicted)
        self._remember(wall)
        log.info("kept frame %s (score %.3f)%s", name, score,
                 f", removed {len(evicted)} lower-scoring" if evicted else "")
        return True


def _existing_parent(folder):
    """The nearest folder above ``folder`` that exists (a store not yet made is looked at there)."""
    for parent in folder.parents:
        if parent.exists():
            return parent
    return folder
