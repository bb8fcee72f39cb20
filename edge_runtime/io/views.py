"""Where the overlay of each segmented frame goes besides the API's live
view: a preview video file (``--preview``), a window (``--display``) and
retained JPEG snapshots over MQTT (``--snapshot-interval``, and on request).

Each is a FrameView of the run loop (edge_runtime/loop.py): ``update(frame,
order, classes, fps)`` per frame, ``close()`` at the end.
"""
from __future__ import annotations

import logging
import os
import re
import sys
import time
from pathlib import Path

import numpy as np

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
    """The overlay in an OpenCV window (``--display``); checks at construction
    (check_display) so a headless OpenCV fails before the broker or camera start."""

    def __init__(self):
        check_display()

    def update(self, frame: np.ndarray, order: str, classes: np.ndarray, fps: float) -> None:
        """Show one frame (uint8 [H,W,3] in ``order``) with its class map [h,w]."""
        import cv2

        from edge_runtime.io.overlay import draw_overlay
        cv2.imshow("roadseg", draw_overlay(_rgb(frame, order), classes, fps))
        cv2.waitKey(1)

    def close(self) -> None:
        """Close the window."""
        import cv2
        cv2.destroyAllWindows()


class Preview:
    """The overlay written to a video file (``--preview out.mp4``, mp4v) at
    ``fps`` frames per second (at least 1). Raises ValueError at construction
    when the folder does not exist, and at the first frame when OpenCV cannot
    write the file."""

    def __init__(self, path: str, fps: float):
        if not Path(path).resolve().parent.is_dir():
            raise ValueError(f"--preview {path}: the folder {Path(path).resolve().parent} does not exist")
        self.path, self.fps = path, max(fps, 1.0)
        self.writer = None

    def update(self, frame: np.ndarray, order: str, classes: np.ndarray, fps: float) -> None:
        """Append one frame (uint8 [H,W,3] in ``order``) with its class map [h,w]."""
        import cv2

        from edge_runtime.io.overlay import draw_overlay
        out = draw_overlay(_rgb(frame, order), classes, fps)
        if self.writer is None:
            h, w = out.shape[:2]
            self.writer = cv2.VideoWriter(self.path, cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (w, h))
            if not self.writer.isOpened():
                raise ValueError(f"cannot write preview video {self.path}")
        self.writer.write(out)

    def close(self) -> None:
        """Finish the file."""
        if self.writer is not None:
            self.writer.release()


class Snapshots:
    """A small retained JPEG of the overlay on ``<prefix>/snapshot``: what the
    vehicle sees, through the broker alone. Sent every ``interval`` seconds
    (0: never on a timer) and with the next frame after a message on
    ``<prefix>/snapshot/request``, at most one request served per
    ``min_interval`` seconds (the publisher counts the others); at most
    ``max_kb`` KiB and under the largest payload the broker accepts
    (overlay.snapshot_jpeg); QoS 0, never queued while the broker is away."""

    def __init__(self, publisher, interval: float = 0.0, max_kb: int = 48, min_interval: float = 0.0):
        self.publisher, self.interval, self.max_bytes = publisher, interval, max_kb * 1024
        self.sent = 0
        self.wanted = False
        self._next = 0.0  # monotonic seconds: the first frame is due at once
        if hasattr(publisher, "topic"):
            publisher.subscribe(publisher.topic("snapshot/request"), self.request, min_interval=min_interval)

    def request(self, payload: bytes) -> None:
        """A snapshot request arrived (any payload; paho's thread: never raises)."""
        self.wanted = True

    def update(self, frame: np.ndarray, order: str, classes: np.ndarray, fps: float) -> None:
        """Publish a snapshot of this frame when one is due or was requested."""
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
            jpg = snapshot_jpeg(_rgb(frame, order), classes, fps, max_bytes=limit)
        except ValueError as e:  # the broker accepts less than the smallest picture
            log.warning("snapshot not sent: %s (the broker's limit)", e)
            return
        if self.publisher.publish("snapshot", jpg, retain=True, queue=False, qos=0):
            self.sent += 1

    def close(self) -> None:
        """Nothing to release (the publisher is closed by its owner)."""
