"""Frame sources behind one interface, chosen by a ``--source`` string.

=========================  ==================================================
``picamera2[:N]``          Raspberry Pi camera N (picamera2, imported only here)
``csi[:N]``                Jetson CSI camera through GStreamer nvarguscamerasrc
``v4l2:/dev/videoN``, ``N``  USB camera through OpenCV (V4L2)
``rtsp://...``             network stream through OpenCV/FFmpeg
``synthetic[:HxW[@FPS]]``  generated street scenes at a frame rate (demo, bench,
                           tests: the faked camera)
a video file               played at its own frame rate (``realtime``) or as
                           fast as read (``realtime=False``), ``loop`` restarts
a folder of images         likewise, at ``folder_fps``
=========================  ==================================================

Live sources (and files played in real time, which behave like a camera) are
read by a background thread that keeps only the newest frame: frames the
consumer did not take are dropped and counted. A camera that disappears is
reopened with exponential backoff and reported, never fatal.

``read()`` returns ``(frame, channel_order)`` with ``frame`` uint8 [H,W,3],
or ``None`` when no frame came (then ``ended`` tells a finished file from a
camera that is away).
"""
from __future__ import annotations

import logging
import queue
import re
import struct
import threading
import time
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from edge_runtime.errors import Unsupported

log = logging.getLogger("roadseg.sources")

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp")
NETWORK_TIMEOUT_MS = 5000  # RTSP/HTTP streams: open and read timeouts
VIDEO_EXTS = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v")
#: an image file larger than this (bytes) is skipped unread: a street frame is a few MB at most
MAX_IMAGE_BYTES = 64 << 20
#: this many failed reads in a row is the end of a video, fewer are unreadable frames skipped
MAX_UNREADABLE_FRAMES = 50
#: at most this many distinct skipped files/frames are remembered (and warned about) per source
MAX_WARNED = 10000
#: a video still being written is followed: at the end of what it holds, reading waits up to this many
#: seconds for it to grow (under the run loop's capture timeout, 5 s by default)
FOLLOW_TIMEOUT = 3.0
#: seconds between looks at the size of a video being followed
FOLLOW_POLL = 0.1
#: containers whose index (moov) is written when the recording is finished: unreadable before
MP4_EXTS = (".mp4", ".m4v", ".mov")
#: the boxes an MP4/MOV file starts with (ftyp; old QuickTime files start with one of the others)
MP4_FIRST_BOXES = ("ftyp", "moov", "mdat", "free", "wide", "skip")
#: frames a file source decodes ahead of the consumer (FrameSource)
READ_AHEAD = 2
#: camera readers abandoned in a driver call (LatestFrameSource.restart) per process, at most
MAX_ABANDONED = 8


class SourceError(RuntimeError):
    """A source cannot be opened (at start: fatal, with a clear message)."""


class CameraUnsupported(SourceError, Unsupported):
    """This install cannot drive the camera asked for (e.g. ``csi:N`` with an OpenCV built without
    GStreamer): fatal at once, never retried as a camera that is away (exit 78)."""


def opencv_has_gstreamer() -> bool:
    """True when this cv2 was built with GStreamer (``cv2.getBuildInformation()``); pip's
    opencv-python(-headless) wheels are not, JetPack's and apt's OpenCV are."""
    found = re.search(r"GStreamer:\s*(\w+)", cv2.getBuildInformation())
    return bool(found and found.group(1).upper() == "YES")


def check_gstreamer(spec: str) -> None:
    """Raise CameraUnsupported (one line: the cause and the fix) when ``spec`` needs GStreamer and cv2 has none."""
    if not opencv_has_gstreamer():
        raise CameraUnsupported(
            f"--source {spec} needs an OpenCV built with GStreamer (nvarguscamerasrc), and cv2 {cv2.__version__} "
            f"at {cv2.__file__} has none: pip's opencv-python-headless shadows JetPack's; pip uninstall -y "
            "opencv-python-headless opencv-python in the venv (roadseg-doctor --camera csi checks it)")


class Camera(Protocol):
    """What a device driver provides: the threaded reader does the rest."""
    channel_order: str
    nominal_fps: float | None

    def open(self) -> None:
        """Start delivering frames. Raises SourceError when the device cannot be opened."""

    def grab(self) -> np.ndarray | None:
        """The next frame, uint8 [H, W, 3] in ``channel_order``; None when lost
        (the reader reopens it) or ended. Never raises for a missing frame."""

    def release(self) -> None:
        """Let the device go; ``open`` may be called again after."""


# --- drivers -----------------------------------------------------------------

def _log_level_api():
    """(get, set, silent) of OpenCV's log level: ``cv2.utils.logging`` (pip's OpenCV 4.5+), else the
    older ``cv2.getLogLevel``/``cv2.setLogLevel`` (Debian bookworm's 4.6 has only these), else None."""
    logging_ = getattr(getattr(cv2, "utils", None), "logging", None)
    if logging_ is not None:
        return logging_.getLogLevel, logging_.setLogLevel, logging_.LOG_LEVEL_SILENT
    if hasattr(cv2, "getLogLevel") and hasattr(cv2, "setLogLevel"):
        return cv2.getLogLevel, cv2.setLogLevel, 0  # 0: LOG_LEVEL_SILENT
    return None


def _quiet(call):
    """``call()`` without OpenCV's own log lines (a file being written or cut makes FFmpeg complain, a
    broken image makes the decoder complain; the caller says what it means once). Where this OpenCV
    has no log-level API, ``call()`` as it is."""
    api = _log_level_api()
    if api is None:
        return call()
    get, set_, silent = api
    level = get()
    set_(silent)
    try:
        return call()
    finally:
        set_(level)


def _quiet_imdecode(buf: np.ndarray) -> np.ndarray | None:
    """``cv2.imdecode`` to BGR without OpenCV's own log lines for a broken
    file (the caller reports it once, naming the file)."""
    return _quiet(lambda: cv2.imdecode(buf, cv2.IMREAD_COLOR))


class OpenCVCamera:
    """USB (V4L2), RTSP and Jetson CSI (GStreamer) cameras through OpenCV."""

    def __init__(self, target, size: tuple[int, int] | None = None, gstreamer: bool = False, name: str = ""):
        self.target, self.size, self.gstreamer = target, size, gstreamer
        self.name = name or str(target)
        self.channel_order = "bgr"
        self.nominal_fps = None
        self.cap = None

    def open(self) -> None:
        """Open the capture (network streams with bounded open/read timeouts,
        :data:`NETWORK_TIMEOUT_MS`). Raises SourceError when it does not open,
        CameraUnsupported for a GStreamer pipeline on a cv2 without GStreamer."""
        if self.gstreamer:
            check_gstreamer(self.name)
            cap = cv2.VideoCapture(self.target, cv2.CAP_GSTREAMER)
        elif isinstance(self.target, str) and "://" in self.target:
            # a network stream must not hang the reader: bounded open and read
            cap = cv2.VideoCapture(self.target, cv2.CAP_FFMPEG,
                                   [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, NETWORK_TIMEOUT_MS,
                                    cv2.CAP_PROP_READ_TIMEOUT_MSEC, NETWORK_TIMEOUT_MS])
        else:
            cap = cv2.VideoCapture(self.target, cv2.CAP_ANY)
        if not cap.isOpened():
            raise SourceError(f"cannot open camera {self.name}")
        if self.size and not self.gstreamer:
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.size[0])
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.size[1])
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        fps = cap.get(cv2.CAP_PROP_FPS)
        self.nominal_fps = fps if fps and fps > 0 else None
        self.cap = cap

    def grab(self):
        """The next frame, uint8 [H, W, 3] BGR, or None when the read failed."""
        ok, frame = self.cap.read() if self.cap is not None else (False, None)
        return frame if ok else None

    def release(self) -> None:
        """Release the capture (idempotent)."""
        if self.cap is not None:
            self.cap.release()
            self.cap = None


def jetson_csi_pipeline(sensor_id: int, size: tuple[int, int], fps: int = 30) -> str:
    """nvarguscamerasrc -> NVMM -> BGRx at the model's size -> BGR appsink."""
    h, w = size
    return (f"nvarguscamerasrc sensor-id={sensor_id} ! video/x-raw(memory:NVMM),framerate={fps}/1 ! "
            f"nvvidconv ! video/x-raw,width={w},height={h},format=BGRx ! videoconvert ! "
            "video/x-raw,format=BGR ! appsink drop=true max-buffers=1 sync=false")


class Picamera2Camera:
    """Raspberry Pi camera via picamera2. The ISP scales to the size asked
    for; ``RGB888`` arrays are BGR in memory, so frames are tagged ``bgr``."""

    def __init__(self, index: int = 0, size: tuple[int, int] = (480, 640), fps: float | None = None):
        self.index, self.size, self.fps = index, size, fps
        self.channel_order = "bgr"
        self.nominal_fps = fps
        self.cam = None

    def open(self) -> None:
        """Configure and start the camera at ``size``. Raises SourceError when
        picamera2 is missing or unusable here, or the camera does not start."""
        try:
            from picamera2 import Picamera2
        except ImportError as e:
            raise SourceError("picamera2 is not installed: on Raspberry Pi OS run 'sudo apt install "
                              "python3-picamera2' and create the venv with --system-site-packages") from e
        except Exception as e:  # e.g. "numpy.dtype size changed": a pip NumPy shadows the one apt built it for
            raise SourceError(f"picamera2 is installed but cannot be imported ({type(e).__name__}: {e}); "
                              "the venv's NumPy or OpenCV differ from the ones Raspberry Pi OS built picamera2 "
                              "against: pip uninstall numpy opencv-python-headless in the venv so the system's "
                              "python3-numpy and python3-opencv are used (scripts/install_pi.sh does this)") from e
        try:
            cam = Picamera2(self.index)
            h, w = self.size
            controls = {"FrameRate": self.fps} if self.fps else {}
            cam.configure(cam.create_video_configuration(main={"size": (w, h), "format": "RGB888"},
                                                         controls=controls, buffer_count=2))
            cam.start()
        except Exception as e:  # libcamera raises various types
            raise SourceError(f"cannot open Raspberry Pi camera {self.index}: {e}") from e
        self.cam = cam

    def grab(self):
        """The next frame, uint8 [H, W, 3] (BGR in memory), or None when capture failed."""
        try:
            return self.cam.capture_array("main")
        except Exception:
            return None

    def release(self) -> None:
        """Stop and close the camera (idempotent)."""
        if self.cam is not None:
            try:
                self.cam.stop()
                self.cam.close()
            finally:
                self.cam = None


class SyntheticCamera:
    """Generated street scenes at ``fps``: the camera faked behind the same
    interface, for tests, the demo and benchmarks. ``fail_after`` frames it
    'disappears' (grab returns None) for ``outage`` seconds; :meth:`unplug`
    and :meth:`plug` do the same on demand (the soak benchmark's outages)."""

    def __init__(self, size: tuple[int, int] = (256, 512), fps: float = 30.0, scenes: int = 16,
                 fail_after: int | None = None, outage: float = 1.0):
        from edge_runtime.eval.synthetic import synthetic_scene
        self.channel_order = "rgb"
        self.nominal_fps = fps
        self._frames = [synthetic_scene(i, *size)[0] for i in range(scenes)]
        self._i = 0
        self._next = 0.0
        self.fail_after, self.outage = fail_after, outage
        self._down_until = 0.0
        self.opens = 0

    def open(self) -> None:
        """Count an open. Raises SourceError while unplugged."""
        if time.monotonic() < self._down_until:
            raise SourceError("synthetic camera is unplugged")
        self.opens += 1
        self._next = time.monotonic()

    def unplug(self, seconds: float = float("inf")) -> None:
        """Disappear for ``seconds`` (grab returns None, open raises)."""
        self._down_until = time.monotonic() + seconds

    def plug(self) -> None:
        """Come back at once."""
        self._down_until = 0.0

    def grab(self):
        """The next scene, uint8 [H, W, 3] RGB, paced to ``fps``; None while unplugged."""
        if time.monotonic() < self._down_until:
            time.sleep(0.05)  # like a camera read timing out
            return None
        if self.fail_after is not None and self._i == self.fail_after:
            self.fail_after = None
            self._down_until = time.monotonic() + self.outage
            return None
        if self.nominal_fps:
            delay = self._next - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self._next = max(self._next + 1 / self.nominal_fps, time.monotonic() - 1 / self.nominal_fps)
        frame = self._frames[self._i % len(self._frames)]
        self._i += 1
        return frame

    def release(self) -> None:
        """Nothing to release."""


def _mp4_boxes(path: Path, size: int) -> tuple[list[str], bool]:
    """The top-level box types of an MP4/MOV file, and whether its last box runs past the file's
    end (the recording was cut). Reads only the box headers (16 bytes each, at most 4096 boxes)."""
    kinds: list[str] = []
    pos = 0
    with open(path, "rb") as f:
        while pos + 8 <= size and len(kinds) < 4096:
            f.seek(pos)
            head = f.read(16)
            length, kind = struct.unpack(">I4s", head[:8])
            if length == 1 and len(head) == 16:
                length = struct.unpack(">Q", head[8:16])[0]
            elif length == 0:  # "to the end of the file"
                length = size - pos
            if length < 8:
                return kinds, True
            kinds.append(kind.decode("latin-1"))
            if pos + length > size:
                return kinds, True
            pos += length
    return kinds, False


def video_state(path: Path) -> str:
    """What a video file's container says of it, from its headers alone: ``"finished"`` (an
    MP4/MOV with its moov index and nothing cut, an AVI whose RIFF size is the file's),
    ``"unfinished"`` (an MP4/MOV without moov, or cut, or fragmented; an AVI whose RIFF size
    is not the file's: still being written, or cut before it was finalised), ``"empty"``, or
    ``"unknown"`` (other containers, which can be read while written). Raises OSError."""
    size = path.stat().st_size
    if not size:
        return "empty"
    if path.suffix.lower() in MP4_EXTS:
        kinds, cut = _mp4_boxes(path, size)
        if not kinds or kinds[0] not in MP4_FIRST_BOXES:
            return "unknown"  # not an MP4 at all
        return "finished" if "moov" in kinds and "moof" not in kinds and not cut else "unfinished"
    with open(path, "rb") as f:
        head = f.read(12)
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "finished" if struct.unpack("<I", head[4:8])[0] + 8 == size else "unfinished"
    return "unknown"


def _grows(path: Path, seconds: float) -> bool:
    """True when ``path``'s size changes within ``seconds`` (looked at every FOLLOW_POLL)."""
    first = path.stat().st_size
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(FOLLOW_POLL)
        if path.stat().st_size != first:
            return True
    return False


def unreadable_video(path: Path) -> SourceError:
    """The SourceError for a video OpenCV cannot read, naming the cause: empty, still being
    written (an MP4's index is written last), truncated (cut before it was finalised), or
    else a codec this OpenCV lacks or not a video at all."""
    try:
        state = video_state(path)
    except (OSError, struct.error) as e:
        return SourceError(f"cannot read video {path}: {e}")
    if state == "empty":
        return SourceError(f"cannot read video {path}: the file is empty (0 bytes)")
    if state == "unfinished" and path.suffix.lower() in MP4_EXTS:
        if time.time() - path.stat().st_mtime < FOLLOW_TIMEOUT and _grows(path, FOLLOW_TIMEOUT):
            return SourceError(f"video {path} is still being written and has no index yet (an MP4's moov is written "
                               "when the recording ends): read it once its recorder has finished, or record to "
                               ".mkv, .ts or fragmented MP4, which can be followed while written")
        return SourceError(f"video {path} is truncated: the recording was cut before it was finalised (no moov "
                           "index: a recorder stopped by a power cut, a crash or a full disk); recover it with a tool "
                           "such as untrunc, or record again")
    if state == "unfinished":
        return SourceError(f"video {path} is truncated: its header promises more bytes than the file holds (cut "
                           "before it was finalised)")
    return SourceError(f"cannot read video {path} (missing codec or not a video?)")


class FileCamera:
    """A video file or image folder. ``realtime`` paces reads to the file's
    frame rate (a camera stand-in); ``loop`` restarts at the end.

    A video still being written is followed: at the end of what it holds,
    when it has grown since it was opened, or it is not finished
    (:func:`video_state`) and was written in the last FOLLOW_TIMEOUT seconds,
    reading waits up to FOLLOW_TIMEOUT seconds for more, then reopens it and
    goes on after the last frame read (said once in the log). One that
    cannot be opened says why (:func:`unreadable_video`): still being
    written, truncated, or a codec.

    What cannot be read is skipped with one warning naming it, and reading
    goes on: an empty, corrupt or oversized image (over
    :data:`MAX_IMAGE_BYTES`) in a folder, an unreadable frame in a video (up
    to :data:`MAX_UNREADABLE_FRAMES` in a row; more is the end of the file).
    ``skipped`` counts them. A file or folder with nothing readable is a
    :class:`SourceError` at :meth:`open`. Frames are uint8 [H, W, 3] BGR."""

    def __init__(self, path: Path, realtime: bool = True, loop: bool = False, folder_fps: float = 10.0):
        self.path, self.realtime, self.loop = path, realtime, loop
        self.channel_order = "bgr"
        self.is_folder = path.is_dir()
        self.nominal_fps = folder_fps if self.is_folder else None
        self._files: list[Path] = []
        self._i = 0
        self.cap = None
        self._next = 0.0
        self._pending: np.ndarray | None = None  # the first frame, read by open() to prove one is readable
        self._warned: set = set()  # files / frame numbers already reported: each is reported once
        self.skipped = 0
        self._pos = 0  # frames read from the video since it was opened or restarted
        self._size = 0  # the video's size (bytes) when it was last (re)opened
        self._followed = False

    def open(self) -> None:
        """List the folder or open the video, and read the first readable
        frame. Raises SourceError when there is nothing to read."""
        if self.is_folder:
            self._files = sorted(p for p in self.path.iterdir() if p.suffix.lower() in IMAGE_EXTS)
            if not self._files:
                raise SourceError(f"no images ({', '.join(IMAGE_EXTS)}) in folder {self.path}")
        else:
            self.release()
            self._size = self.path.stat().st_size
            cap = _quiet(lambda: cv2.VideoCapture(str(self.path)))
            if not cap.isOpened():
                raise unreadable_video(self.path)
            fps = cap.get(cv2.CAP_PROP_FPS)
            self.nominal_fps = fps if fps and fps > 0 else 25.0
            self.cap = cap
            self._pos = 0
        self._i = 0
        self._pending = self._next_readable(wrap=False)
        if self._pending is None:
            what = f"folder {self.path} ({len(self._files)} images)" if self.is_folder else f"video {self.path}"
            raise SourceError(f"nothing readable in {what}: every image is empty or corrupt") if self.is_folder \
                else unreadable_video(self.path)
        self._next = time.monotonic()

    def _warn_once(self, key, message: str, *args) -> None:
        self.skipped += 1
        if key not in self._warned and len(self._warned) < MAX_WARNED:
            self._warned.add(key)
            log.warning(message, *args)

    def _decode(self, path: Path) -> np.ndarray | None:
        """One image of the folder, or None (reported once) when it cannot be read."""
        try:
            size = path.stat().st_size
            if size > MAX_IMAGE_BYTES:
                self._warn_once(path, "skipping %s: %d bytes, over the %d an image may have", path, size,
                                MAX_IMAGE_BYTES)
                return None
            frame = _quiet_imdecode(np.fromfile(path, np.uint8)) if size else None
        except (OSError, cv2.error) as e:
            self._warn_once(path, "skipping %s: %s", path, e)
            return None
        if frame is None:
            self._warn_once(path, "skipping %s: %s", path, "empty file" if not size else "not a readable image")
        return frame

    def _next_image(self, wrap: bool) -> np.ndarray | None:
        for _ in range(len(self._files)):  # at most one pass: a folder gone bad ends instead of spinning
            if self._i >= len(self._files):
                if not wrap:
                    return None
                self._i = 0
            path = self._files[self._i]
            self._i += 1
            frame = self._decode(path)
            if frame is not None:
                return frame
        return None

    def _next_frame(self, wrap: bool) -> np.ndarray | None:
        restarted = False
        misses, first_bad = 0, 0
        while misses < MAX_UNREADABLE_FRAMES:
            index = int(self.cap.get(cv2.CAP_PROP_POS_FRAMES))
            ok, frame = self.cap.read()
            if ok:
                self._pos += 1
                if misses:
                    self._warn_once(("frame", first_bad), "skipped %d unreadable frame(s) of video %s at frame %d",
                                    misses, self.path, first_bad)
                    self.skipped += misses - 1
                return frame
            misses, first_bad = misses + 1, first_bad if misses else index
            if misses == MAX_UNREADABLE_FRAMES and self._follow():  # still being written: more came
                misses = 0
                continue
            if misses == MAX_UNREADABLE_FRAMES and wrap and not restarted:  # the end: start over, once
                self.cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
                restarted, misses, self._pos = True, 0, 0
        return None

    def _follow(self) -> bool:
        """At the end of what the video holds: True when it grew and was reopened after the last
        frame read; False at its end (finished, or no growth within FOLLOW_TIMEOUT seconds)."""
        try:
            stat = self.path.stat()
            state = video_state(self.path)
        except (OSError, struct.error):
            return False
        if stat.st_size == self._size and (state == "finished" or time.time() - stat.st_mtime > FOLLOW_TIMEOUT):
            if state == "unfinished":
                self._warn_once("truncated", "video %s ends at frame %d without its index: it was cut before it "
                                "was finalised (truncated)", self.path, self._pos)
            return False
        deadline = time.monotonic() + FOLLOW_TIMEOUT
        while self.path.stat().st_size == self._size and time.monotonic() < deadline:
            time.sleep(FOLLOW_POLL)
        if self.path.stat().st_size == self._size:
            if self._followed:
                log.warning("video %s did not grow for %.0f s after frame %d: taken as its end", self.path,
                            FOLLOW_TIMEOUT, self._pos)
            return False
        if not self._followed:
            self._followed = True
            log.info("video %s is still being written: following it as it grows (its end: %.0f s without growth)",
                     self.path, FOLLOW_TIMEOUT)
        return self._reopen_at(self._pos)

    def _reopen_at(self, frames: int) -> bool:
        """Reopen the video and skip the ``frames`` already read (decoded in order: seeking in a
        file without its index lands a few frames off). False when it no longer has them."""
        self.cap.release()
        self._size = self.path.stat().st_size
        self.cap = _quiet(lambda: cv2.VideoCapture(str(self.path)))
        for _ in range(frames):
            if not self.cap.grab():
                log.warning("video %s changed while followed: it no longer holds the %d frames read", self.path,
                            frames)
                return False
        return True

    def _next_readable(self, wrap: bool) -> np.ndarray | None:
        return self._next_image(wrap) if self.is_folder else self._next_frame(wrap)

    def _read_one(self):
        if self._pending is not None:
            frame, self._pending = self._pending, None
            return frame
        if self.is_folder or self.cap is not None:
            return self._next_readable(self.loop)
        return None

    def grab(self):
        """The next readable frame (uint8 [H, W, 3] BGR), paced to the frame
        rate when ``realtime``; None at the end (without ``loop``) or when a
        whole pass found nothing readable."""
        if self.realtime and self.nominal_fps:
            delay = self._next - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self._next = max(self._next + 1 / self.nominal_fps, time.monotonic() - 1 / self.nominal_fps)
        return self._read_one()

    def release(self) -> None:
        """Close the video (idempotent); a folder holds nothing open."""
        if self.cap is not None:
            self.cap.release()
            self.cap = None


# --- the one interface -------------------------------------------------------

class FrameSource:
    """Every frame, in order (files read with ``realtime=False``): a reader
    thread decodes ahead into a queue of :data:`READ_AHEAD` frames, so the
    decode runs beside the model instead of before it, and the consumer's
    thread never waits on a disk or a codec beyond ``read``'s timeout."""

    def __init__(self, camera: Camera, name: str, finite: bool):
        self.camera, self.name, self.finite = camera, name, finite
        self.frames_read = 0
        self.dropped = 0
        self.reconnects = 0
        self.busy_since: float | None = None  # monotonic time the reader entered the camera; None when outside
        #: ``prepare(frame, order) -> model input``, run on the reader thread for every frame (the consumer sets
        #: it: DeviceSegmenter.prepare); :attr:`prepared` is then the input of the frame ``read`` returned last
        self.prepare = None
        self.prepared = None
        self._ended = False
        self._queue: queue.Queue = queue.Queue(maxsize=READ_AHEAD)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def channel_order(self) -> str:
        """``rgb`` or ``bgr``: the order of the frames' channels."""
        return self.camera.channel_order

    def start(self) -> "FrameSource":
        """Open the camera (raises SourceError) and start reading ahead; returns self."""
        self.camera.open()
        self._thread = threading.Thread(target=self._read_ahead, name="source", daemon=True)
        self._thread.start()
        return self

    def _read_ahead(self) -> None:
        while not self._stop.is_set():
            self.busy_since = time.monotonic()
            try:
                frame = self.camera.grab()
            except Exception as e:  # a reader that dies silently would look like the end of the file
                log.warning("reading %s failed: %s: %s", self.name, type(e).__name__, e)
                frame = None
            self.busy_since = None
            item = None if frame is None else (frame, self._prepare(frame))
            while not self._stop.is_set():
                try:
                    self._queue.put(item, timeout=0.5)
                    break
                except queue.Full:
                    continue
            if frame is None:
                return

    def _prepare(self, frame):
        """The model's input for ``frame`` when a consumer asked for it (None otherwise, or when it fails:
        the consumer then prepares the frame itself and meets the error there)."""
        fn = self.prepare
        if fn is None:
            return None
        try:
            return fn(frame, self.camera.channel_order)
        except Exception:
            return None

    @property
    def ended(self) -> bool:
        """True once a finite source has no more frames."""
        return self._ended

    def read(self, timeout: float = 5.0):
        """``(frame uint8 [H, W, 3], channel_order)``, the next one in order,
        waiting up to ``timeout`` seconds; None at the end (``ended``) or when
        none came in time."""
        if self._ended:
            return None
        try:
            item = self._queue.get(timeout=timeout)
        except queue.Empty:
            return None
        if item is None:
            self._ended = True
            return None
        frame, self.prepared = item
        self.frames_read += 1
        return frame, self.camera.channel_order

    def stop(self) -> None:
        """Stop reading ahead (waits up to 5 s for a read in progress) and release the camera."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.camera.release()

    def stats(self) -> dict:
        """``{"source", "frames_read", "dropped", "reconnects"}`` (counts since start)."""
        return {"source": self.name, "frames_read": self.frames_read, "dropped": self.dropped,
                "reconnects": self.reconnects}


class LatestFrameSource(FrameSource):
    """A background thread grabs continuously and keeps only the newest
    frame; ``read()`` returns a frame not returned before (waiting for one).
    Frames overwritten before being read are counted as dropped. A lost
    camera is reopened with exponential backoff (``finite`` sources end).

    ``state`` is ``opening`` (never opened yet), ``live``, ``lost`` (away,
    being reopened) or ``ended``; ``last_error`` says why it is not live;
    ``busy_since`` is the monotonic time the reader entered a camera call
    (grab, open, release) that has not returned yet (None outside one): a
    caller that finds it too old calls :meth:`restart`, which abandons that
    reader (a thread stuck in a driver cannot be killed) and reopens the
    camera on a new one, at most :data:`MAX_ABANDONED` times per process."""

    def __init__(self, camera: Camera, name: str, finite: bool = False, max_backoff: float = 2.0):
        super().__init__(camera, name, finite)
        self.max_backoff = max_backoff
        self._cond = threading.Condition()
        self._frame = None
        self._prepared = None
        self._fresh = False
        self._ended = False
        self._gen = 0  # the reader thread of this generation is the live one; older ones were abandoned
        self.abandoned = 0
        self._live_since: float | None = None  # when the camera last came up (monotonic)
        self._quick_losses = 0  # losses in a row within a second of coming up
        self.state = "opening"
        self.last_error = ""
        self.last_frame_at: float | None = None  # time.monotonic() of the newest frame put in the slot
        self.lost_since: float | None = None

    def start(self, wait: bool = True) -> "LatestFrameSource":
        """``wait``: open now and fail loudly; otherwise the reader thread
        keeps trying (``state`` says how it goes)."""
        if wait:
            self.camera.open()
            self.state = "live"
            self._live_since = time.monotonic()
        self._spawn(release_first=False)
        return self

    def _spawn(self, release_first: bool) -> None:
        self._thread = threading.Thread(target=self._run, args=(self._gen, release_first), name="source",
                                        daemon=True)
        self._thread.start()

    def restart(self, reason: str) -> bool:
        """Abandon the reader (stuck in the camera for too long: ``reason``) and
        reopen the camera on a new reader thread; False (nothing done) once
        :data:`MAX_ABANDONED` readers were abandoned in this process."""
        with self._cond:
            if self.abandoned >= MAX_ABANDONED:
                return False
            self._gen += 1
            self.abandoned += 1
            self.busy_since = None
            self.state, self.last_error, self.lost_since = "lost", reason, time.monotonic()
        self._spawn(release_first=True)
        return True

    def _call(self, gen: int, fn):
        """``fn()`` with ``busy_since`` set while it runs (for this generation's reader only)."""
        if gen == self._gen:
            self.busy_since = time.monotonic()
        try:
            return fn()
        finally:
            if gen == self._gen:
                self.busy_since = None

    def _reopen(self, gen: int) -> bool:
        backoff = 0.5
        while not self._stop.is_set() and gen == self._gen:
            try:
                self._call(gen, self.camera.open)
            except Exception as e:  # keep trying; a vehicle's camera comes back
                msg = str(e) or type(e).__name__
                if msg != self.last_error:
                    log.warning("camera %s unavailable (%s); retrying every %.1f s at most", self.name, msg,
                                self.max_backoff)
                self.last_error = msg
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self.max_backoff)
                continue
            if gen != self._gen:
                return False
            if self.state == "lost":
                self.reconnects += 1
                log.warning("camera %s back after %.1f s (reconnect %d)", self.name,
                            time.monotonic() - (self.lost_since or time.monotonic()), self.reconnects)
            self.state, self.last_error, self.lost_since = "live", "", None
            self._live_since = time.monotonic()
            return True
        return False

    def _run(self, gen: int, release_first: bool) -> None:
        if release_first:
            try:
                self._call(gen, self.camera.release)
            except Exception as e:
                log.warning("camera %s: releasing it failed (%s); reopening anyway", self.name, e)
        if self.state in ("opening", "lost") and not self._reopen(gen):
            return
        while not self._stop.is_set() and gen == self._gen:
            try:
                frame = self._call(gen, self.camera.grab)
            except Exception as e:  # a driver's exception is a lost camera, not a dead reader
                self.last_error = f"{type(e).__name__}: {e}"
                frame = None
            if gen != self._gen:
                return  # abandoned while in the driver: the new reader owns the camera
            if frame is None:
                if self.finite:
                    with self._cond:
                        self._ended = True
                        self.state = "ended"
                        self._cond.notify_all()
                    return
                if self._stop.is_set():
                    return
                now = time.monotonic()
                live_for = now - (self._live_since or now)
                self.state, self.lost_since, self.last_error = "lost", now, "no frame"
                log.warning("camera %s lost; reopening", self.name)
                self._call(gen, self.camera.release)
                if live_for < 1.0:  # lost again at once: a camera that opens but gives nothing must not spin
                    self._quick_losses += 1
                    self._stop.wait(min(0.1 * 2 ** min(self._quick_losses, 5), self.max_backoff))
                else:
                    self._quick_losses = 0
                if not self._reopen(gen):
                    return
                continue
            prepared = self._prepare(frame)
            with self._cond:
                if self._fresh:
                    self.dropped += 1
                self._frame, self._prepared = frame, prepared
                self._fresh = True
                self.last_frame_at = time.monotonic()
                self._cond.notify_all()

    def read(self, timeout: float = 5.0):
        """The newest frame not returned before, ``(frame, channel_order)``,
        waiting up to ``timeout`` seconds; None when none came (camera away,
        ended or stopped: see ``ended`` and ``state``)."""
        with self._cond:
            self._cond.wait_for(lambda: self._fresh or self._ended or self._stop.is_set(), timeout)
            if not self._fresh:
                return None  # ended, stopped, or no frame within timeout (camera away): see .ended
            self._fresh = False
            self.frames_read += 1
            self.prepared = self._prepared
            return self._frame, self.camera.channel_order

    def stop(self) -> None:
        """Stop the reader thread (waits up to 5 s) and release the camera (not
        when a reader is stuck in it: releasing under it could hang this thread too)."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=5)
            if self._thread.is_alive():
                log.warning("camera %s: the reader is stuck in the driver; not releasing it", self.name)
                return
        self.camera.release()


def redact(spec: str) -> str:
    """A source spec fit for logs and payloads: no ``user:password@`` in URLs."""
    return re.sub(r"(?<=://)[^/@\s]*@", "***@", str(spec))


def open_source(spec: str, size: tuple[int, int] = (256, 512), realtime: bool = True, loop: bool = False,
                folder_fps: float = 10.0, wait: bool = True) -> FrameSource:
    """Build and start the source for ``spec`` (see the module docstring).
    ``size`` is what cameras are asked to deliver (the model's input size).
    ``wait=False``: a camera that cannot be opened yet is retried in the
    background instead of failing here (``roadseg-run --camera-wait``)."""
    s = str(spec)
    name = redact(s)

    def live(camera):
        return LatestFrameSource(camera, name).start(wait=wait)
    if s.startswith("picamera2"):
        idx = int(s.split(":", 1)[1]) if ":" in s else 0
        return live(Picamera2Camera(idx, size))
    if s.startswith("csi"):
        idx = int(s.split(":", 1)[1]) if ":" in s else 0
        check_gstreamer(name)  # at once: no retrying (--camera-wait) what this OpenCV can never open
        return live(OpenCVCamera(jetson_csi_pipeline(idx, size), gstreamer=True, name=name))
    if s.startswith("v4l2:"):
        return live(OpenCVCamera(s.split(":", 1)[1], size))
    if s.isdigit():
        return live(OpenCVCamera(int(s), size))
    if s.startswith("/dev/"):  # a device node is a camera that can be unplugged, never a file that ends
        return live(OpenCVCamera(s, size))
    if s.startswith(("rtsp://", "rtsps://", "http://", "https://")):
        return live(OpenCVCamera(s, name=name))
    if s.startswith("synthetic"):
        rest = s.split(":", 1)[1] if ":" in s else ""
        fps = 30.0
        if "@" in rest:
            rest, f = rest.split("@", 1)
            fps = float(f)
        ssize = size
        if rest:
            from edge_runtime.contract.preprocessing import parse_size
            ssize = parse_size(rest)
        cam = SyntheticCamera(ssize, fps if realtime else 0.0)
        return (LatestFrameSource(cam, s) if realtime else FrameSource(cam, s, finite=False)).start()
    path = Path(s)
    if not path.exists():
        raise SourceError(f"source {s!r} is neither a camera spec (picamera2, csi, v4l2:/dev/videoN, N, "
                          "rtsp://..., synthetic) nor an existing file or folder")
    if path.is_file() and path.suffix.lower() not in VIDEO_EXTS:
        raise SourceError(f"source {s}: not a video file ({', '.join(VIDEO_EXTS)})")
    cam = FileCamera(path, realtime=realtime, loop=loop, folder_fps=folder_fps)
    if realtime:
        return LatestFrameSource(cam, s, finite=not loop).start()
    return FrameSource(cam, s, finite=not loop).start()
