"""The run loop: capture -> segment -> summarize -> publish, at a target
frame rate (:class:`Runner`). The command around it (``roadseg-run``,
edge_runtime/commands/run.py) parses the settings and composes the optional
services."""
from __future__ import annotations

import collections
import logging
import socket
import time

import numpy as np

from edge_runtime.commands import cli
from edge_runtime.commands.settings import RunSettings
from edge_runtime.contract import payloads
from edge_runtime.io.device import cpu_temperature, heartbeat, memory_mb, sd_notify

log = logging.getLogger("roadseg.run")

#: latencies kept for the percentiles in ``stats`` (bounded: the loop runs for days)
LATENCY_WINDOW = 1000


class Pacer:
    """Ticks at ``fps``; ticks the loop could not serve are skipped and
    counted, never queued behind the camera. ``fps`` 0: no pacing."""

    def __init__(self, fps: float):
        self.period = 1.0 / fps if fps > 0 else 0.0
        self.next_tick = time.monotonic()
        self.skipped = 0

    def wait(self) -> None:
        if not self.period:
            return
        now = time.monotonic()
        if now < self.next_tick:
            time.sleep(self.next_tick - now)
        else:
            missed = int((now - self.next_tick) / self.period)
            self.skipped += missed
            self.next_tick += missed * self.period
        self.next_tick += self.period


class Every:
    """True once every ``interval`` seconds (0: every time)."""

    def __init__(self, interval: float, start: float):
        self.interval, self.last = interval, start

    def due(self, now: float) -> float | None:
        """Seconds since the last time, when due; else None."""
        if self.interval == 0 or now - self.last >= self.interval:
            since, self.last = now - self.last, now
            return since
        return None


class Runner:
    """capture -> segment -> summarize -> publish, at a target frame rate."""

    def __init__(self, settings: RunSettings, segmenter=None, source=None, publisher=None):
        from edge_runtime.model.segmenter import DeviceSegmenter
        self.s = settings
        from edge_runtime.model.interpreter import parse_delegate_options
        self.delegate_options = parse_delegate_options(settings.delegate_options)
        self.seg = segmenter or DeviceSegmenter(settings.model, settings.threads, settings.delegate,
                                                self.delegate_options)
        self.source = source
        self.publisher = publisher
        self.broker = None
        self.stop_requested = False
        self.seq = 0
        self.frames = 0
        self.latencies: collections.deque[float] = collections.deque(maxlen=LATENCY_WINDOW)
        self.inference: collections.deque[float] = collections.deque(maxlen=LATENCY_WINDOW)
        self.started = time.monotonic()
        self.exit_reason = ""
        self.live = None
        self.http_server = None
        self.writer = None
        self.ha = None
        self.api_url = None
        self.camera_lost = False
        self.snapshot_wanted = False
        self.snapshots = 0
        self._last_ping = 0.0
        self.pacer = Pacer(settings.fps)
        self.achieved = 0.0
        self._window = (0, self.started)
        self._model_info: dict | None = None

    def model_info(self) -> dict:
        if self._model_info is None:  # fixed for the run; payloads reuse it
            d = self.seg.describe()
            self._model_info = {"name": d["name"], "sha256": d["sha256"], "precision": d["precision"],
                                "input_size": d["input_size"]}
        return self._model_info

    # -- start and stop ------------------------------------------------------------
    def _open(self) -> None:
        from edge_runtime.io.publisher import (
            EmbeddedBroker,
            MqttPublisher,
            MqttSettings,
            credentials_from_env,
        )
        from edge_runtime.io.sources import open_source
        if self.publisher is None:  # credentials first: nothing is started when they are missing
            user, pw = credentials_from_env(self.s.mqtt_password_file)
        if self.s.http:  # the port first: a busy port must not leave a camera open
            self._start_http()
        if self.source is None:  # a camera that is not there yet is waited for (--camera-wait), not fatal
            self.source = open_source(self.s.source, self.seg.input_size, realtime=self.s.realtime, loop=self.s.loop,
                                      wait=self.s.camera_wait == 0)
        if self.publisher is None:
            host, port, proto = self.s.mqtt_host, self.s.mqtt_port, self.s.mqtt_protocol
            if not host:
                self.broker = EmbeddedBroker("127.0.0.1", port).start()
                host, port, proto = "127.0.0.1", self.broker.port, "3.1.1"
            self.publisher = MqttPublisher(MqttSettings(
                host=host, port=port, device_id=self.s.device_id, topic_prefix=self.s.topic_prefix,
                protocol=proto, qos=self.s.mqtt_qos, max_queued=self.s.max_queued, tls_ca=self.s.tls_ca,
                tls_cert=self.s.tls_cert, tls_key=self.s.tls_key, username=user, password=pw))
        if self.s.ha_discovery and hasattr(self.publisher, "on_connected"):
            from edge_runtime.io.publisher import HomeAssistant
            self.ha = HomeAssistant(self.publisher, self.model_info()["name"], self.s.ha_interval)
        if hasattr(self.publisher, "topic"):  # a snapshot on request, whatever the interval
            self.publisher.subscribe(self.publisher.topic("snapshot/request"), self._snapshot_requested)
        status = {"model": self.model_info(), "source": self.source.name, "target_fps": self.s.fps}
        if self.s.http:
            status["api"] = self.api_url
        self.publisher.start(status)

    def _start_http(self) -> None:
        """The device API beside the loop; uploads get their own interpreter so
        they never race the live loop's."""
        try:
            from edge_runtime.api.app import (
                LiveState,
                create_app,
                load_token,
                parse_http,
                serve_in_thread,
            )
        except ImportError as e:
            raise RuntimeError(f"--http needs the api extra (pip install '.[api]'): {e}") from e
        from edge_runtime.model.segmenter import DeviceSegmenter
        host, port = parse_http(self.s.http)
        self.live = LiveState()
        self.live.stats_fn = self.stats_payload
        upload_seg = DeviceSegmenter(self.s.model, threads=1, delegate=self.s.delegate,
                                     delegate_options=self.delegate_options)
        app = create_app(upload_seg, self.live, load_token(self.s.api_token_file), max_pixels=self.s.max_pixels,
                         max_inflight=self.s.max_inflight)
        self.http_server = serve_in_thread(app, host, port)
        self.api_url = f"http://{socket.gethostname() if host in ('0.0.0.0', '::') else host}:{port}"

    def request_stop(self, *_):
        self.stop_requested = True

    def _close(self, agg) -> dict:
        sd_notify("STOPPING=1")
        if agg.frames:
            self._publish_coverage(agg, None)
        summary = self.stats_payload()
        if self.publisher is not None:
            self.publisher.publish("stats", summary)
            self.publisher.stop(self.s.stop_timeout)
        if self.source is not None:
            self.source.stop()
        if self.writer is not None:
            self.writer.release()
        if self.broker is not None:
            self.broker.stop()
        if self.http_server is not None:
            self.http_server.should_exit = True
        return summary

    # -- the loop ------------------------------------------------------------------
    def run(self) -> dict:
        from edge_runtime.contract.coverage import CoverageAggregator
        agg = CoverageAggregator()
        t0 = self.pacer.next_tick = time.monotonic()
        publish, stats, logs = (Every(self.s.publish_interval, t0), Every(self.s.stats_interval, t0),
                                Every(self.s.log_interval, t0))
        snapshot = Every(self.s.snapshot_interval, t0 - self.s.snapshot_interval) if self.s.snapshot_interval else None
        try:
            self._open()
            sd_notify("READY=1")
            while not self._finished(t0):
                self.pacer.wait()
                got = self._capture()
                self._watch(time.monotonic(), t0, got is not None)
                if got is None:
                    continue
                frame, order = got
                classes = self._segment(frame, order, agg)
                self._show(frame, order, classes)
                now = time.monotonic()
                if (since := publish.due(now)) is not None:
                    self._publish_coverage(agg, since if self.s.publish_interval else None)
                if self.snapshot_wanted or (snapshot is not None and snapshot.due(now) is not None):
                    self._publish_snapshot(frame, order, classes)
                if stats.due(now) is not None:
                    self.publisher.publish("stats", self.stats_payload())
                if logs.due(now) is not None:
                    self._log_progress(now - t0)
        finally:
            summary = self._close(agg)
        elapsed = time.monotonic() - t0
        log.info("stopped (%s): %d frames in %.1fs = %.2f FPS achieved (target %g), %d camera frames dropped, "
                 "%d ticks skipped", self.exit_reason, self.frames, elapsed, self.frames / max(elapsed, 1e-9),
                 self.s.fps, summary["dropped_frames"], self.pacer.skipped)
        return summary

    def _finished(self, t0: float) -> bool:
        if self.stop_requested:
            self.exit_reason = "signal"
        elif self.s.duration is not None and time.monotonic() - t0 >= self.s.duration:
            self.exit_reason = "duration"
        elif self.s.max_frames is not None and self.frames >= self.s.max_frames:
            self.exit_reason = "max-frames"
        return bool(self.exit_reason)

    def _watch(self, now: float, t0: float, got_frame: bool) -> None:
        """Liveness, with or without frames: the systemd watchdog is pinged
        while the loop runs (a camera away is not a hung process), and a
        camera away for more than a second is announced as ``camera_lost``
        (retained status) until frames come back."""
        if now - self._last_ping >= 1.0:
            sd_notify("WATCHDOG=1")
            heartbeat(self.s.heartbeat_file)
            self._last_ping = now
        state = getattr(self.source, "state", "live")
        if got_frame or state == "live":
            if self.camera_lost and got_frame:
                self.camera_lost = False
                log.info("camera %s is back: status online", self.source.name)
                self.publisher.set_state("online")
            return
        if state == "opening" and now - t0 > self.s.camera_wait:
            raise cli.RuntimeFailure(f"cannot open camera {self.source.name} within --camera-wait "
                                     f"{self.s.camera_wait:g} s: {self.source.last_error or 'no frame'}")
        since = self.source.lost_since or t0
        if not self.camera_lost and state in ("opening", "lost") and now - since >= 1.0:
            self.camera_lost = True
            log.warning("camera %s lost: status camera_lost, retrying", self.source.name)
            self.publisher.set_state("camera_lost", error=self.source.last_error or "no frame")

    def _capture(self):
        got = self.source.read(timeout=1.0)
        if got is None and getattr(self.source, "ended", False):
            self.exit_reason = "end of source"
        return got  # None: camera away (the source reconnects) or ended

    def _segment(self, frame, order, agg) -> np.ndarray:
        t_start = time.perf_counter()
        classes = self.seg.segment(frame, order)
        total_ms = (time.perf_counter() - t_start) * 1e3
        agg.add(classes, self.seg.timing.invoke_ms, total_ms)
        self.frames += 1
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
        self.seq += 1
        fps = s["frames"] / interval if interval else self.frames / max(time.monotonic() - self.started, 1e-9)
        self.publisher.publish("coverage", payloads.coverage(self.s.device_id, self.seq, s, fps, self.model_info()))
        if self.ha is not None:
            self.ha.update(s, time.monotonic())
        agg.reset()

    def _snapshot_requested(self, payload: bytes) -> None:
        self.snapshot_wanted = True  # the loop sends it with the next frame

    def _publish_snapshot(self, frame, order, classes) -> None:
        """A small retained JPEG of the overlay: what the vehicle sees, through the broker alone."""
        import cv2

        from edge_runtime.io.overlay import snapshot_jpeg
        self.snapshot_wanted = False
        rgb = frame if order == "rgb" else cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        jpg = snapshot_jpeg(rgb, classes, self.achieved, max_bytes=self.s.snapshot_max_kb * 1024)
        self.publisher.publish("snapshot", jpg, retain=True, queue=False)
        self.snapshots += 1

    def stats_payload(self) -> dict:
        lat = np.array(self.latencies or [0.0])
        src = self.source.stats() if self.source is not None else {"dropped": 0, "reconnects": 0}
        uptime = time.monotonic() - self.started
        pub = self.publisher
        return payloads.stats(
            self.s.device_id, achieved_fps=self.frames / max(uptime, 1e-9), target_fps=self.s.fps,
            frames=self.frames, dropped_frames=src["dropped"], skipped_ticks=self.pacer.skipped,
            camera_reconnects=src["reconnects"],
            camera_state="lost" if self.camera_lost else getattr(self.source, "state", "live"),
            latency_ms={q: round(float(np.percentile(lat, int(q[1:]))), 2) for q in ("p50", "p90", "p99")},
            cpu_temp_c=cpu_temperature(), memory=memory_mb(), uptime_s=uptime,
            mqtt=dict(pub.counts, connected=pub.connected) if pub is not None else {}, model=self.model_info())

    def _log_progress(self, elapsed: float) -> None:
        log.info("%.1f FPS (target %g), latency p50 %.1f ms, inference %.1f ms, dropped %d, mqtt sent %d queued %d",
                 self.frames / max(elapsed, 1e-9), self.s.fps, float(np.median(self.latencies or [0.0])),
                 float(np.median(self.inference or [0.0])), self.source.stats()["dropped"],
                 self.publisher.counts["sent"], self.publisher.counts["queued"])

    def _show(self, frame, order, classes) -> None:
        if self.live is not None:
            self.live.update(frame, order, classes, self.achieved)
        if not (self.s.preview or self.s.display):
            return
        import cv2

        from edge_runtime.io.overlay import draw_overlay
        rgb = frame if order == "rgb" else cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        out = draw_overlay(rgb, classes, self.achieved)
        if self.s.display:
            try:
                cv2.imshow("roadseg", out)
                cv2.waitKey(1)
            except cv2.error as e:
                raise RuntimeError(f"--display needs an OpenCV build with GUI support ({e}); use --preview") from e
        if self.s.preview:
            if self.writer is None:
                h, w = out.shape[:2]
                self.writer = cv2.VideoWriter(self.s.preview, cv2.VideoWriter_fourcc(*"mp4v"),
                                              max(self.s.fps, 1.0), (w, h))
                if not self.writer.isOpened():
                    raise ValueError(f"cannot write preview video {self.s.preview}")
            self.writer.write(out)


__all__ = ["LATENCY_WINDOW", "Every", "Pacer", "Runner"]
