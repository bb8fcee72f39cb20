"""Soak benchmark: the vehicle loop left alone, with its broker and camera failing.

    .venv/bin/python -m roadseg_lab soak --model dist/student.tflite --minutes 35 [--fps 30] \
        [--broker-every 180 --broker-down 10] [--camera-every 150 --camera-down 8] [--out soak.json]

Runs ``roadseg-run``'s Runner at ``--fps`` with the device API (an upload and a
stats request every 5 s) and MQTT to a real mosquitto started here, which is
stopped (SIGTERM, as a service restart does) and started again every
``--broker-every`` seconds; the (synthetic) camera is
unplugged every ``--camera-every`` seconds. A subscriber with a persistent
session counts the coverage summaries; a NOTIFY_SOCKET stands in for systemd.

Reports: RSS growth per hour after warm-up (least-squares slope of RSS
samples), summaries lost (sequence numbers never received), watchdog gaps
longer than ``--watchdog-s`` / 2, and recovery times: broker back -> the next
summary received, camera back -> frames flowing. Not a timed unit test: a
benchmark whose figures go into docs/RESULTS.md. The harness shares the
process (its own state is a few counters), so RSS covers the loop, the API,
the MQTT client and the interpreters.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from edge_runtime import atomic
from edge_runtime.io.broker import MosquittoProcess, free_port
from edge_runtime.io.device import memory_mb

log = logging.getLogger("roadseg.soak")


class Counter:
    """Coverage sequence numbers received (persistent session, QoS 1), one
    byte per summary so the harness itself stays near constant memory."""

    def __init__(self, port: int, device: str, capacity: int):
        import paho.mqtt.client as mqtt
        self.seen = bytearray(capacity + 1)
        self.received = 0
        self.last_at = 0.0
        self.lock = threading.Lock()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="soak-counter", clean_session=False,
                        protocol=mqtt.MQTTv311)
        c.on_connect = lambda c, u, f, rc, p=None: c.subscribe(f"roadseg/{device}/coverage", qos=1)
        c.on_message = self._on_message
        c.reconnect_delay_set(0.2, 1)
        c.connect("127.0.0.1", port, keepalive=5)
        c.loop_start()
        self.client = c

    def _on_message(self, c, u, msg):
        try:  # nothing may escape into paho's network thread
            seq = int(json.loads(msg.payload)["seq"])
        except (ValueError, KeyError, TypeError):
            log.warning("soak counter: a coverage message without a sequence number")
            return
        with self.lock:
            if 0 < seq < len(self.seen) and not self.seen[seq]:
                self.seen[seq] = 1
                self.received += 1
            self.last_at = time.monotonic()


class Watchdog:
    """A stand-in for systemd's watchdog: receives ``WATCHDOG=1`` datagrams
    on the unix socket ``path`` (the runtime's NOTIFY_SOCKET) and counts
    pings, the longest gap (seconds) and gaps longer than ``miss_after``."""

    def __init__(self, path: Path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.5)
        self.last = time.monotonic()
        self.max_gap = 0.0
        self.pings = 0
        self.misses = 0
        self.miss_after = 5.0
        self.stop = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while not self.stop.is_set():
            try:
                data = self.sock.recv(256)
            except OSError:
                continue
            if b"WATCHDOG=1" in data:
                now = time.monotonic()
                gap = now - self.last
                self.max_gap = max(self.max_gap, gap)
                self.pings += 1
                self.misses += gap > self.miss_after
                self.last = now


def memory_breakdown() -> dict:
    """Resident MB by kind of mapping (/proc/self/smaps) and the thread count:
    where RSS grows says who grows it (the C heap, anonymous mappings such as
    glibc's per-thread arenas and thread stacks, or file-backed libraries)."""
    kinds = {"heap": 0, "anon": 0, "file": 0, "other": 0}
    anon_maps = 0
    kind = "other"
    try:
        with open("/proc/self/smaps") as f:
            for line in f:
                head = line.split(None, 6)
                if head and "-" in head[0] and len(head) >= 5 and ":" not in head[0]:
                    name = head[5].strip() if len(head) > 5 else ""
                    kind = ("heap" if name == "[heap]" else "anon" if not name
                            else "file" if name.startswith("/") else "other")
                    anon_maps += kind == "anon"
                elif line.startswith("Rss:"):
                    kinds[kind] += int(line.split()[1])
    except OSError:
        return {}
    out = {k: round(v / 1024, 1) for k, v in kinds.items()}
    out["anon_mappings"] = anon_maps
    out["threads"] = len(os.listdir("/proc/self/task"))
    return out


def slope_mb_per_hour(samples: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of ``(seconds, MB)`` samples in MB per hour; None under 3 samples."""
    if len(samples) < 3:
        return None
    import numpy as np
    t = np.array([s[0] for s in samples]) / 3600.0
    r = np.array([s[1] for s in samples])
    return float(np.polyfit(t, r, 1)[0])


@dataclass
class SoakSettings:
    """The soak's settings (its command line's flags): the model, minutes
    (of which ``warmup_minutes`` do not count for memory growth), the
    target FPS and synthetic frame size ``HxW``, broker and camera outages
    (every / down, seconds), the service's WatchdogSec, interpreter threads,
    seconds between API request pairs (0: off) and the HTTP client mode,
    ``verbose`` runtime warnings and where to write the JSON report."""
    model: str
    minutes: float = 35.0
    warmup_minutes: float = 10.0
    fps: float = 30.0
    frame_size: str = "480x640"
    broker_every: float = 180.0
    broker_down: float = 10.0
    camera_every: float = 150.0
    camera_down: float = 8.0
    watchdog_s: float = 10.0
    threads: int = 2
    api_every: float = 5.0
    http_client: str = "shared"
    verbose: bool = False
    out: str | None = None


class Soak:
    """One soak run (:func:`run_soak`): the vehicle (``roadseg-run``'s
    Vehicle on a synthetic camera, with its device API) publishing to a
    mosquitto started here, the harness failing broker and camera on a
    schedule and measuring memory, lost summaries, recoveries and the watchdog."""

    def __init__(self, s: SoakSettings):
        self.s = s
        self.rss: list[tuple[float, float]] = []
        self.breakdown: list[tuple[float, dict]] = []
        self.broker_recovery: list[float | None] = []
        self.camera_recovery: list[float | None] = []
        self.api_calls = self.api_errors = 0
        self.upload: bytes | None = None

    def start(self) -> None:
        """Start the broker, the watchdog socket, the vehicle (in a thread)
        and the counting subscriber; SIGINT/SIGTERM end the soak early. Raises
        ``SystemExit`` when mosquitto is missing or the vehicle does not start."""
        import signal

        from edge_runtime.commands.run import Vehicle
        from edge_runtime.commands.settings import load_settings
        from edge_runtime.contract.preprocessing import parse_size
        from edge_runtime.io.sources import LatestFrameSource, SyntheticCamera
        s = self.s
        self.work = Path(tempfile.mkdtemp(prefix="roadseg-soak-"))
        try:
            self.broker = MosquittoProcess(self.work).start()
        except FileNotFoundError as e:
            raise SystemExit(f"soak: {e}") from None
        self.wd = Watchdog(self.work / "notify")
        self.wd.miss_after = s.watchdog_s / 2
        os.environ["NOTIFY_SOCKET"] = str(self.work / "notify")
        self.http_port = free_port()
        settings = load_settings({"model": s.model, "fps": s.fps, "device_id": "soak", "mqtt_host": "127.0.0.1",
                                  "mqtt_port": self.broker.port, "mqtt_protocol": "5", "publish_interval": 1.0,
                                  "stats_interval": 10.0, "threads": s.threads,
                                  "http": f"127.0.0.1:{self.http_port}" if s.api_every > 0 else None,
                                  "duration": s.minutes * 60}, None, env={})
        self.cam = SyntheticCamera(parse_size(s.frame_size), s.fps * 1.2)
        self.vehicle = Vehicle(settings, source=LatestFrameSource(self.cam, "soak-camera").start())
        self.counter = Counter(self.broker.port, "soak", capacity=int(s.minutes * 60 / 1.0) + 1000)
        self.thread = threading.Thread(target=self.vehicle.run, name="runner")
        self.thread.start()
        for sig in (signal.SIGINT, signal.SIGTERM):  # ends the soak early; it still reports
            signal.signal(sig, self.vehicle.request_stop)
        if not self.vehicle.ready.wait(120):
            raise SystemExit("soak: the vehicle did not start within 120 s")
        self.runner = self.vehicle.runner

    def api_round(self, http) -> None:
        """One stats request and one upload to the device API (``http``: the
        shared client, or ``httpx`` itself for a client per request)."""
        import httpx
        try:
            if self.upload is None:
                import cv2
                self.upload = cv2.imencode(".jpg", self.cam._frames[0])[1].tobytes()
            self.api_calls += 2
            base = f"http://127.0.0.1:{self.http_port}"
            r1 = http.get(f"{base}/v1/stats", timeout=5)
            r2 = http.post(f"{base}/v1/segment", files={"file": ("f.jpg", self.upload, "image/jpeg")}, timeout=10)
            self.api_errors += (r1.status_code != 200) + (r2.status_code != 200)
        except httpx.HTTPError:
            self.api_errors += 1

    def broker_outage(self) -> None:
        """Stop the broker, bring it back, time the summaries' return (None: not within 60 s)."""
        self.broker.stop()
        time.sleep(self.s.broker_down)
        self.broker.start()
        back = time.monotonic()
        while time.monotonic() - back < 60 and self.counter.last_at < back:
            time.sleep(0.02)
        self.broker_recovery.append(round(self.counter.last_at - back, 2) if self.counter.last_at >= back else None)

    def camera_outage(self) -> None:
        """Unplug the camera, plug it back, time the frames' return (None: not within 60 s)."""
        self.cam.unplug()
        time.sleep(self.s.camera_down)
        n = self.runner.frames
        self.cam.plug()
        back = time.monotonic()
        while time.monotonic() - back < 60 and self.runner.frames <= n:
            time.sleep(0.01)
        self.camera_recovery.append(round(time.monotonic() - back, 2) if self.runner.frames > n else None)

    def watch(self) -> None:
        """Until the vehicle's run ends: sample memory every 10 s (its
        breakdown every minute), call the API, fail the broker and the camera
        on schedule (none that the run's end would cut), log progress every minute."""
        import httpx
        s = self.s
        self.t0 = t0 = time.monotonic()
        next_broker, next_camera, next_api, last_report = t0 + s.broker_every, t0 + s.camera_every, t0 + 5, t0
        self.http = httpx.Client(timeout=10, limits=httpx.Limits(
            max_keepalive_connections=0 if s.http_client == "new-connection" else None))
        while self.thread.is_alive():
            now = time.monotonic()
            el = now - t0
            if not self.rss or now - self.rss[-1][0] - t0 >= 10:
                self.rss.append((el, memory_mb()["rss_mb"]))
                if len(self.rss) % 6 == 1:
                    self.breakdown.append((round(el), memory_breakdown()))
            if s.api_every > 0 and now >= next_api:
                next_api = now + s.api_every
                self.api_round(httpx if s.http_client == "per-request" else self.http)
            quiet_end = el > s.minutes * 60 - s.broker_down - 60
            if now >= next_broker and not quiet_end:
                self.broker_outage()
                next_broker = time.monotonic() + s.broker_every
            elif now >= next_camera and not quiet_end:
                self.camera_outage()
                next_camera = time.monotonic() + s.camera_every
            if now - last_report >= 60:
                last_report = now
                log.info("%.0f/%.0f min: %d frames, RSS %.1f MB (%s), %d summaries received, broker recoveries %s, "
                         "camera recoveries %s", el / 60, s.minutes, self.runner.frames, self.rss[-1][1],
                         self.breakdown[-1][1] if self.breakdown else {}, self.counter.received,
                         self.broker_recovery[-5:], self.camera_recovery[-5:])
            time.sleep(0.2)

    def stop(self) -> None:
        """Wait for the vehicle, give the subscriber 30 s to receive what was
        delivered, then stop the watchdog, the subscriber, the client and the broker."""
        self.thread.join(timeout=60)
        self.ended = time.monotonic()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and sum(self.counter.seen[1:self.runner.seq + 1]) < self.runner.seq:
            time.sleep(0.2)
        self.wd.stop.set()
        self.counter.client.loop_stop()
        if getattr(self, "http", None) is not None:
            self.http.close()
        self.broker.stop()

    def report(self) -> dict:
        """The soak's figures (schema ``roadseg.soak/1``) and its verdict."""
        s, runner, rss, counter = self.s, self.runner, self.rss, self.counter
        ran_s = max(1.0, self.ended - self.t0) if runner.exit_reason == "signal" else s.minutes * 60
        sent = runner.seq
        received = sum(counter.seen[1:sent + 1])
        warm = [x for x in rss if x[0] >= s.warmup_minutes * 60]
        stats = runner.stats_payload()
        report = {
            "schema": "roadseg.soak/1", "date": time.strftime("%Y-%m-%d %H:%M:%S"), "minutes": round(ran_s / 60, 2),
            "stopped_early": runner.exit_reason == "signal",
            "model": s.model, "fps_target": s.fps, "frame_size": s.frame_size, "threads": s.threads,
            "frames": runner.frames, "fps_achieved": round(runner.frames / ran_s, 2),
            "rss_mb": {"start": rss[0][1], "after_warmup": warm[0][1] if warm else None, "end": rss[-1][1],
                       "max": max(r for _, r in rss)},
            "rss_growth_mb_per_hour_after_warmup": None if len(warm) < 3 else round(slope_mb_per_hour(warm), 3),
            "rss_growth_mb_per_hour_last_half": None if len(rss) < 6 else round(slope_mb_per_hour(rss[len(rss) // 2:]),
                                                                                3),
            "rss_samples": [(round(t), r) for t, r in rss],  # every 10 s: (seconds, MB)
            "memory_breakdown": self.breakdown,  # every minute: (seconds, resident MB by mapping kind, threads)
            "malloc_arena_max": os.environ.get("MALLOC_ARENA_MAX"), "api_every_s": s.api_every,
            "http_client": s.http_client,
            "summaries": {"published": sent, "received": received, "lost": sent - received,
                          "lost_seq": [i for i in range(1, sent + 1) if not counter.seen[i]][:100],
                          "dropped_by_queue": stats["mqtt"].get("dropped")},
            "broker_outages": len(self.broker_recovery), "broker_recovery_s": self.broker_recovery,
            "camera_outages": len(self.camera_recovery), "camera_recovery_s": self.camera_recovery,
            "watchdog": {"pings": self.wd.pings, "max_gap_s": round(self.wd.max_gap, 2), "misses": self.wd.misses},
            "api": {"calls": self.api_calls, "errors": self.api_errors},
            "camera_reconnects": stats["camera"]["reconnects"],
        }
        report["verdict"] = verdict(report)
        return report


def verdict(report: dict) -> dict[str, bool]:
    """The soak's goals: RSS growth under 1 MB/h after warm-up, no summary
    lost, broker and camera back within 5 s every time, no watchdog miss."""
    growth = report["rss_growth_mb_per_hour_after_warmup"]
    return {
        "rss_growth_below_1_mb_per_hour": growth is not None and growth < 1.0,
        "no_summary_lost": report["summaries"]["lost"] == 0,
        "broker_recovery_below_5_s": all(r is not None and r < 5 for r in report["broker_recovery_s"]),
        "camera_recovery_below_5_s": all(r is not None and r < 5 for r in report["camera_recovery_s"]),
        "no_watchdog_miss": report["watchdog"]["misses"] == 0,
    }


def run_soak(s: SoakSettings) -> int:
    """Run the soak, print its report as JSON (and write it to ``s.out``);
    returns 0 when every goal was met, 1 otherwise. Raises ``SystemExit``
    when the broker or the vehicle cannot start."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("roadseg.run", "roadseg.mqtt", "roadseg.sources", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING if s.verbose and noisy != "httpx" else logging.ERROR)
    soak = Soak(s)
    soak.start()
    try:
        soak.watch()
    finally:
        soak.stop()
    report = soak.report()
    text = json.dumps(report, indent=2)
    print(text)
    if s.out:
        atomic.write_text(s.out, text)
    shutil.rmtree(soak.work, ignore_errors=True)
    return 0 if all(report["verdict"].values()) else 1
