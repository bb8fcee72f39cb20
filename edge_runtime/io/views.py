"""Where the overlay of each segmented frame goes besides the API's live
view: a preview video file (``--preview``), a window (``--display``) and
retained JPEG snapshots over MQTT (``--snapshot-interval``, and on request).

Each is a FrameView of the run loop (edge_runtime/loop.py): ``update(frame,
order, classes, fps)`` per frame (and, optionally, ``scores=`` the model's
output [h,w,C], which the overlay's linear filter upsamples), ``close()`` at
the end. The preview writes on a thread of its own and survives its disk.
"""
from __future__ import annotations

import errno
import logging
import os
import re
import sys
import time
from pathlib import Path

import numpy as np

from edge_runtime import atomic
from edge_runtime.errors import RuntimeFailure

log = logging.getLogger("roadseg.views")

DISPLAY_FIX = ("--display needs an OpenCV built with a GUI and a screen: pip's opencv-python-headless (the runtime "
               "extra's) has none; install opencv-python instead (pip uninstall -y opencv-python-headless && pip "
               "install opencv-python), or use apt's python3-opencv on a Pi, or watch with --preview out.mp4 or "
               "--http HOST:PORT")


def _rgb(frame: np.ndarray, order: str) -> np.ndarray:
    import cv2
    return frame if order == "rgb" else cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)


def check_display() -> None:
    """Raise RuntimeFailure (one line naming the fix) when this OpenCV cannot
    open a window here: a build without GUI (opencv-python-headless), or no
    X/Wayland display on Linux. Called before anything else starts."""
    import cv2
    gui = re.search(r"GUI:\s*(\S+)", cv2.getBuildInformation())
    if gui and gui.group(1).upper() == "NONE":
        raise RuntimeFailure(f"{DISPLAY_FIX} (cv2 {cv2.__version__} at {cv2.__file__} has GUI: NONE)")
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise RuntimeFailure("--display: no screen to show on (DISPLAY and WAYLAND_DISPLAY are unset); "
                             "use --preview out.mp4 or --http HOST:PORT on a headless machine")


class Display:
    """The overlay in an OpenCV window (``--display``), drawn with ``filter``
    (overlay.FILTERS); checks at construction (check_display) so a headless
    OpenCV fails before the broker or camera start."""

    #: update() takes the model's ``scores=`` (the loop passes them: the linear filter follows them)
    takes_scores = True

    def __init__(self, filter: str = "linear"):
        from edge_runtime.io.overlay import check_filter
        check_display()
        self.filter = check_filter(filter)

    def update(self, frame: np.ndarray, order: str, classes: np.ndarray, fps: float,
               scores: np.ndarray | None = None) -> None:
        """Show one frame (uint8 [H,W,3] in ``order``) with its class map [h,w] (and the model's
        ``scores`` [h,w,C] when given: overlay.upsample_classes)."""
        import cv2

        from edge_runtime.io.overlay import draw_overlay
        cv2.imshow("roadseg", draw_overlay(_rgb(frame, order), classes, fps, filter=self.filter, scores=scores))
        cv2.waitKey(1)

    def close(self) -> None:
        """Close the window."""
        import cv2
        cv2.destroyAllWindows()


#: frames waiting for the preview's writer at most; more are dropped and counted (the loop never waits on a disk)
PREVIEW_QUEUE = 8
#: the preview's rate when neither the target FPS nor the source's own rate is known
PREVIEW_DEFAULT_FPS = 25.0
#: space held beside the preview (a hidden ``.NAME.reserve`` file), given back to finish the file on a full
#: disk: the MP4 index (moov) and OpenCV's unwritten buffer need it. Grows by PREVIEW_RESERVE_PER_FRAME
PREVIEW_RESERVE = 256 << 10
PREVIEW_RESERVE_PER_FRAME = 16
#: free space (bytes, besides the reserve) under which the preview is finished rather than written on
PREVIEW_MIN_FREE = 128 << 10
#: bytes the writer may have taken without the file growing before a write is taken to have failed
PREVIEW_STALL_BYTES = 1 << 20
#: seconds update() waits for room in the queue when frames come from a file read unpaced (realtime False)
PREVIEW_WAIT = 5.0
#: seconds close() waits for the writer to finish the file
PREVIEW_CLOSE_TIMEOUT = 10.0


def preview_rate(target_fps: float, realtime: bool, nominal_fps: float | None) -> float:
    """Frames per second to write the preview at, so it plays as long as what was read: a file read
    unpaced (``realtime`` False: every frame is read) at its own ``nominal_fps``; else the loop's
    ``target_fps``, or the source's rate when it is lower (the loop cannot get more) or the loop is
    unpaced (0); PREVIEW_DEFAULT_FPS when nothing is known. At least 1."""
    nominal = nominal_fps if nominal_fps and nominal_fps > 0 else None
    if not realtime and nominal:
        rate = nominal
    elif target_fps > 0:
        rate = min(target_fps, nominal) if nominal else target_fps
    else:
        rate = nominal or PREVIEW_DEFAULT_FPS
    return max(rate, 1.0)


class Preview:
    """The overlay written to a video file (``--preview out.mp4``, mp4v) by a
    thread of its own: :meth:`update` only queues the frame (at most
    ``max_queue``; beyond, frames are dropped and counted in ``dropped``), so
    a slow or full disk never holds up the loop. A file read unpaced
    (``realtime`` False) is no camera: there update waits for room, up to
    PREVIEW_WAIT seconds, so the preview has every frame. The overlay is
    drawn on that thread too (``filter``: overlay.FILTERS).

    The rate is :func:`preview_rate` of ``fps`` (the loop's target),
    ``realtime`` and the nominal rate of ``source``'s camera (set it once the
    source is open; read at the first frame), so the preview plays as long
    as the drive it shows.

    A write that cannot happen is noticed (OpenCV's VideoWriter does not
    raise): the filesystem read-only, less than PREVIEW_MIN_FREE free (a
    reserve of PREVIEW_RESERVE bytes held beside the file is then given back
    so the file can be finished), or the file no longer growing. Then it is
    said once in the log, ``disk_fault`` becomes ``{"store": "preview",
    "path", "error", "since"}`` (None until then; since: UTC), the file is
    finished with the frames written so far (it opens and plays) and later
    frames are counted in ``not_written``. Nothing of it ends the run.

    Raises ValueError at construction when the folder does not exist, and
    from :meth:`update` once OpenCV cannot open the file for writing.
    """

    #: update() takes the model's ``scores=`` (the loop passes them: the linear filter follows them)
    takes_scores = True

    def __init__(self, path: str, fps: float = 0.0, realtime: bool = True, filter: str = "linear",
                 max_queue: int = PREVIEW_QUEUE, source=None):
        import collections
        import threading

        from edge_runtime.io.overlay import check_filter
        folder = Path(path).resolve().parent
        if not folder.is_dir():
            raise ValueError(f"--preview {path}: the folder {folder} does not exist")
        self.path, self.fps, self.realtime, self.filter = path, fps, realtime, check_filter(filter)
        self.source = source
        self.max_queue = max(1, max_queue)
        self.rate: float | None = None  # frames per second of the file, fixed at its first frame
        self.written = self.dropped = self.not_written = 0
        self.disk_fault: dict | None = None
        self.writer = None
        self._folder, self._reserve = folder, folder / f".{Path(path).name}.reserve"
        self._reserved = 0
        self._reserve_fd: int | None = None
        self._size = self._grown_at = self._largest_step = 0
        self._error: Exception | None = None
        self._queue: collections.deque = collections.deque()
        self._cond = threading.Condition()
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="preview", daemon=True)
        self._thread.start()

    # -- the loop's side ------------------------------------------------------
    def update(self, frame: np.ndarray, order: str, classes: np.ndarray, fps: float,
               scores: np.ndarray | None = None) -> None:
        """Queue one frame (uint8 [H,W,3] in ``order``) with its class map [h,w] (and the model's
        ``scores`` [h,w,C] when given, overlay.upsample_classes); copies what it keeps, never
        waits. Raises ValueError when OpenCV could not open the file."""
        if self._error is not None:
            raise self._error
        with self._cond:
            if not self.realtime:  # a file read unpaced: nothing is live, so every frame, waiting a bounded time
                self._cond.wait_for(lambda: len(self._queue) < self.max_queue or self.disk_fault is not None,
                                    PREVIEW_WAIT)
            if self.disk_fault is not None:
                self.not_written += 1
                return
            if len(self._queue) >= self.max_queue:
                self.dropped += 1
                return
            self._queue.append((frame.copy(), order, classes.copy(), fps, None if scores is None else scores.copy()))
            self._cond.notify()

    def stats(self) -> dict:
        """``{"path", "fps", "written", "dropped", "not_written", "disk_fault"}`` (counts since start)."""
        return {"path": self.path, "fps": self.rate, "written": self.written, "dropped": self.dropped,
                "not_written": self.not_written, "disk_fault": self.disk_fault}

    def close(self) -> None:
        """Write what is queued and finish the file (waits up to PREVIEW_CLOSE_TIMEOUT seconds)."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(PREVIEW_CLOSE_TIMEOUT)
        if self._thread.is_alive():
            log.warning("preview %s: still writing after %.0f s at stop (a stalled disk?); left unfinished",
                        self.path, PREVIEW_CLOSE_TIMEOUT)

    # -- the writer's thread --------------------------------------------------
    def _run(self) -> None:
        try:
            while True:
                with self._cond:
                    self._cond.wait_for(lambda: self._queue or self._closing)
                    if not self._queue:
                        break  # closing, and everything queued is written
                    item = self._queue.popleft()
                    self._cond.notify_all()  # room for a frame (update waits for it when reading a file unpaced)
                if self.disk_fault is None and self._error is None:
                    self._write(*item)
                else:
                    with self._cond:
                        self.not_written += 1
        except Exception as e:  # never out of this thread: the loop goes on without a preview
            self._fault(f"{type(e).__name__}: {e}")
        finally:
            self._finish()

    def _write(self, frame, order, classes, fps, scores) -> None:
        from edge_runtime.io.overlay import draw_overlay
        out = draw_overlay(_rgb(frame, order), classes, fps, filter=self.filter, scores=scores)
        if self.writer is None and not self._open(out.shape[:2]):
            return
        if not self._disk_ok():
            with self._cond:
                self.not_written += 1
            return
        self.writer.write(out)
        self.written += 1
        self._check_growth(out.nbytes)
        if self._reserved < PREVIEW_RESERVE + PREVIEW_RESERVE_PER_FRAME * self.written - (64 << 10):
            self._hold_reserve()

    def _open(self, size: tuple[int, int]) -> bool:
        import cv2
        nominal = getattr(getattr(self.source, "camera", self.source), "nominal_fps", None)
        self.rate = preview_rate(self.fps, self.realtime, nominal)
        if not self._hold_reserve():
            return False
        h, w = size
        self.writer = cv2.VideoWriter(self.path, cv2.VideoWriter_fourcc(*"mp4v"), self.rate, (w, h))
        if not self.writer.isOpened():
            self.writer = None
            self._error = ValueError(f"cannot write preview video {self.path}")
            return False
        log.info("preview %s: %dx%d at %.3g FPS", self.path, w, h, self.rate)
        return True

    def _hold_reserve(self) -> bool:
        """Grow the reserve file to what finishing the file needs now; False (and the fault) when the disk
        has not even that."""
        want = PREVIEW_RESERVE + PREVIEW_RESERVE_PER_FRAME * self.written
        try:
            if self._reserve_fd is None:
                self._reserve_fd = os.open(self._reserve, os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                os.posix_fallocate(self._reserve_fd, 0, want)
            except OSError as e:
                if e.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                    raise
                os.pwrite(self._reserve_fd, b"\0" * (want - self._reserved), self._reserved)  # no fallocate here
        except OSError as e:
            self._fault(f"cannot hold its reserve: {_os_error(e)}")
            return False
        self._reserved = want
        return True

    def _disk_ok(self) -> bool:
        """Check the filesystem before a write: False (and the fault) when it is read-only or too full,
        or a byte written into the reserve fails (a disk the kernel made read-only after an I/O error
        still says read-write to statvfs)."""
        try:
            os.pwrite(self._reserve_fd, b"\0", 0)
            free, read_only = atomic.free_bytes(self._folder)
        except OSError as e:
            self._fault(f"cannot write: {_os_error(e)}")
            return False
        if read_only:
            self._fault("the filesystem is read-only (EROFS)")
            return False
        need = PREVIEW_MIN_FREE + 2 * self._largest_step
        if free < need:
            self._fault(f"the disk is full (ENOSPC): {free} bytes free, {need} needed to go on")
            return False
        return True

    def _check_growth(self, raw_bytes: int) -> None:
        """A write that failed leaves the file as it was: after PREVIEW_STALL_BYTES of frames (at the
        file's own bytes per frame so far) without growth, the writes are taken to fail."""
        try:
            size = os.stat(self.path).st_size
        except OSError as e:
            self._fault(_os_error(e))
            return
        if size > self._size:
            self._largest_step = max(self._largest_step, size - self._size)
            self._size, self._grown_at = size, self.written
            return
        per_frame = self._size / self._grown_at if self._grown_at else raw_bytes / 20
        if (self.written - self._grown_at) * per_frame > PREVIEW_STALL_BYTES:
            self._fault(f"the file stopped growing at {self._size} bytes while frames were written "
                        "(the disk fails writes: EIO?)")

    def _fault(self, error: str) -> None:
        """Say it once, keep it in ``disk_fault``, finish the file with what was written."""
        if self.disk_fault is not None:
            return
        from edge_runtime.contract.payloads import now
        self.disk_fault = {"store": "preview", "path": self.path, "error": error[:200], "since": now()}
        with self._cond:
            self._cond.notify_all()  # an update waiting for room goes on at once
        secs = self.written / self.rate if self.rate else 0.0
        log.warning("preview %s: %s; finishing it with the %d frames written (%.1f s); no more frames go to it",
                    self.path, error, self.written, secs)
        self._finish()

    def _finish(self) -> None:
        """Give the reserve back, then let OpenCV write the file's index (idempotent)."""
        if self._reserve_fd is not None:
            fd, self._reserve_fd = self._reserve_fd, None
            os.close(fd)
        try:
            os.unlink(self._reserve)
        except FileNotFoundError:
            pass
        except OSError as e:  # a read-only disk: already said (the fault); it goes at the next start
            log.debug("preview %s: cannot remove its reserve %s: %s", self.path, self._reserve, e)
        self._reserved = 0
        if self.writer is not None:
            writer, self.writer = self.writer, None
            writer.release()


def _os_error(e: OSError) -> str:
    """``"No space left on device (ENOSPC)"``: the reason of an OSError, with its errno name."""
    name = errno.errorcode.get(e.errno or 0, "")
    return f"{e.strerror or e}" + (f" ({name})" if name else "")


class Snapshots:
    """A small retained JPEG of the overlay on ``<prefix>/snapshot``: what the
    vehicle sees, through the broker alone. Sent every ``interval`` seconds
    (0: never on a timer) and with the next frame after a message on
    ``<prefix>/snapshot/request``, at most one request served per
    ``min_interval`` seconds (the publisher counts the others); at most
    ``max_kb`` KiB and under the largest payload the broker accepts
    (overlay.snapshot_jpeg, drawn with ``filter``); QoS 0, never queued while
    the broker is away."""

    #: update() takes the model's ``scores=`` (the loop passes them: the linear filter follows them)
    takes_scores = True

    def __init__(self, publisher, interval: float = 0.0, max_kb: int = 48, min_interval: float = 0.0,
                 filter: str = "linear"):
        from edge_runtime.io.overlay import check_filter
        self.publisher, self.interval, self.max_bytes = publisher, interval, max_kb * 1024
        self.filter = check_filter(filter)
        self.sent = 0
        self.wanted = False
        self._next = 0.0  # monotonic seconds: the first frame is due at once
        if hasattr(publisher, "topic"):
            publisher.subscribe(publisher.topic("snapshot/request"), self.request, min_interval=min_interval)

    def request(self, payload: bytes) -> None:
        """A snapshot request arrived (any payload; paho's thread: never raises)."""
        self.wanted = True

    def update(self, frame: np.ndarray, order: str, classes: np.ndarray, fps: float,
               scores: np.ndarray | None = None) -> None:
        """Publish a snapshot of this frame when one is due or was requested (``scores``: as Display's)."""
        now = time.monotonic()
        due = self.interval > 0 and now >= self._next
        if not (self.wanted or due):
            return
        from edge_runtime.io.overlay import snapshot_jpeg
        if due:
            self._next = now + self.interval
        self.wanted = False
        limit = min(self.max_bytes, self.publisher.payload_limit("snapshot", qos=0))
        try:
            jpg = snapshot_jpeg(_rgb(frame, order), classes, fps, max_bytes=limit, filter=self.filter, scores=scores)
        except ValueError as e:  # the broker accepts less than the smallest picture
            log.warning("snapshot not sent: %s (the broker's limit)", e)
            return
        if self.publisher.publish("snapshot", jpg, retain=True, queue=False, qos=0):
            self.sent += 1

    def close(self) -> None:
        """Nothing to release (the publisher is closed by its owner)."""
