"""The live view: the loop's newest frame, and MJPEG viewers with bounded slots.

The run loop only stores references (:meth:`LiveState.update`); the overlay is
drawn and JPEG-encoded when someone watches, once per viewer and frame. A
viewer holds one of ``max_viewers`` slots for exactly as long as its response
runs: the slot is given back when the client goes away (Starlette notices the
disconnect and ends the response), not when a generator is garbage-collected,
and when it stops reading: the device API's server aborts a connection whose
response the client has taken no bytes of for ``ServerLimits.send_timeout``
seconds (:mod:`edge_runtime.api.server`), so four stalled viewers cannot hold
every slot.
"""
from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np

DEFAULT_MAX_VIEWERS = 4
#: seconds a viewer waits for the next frame before checking again (also bounds how long a
#: slot outlives its client: the frame wait runs in a worker thread that cannot be interrupted)
FRAME_WAIT_S = 0.5
JPEG_QUALITY = 80
BOUNDARY = b"frame"


class LiveState:
    """The newest frame of the live loop, for the MJPEG stream and /v1/stats.

    ``stats_fn`` (set by the loop) returns the loop's stats payload;
    ``describe_fn`` returns the live segmenter's description
    (:meth:`DeviceSegmenter.describe`: its threads, delegate, input size), which
    /v1/stats reports instead of the upload interpreter's; ``liveness_fn`` the
    loop's liveness, measured on frames, which /healthz reports."""

    def __init__(self, stats_fn: Callable[[], dict] | None = None, describe_fn: Callable[[], dict] | None = None,
                 liveness_fn: Callable[[], dict] | None = None):
        self._cond = threading.Condition()
        self._item = None
        self._seq = 0
        self.stats_fn = stats_fn
        self.describe_fn = describe_fn
        #: the loop's liveness (:meth:`edge_runtime.loop.Runner.liveness`), which /healthz answers with
        self.liveness_fn = liveness_fn

    def update(self, frame: np.ndarray, order: str, classes: np.ndarray, fps: float) -> None:
        """Store a frame (H, W, 3) uint8 in ``order`` ("rgb"/"bgr"), its class
        mask (h, w) uint8 (copied: the segmenter reuses its buffer) and the FPS."""
        with self._cond:
            self._item = (frame, order, classes.copy(), fps)
            self._seq += 1
            self._cond.notify_all()

    def wait_next(self, last_seq: int, timeout: float = 2.0):
        """``(seq, item)`` once a frame newer than ``last_seq`` is stored or
        after ``timeout`` s (then the same seq, and the item may be None)."""
        with self._cond:
            self._cond.wait_for(lambda: self._seq != last_seq, timeout)
            return self._seq, self._item


class ViewerSlots:
    """At most ``limit`` viewers at once; :meth:`wait_idle` lets tests and
    shutdown wait for every slot to be given back."""

    def __init__(self, limit: int = DEFAULT_MAX_VIEWERS):
        self.limit = limit
        self.in_use = 0
        self._cond = threading.Condition()

    def try_acquire(self) -> bool:
        """Take a slot if one is free (never blocks)."""
        with self._cond:
            if self.in_use >= self.limit:
                return False
            self.in_use += 1
            return True

    def release(self) -> None:
        """Give a slot back."""
        with self._cond:
            self.in_use = max(0, self.in_use - 1)
            self._cond.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """True once no slot is taken, False after ``timeout`` s."""
        with self._cond:
            return self._cond.wait_for(lambda: self.in_use == 0, timeout)


def mjpeg_part(rgb: np.ndarray, classes: np.ndarray, fps: float) -> bytes:
    """One ``multipart/x-mixed-replace`` part: the overlay of ``classes`` on
    the RGB frame (H, W, 3) as a JPEG (quality :data:`JPEG_QUALITY`)."""
    import cv2

    from edge_runtime.io.overlay import draw_overlay
    ok, jpg = cv2.imencode(".jpg", draw_overlay(rgb, classes, fps), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise RuntimeError("JPEG encoding of the live overlay failed")
    return (b"--" + BOUNDARY + b"\r\nContent-Type: image/jpeg\r\nContent-Length: " + str(len(jpg)).encode()
            + b"\r\n\r\n" + jpg.tobytes() + b"\r\n")


def _next_part(live: LiveState, seq: int) -> tuple[int, bytes | None]:
    """The next frame after ``seq`` as an MJPEG part (None when none came
    within :data:`FRAME_WAIT_S`); runs in a worker thread."""
    import cv2
    new_seq, item = live.wait_next(seq, FRAME_WAIT_S)
    if item is None or new_seq == seq:
        return new_seq, None
    frame, order, classes, fps = item
    rgb = frame if order == "rgb" else cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    return new_seq, mjpeg_part(rgb, classes, fps)


async def _parts(live: LiveState):
    from anyio import to_thread
    seq = -1
    while True:
        seq, part = await to_thread.run_sync(_next_part, live, seq)
        if part is not None:
            yield part


def mjpeg_response(live: LiveState, slots: ViewerSlots):
    """The ``/v1/stream.mjpg`` response for a viewer that holds a slot of
    ``slots`` (taken by the caller); the slot is released when the response
    ends, whether the stream or the client stopped it."""
    from starlette.responses import StreamingResponse

    class _SlotResponse(StreamingResponse):
        async def __call__(self, scope, receive, send):
            try:
                await super().__call__(scope, receive, send)
            finally:
                slots.release()

    return _SlotResponse(_parts(live), media_type=f"multipart/x-mixed-replace; boundary={BOUNDARY.decode()}")
