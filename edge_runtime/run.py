"""``roadseg-run``: camera frames -> int8 segmentation at a target FPS ->
coverage summaries over MQTT.

    roadseg-run --model dist/X.tflite --source picamera2 --fps 15 --device-id car1 \
        [--mqtt-host H --mqtt-port P] [--publish-interval 1.0] [--max-frames N] [--duration S] \
        [--preview out.mp4 | --display] [--config roadseg.toml]

Settings come from the command line, then ``ROADSEG_*`` environment variables
(e.g. ``ROADSEG_MQTT_HOST``), then a TOML ``--config`` file (same names as
the long options, with underscores), then defaults. MQTT credentials only
from the environment or a file. SIGINT/SIGTERM stop cleanly: ``offline``
status, queue flushed within ``--stop-timeout``.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import signal
import socket
import sys
import time
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np

log = logging.getLogger("roadseg.run")


@dataclass
class RunSettings:
    model: str = ""
    source: str = "synthetic"
    fps: float = 15.0
    device_id: str = field(default_factory=lambda: socket.gethostname().split(".")[0] or "vehicle")
    mqtt_host: str | None = None
    mqtt_port: int = 1883
    mqtt_protocol: str = "5"
    mqtt_qos: int = 1
    topic_prefix: str | None = None
    max_queued: int = 1000
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    mqtt_password_file: str | None = None
    publish_interval: float = 1.0
    stats_interval: float = 10.0
    log_interval: float = 5.0
    threads: int | None = None
    delegate: str | None = None
    max_frames: int | None = None
    duration: float | None = None
    realtime: bool = True
    loop: bool = False
    preview: str | None = None
    display: bool = False
    ha_discovery: bool = False
    stop_timeout: float = 5.0
    http: str | None = None
    api_token_file: str | None = None


class ConfigError(ValueError):
    pass


def _coerce(name: str, value, typ):
    t = str(typ)
    try:
        if "bool" in t:
            if isinstance(value, bool):
                return value
            return str(value).lower() in ("1", "true", "yes", "on")
        if "int" in t and "float" not in t:
            return int(value)
        if "float" in t:
            return float(value)
        return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"setting {name}: {value!r} is not a valid {t}") from None


def load_settings(cli: dict, config_file: str | None, env: dict | None = None) -> RunSettings:
    """Defaults < TOML file < ROADSEG_* environment < command line."""
    env = os.environ if env is None else env
    known = {f.name: f.type for f in fields(RunSettings)}
    merged: dict = {}
    if config_file:
        p = Path(config_file)
        if not p.is_file():
            raise ConfigError(f"config file not found: {p}")
        try:
            import tomllib
        except ImportError:  # Python 3.10
            import tomli as tomllib
        try:
            data = tomllib.loads(p.read_text())
        except Exception as e:
            raise ConfigError(f"malformed config file {p}: {e}") from None
        data = {k.replace("-", "_"): v for k, v in data.items()}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ConfigError(f"config file {p}: unknown settings {unknown}")
        merged.update(data)
    for name in known:
        v = env.get(f"ROADSEG_{name.upper()}")
        if v is not None:
            merged[name] = v
    merged.update({k: v for k, v in cli.items() if v is not None and k in known})
    out = RunSettings()
    for k, v in merged.items():
        setattr(out, k, None if v is None else _coerce(k, v, known[k]))
    if not out.model:
        raise ConfigError("--model is required (a .tflite with its sidecar .json)")
    if out.fps < 0 or out.publish_interval < 0:
        raise ConfigError("--fps and --publish-interval must not be negative")
    return out


# --- systemd ------------------------------------------------------------------

def sd_notify(message: str) -> None:
    """Tell systemd (Type=notify, WatchdogSec=) how we are doing; no-op elsewhere."""
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.connect(addr)
            s.sendall(message.encode())
    except OSError:
        pass


# --- device health --------------------------------------------------------------

def cpu_temperature() -> float | None:
    """Celsius from the thermal zones Pi and Jetson kernels expose."""
    for zone in sorted(Path("/sys/class/thermal").glob("thermal_zone*/temp")):
        try:
            return round(int(zone.read_text().strip()) / 1000.0, 1)
        except (OSError, ValueError):
            continue
    return None


def memory_mb() -> dict:
    rss = None
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"rss_mb": round(rss, 1) if rss else None, "peak_rss_mb": round(peak, 1)}


# --- preview ----------------------------------------------------------------------

def draw_overlay(frame_rgb: np.ndarray, classes: np.ndarray, fps: float | None = None,
                 alpha: float = 0.5) -> np.ndarray:
    """Colour overlay (BGR, for OpenCV writers) with a legend and the FPS."""
    import cv2

    from edge_runtime.labels import CATEGORIES, PALETTE
    h, w = frame_rgb.shape[:2]
    colour = PALETTE[cv2.resize(classes, (w, h), interpolation=cv2.INTER_NEAREST)]
    out = cv2.addWeighted(frame_rgb, 1 - alpha, colour, alpha, 0)
    out = cv2.cvtColor(out, cv2.COLOR_RGB2BGR)
    y = 14
    for i, c in enumerate(CATEGORIES):  # text beside each colour: readable without colour vision
        b, g, r = (int(v) for v in PALETTE[i][::-1])
        cv2.rectangle(out, (4, y - 9), (16, y + 1), (b, g, r), -1)
        cv2.putText(out, c, (20, y), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (255, 255, 255), 1, cv2.LINE_AA)
        y += 13
    if fps is not None:
        cv2.putText(out, f"{fps:.1f} FPS", (w - 80, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1,
                    cv2.LINE_AA)
    return out


# --- the loop ---------------------------------------------------------------------

class Runner:
    """capture -> segment -> coverage -> publish -> print stats."""

    def __init__(self, settings: RunSettings, segmenter=None, source=None, publisher=None):
        from edge_runtime.segmenter import TFLiteSegmenter
        self.s = settings
        self.seg = segmenter or TFLiteSegmenter(settings.model, settings.threads, settings.delegate)
        self.source = source
        self.publisher = publisher
        self.broker = None
        self.stop_requested = False
        self.seq = 0
        self.frames = 0
        self.skipped_ticks = 0
        self.latencies: list[float] = []
        self.inference: list[float] = []
        self.started = time.monotonic()
        self.exit_reason = ""
        self.live = None
        self.http_server = None
        self._model_info: dict | None = None

    def model_info(self) -> dict:
        if self._model_info is None:  # fixed for the run; payloads reuse it
            d = self.seg.describe()
            self._model_info = {"name": d["name"], "sha256": d["sha256"], "precision": d["precision"],
                                "input_size": d["input_size"]}
        return self._model_info

    def _open(self) -> None:
        from edge_runtime.publisher import EmbeddedBroker, MqttPublisher, MqttSettings, credentials_from_env
        from edge_runtime.sources import open_source
        if self.source is None:
            self.source = open_source(self.s.source, self.seg.input_size, realtime=self.s.realtime, loop=self.s.loop)
        if self.publisher is None:
            host, port, proto = self.s.mqtt_host, self.s.mqtt_port, self.s.mqtt_protocol
            if not host:
                self.broker = EmbeddedBroker("127.0.0.1", port).start()
                host, port, proto = "127.0.0.1", self.broker.port, "3.1.1"
            user, pw = credentials_from_env(self.s.mqtt_password_file)
            self.publisher = MqttPublisher(MqttSettings(
                host=host, port=port, device_id=self.s.device_id, topic_prefix=self.s.topic_prefix,
                protocol=proto, qos=self.s.mqtt_qos, max_queued=self.s.max_queued, tls_ca=self.s.tls_ca,
                tls_cert=self.s.tls_cert, tls_key=self.s.tls_key, username=user, password=pw))
        self.publisher.start({"model": self.model_info(), "source": self.source.name, "target_fps": self.s.fps})
        if self.s.http:
            self._start_http()
        if self.s.ha_discovery and hasattr(self.publisher, "topic"):
            from edge_runtime.publisher import home_assistant_discovery
            home_assistant_discovery(self.publisher, self.model_info()["name"])

    def _start_http(self) -> None:
        """The device API beside the loop; uploads get their own interpreter so
        they never race the live loop's."""
        try:
            from edge_runtime.api import LiveState, create_app, load_token, parse_http, serve_in_thread
        except ImportError as e:
            raise RuntimeError(f"--http needs the api extra (pip install '.[api]'): {e}") from e
        from edge_runtime.segmenter import TFLiteSegmenter
        host, port = parse_http(self.s.http)
        self.live = LiveState()
        self.live.stats_fn = lambda: self._stats_payload(time.monotonic() - self.started)
        upload_seg = TFLiteSegmenter(self.s.model, threads=1, delegate=self.s.delegate)
        app = create_app(upload_seg, self.live, load_token(self.s.api_token_file))
        self.http_server = serve_in_thread(app, host, port)

    def request_stop(self, *_):
        self.stop_requested = True

    def _stats_payload(self, elapsed: float) -> dict:
        lat = np.array(self.latencies[-1000:] or [0.0])
        src = self.source.stats()
        return {
            "schema": "roadseg.stats/1", "device_id": self.s.device_id, "ts": _now(),
            "fps": {"achieved": round(self.frames / max(elapsed, 1e-9), 2), "target": self.s.fps},
            "frames": self.frames, "dropped_frames": src["dropped"], "skipped_ticks": self.skipped_ticks,
            "camera_reconnects": src["reconnects"],
            "latency_ms": {"p50": round(float(np.percentile(lat, 50)), 2), "p90": round(float(np.percentile(lat, 90)), 2),
                           "p99": round(float(np.percentile(lat, 99)), 2)},
            "cpu_temp_c": cpu_temperature(), "memory": memory_mb(),
            "uptime_s": round(time.monotonic() - self.started, 1),
            "mqtt": dict(self.publisher.counts, connected=self.publisher.connected),
            "model": self.model_info(),
        }

    def run(self) -> dict:
        from edge_runtime.coverage import CoverageAggregator
        self._open()
        writer = None
        agg = CoverageAggregator()
        period = 1.0 / self.s.fps if self.s.fps > 0 else 0.0
        t0 = time.monotonic()
        next_tick = t0
        last_pub = last_stats = last_log = t0
        window_frames, window_start = 0, t0
        achieved = 0.0
        sd_notify("READY=1")
        try:
            while not self.stop_requested:
                now = time.monotonic()
                if self.s.duration is not None and now - t0 >= self.s.duration:
                    self.exit_reason = "duration"
                    break
                if self.s.max_frames is not None and self.frames >= self.s.max_frames:
                    self.exit_reason = "max-frames"
                    break
                if period:
                    if now < next_tick:
                        time.sleep(next_tick - now)
                    else:
                        # never queue work behind the camera: ticks we could not serve are skipped
                        missed = int((now - next_tick) / period)
                        self.skipped_ticks += missed
                        next_tick += missed * period
                    next_tick += period
                got = self.source.read(timeout=1.0)
                if got is None:
                    if getattr(self.source, "ended", False):
                        self.exit_reason = "end of source"
                        break
                    continue  # camera away; the source reconnects
                frame, order = got
                t_start = time.perf_counter()
                classes = self.seg.segment(frame, order)
                agg.add(classes, self.seg.timing.invoke_ms, (time.perf_counter() - t_start) * 1e3)
                self.frames += 1
                window_frames += 1
                self.latencies.append((time.perf_counter() - t_start) * 1e3)
                self.inference.append(self.seg.timing.invoke_ms)
                now = time.monotonic()
                if now - window_start >= 1.0:
                    achieved = window_frames / (now - window_start)
                    window_frames, window_start = 0, now
                if self.live is not None:
                    self.live.update(frame, order, classes, achieved)
                if self.s.preview or self.s.display:
                    writer = self._show(writer, frame, order, classes, achieved)
                if self.s.publish_interval == 0 or now - last_pub >= self.s.publish_interval:
                    self._publish_coverage(agg, now - last_pub if self.s.publish_interval else None)
                    last_pub = now
                if now - last_stats >= self.s.stats_interval:
                    self.publisher.publish("stats", self._stats_payload(now - t0))
                    last_stats = now
                    sd_notify("WATCHDOG=1")
                if now - last_log >= self.s.log_interval:
                    src = self.source.stats()
                    lat = np.array(self.latencies[-200:])
                    log.info("%.1f FPS (target %g), latency p50 %.1f ms, inference %.1f ms, dropped %d, "
                             "mqtt sent %d queued %d", self.frames / (now - t0), self.s.fps,
                             float(np.median(lat)), float(np.median(self.inference[-200:])), src["dropped"],
                             self.publisher.counts["sent"], len(getattr(self.publisher, "_queue", ())))
                    last_log = now
                    sd_notify("WATCHDOG=1")
            else:
                self.exit_reason = "signal"
        finally:
            elapsed = time.monotonic() - t0
            sd_notify("STOPPING=1")
            if agg.frames:
                self._publish_coverage(agg, None)
            summary = self._stats_payload(elapsed)
            if self.publisher is not None:
                self.publisher.publish("stats", summary)
                self.publisher.stop(self.s.stop_timeout)
            if self.source is not None:
                self.source.stop()
            if writer is not None:
                writer.release()
            if self.broker is not None:
                self.broker.stop()
            if self.http_server is not None:
                self.http_server.should_exit = True
        log.info("stopped (%s): %d frames in %.1fs = %.2f FPS achieved (target %g), %d camera frames dropped, "
                 "%d ticks skipped", self.exit_reason, self.frames, elapsed, self.frames / max(elapsed, 1e-9),
                 self.s.fps, summary["dropped_frames"], self.skipped_ticks)
        return summary

    def _publish_coverage(self, agg, interval) -> None:
        s = agg.summary()
        self.seq += 1
        elapsed = time.monotonic() - self.started
        info = self.model_info()
        payload = {"schema": "roadseg.coverage/1", "device_id": self.s.device_id, "seq": self.seq, "ts": _now(),
                   "frames": s["frames"], "coverage": s["coverage"], "zones": s["zones"],
                   "fps": round(s["frames"] / interval, 2) if interval else round(self.frames / max(elapsed, 1e-9), 2),
                   "latency_ms": s["latency_ms"], "model": {"name": info["name"], "sha256": info["sha256"]}}
        self.publisher.publish("coverage", payload)
        agg.reset()

    def _show(self, writer, frame, order, classes, fps):
        import cv2
        rgb = frame if order == "rgb" else cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        out = draw_overlay(rgb, classes, fps)
        if self.s.display:
            try:
                cv2.imshow("roadseg", out)
                cv2.waitKey(1)
            except cv2.error as e:
                raise RuntimeError(f"--display needs an OpenCV build with GUI support ({e}); use --preview") from e
        if self.s.preview:
            if writer is None:
                h, w = out.shape[:2]
                writer = cv2.VideoWriter(self.s.preview, cv2.VideoWriter_fourcc(*"mp4v"), max(self.s.fps, 1.0), (w, h))
                if not writer.isOpened():
                    raise RuntimeError(f"cannot write preview video {self.s.preview}")
            writer.write(out)
        return writer


def _now() -> str:
    from edge_runtime.publisher import now_rfc3339
    return now_rfc3339()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="roadseg-run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    a = p.add_argument
    a("--model", help="dist/NAME.tflite (its sidecar NAME.json beside it)")
    a("--source", help="picamera2[:N], csi[:N], v4l2:/dev/videoN, N, rtsp://..., synthetic[:HxW[@FPS]], "
                       "a video file or an image folder")
    a("--fps", type=float, help="target frames per second (0 = as fast as possible); default 15")
    a("--device-id")
    a("--mqtt-host", help="broker host; without it an embedded broker starts on 127.0.0.1")
    a("--mqtt-port", type=int)
    a("--mqtt-protocol", choices=["5", "3.1.1"])
    a("--mqtt-qos", type=int, choices=[0, 1, 2])
    a("--topic-prefix", help="default roadseg/<device-id>")
    a("--max-queued", type=int, help="messages kept while the broker is away (oldest dropped)")
    a("--tls-ca")
    a("--tls-cert")
    a("--tls-key")
    a("--mqtt-password-file", help="file whose first line is the MQTT password (or ROADSEG_MQTT_PASSWORD)")
    a("--publish-interval", type=float, help="seconds per coverage summary (0 = every frame); default 1")
    a("--stats-interval", type=float)
    a("--threads", type=int, help="interpreter threads (default: all cores)")
    a("--delegate", help="external delegate library, e.g. libedgetpu.so.1")
    a("--max-frames", type=int)
    a("--duration", type=float, help="seconds to run")
    a("--no-realtime", dest="realtime", action="store_const", const=False,
      help="read files as fast as possible instead of at their frame rate")
    a("--loop", action="store_const", const=True, help="restart files at the end")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--preview", help="write the colour overlay with legend and FPS to a video file")
    g.add_argument("--display", action="store_const", const=True, help="show the overlay in a window")
    a("--ha-discovery", action="store_const", const=True, help="publish Home Assistant discovery configs")
    a("--http", help="serve the device API on HOST:PORT (e.g. 127.0.0.1:8080) beside the loop")
    a("--api-token-file", help="bearer token for the API (or ROADSEG_API_TOKEN)")
    a("--config", help="TOML file of settings")
    a("-v", "--verbose", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from edge_runtime.interpreter import ModelError
    from edge_runtime.sidecar import SidecarError
    from edge_runtime.sources import SourceError
    try:
        settings = load_settings(vars(args), args.config)
        runner = Runner(settings)
    except (ConfigError, ModelError, SidecarError, ImportError) as e:
        print(f"roadseg-run: error: {e}", file=sys.stderr)
        return 2
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, runner.request_stop)
    try:
        summary = runner.run()
    except (SourceError, ValueError, RuntimeError) as e:
        print(f"roadseg-run: error: {e}", file=sys.stderr)
        return 2
    print(json.dumps({"frames": summary["frames"], "fps": summary["fps"], "dropped_frames": summary["dropped_frames"],
                      "mqtt": summary["mqtt"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
