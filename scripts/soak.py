"""Soak benchmark: the vehicle loop left alone, with its broker and camera failing.

    .venv/bin/python scripts/soak.py --model dist/student.tflite --minutes 35 [--fps 30] \
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

import argparse
import json
import logging
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edge_runtime import atomic  # noqa: E402
from edge_runtime.io.device import memory_mb  # noqa: E402
from edge_runtime.io.broker import MosquittoProcess  # noqa: E402
from edge_runtime.io.broker import free_port  # noqa: E402

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
        seq = json.loads(msg.payload)["seq"]
        with self.lock:
            if 0 < seq < len(self.seen) and not self.seen[seq]:
                self.seen[seq] = 1
                self.received += 1
            self.last_at = time.monotonic()


class Watchdog:
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
    if len(samples) < 3:
        return None
    import numpy as np
    t = np.array([s[0] for s in samples]) / 3600.0
    r = np.array([s[1] for s in samples])
    return float(np.polyfit(t, r, 1)[0])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="soak", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                allow_abbrev=False)
    p.add_argument("--model", required=True)
    p.add_argument("--minutes", type=float, default=35.0)
    p.add_argument("--warmup-minutes", type=float, default=10.0)
    p.add_argument("--fps", type=float, default=30.0)
    p.add_argument("--frame-size", default="480x640", help="synthetic camera frames HEIGHTxWIDTH")
    p.add_argument("--broker-every", type=float, default=180.0)
    p.add_argument("--broker-down", type=float, default=10.0)
    p.add_argument("--camera-every", type=float, default=150.0)
    p.add_argument("--camera-down", type=float, default=8.0)
    p.add_argument("--watchdog-s", type=float, default=10.0, help="the service's WatchdogSec")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--api-every", type=float, default=5.0,
                   help="seconds between API request pairs (an upload and a stats request); 0: API off")
    p.add_argument("--http-client", choices=["shared", "per-request", "new-connection"], default="shared",
                   help="shared: one client, one kept-alive connection; new-connection: one client, a new TCP "
                        "connection for every call (as browsers and scripts come and go); per-request: a new client "
                        "(and TLS context) for every call, as this harness did before 2026-11-26")
    p.add_argument("--verbose", action="store_true", help="the runtime's warnings too (drops, reconnections)")
    p.add_argument("--out", help="write the report as JSON here")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("roadseg.run", "roadseg.mqtt", "roadseg.sources", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING if args.verbose and noisy != "httpx" else logging.ERROR)

    import httpx

    from edge_runtime.io.sources import LatestFrameSource, SyntheticCamera
    from edge_runtime.contract.preprocessing import parse_size
    from edge_runtime.commands.settings import load_settings
    from edge_runtime.commands.run import Vehicle

    work = Path(tempfile.mkdtemp(prefix="roadseg-soak-"))
    try:
        broker = MosquittoProcess(work).start()
    except FileNotFoundError as e:
        raise SystemExit(f"soak: {e}") from None
    wd = Watchdog(work / "notify")
    wd.miss_after = args.watchdog_s / 2
    os.environ["NOTIFY_SOCKET"] = str(work / "notify")
    http_port = free_port()
    settings = load_settings({"model": args.model, "fps": args.fps, "device_id": "soak", "mqtt_host": "127.0.0.1",
                              "mqtt_port": broker.port, "mqtt_protocol": "5", "publish_interval": 1.0,
                              "stats_interval": 10.0, "threads": args.threads,
                              "http": f"127.0.0.1:{http_port}" if args.api_every > 0 else None,
                              "duration": args.minutes * 60}, None, env={})
    cam = SyntheticCamera(parse_size(args.frame_size), args.fps * 1.2)
    source = LatestFrameSource(cam, "soak-camera").start()
    vehicle = Vehicle(settings, source=source)
    counter = Counter(broker.port, "soak", capacity=int(args.minutes * 60 / 1.0) + 1000)
    t = threading.Thread(target=vehicle.run, name="runner")
    t.start()
    # Ctrl-C or SIGTERM ends the soak early, and it still reports what it measured
    import signal
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, vehicle.request_stop)
    if not vehicle.ready.wait(120):
        raise SystemExit("soak: the vehicle did not start within 120 s")
    runner = vehicle.runner
    t0 = time.monotonic()
    next_broker, next_camera = t0 + args.broker_every, t0 + args.camera_every
    rss: list[tuple[float, float]] = []
    breakdown: list[tuple[float, dict]] = []
    http = httpx.Client(timeout=10, limits=httpx.Limits(
        max_keepalive_connections=0 if args.http_client == "new-connection" else None))
    broker_recovery, camera_recovery, api_errors, api_calls = [], [], 0, 0
    upload = None
    next_api = t0 + 5
    last_report = t0
    try:
        while t.is_alive():
            now = time.monotonic()
            el = now - t0
            if len(rss) == 0 or now - rss[-1][0] - t0 >= 10:
                rss.append((el, memory_mb()["rss_mb"]))
                if len(rss) % 6 == 1:
                    breakdown.append((round(el), memory_breakdown()))
            if args.api_every > 0 and now >= next_api:
                next_api = now + args.api_every
                try:
                    if upload is None:
                        import cv2
                        upload = cv2.imencode(".jpg", cam._frames[0])[1].tobytes()
                    api_calls += 2
                    client = httpx if args.http_client == "per-request" else http
                    r1 = client.get(f"http://127.0.0.1:{http_port}/v1/stats", timeout=5)
                    r2 = client.post(f"http://127.0.0.1:{http_port}/v1/segment",
                                     files={"file": ("f.jpg", upload, "image/jpeg")}, timeout=10)
                    api_errors += (r1.status_code != 200) + (r2.status_code != 200)
                except httpx.HTTPError:
                    api_errors += 1
            quiet_end = el > args.minutes * 60 - args.broker_down - 60  # no outage that the run's end would cut
            if now >= next_broker and not quiet_end:  # stop the broker, bring it back, time the summaries' return
                broker.stop()
                time.sleep(args.broker_down)
                broker.start()
                back = time.monotonic()
                while time.monotonic() - back < 60 and counter.last_at < back:
                    time.sleep(0.02)
                broker_recovery.append(round(counter.last_at - back, 2) if counter.last_at >= back else None)
                next_broker = time.monotonic() + args.broker_every
            elif now >= next_camera and not quiet_end:  # unplug the camera, plug it back, time the frames' return
                cam.unplug()
                time.sleep(args.camera_down)
                n = runner.frames
                cam.plug()
                back = time.monotonic()
                while time.monotonic() - back < 60 and runner.frames <= n:
                    time.sleep(0.01)
                camera_recovery.append(round(time.monotonic() - back, 2) if runner.frames > n else None)
                next_camera = time.monotonic() + args.camera_every
            if now - last_report >= 60:
                last_report = now
                log.info("%.0f/%.0f min: %d frames, RSS %.1f MB (%s), %d summaries received, broker recoveries %s, "
                         "camera recoveries %s", el / 60, args.minutes, runner.frames, rss[-1][1],
                         breakdown[-1][1] if breakdown else {}, counter.received, broker_recovery[-5:],
                         camera_recovery[-5:])
            time.sleep(0.2)
    finally:
        t.join(timeout=60)
        ended = time.monotonic()
        deadline = time.monotonic() + 30  # let the subscriber receive what was delivered
        while time.monotonic() < deadline and sum(counter.seen[1:runner.seq + 1]) < runner.seq:
            time.sleep(0.2)
        wd.stop.set()
        counter.client.loop_stop()
        http.close()
        broker.stop()
    ran_s = max(1.0, ended - t0) if runner.exit_reason == "signal" else args.minutes * 60
    sent = runner.seq
    received = sum(counter.seen[1:sent + 1])
    warm = [s for s in rss if s[0] >= args.warmup_minutes * 60]
    stats = runner.stats_payload()
    report = {
        "schema": "roadseg.soak/1", "date": time.strftime("%Y-%m-%d %H:%M:%S"), "minutes": round(ran_s / 60, 2),
        "stopped_early": runner.exit_reason == "signal",
        "model": args.model, "fps_target": args.fps, "frame_size": args.frame_size, "threads": args.threads,
        "frames": runner.frames, "fps_achieved": round(runner.frames / ran_s, 2),
        "rss_mb": {"start": rss[0][1], "after_warmup": warm[0][1] if warm else None, "end": rss[-1][1],
                   "max": max(r for _, r in rss)},
        "rss_growth_mb_per_hour_after_warmup": None if len(warm) < 3 else round(slope_mb_per_hour(warm), 3),
        "rss_growth_mb_per_hour_last_half": None if len(rss) < 6 else round(slope_mb_per_hour(rss[len(rss) // 2:]), 3),
        "rss_samples": [(round(t), r) for t, r in rss],  # every 10 s: (seconds, MB)
        "memory_breakdown": breakdown,  # every minute: (seconds, resident MB by mapping kind, threads)
        "malloc_arena_max": os.environ.get("MALLOC_ARENA_MAX"), "api_every_s": args.api_every,
        "http_client": args.http_client,
        "summaries": {"published": sent, "received": received, "lost": sent - received,
                      "lost_seq": [i for i in range(1, sent + 1) if not counter.seen[i]][:100],
                      "dropped_by_queue": stats["mqtt"].get("dropped")},
        "broker_outages": len(broker_recovery), "broker_recovery_s": broker_recovery,
        "camera_outages": len(camera_recovery), "camera_recovery_s": camera_recovery,
        "watchdog": {"pings": wd.pings, "max_gap_s": round(wd.max_gap, 2), "misses": wd.misses},
        "api": {"calls": api_calls, "errors": api_errors},
        "camera_reconnects": stats["camera"]["reconnects"],
    }
    report["verdict"] = {
        "rss_growth_below_1_mb_per_hour": report["rss_growth_mb_per_hour_after_warmup"] is not None
        and report["rss_growth_mb_per_hour_after_warmup"] < 1.0,
        "no_summary_lost": report["summaries"]["lost"] == 0,
        "broker_recovery_below_5_s": all(r is not None and r < 5 for r in broker_recovery),
        "camera_recovery_below_5_s": all(r is not None and r < 5 for r in camera_recovery),
        "no_watchdog_miss": report["watchdog"]["misses"] == 0,
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        atomic.write_text(args.out, text)
    shutil.rmtree(work, ignore_errors=True)
    return 0 if all(report["verdict"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
