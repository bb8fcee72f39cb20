"""The run loop: capture -> segment -> summarize -> publish, at a target
frame rate (:class:`Runner`).

The loop owns pacing, the coverage aggregate, the ``coverage``/``stats``
messages, liveness (systemd watchdog, heartbeat file, ``camera_lost``) and the
stop. Everything optional (embedded broker, MQTT connection, device API,
Home Assistant, preview video, window, snapshots) is composed around it by
``roadseg-run`` (edge_runtime/commands/run.py) and plugged in as *views* (get
every segmented frame) and *summary hooks* (get every coverage summary).

The loop's thread never writes to a disk and never waits on a camera: the
source reads on a thread of its own (a latest-frame slot), the offline
queue, heartbeat, preview and kept frames write on theirs. Liveness is
measured on frames: the systemd watchdog and the heartbeat file go on only
while frames arrive, or while ``camera_lost`` is published and the camera
is being reopened; a capture that does not return within
``capture_timeout`` seconds is abandoned and the camera reopened, and after
:data:`MAX_HUNG` such captures in a row without a frame the run stops with
a RuntimeFailure (exit 4), so the service manager restarts the process.
``stats`` are published on time with or without frames. A store that cannot
write (full or read-only disk, I/O error) is said once in the log and shown
in ``status`` and ``stats`` (``faults``) until it writes again.
"""
from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

import numpy as np

from edge_runtime.contract import payloads
from edge_runtime.errors import RuntimeFailure
from edge_runtime.io.device import Heartbeat, cpu_temperature, memory_mb, sd_notify

log = logging.getLogger("roadseg.run")

#: latencies kept for the percentiles in ``stats`` (bounded: the loop runs for days)
LATENCY_WINDOW = 1000
#: below this fraction of the target FPS the progress line names what limits the loop
LIMIT_FRACTION = 0.95
#: captures abandoned in a row (no frame in between) before the run gives up (exit 4)
MAX_HUNG = 3
#: seconds between two looks at the stores' faults (status shows a fault within this plus a publish)
FAULT_CHECK_INTERVAL = 1.0
#: seconds without a watchdog ping (one a second while the loop is alive) before /healthz says "stalled"
LIVENESS_S = 5.0
#: the longest the pacer sleeps: between the frames of a low --fps the loop still pings the watchdog,
#: publishes stats and answers signals this often (systemd's WatchdogSec=60 and TimeoutStopSec)
HOUSEKEEPING_S = 1.0


class FrameView(Protocol):
    """Something that shows each segmented frame (live view, preview, window, snapshots)."""

    def update(self, frame: np.ndarray, order: str, classes: np.ndarray, fps: float) -> None:
        """``frame`` uint8 [H,W,3] in channel ``order`` ("rgb"/"bgr"), ``classes``
        uint8 [h,w] category ids (the model's output size), ``fps`` achieved now."""

    # a view with ``takes_scores = True`` gets ``scores=`` too: the model's raw output of this frame
    # ([h, w, C] in its output dtype; the segmenter's ``last_output``), for a linear overlay


class Pacer:
    """Ticks at ``fps`` (frames per second); ticks the loop could not serve
    are skipped and counted, never queued behind the camera. ``fps`` 0: no pacing."""

    def __init__(self, fps: float):
        self.period = 1.0 / fps if fps > 0 else 0.0
        self.next_tick = time.monotonic()
        self.skipped = 0

    def wait(self, max_sleep: float | None = None) -> bool:
        """Sleep until the next tick, or ``max_sleep`` seconds at most; True when the tick came (take a
        frame), False when woken before it (at a low ``--fps`` the loop still keeps its watchdog, stats and
        signals on time between frames). When late, skip (and count) the missed ticks."""
        if not self.period:
            return True
        now = time.monotonic()
        if now < self.next_tick:
            if max_sleep is not None and self.next_tick - now > max_sleep:
                time.sleep(max_sleep)
                return False
            time.sleep(self.next_tick - now)
        else:
            missed = int((now - self.next_tick) / self.period)
            self.skipped += missed
            self.next_tick += missed * self.period
        self.next_tick += self.period
        return True


class Every:
    """True once every ``interval`` seconds (0: every time)."""

    def __init__(self, interval: float, start: float):
        self.interval, self.last = interval, start

    def due(self, now: float) -> float | None:
        """Seconds since the last time, when due (``now`` in time.monotonic() seconds); else None."""
        if self.interval == 0 or now - self.last >= self.interval:
            since, self.last = now - self.last, now
            return since
        return None


class LoadWindow:
    """Where the loop's time went since the last progress line: waiting for
    the source (``read``) or working (segment, views, publishing), in seconds."""

    def __init__(self, now: float):
        self.start, self.frames, self.waiting = now, 0, 0.0

    def limit(self, now: float, target: float, invoke_ms: float) -> str:
        """Why the loop runs below ``target`` FPS, as words for the log ("" when it
        keeps up or is unpaced), then starts a new window. The source is the limit
        when most of the window was spent waiting for a frame. A window shorter than two
        frame periods of a low ``target`` (0.1 FPS: 20 s) is too short to judge: no verdict,
        and it goes on counting."""
        elapsed = max(now - self.start, 1e-9)
        if target and elapsed < 2.0 / target:
            return ""
        fps, waiting = self.frames / elapsed, self.waiting / elapsed
        self.start, self.frames, self.waiting = now, 0, 0.0
        if not target or fps >= LIMIT_FRACTION * target:
            return ""
        if waiting > 0.5:
            return f"the source delivers only {fps:.1f} FPS: it is the limit, not the model"
        return f"the model is the limit: inference {invoke_ms:.1f} ms per frame"


class Runner:
    """capture -> segment -> summarize -> publish, at a target frame rate.

    ``settings``: the run's settings (edge_runtime.commands.settings.RunSettings:
    fps, intervals, limits); ``segmenter``:
    a DeviceSegmenter (built from ``settings.model`` when None); ``source``: a
    started frame source (opened from ``settings.source`` and stopped by the
    Runner when None); ``publisher``: a NullPublisher or a started
    MqttPublisher (the caller stops it); ``views``: FrameView objects that get
    every frame; ``on_summary``: callables ``(summary: dict, now: float)`` that
    get every coverage summary. :meth:`run` raises errors.RuntimeFailure when a
    camera does not open within ``settings.camera_wait`` seconds or its capture
    hangs :data:`MAX_HUNG` times in a row, and whatever the segmenter or views raise.
    """

    def __init__(self, settings, segmenter=None, source=None, publisher=None,
                 views: list[FrameView] | tuple = (), on_summary: list[Callable[[dict, float], None]] | tuple = ()):
        if segmenter is None:
            from edge_runtime.model.interpreter import parse_delegate_options
            from edge_runtime.model.segmenter import DeviceSegmenter
            segmenter = DeviceSegmenter(settings.model, settings.threads, settings.delegate,
                                        parse_delegate_options(settings.delegate_options), size=settings.input_size())
        self.s, self.seg, self.source, self.publisher = settings, segmenter, source, publisher
        self.views, self.on_summary = list(views), list(on_summary)
        self.target_fps = settings.fps
        self._own_source = source is None
        self.stop_requested = False
        self.seq = self.frames = 0
        self.latencies: collections.deque[float] = collections.deque(maxlen=LATENCY_WINDOW)
        self.inference: collections.deque[float] = collections.deque(maxlen=LATENCY_WINDOW)
        self.started = time.monotonic()
        self.exit_reason = ""
        self.camera_lost = False
        self._last_ping = 0.0
        self._last_got = False  # whether the last tick found a frame
        self.pacer = Pacer(self.target_fps)
        self.achieved = 0.0
        self._window = (0, self.started)
        self._load = self._total = LoadWindow(self.started)  # since the last progress line; since the start
        self._model_info: dict | None = None
        self.heartbeat = Heartbeat(getattr(settings, "heartbeat_file", None))
        self.capture_timeout = getattr(settings, "capture_timeout", 5.0)
        self._last_frame = self.started
        self.hung = 0  # captures abandoned since the last frame
        self._state, self._state_extra = "online", {}
        self._fault_key: tuple = ()
        #: more objects whose ``disk_fault`` (a fault dict or None) the status carries (model updates, uploads)
        self.fault_sources: list = []
        self._swap_lock = threading.Lock()
        self._swap: tuple | None = None
        self._takes_prepared = False  # the segmenter takes inputs its source's reader prepared

    def model_info(self) -> dict:
        """``{"name", "sha256", "precision", "input_size": [H, W]}`` of the running model, and ``release``
        (its fleet release version) when it came in one; until the next swap."""
        if self._model_info is None:  # payloads reuse it
            d = self.seg.describe()
            self._model_info = {"name": d["name"], "sha256": d["sha256"], "precision": d["precision"],
                                "input_size": d["input_size"]}
            if getattr(self.seg, "release", None) is not None:  # a fleet release (edge_runtime.update)
                self._model_info["release"] = self.seg.release
        return self._model_info

    def request_stop(self, *_) -> None:
        """Stop after the current frame (a signal handler: SIGINT/SIGTERM)."""
        self.stop_requested = True

    def request_swap(self, segmenter, on_done: Callable[[object], None] | None = None) -> None:
        """Run ``segmenter`` from the next frame on, without stopping the loop,
        the MQTT session or the API (thread-safe; a later request replaces one
        not applied yet). The swap happens on the loop's thread between two
        frames; ``on_done(old_segmenter)`` is then called there (its exceptions
        are logged, never raised into the loop)."""
        with self._swap_lock:
            self._swap = (segmenter, on_done)

    def _apply_swap(self) -> None:
        with self._swap_lock:
            pending, self._swap = self._swap, None
        if pending is None:
            return
        old, (self.seg, on_done) = self.seg, pending
        self._model_info = None
        self._prepare_on_reader()  # frames prepared for the old input size are ignored by the new model
        info = self.model_info()
        log.info("model swapped between two frames: %s (%s) -> %s (%s)", old.describe()["name"],
                 old.describe()["sha256"][:12], info["name"], (info["sha256"] or "")[:12])
        if hasattr(self.publisher, "set_status_fields"):
            self.publisher.set_status_fields(model=info)
        if on_done is not None:
            try:
                on_done(old)
            except Exception as e:  # the loop outlives a hook's bug
                log.warning("after the model swap: %s: %s", type(e).__name__, e)

    def open_source(self):
        """The frame source, opened from ``settings.source`` if none was given
        (raises sources.SourceError for a spec that names nothing)."""
        if self.source is None:
            from edge_runtime.io.sources import open_source
            self.source = open_source(self.s.source, self.seg.input_size, realtime=self.s.realtime,
                                      loop=self.s.loop, wait=self.s.camera_wait == 0)
        self._prepare_on_reader()
        return self.source

    def _prepare_on_reader(self) -> None:
        """Let the source's reader thread preprocess each frame for this model (decode and resize
        beside the model, not before it), when the source and the segmenter can."""
        import inspect
        try:
            takes = "prepared" in inspect.signature(self.seg.segment).parameters and hasattr(self.seg, "prepare")
        except (TypeError, ValueError):
            takes = False
        self._takes_prepared = takes
        if hasattr(self.source, "prepare"):
            self.source.prepare = self.seg.prepare if takes else None

    # -- the loop ------------------------------------------------------------------
    def run(self) -> dict:
        """Run until a signal, ``duration``, ``max_frames`` or the end of the
        source; returns the final ``stats`` payload (also published)."""
        from edge_runtime.contract.coverage import CoverageAggregator
        agg = CoverageAggregator()
        t0 = self.pacer.next_tick = time.monotonic()
        self._load, self._total = LoadWindow(t0), LoadWindow(t0)
        publish, stats, logs = (Every(self.s.publish_interval, t0), Every(self.s.stats_interval, t0),
                                Every(self.s.log_interval, t0))
        faults = Every(FAULT_CHECK_INTERVAL, t0)
        self._last_frame = t0
        try:
            self.open_source()
            sd_notify("READY=1")
            while not self._finished(t0):
                if self.pacer.wait(max_sleep=HOUSEKEEPING_S):
                    got = self._capture()
                    self._apply_swap()
                    self._last_got = got is not None
                    self._watch(time.monotonic(), t0, self._last_got)
                    if got is not None:
                        self._process(*got, agg)
                else:  # between two frames of a low --fps: liveness from the camera's own frames
                    self._apply_swap()  # an update waits for the next frame no longer than a second
                    self._watch(time.monotonic(), t0, self._delivering())
                    if getattr(self.source, "ended", False):
                        # a file played in real time that ended between two ticks: its frames after the last
                        # tick were a camera's, dropped like every frame between ticks, and so is the last
                        self.exit_reason = "end of source"
                now = time.monotonic()
                if agg.frames and (since := publish.due(now)) is not None:
                    self._publish_coverage(agg, since if self.s.publish_interval else None)
                if stats.due(now) is not None:  # on time, frames or not
                    self.publisher.publish("stats", self.stats_payload())
                if faults.due(now) is not None:
                    self._check_faults()
                if logs.due(now) is not None:
                    self._log_progress(now - t0, now)
        finally:
            summary = self._close(agg)
        self._log_stop(time.monotonic() - t0, summary)
        return summary

    def _process(self, frame: np.ndarray, order: str, agg) -> None:
        if not self.frames:
            self._log_start(frame)
        classes = self._segment(frame, order, agg)
        scores = getattr(self.seg, "last_output", None)
        for view in self.views:
            if getattr(view, "takes_scores", False):  # the overlay upsamples the scores linearly
                view.update(frame, order, classes, self.achieved, scores=scores)
            else:
                view.update(frame, order, classes, self.achieved)

    def _close(self, agg) -> dict:
        sd_notify("STOPPING=1")
        if agg.frames:
            self._publish_coverage(agg, None)
        summary = self.stats_payload()
        if self.publisher is not None:
            self.publisher.publish("stats", summary)
        if self._own_source and self.source is not None:
            self.source.stop()
        self.heartbeat.close()
        return summary

    def _finished(self, t0: float) -> bool:
        if self.stop_requested:
            self.exit_reason = "signal"
        elif self.s.duration is not None and time.monotonic() - t0 >= self.s.duration:
            self.exit_reason = "duration"
        elif self.s.max_frames is not None and self.frames >= self.s.max_frames:
            self.exit_reason = "max-frames"
        return bool(self.exit_reason)

    def _delivering(self) -> bool:
        """Between two ticks: has the camera delivered a frame since the loop last saw one? (A source
        with a latest-frame slot records when; a source read on demand, such as a file, is taken as
        its last tick found it.)"""
        at = getattr(self.source, "last_frame_at", None)
        return self._last_got if at is None else at > self._last_frame

    def _watch(self, now: float, t0: float, got_frame: bool) -> None:
        """Liveness, measured on frames. The systemd watchdog is pinged and the
        heartbeat file touched while frames arrive (one within
        ``capture_timeout`` seconds), or while ``camera_lost`` is published and
        the camera is being reopened; never for a loop that only spins. A camera
        away for more than a second is announced as ``camera_lost`` (retained
        status) until frames come back; a capture stuck in the driver for more
        than ``capture_timeout`` seconds is abandoned and the camera reopened."""
        state = getattr(self.source, "state", "live")
        if got_frame:
            self._last_frame, self.hung = now, 0
            if self.camera_lost:
                self.camera_lost = False
                log.info("camera %s is back: status online", self.source.name)
                self._set_state("online")
        else:
            self._check_hung(now)
            self._check_lost(now, t0, state)
        recent = now - self._last_frame < self._frame_bound()
        reopening = self.camera_lost and getattr(self.source, "state", "live") in ("opening", "lost")
        if (recent or reopening) and now - self._last_ping >= 1.0:
            sd_notify("WATCHDOG=1")
            self.heartbeat.beat()
            self._last_ping = now

    def liveness(self) -> dict:
        """The loop's liveness as the systemd watchdog sees it (thread-safe, for /healthz):
        ``{"status", "alive", "last_frame_s"}``; ``status`` is ``"starting"`` (no ping yet),
        ``"stalled"`` (no ping for :data:`LIVENESS_S` s at any ``--fps``, since the loop pings
        between its frames too: no frame from the camera within the capture bound and no camera
        being reopened, or the loop is stuck), ``"camera_lost"`` (alive, reopening) or
        ``"ok"``; ``last_frame_s`` is seconds since the camera's last frame (monotonic clock)."""
        now, ping = time.monotonic(), self._last_ping
        if not ping:
            status = "starting"
        elif now - ping > LIVENESS_S:
            status = "stalled"
        else:
            status = "camera_lost" if self.camera_lost else "ok"
        return {"status": status, "alive": status in ("ok", "camera_lost"),
                "last_frame_s": round(now - self._last_frame, 2)}

    def _frame_bound(self) -> float:
        """Seconds without a frame before the capture counts as hung: ``capture_timeout``,
        or two frame periods of a slow source (a camera at 0.2 FPS is not hung after 5 s)."""
        nominal = getattr(getattr(self.source, "camera", None), "nominal_fps", None) or 0.0
        return max(self.capture_timeout, 2.0 / nominal) if nominal > 0 else self.capture_timeout

    def _check_hung(self, now: float) -> None:
        """A camera call (grab or open) that has not returned within ``capture_timeout``:
        abandon it and reopen the camera; give up after MAX_HUNG in a row."""
        busy = getattr(self.source, "busy_since", None)
        if busy is None or now - busy < self._frame_bound() or not hasattr(self.source, "restart"):
            return
        self.hung += 1
        error = (f"a capture did not return within --capture-timeout {self.capture_timeout:g} s (the camera "
                 f"driver hangs)")
        if self.hung > MAX_HUNG or not self.source.restart(error):
            raise RuntimeFailure(f"camera {self.source.name}: {error}, {self.hung} times without a frame between "
                                 f"(or {self.source.abandoned} in this run): stopping so that the service manager "
                                 f"restarts the process")
        log.warning("camera %s: %s: abandoned, reopening it (%d of %d)", self.source.name, error, self.hung, MAX_HUNG)
        if not self.camera_lost:
            self.camera_lost = True
            self._set_state("camera_lost", error=error)

    def _check_lost(self, now: float, t0: float, state: str) -> None:
        if state == "opening" and now - t0 > self.s.camera_wait:
            raise RuntimeFailure(f"cannot open camera {self.source.name} within --camera-wait "
                                 f"{self.s.camera_wait:g} s: {self.source.last_error or 'no frame'}")
        since = getattr(self.source, "lost_since", None) or t0
        if not self.camera_lost and state in ("opening", "lost") and now - since >= 1.0:
            self.camera_lost = True
            log.warning("camera %s lost: status camera_lost, retrying", self.source.name)
            self._set_state("camera_lost", error=self.source.last_error or "no frame")

    def _set_state(self, state: str, **extra) -> None:
        """Publish the retained status ``state`` with ``extra`` and the current faults."""
        self._state, self._state_extra = state, extra
        faults = self.faults()
        self.publisher.set_state(state, **extra, **({"faults": faults} if faults else {}))

    def faults(self) -> list[dict]:
        """The stores that cannot write now (offline queue, heartbeat, views such as the
        preview or kept frames, :attr:`fault_sources` such as model updates): each
        ``{"store", "path", "error", "since"}``."""
        found = [getattr(getattr(self.publisher, "outbox", None), "fault", None), self.heartbeat.fault]
        for v in [*self.views, *self.fault_sources]:  # a view may hold several stores (kept frames, upload journal)
            found += getattr(v, "disk_faults", None) or [getattr(v, "disk_fault", None)]
        return [f for f in found if f][:payloads.MAX_FAULTS]

    def _check_faults(self) -> None:
        """A fault that began or ended since the last look: the retained status says so."""
        key = tuple((f["store"], f["error"]) for f in self.faults())
        if key != self._fault_key:
            self._fault_key = key
            self._set_state(self._state, **self._state_extra)

    def _capture(self):
        t = time.monotonic()
        got = self.source.read(timeout=min(1.0, self.capture_timeout))
        waited = time.monotonic() - t
        self._load.waiting += waited
        self._total.waiting += waited
        if got is None and getattr(self.source, "ended", False):
            self.exit_reason = "end of source"
        return got  # None: camera away (the source reconnects) or ended

    def _segment(self, frame, order, agg) -> np.ndarray:
        t_start = time.perf_counter()
        prepared = getattr(self.source, "prepared", None) if self._takes_prepared else None  # made beside the model
        classes = self.seg.segment(frame, order, prepared=prepared) if prepared is not None else \
            self.seg.segment(frame, order)
        total_ms = (time.perf_counter() - t_start) * 1e3
        agg.add(classes, self.seg.timing.invoke_ms, total_ms)
        self.frames += 1
        self._load.frames += 1
        self._total.frames += 1
        self.latencies.append(total_ms)
        self.inference.append(self.seg.timing.invoke_ms)
        n, start = self._window
        now = time.monotonic()
        if now - start >= 1.0:
            self.achieved, self._window = (n + 1) / (now - start), (0, now)
        else:
            self._window = (n + 1, start)
        return classes

    def _publish_coverage(self, agg, interval: float | None) -> None:
        s = agg.summary()
        self.seq = self.publisher.next_seq()  # continued across restarts: replayed summaries stay distinct
        fps = s["frames"] / interval if interval else self.frames / max(time.monotonic() - self.started, 1e-9)
        self.publisher.publish("coverage", payloads.coverage(self.s.device_id, self.seq, s, fps, self.model_info()))
        now = time.monotonic()
        for hook in self.on_summary:
            hook(s, now)
        agg.reset()

    def stats_payload(self) -> dict:
        """The ``stats`` message now (payloads.stats: FPS, latency percentiles in ms, memory, MQTT counts)."""
        lat = np.array(self.latencies or [0.0])
        src = self.source.stats() if self.source is not None else {"dropped": 0, "reconnects": 0}
        uptime = time.monotonic() - self.started
        pub = self.publisher
        return payloads.stats(
            self.s.device_id, achieved_fps=self.frames / max(uptime, 1e-9), target_fps=self.target_fps,
            frames=self.frames, dropped_frames=src["dropped"], skipped_ticks=self.pacer.skipped,
            camera_reconnects=src["reconnects"],
            camera_state="lost" if self.camera_lost else getattr(self.source, "state", "live"),
            latency_ms={q: round(float(np.percentile(lat, int(q[1:]))), 2) for q in ("p50", "p90", "p99")},
            cpu_temp_c=cpu_temperature(), memory=memory_mb(), uptime_s=uptime,
            mqtt=dict(pub.counts, connected=pub.connected) if pub is not None else {}, model=self.model_info(),
            faults=self.faults())

    # -- what the log says -----------------------------------------------------------
    def _log_start(self, frame: np.ndarray) -> None:
        """The start-up line: what runs, on what, from what (logged at the first frame,
        when the source's resolution is known)."""
        d = self.seg.describe()
        h, w = frame.shape[:2]
        pace = f"target {self.target_fps:g} FPS" if self.target_fps else "unpaced (as fast as possible)"
        log.info("running %s (%s, input %dx%d, %s, %s threads) on %s, %dx%d frames, %s",
                 getattr(self.seg, "path", d["model"]), d["precision"], *d["input_size"], d["interpreter"],
                 d["threads"] or "all", self.source.name, h, w, pace)

    def _log_progress(self, elapsed: float, now: float) -> None:
        invoke = float(np.median(self.inference or [0.0]))
        limit = self._load.limit(now, self.target_fps, invoke)
        log.info("%.1f FPS (target %s%s), latency p50 %.1f ms, inference %.1f ms, dropped %d, mqtt sent %d "
                 "queued %d", self.frames / max(elapsed, 1e-9), f"{self.target_fps:g}" if self.target_fps else "none",
                 f"; {limit}" if limit else "", float(np.median(self.latencies or [0.0])), invoke,
                 self.source.stats()["dropped"], self.publisher.counts["sent"], self.publisher.counts["queued"])

    def _log_stop(self, elapsed: float, summary: dict) -> None:
        fps = self.frames / max(elapsed, 1e-9)
        limit = self._total.limit(time.monotonic(), self.target_fps, float(np.median(self.inference or [0.0])))
        log.info("stopped (%s): %d frames in %.1fs = %.2f FPS achieved (target %s), %d camera frames dropped, "
                 "%d ticks skipped%s", self.exit_reason, self.frames, elapsed, fps,
                 f"{self.target_fps:g}" if self.target_fps else "none", summary["dropped_frames"],
                 self.pacer.skipped, f" ({limit})" if limit else "")
