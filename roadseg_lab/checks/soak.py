"""Soak benchmark: the vehicle loop left alone, with its broker and camera failing.

    .venv/bin/python -m roadseg_lab soak --model dist/student.tflite --minutes 35 [--fps 30] \
        [--broker-every 180 --broker-down 10] [--camera-every 150 --camera-down 8] [--out soak.json] \
        [--faults all --fault-every 300 --fault-hold 20 --slow-fsync-ms 1500 --capture-timeout 2]

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

``--faults KIND,...`` (or ``all``) adds a fault schedule, one fault every
``--fault-every`` seconds in turn, each held ``--fault-hold`` seconds:

* ``disk-full``: the state dir (offline queue) is on a 4 MiB tmpfs mounted
  here; a filler file fills it, then is deleted;
* ``read-only``: the heartbeat file is on a second tmpfs, remounted
  read-only, then read-write;
* ``slow-fsync``: every fsync/fdatasync of the process takes
  ``--slow-fsync-ms`` (an LD_PRELOAD shim whose delay is read from a file on
  each call: the soak re-executes itself under it) while the broker is
  stopped, so that summaries are queued to disk;
* ``camera-hang``: the camera's grab blocks until released, as
  picamera2's ``capture_array()`` can; the loop abandons the capture after
  ``--capture-timeout`` and reopens the camera (at most
  ``edge_runtime.io.sources.MAX_ABANDONED`` - 1 times a run: more is a
  process the service manager must restart, the run's end);
* ``clock-step``: the wall clock of the process (``CLOCK_REALTIME``, as an
  NTP step moves it; the monotonic clocks stay) steps a year ahead and back,
  by the same shim (not libfaketime: see :data:`NOT_LIBFAKETIME`);
* ``twin``: a second ``python -m edge_runtime.commands.run`` with the same
  device id and its own state dir, for ``--fault-hold`` seconds after it
  yields.

Each fault records the seconds from injection to the retained status showing
it (``faults`` naming ``offline-queue`` or ``heartbeat``; state
``camera_lost``; a message on ``roadseg/<id>/clash``: from the twin's MQTT
connection) and to recovery (the status without it; ``online`` again;
summaries delivered again). A slow fsync and a clock step refuse no write:
nothing is expected in the status; they are judged on the loop's frame rate
during the slow window, summaries carrying the stepped clock, and
nothing lost. Mounting needs root (we mount tmpfs).
"""
from __future__ import annotations

import collections
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from edge_runtime import atomic
from edge_runtime.io.broker import MosquittoProcess, free_port
from edge_runtime.io.device import memory_mb

log = logging.getLogger("roadseg.soak")


#: the newest status, clash and coverage messages kept for the fault timings (the harness stays bounded)
EVENTS_KEPT = 500
#: bytes of a status or clash message the harness reads (theirs are a few hundred)
MAX_EVENT_BYTES = 16384


class Counter:
    """Coverage sequence numbers received (persistent session, QoS 1), one
    byte per summary so the harness itself stays near constant memory; and
    the newest :data:`EVENTS_KEPT` status, clash and coverage messages as
    ``(monotonic arrival, kind, payload dict or None)`` for the fault timings
    (a coverage message keeps only its ``seq`` and ``ts``)."""

    def __init__(self, port: int, device: str, capacity: int):
        import paho.mqtt.client as mqtt
        self.seen = bytearray(capacity + 1)
        self.received = 0
        self.last_at = 0.0
        self.lock = threading.Lock()
        self.events: collections.deque = collections.deque(maxlen=EVENTS_KEPT)
        topics = [(f"roadseg/{device}/{kind}", 1) for kind in ("coverage", "status", "clash")]
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="soak-counter", clean_session=False,
                        protocol=mqtt.MQTTv311)
        c.on_connect = lambda c, u, f, rc, p=None: c.subscribe(topics)
        c.on_message = self._on_message
        c.reconnect_delay_set(0.2, 1)
        c.connect("127.0.0.1", port, keepalive=5)
        c.loop_start()
        self.client = c

    def _on_message(self, c, u, msg):
        kind = msg.topic.rpartition("/")[2]
        now = time.monotonic()
        if kind != "coverage":
            body = None
            if 0 < len(msg.payload) <= MAX_EVENT_BYTES:
                try:  # nothing may escape into paho's network thread
                    body = json.loads(msg.payload)
                except ValueError:
                    log.warning("soak counter: a %s message that is not JSON", kind)
                    return
            with self.lock:
                self.events.append((now, kind, body if isinstance(body, dict) else None))
            return
        try:
            body = json.loads(msg.payload)
            seq = int(body["seq"])
        except (ValueError, KeyError, TypeError):
            log.warning("soak counter: a coverage message without a sequence number")
            return
        with self.lock:
            if 0 < seq < len(self.seen) and not self.seen[seq]:
                self.seen[seq] = 1
                self.received += 1
            self.last_at = now
            self.events.append((now, kind, {"seq": seq, "ts": body.get("ts")}))

    def body_at(self, kind: str, at: float) -> dict | None:
        """The payload of the ``kind`` message that arrived at monotonic time ``at`` (None when gone)."""
        with self.lock:
            return next((body for t, k, body in self.events if k == kind and t == at), None)

    def first(self, kind: str, after: float, match) -> float | None:
        """The monotonic arrival of the first ``kind`` message received at or
        after ``after`` whose payload satisfies ``match(payload)``; None when none has."""
        with self.lock:
            events = list(self.events)
        return next((t for t, k, body in events if k == kind and t >= after and match(body)), None)


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


# -- the fault schedule ---------------------------------------------------------------------------------

#: the faults ``--faults`` can schedule, in the order they take turns
FAULTS = ("disk-full", "read-only", "slow-fsync", "camera-hang", "clock-step", "twin")
#: faults with a store or state the retained status must show (the others refuse no write)
SHOWN_IN_STATUS = ("disk-full", "read-only", "camera-hang", "twin")
#: the status must show a fault within this many seconds of its injection (issue 31)
VISIBLE_WITHIN_S = 5.0
#: how long the harness waits for a fault to show, and to clear, before recording None
FAULT_WAIT_S = 60.0
#: summaries published between two sequence reservations of the offline queue (SEQ_BLOCK / 2): a full disk
#: bites at the next one while the broker is connected
SEQ_BLOCK_WAIT = 50
#: seconds an uptime may exceed the soak's own length (the vehicle starts before the soak's clock does)
UPTIME_SLACK_S = 300.0
#: seconds without a frame, the camera live, that the harness calls a stalled loop
STALL_S = 20.0
#: the offline queue's tmpfs and the heartbeat's
STATE_CARD_SIZE, BEAT_CARD_SIZE = "4m", "1m"
#: the re-executed soak finds its shim folder here (set by :func:`reexec_under_preload`)
PRELOAD_ENV = "ROADSEG_SOAK_PRELOAD_DIR"
#: why the clock is stepped by the soak's own shim rather than Debian's libfaketime
NOT_LIBFAKETIME = ("libfaketime 0.9.10 (Debian's faketime) with FAKETIME_DONT_FAKE_MONOTONIC=1, needed so that only "
                   "the wall clock steps as an NTP step does, makes every Python time.sleep fail with EINVAL "
                   "(clock_nanosleep on CLOCK_MONOTONIC, TIMER_ABSTIME); without it the monotonic clock steps too")

#: The soak's LD_PRELOAD library, its settings read from small files while the process runs:
#: fsync/fdatasync sleep for the milliseconds in the file named by SOAK_FSYNC_MS_FILE (read at each call);
#: the wall clock (clock_gettime on CLOCK_REALTIME[_COARSE], gettimeofday, time) is moved by the seconds in the
#: file named by SOAK_CLOCK_OFFSET_FILE (read at most once a second); the monotonic clocks are left alone.
#: A missing or unreadable file: no delay, no offset.
SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
static long long read_number(const char *env) {
    const char *path = getenv(env);
    char buf[32];
    int fd, n;
    if (!path || (fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) return 0;
    n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return 0;
    buf[n] = 0;
    return atoll(buf);
}
static void pause_(void) { long long ms = read_number("SOAK_FSYNC_MS_FILE");
                           if (ms > 0 && ms <= 60000) usleep((useconds_t)ms * 1000); }
int fsync(int fd) { static int (*real)(int); if (!real) real = dlsym(RTLD_NEXT, "fsync"); pause_(); return real(fd); }
int fdatasync(int fd) { static int (*real)(int); if (!real) real = dlsym(RTLD_NEXT, "fdatasync"); pause_();
                        return real(fd); }
static int (*real_clock_gettime)(clockid_t, struct timespec *);
static int real_gettime(clockid_t clk, struct timespec *ts) {
    if (!real_clock_gettime) real_clock_gettime = dlsym(RTLD_NEXT, "clock_gettime");
    return real_clock_gettime(clk, ts);
}
static long long offset_(void) {
    static volatile long long cached, checked = -1;
    struct timespec now;
    if (real_gettime(CLOCK_MONOTONIC_COARSE, &now) == 0 && now.tv_sec != checked) {
        checked = now.tv_sec;
        cached = read_number("SOAK_CLOCK_OFFSET_FILE");
    }
    return cached;
}
int clock_gettime(clockid_t clk, struct timespec *ts) {
    int r = real_gettime(clk, ts);
    if (r == 0 && (clk == CLOCK_REALTIME || clk == CLOCK_REALTIME_COARSE)) ts->tv_sec += offset_();
    return r;
}
int gettimeofday(struct timeval *restrict tv, void *restrict tz) {
    static int (*real)(struct timeval *restrict, void *restrict);
    if (!real) real = dlsym(RTLD_NEXT, "gettimeofday");
    int r = real(tv, tz);
    if (r == 0) tv->tv_sec += offset_();
    return r;
}
time_t time(time_t *t) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (t) *t = ts.tv_sec;
    return ts.tv_sec;
}
"""


def parse_faults(text: str) -> tuple[str, ...]:
    """``--faults``: a comma-separated list of :data:`FAULTS`, ``all`` or
    empty (none). Raises ``ValueError`` naming an unknown one."""
    names = [x.strip() for x in (text or "").split(",") if x.strip()]
    if names == ["all"]:
        return FAULTS
    unknown = [x for x in names if x not in FAULTS]
    if unknown:
        raise ValueError(f"--faults: unknown {', '.join(unknown)} (choose from {', '.join(FAULTS)} or all)")
    return tuple(dict.fromkeys(names))


def reexec_under_preload(faults: tuple[str, ...]) -> None:
    """When ``faults`` hold slow-fsync or clock-step and this process is not
    yet preloaded: build :data:`SHIM` (gcc) in a new folder, with its control
    files ``fsync_ms`` and ``clock_offset_s`` at 0, and replace this process
    by the same command under ``LD_PRELOAD``. Returns when nothing is to be
    preloaded or it already is. Raises ``SystemExit`` when gcc is missing or
    the build fails."""
    if not any(f in faults for f in ("slow-fsync", "clock-step")) or os.environ.get(PRELOAD_ENV):
        return
    if shutil.which("gcc") is None:
        raise SystemExit("soak: the slow-fsync and clock-step faults need gcc to build their LD_PRELOAD shim")
    folder = Path(tempfile.mkdtemp(prefix="roadseg-soak-preload-"))
    (folder / "shim.c").write_text(SHIM)
    r = subprocess.run(["gcc", "-shared", "-fPIC", "-O2", "-o", str(folder / "shim.so"), str(folder / "shim.c"),
                        "-ldl"], capture_output=True, text=True, check=False)
    if r.returncode != 0:
        shutil.rmtree(folder, ignore_errors=True)
        raise SystemExit(f"soak: building the LD_PRELOAD shim failed: {r.stderr.strip()[:200]}")
    (folder / "fsync_ms").write_text("0")
    (folder / "clock_offset_s").write_text("0")
    env = dict(os.environ, **{PRELOAD_ENV: str(folder), "SOAK_FSYNC_MS_FILE": str(folder / "fsync_ms"),
                              "SOAK_CLOCK_OFFSET_FILE": str(folder / "clock_offset_s")})
    env["LD_PRELOAD"] = ":".join([str(folder / "shim.so")] + [x for x in [os.environ.get("LD_PRELOAD")] if x])
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)


def mount_tmpfs(point: Path, size: str) -> None:
    """Mount a tmpfs of ``size`` (``4m``) at ``point`` (created). Raises ``SystemExit``
    (one line) when mounting is not permitted."""
    point.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(point)],
                       capture_output=True, text=True, check=False)
    if r.returncode != 0:
        raise SystemExit(f"soak: cannot mount a tmpfs at {point} ({r.stderr.strip()[:120] or 'mount failed'}): "
                         "the disk-full and read-only faults need root")


def remount(point: Path, mode: str, tries: int = 50) -> None:
    """``mount -o remount,MODE`` (``ro``/``rw``), retried while busy (a touch in
    progress). Raises ``RuntimeError`` when it never succeeds."""
    for _ in range(tries):
        r = subprocess.run(["mount", "-o", f"remount,{mode}", str(point)], capture_output=True, text=True, check=False)
        if r.returncode == 0:
            return
        time.sleep(0.05)
    raise RuntimeError(f"cannot remount {point} {mode}: {r.stderr.strip()[:200]}")


class PortHold:
    """Keeps a stopped broker's TCP port from being taken while it is down: a socket bound to it
    (SO_REUSEADDR) that does not listen, so connections are refused as with no broker, the kernel
    hands the port to no outgoing connection or ``bind(0)``, and mosquitto (which binds with
    SO_REUSEADDR too) can bind it again while the hold is still there. A soak beside a test suite
    lost its broker's port to another process during a 5 s outage and ended at 77 minutes.
    Raises OSError when the port is already taken."""

    def __init__(self, port: int, host: str = "127.0.0.1"):
        import socket
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.sock.bind((host, port))
        except OSError:
            self.sock.close()
            raise

    def release(self) -> None:
        """Let the port go (the broker bound it again first)."""
        self.sock.close()


def fill(folder: Path) -> Path:
    """Fill the file system of ``folder`` to the last byte (ENOSPC); returns the filler file to delete."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for chunk in (65536, 1):
            try:
                while True:
                    os.write(fd, b"\0" * chunk)
            except OSError:
                pass
    finally:
        os.close(fd)
    return filler


class HangingCamera:
    """A camera (the :class:`edge_runtime.io.sources.Camera` interface) in
    front of ``camera`` whose grab, once :meth:`hang` is called, blocks until
    :meth:`release` (as picamera2's ``capture_array()`` can, picamera2#794);
    the loop's restart releases it and reopens. The hardware is the point, so
    it is faked behind the real source's interface."""

    def __init__(self, camera):
        self.camera = camera
        self.channel_order = camera.channel_order
        self.nominal_fps = camera.nominal_fps
        self._hang = threading.Event()
        self._released = threading.Event()
        self.hangs = 0

    def hang(self) -> None:
        """The next grab blocks until :meth:`release`."""
        self._released.clear()
        self._hang.set()

    def open(self) -> None:
        """Open the wrapped camera (raises what it raises)."""
        self.camera.open()

    def grab(self):
        """The wrapped camera's next frame, uint8 [H, W, 3]; while hanging, blocks until
        :meth:`release` (as picamera2's capture_array() can) and then returns None."""
        if self._hang.is_set():
            self.hangs += 1
            self._released.wait()
            return None
        return self.camera.grab()

    def release(self) -> None:
        """End a hang (the stuck grab returns) and release the wrapped camera."""
        self._hang.clear()
        self._released.set()
        self.camera.release()


class Twin:
    """A second installation on the soak's device id: ``python -m
    edge_runtime.commands.run`` on a small synthetic camera, its own state
    dir, without the soak's preloads or watchdog socket. Its stderr is read
    on a thread: ``connected_at`` (monotonic) is when it logged its MQTT
    connection, ``yielded`` whether it said the id is taken."""

    def __init__(self, model: str, port: int, state_dir: Path):
        env = {k: v for k, v in os.environ.items()
               if k not in ("LD_PRELOAD", "NOTIFY_SOCKET", PRELOAD_ENV) and not k.startswith("SOAK_")}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "edge_runtime.commands.run", "--model", model, "--source", "synthetic:64x128@10",
             "--fps", "5", "--threads", "1", "--device-id", "soak", "--mqtt-host", "127.0.0.1", "--mqtt-port",
             str(port), "--state-dir", str(state_dir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)
        self.connected_at: float | None = None
        self.yielded = self.traceback = False
        self.tail: collections.deque = collections.deque(maxlen=20)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.tail.append(line.rstrip()[:300])
            if self.connected_at is None and "MQTT connected" in line:
                self.connected_at = time.monotonic()
            self.yielded |= "is in use by another live installation" in line
            self.traceback |= "Traceback" in line

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout`` s; its exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._reader.join(5)
        return self.proc.returncode


def _fault_names(body: dict | None) -> list[str]:
    return [f.get("store") for f in (body or {}).get("faults") or [] if isinstance(f, dict)]


def _wall_ts(ts) -> float | None:
    """A payload's RFC 3339 ``ts`` as seconds since the epoch (None when it is not one)."""
    try:
        return datetime.fromisoformat(str(ts).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


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
    ``verbose`` runtime warnings and where to write the JSON report; the
    fault schedule (``faults``: see :func:`parse_faults`; one every
    ``fault_every`` seconds, each held ``fault_hold`` seconds, a slow fsync
    taking ``slow_fsync_ms``), the vehicle's ``capture_timeout`` and
    ``publish_interval`` (s, one coverage summary each)."""
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
    faults: str = ""
    fault_every: float = 300.0
    fault_hold: float = 20.0
    slow_fsync_ms: int = 1500
    capture_timeout: float = 2.0
    publish_interval: float = 1.0


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
        self.faults = parse_faults(s.faults)
        self.fault_events: list[dict] = []
        self.not_injected: dict[str, str] = {}
        self.mounts: list[Path] = []
        self._frames_seen, self._frames_at, self._stall_said, self.stalls = -1, 0.0, False, 0
        self.cut_by_end = False
        self.harness_error: str | None = None  # set by run_soak when the harness (not the vehicle) failed
        self.uptime_range: dict[str, tuple] = {}  # the lowest and highest uptime_s /v1/stats gave: api, live
        self.preload = Path(os.environ[PRELOAD_ENV]) if os.environ.get(PRELOAD_ENV) else None
        if self.preload is not None:  # loaded already: what this process starts (broker, twin) runs without it
            os.environ.pop("LD_PRELOAD", None)

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
        state_dir, beat = self.work / "state", None
        if "disk-full" in self.faults:
            mount_tmpfs(self.work / "state-card", STATE_CARD_SIZE)
            self.mounts.append(self.work / "state-card")
            state_dir = self.work / "state-card" / "state"
        if "read-only" in self.faults:
            mount_tmpfs(self.work / "beat-card", BEAT_CARD_SIZE)
            self.mounts.append(self.work / "beat-card")
            beat = self.work / "beat-card" / "heartbeat"
        if self.faults and self.preload is None and {"slow-fsync", "clock-step"} & set(self.faults):
            raise SystemExit("soak: the slow-fsync and clock-step faults need the soak's shim preloaded: run it as "
                             "python -m roadseg_lab soak (run_soak re-executes itself under LD_PRELOAD)")
        try:
            self.broker = MosquittoProcess(self.work).start()
        except FileNotFoundError as e:
            raise SystemExit(f"soak: {e}") from None
        self.wd = Watchdog(self.work / "notify")
        self.wd.miss_after = s.watchdog_s / 2
        os.environ["NOTIFY_SOCKET"] = str(self.work / "notify")
        self.http_port = free_port()
        settings = load_settings({"model": s.model, "fps": s.fps, "device_id": "soak", "mqtt_host": "127.0.0.1",
                                  "mqtt_port": self.broker.port, "mqtt_protocol": "5",
                                  "publish_interval": s.publish_interval, "stats_interval": 10.0, "threads": s.threads,
                                  "http": f"127.0.0.1:{self.http_port}" if s.api_every > 0 else None,
                                  "duration": s.minutes * 60, "state_dir": str(state_dir),
                                  "heartbeat_file": str(beat) if beat else None,
                                  "capture_timeout": s.capture_timeout}, None, env={})
        self.cam = SyntheticCamera(parse_size(s.frame_size), s.fps * 1.2)
        self.hcam = HangingCamera(self.cam)
        self.source = LatestFrameSource(self.hcam, "soak-camera").start()
        self.vehicle = Vehicle(settings, source=self.source)
        self.counter = Counter(self.broker.port, "soak", capacity=int(s.minutes * 60 / s.publish_interval) + 1000)
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
            if r1.status_code == 200:  # never negative, whatever the wall clock does
                body = r1.json()
                for where in ("api", "live"):
                    uptime = (body.get(where) or {}).get("uptime_s")
                    if isinstance(uptime, (int, float)):
                        low, high = self.uptime_range.get(where, (uptime, uptime))
                        self.uptime_range[where] = (min(low, uptime), max(high, uptime))
        except httpx.HTTPError:
            self.api_errors += 1

    def tick(self) -> None:
        """Sample memory every 10 s (its breakdown every minute) and call the API
        when due: from the watch loop and from every wait of an outage or a
        fault, so that none of them leaves a hole in the series."""
        s, now = self.s, time.monotonic()
        el = now - self.t0
        self._check_stall(now)
        if not self.rss or el - self.rss[-1][0] >= 10:
            self.rss.append((el, memory_mb()["rss_mb"]))
            if len(self.rss) % 6 == 1:
                self.breakdown.append((round(el), memory_breakdown()))
        if s.api_every > 0 and now >= self.next_api:
            self.next_api = now + s.api_every
            import httpx
            self.api_round(httpx if s.http_client == "per-request" else self.http)

    def _check_stall(self, now: float) -> None:
        """A loop without a frame for :data:`STALL_S` while the camera is live: say so and
        write every thread's stack to stderr (once a stall), so that a report of a stall says where."""
        frames = self.runner.frames
        if frames != self._frames_seen or getattr(self.source, "state", "live") != "live":
            self._frames_seen, self._frames_at, self._stall_said = frames, now, False
        elif now - self._frames_at > STALL_S and not self._stall_said and self.thread.is_alive():
            import faulthandler
            self._stall_said = True
            self.stalls += 1
            log.error("soak: the loop has had no frame for %.0f s with the camera live (%d frames); every thread's "
                      "stack follows", now - self._frames_at, frames)
            faulthandler.dump_traceback(all_threads=True)

    def wait_for(self, condition, timeout: float) -> float | None:
        """Tick until ``condition()`` gives a monotonic time (not None), for at
        most ``timeout`` s and while the vehicle runs; that time, else None
        (``cut_by_end`` set when the vehicle's run ended first)."""
        end = time.monotonic() + timeout
        while True:
            self.tick()
            found = condition()
            if found is not None:
                return found
            if not self.thread.is_alive():
                self.cut_by_end = True
                return None
            if time.monotonic() >= end:
                return None
            time.sleep(0.05)

    def hold(self, seconds: float) -> None:
        """Tick for ``seconds`` (less when the vehicle's run ends)."""
        self.wait_for(lambda: None, seconds)

    def _broker_down(self) -> PortHold | None:
        """Stop the broker and hold its port (None when another process took it at once)."""
        self.broker.stop()
        try:
            return PortHold(self.broker.port)
        except OSError as e:
            log.warning("the broker's port %d could not be held while it is down (%s)", self.broker.port, e)
            return None

    def _broker_up(self, held: PortHold | None) -> None:
        """Start the broker on its port again, then let the hold go."""
        try:
            self.broker.start()
        finally:
            if held is not None:
                held.release()

    def broker_outage(self) -> None:
        """Stop the broker, bring it back, time the summaries' return (None: not within 60 s)."""
        held = self._broker_down()
        self.hold(self.s.broker_down)
        self._broker_up(held)
        back = time.monotonic()
        while time.monotonic() - back < 60 and self.counter.last_at < back:
            time.sleep(0.02)
        self.broker_recovery.append(round(self.counter.last_at - back, 2) if self.counter.last_at >= back else None)

    def camera_outage(self) -> None:
        """Unplug the camera, plug it back, time the frames' return (None: not within 60 s)."""
        self.cam.unplug()
        self.hold(self.s.camera_down)
        n = self.runner.frames
        self.cam.plug()
        back = time.monotonic()
        while time.monotonic() - back < 60 and self.runner.frames <= n:
            time.sleep(0.01)
        self.camera_recovery.append(round(time.monotonic() - back, 2) if self.runner.frames > n else None)

    # -- the fault schedule ------------------------------------------------------------------------------
    def _record(self, kind: str, t_in: float, shown: float | None, t_out: float, back: float | None,
                **extra) -> None:
        event = {"fault": kind, "at_s": round(t_in - self.t0, 1),
                 "visible_s": None if shown is None else round(max(shown - t_in, 0.0), 2),
                 "recovered_s": None if back is None else round(max(back - t_out, 0.0), 2), **extra}
        if self.cut_by_end:
            event["cut_by_run_end"] = True  # the vehicle's run ended before this fault could be timed in full
        self.fault_events.append(event)
        log.info("fault %s", event)

    def _status_after(self, t: float, match):
        return lambda: self.counter.first("status", t, match)

    def _store_fault(self, kind: str, store: str, inject, undo, bite_s: float) -> None:
        """``inject()``, wait up to ``bite_s`` s for the retained status to name
        ``store`` among its faults, hold, ``undo()``, wait for a status
        without it. A store's fault begins at its first refused write (its
        ``since``), which may come later than the injection (with the broker
        connected the offline queue writes only its sequence reservation,
        every :data:`edge_runtime.io.outbox.SEQ_BLOCK` / 2 summaries):
        ``visible_s`` counts from that write, ``bit_after_s`` from the injection to it."""
        t_in = time.monotonic()
        inject()
        shown = self.wait_for(self._status_after(t_in, lambda b: store in _fault_names(b)), bite_s)
        since = None
        if shown is not None:
            body = self.counter.body_at("status", shown)
            since = _wall_ts(next((f.get("since") for f in (body or {}).get("faults") or []
                                   if isinstance(f, dict) and f.get("store") == store), None))
        began = None if since is None else self.t0 + since - self.wall0  # the refused write, as monotonic time
        self.hold(self.s.fault_hold)
        undo()
        t_out = time.monotonic()
        back = self.wait_for(self._status_after(t_out, lambda b: b is not None and store not in _fault_names(b)),
                             FAULT_WAIT_S)
        self._record(kind, max(began or t_in, t_in), shown, t_out, back,
                     bit_after_s=None if began is None else round(max(began - t_in, 0.0), 2),
                     injected_at_s=round(t_in - self.t0, 1))

    def fault_disk_full(self) -> None:
        """Fill the offline queue's tmpfs, hold, free it: the status shows the
        ``offline-queue`` fault, then no longer."""
        filler = self.work / "state-card" / "filler"
        self._store_fault("disk-full", "offline-queue", lambda: fill(filler.parent), filler.unlink,
                          FAULT_WAIT_S + SEQ_BLOCK_WAIT * self.s.publish_interval)

    def fault_read_only(self) -> None:
        """Remount the heartbeat's tmpfs read-only, hold, read-write: the status
        shows the ``heartbeat`` fault, then no longer."""
        point = self.work / "beat-card"
        self._store_fault("read-only", "heartbeat", lambda: remount(point, "ro"), lambda: remount(point, "rw"),
                          FAULT_WAIT_S)

    def _set_control(self, name: str, text: str) -> None:
        """Replace a control file the preloaded libraries read (no fsync: it would wait on the shim itself)."""
        tmp = self.preload / f".{name}.tmp"
        tmp.write_text(text)
        os.replace(tmp, self.preload / name)

    def fault_slow_fsync(self) -> None:
        """Every fsync takes ``slow_fsync_ms`` while the broker is stopped for
        ``fault_hold`` s (summaries queue to disk): the loop's frame rate in
        that window, and the summaries' return once the broker is back."""
        self._set_control("fsync_ms", str(int(self.s.slow_fsync_ms)))
        t_in, frames = time.monotonic(), self.runner.frames
        held = self._broker_down()
        self.hold(self.s.fault_hold)
        fps = (self.runner.frames - frames) / max(time.monotonic() - t_in, 1e-6)
        self._broker_up(held)
        t_out = time.monotonic()
        back = self.wait_for(lambda: self.counter.last_at if self.counter.last_at >= t_out else None, FAULT_WAIT_S)
        self._set_control("fsync_ms", "0")
        self._record("slow-fsync", t_in, None, t_out, back, fps_during=round(fps, 2),
                     fsync_ms=int(self.s.slow_fsync_ms))

    def fault_camera_hang(self) -> None:
        """The camera's grab blocks: the status shows ``camera_lost`` (after
        ``capture_timeout``), the loop abandons the capture and reopens the
        camera, and the status is ``online`` again."""
        t_in = time.monotonic()
        self.hcam.hang()
        shown = self.wait_for(self._status_after(t_in, lambda b: (b or {}).get("state") == "camera_lost"),
                              FAULT_WAIT_S)
        t_out = shown or time.monotonic()  # the loop's abandonment releases it
        back = self.wait_for(self._status_after(t_out, lambda b: (b or {}).get("state") == "online"), FAULT_WAIT_S)
        self._record("camera-hang", t_in, shown, t_out, back)

    def fault_clock_step(self) -> None:
        """The process's wall clock steps a year ahead for ``fault_hold`` s and
        back: the summaries carry the stepped clock, then the real one again
        (nothing refuses a write: the status has nothing to show; the
        summaries' sequence and the uptimes are judged instead)."""
        year = 365 * 86400

        def offset(body) -> float | None:  # payload clock minus the real one (monotonic since the start)
            ts = _wall_ts((body or {}).get("ts"))
            return None if ts is None else ts - (self.wall0 + time.monotonic() - self.t0)
        t_in = time.monotonic()
        self._set_control("clock_offset_s", str(year))
        shown = self.wait_for(lambda: self.counter.first("coverage", t_in, lambda b: (offset(b) or 0) > year / 2),
                              FAULT_WAIT_S)
        self.hold(self.s.fault_hold)
        self._set_control("clock_offset_s", "0")
        t_out = time.monotonic()
        back = self.wait_for(lambda: self.counter.first("coverage", t_out, lambda b: abs(offset(b) or year) < 600),
                             FAULT_WAIT_S)
        self._record("clock-step", t_in, shown, t_out, back, step_s=year)

    def fault_twin(self) -> None:
        """A second installation on the device id for ``fault_hold`` s after it
        connects: from its MQTT connection to the clash message, and after it
        stops, the soak's own summaries still arriving."""
        t_spawn = time.monotonic()
        folder = self.work / f"twin-{len(self.fault_events)}"
        twin = Twin(self.s.model, self.broker.port, folder)
        try:
            shown = self.wait_for(lambda: self.counter.first("clash", t_spawn, lambda b: b is not None),
                                  FAULT_WAIT_S + 60)
            t_in = twin.connected_at or t_spawn
            self.hold(self.s.fault_hold)
        finally:
            rc = twin.stop()
        t_out = time.monotonic()
        back = self.wait_for(lambda: self.counter.first("coverage", t_out, lambda b: True), FAULT_WAIT_S)
        self._record("twin", t_in, shown, t_out, back, start_s=round(t_in - t_spawn, 2), yielded=twin.yielded,
                     exit_code=rc, traceback=twin.traceback,
                     **({} if twin.yielded and not twin.traceback else {"stderr_tail": list(twin.tail)}))
        shutil.rmtree(folder, ignore_errors=True)

    def next_fault(self) -> str | None:
        """The next fault in turn: those that cannot be injected are skipped, and
        a hanging camera once a process has spent all but one of its restarts."""
        from edge_runtime.io.sources import MAX_ABANDONED
        for _ in range(len(self.faults)):
            kind = self.faults[self.fault_turn % len(self.faults)]
            self.fault_turn += 1
            if kind in self.not_injected:
                continue
            if kind == "camera-hang" and self.source.abandoned >= MAX_ABANDONED - 1:
                continue
            return kind
        return None

    def fault_margin(self, kind: str) -> float:
        """Seconds fault ``kind`` may take, at most, to be injected, shown, held and recovered
        (none starts later than this before the run's end)."""
        s = self.s
        return (s.fault_hold + 20 + (SEQ_BLOCK_WAIT * s.publish_interval if kind == "disk-full" else 0)
                + (15 if kind == "twin" else 0))

    def inject(self, kind: str) -> None:
        """Inject fault ``kind`` (one of :data:`FAULTS`) and time it (see :meth:`_record`)."""
        self.cut_by_end = False
        getattr(self, "fault_" + kind.replace("-", "_"))()

    def watch(self) -> None:
        """Until the vehicle's run ends: sample memory every 10 s (its
        breakdown every minute), call the API, fail the broker and the camera
        on schedule (none that the run's end would cut), log progress every minute."""
        import httpx
        s = self.s
        self.t0 = t0 = time.monotonic()
        self.wall0 = time.time()  # the real wall clock at t0 (before any clock step)
        next_broker, next_camera, last_report = t0 + s.broker_every, t0 + s.camera_every, t0
        next_fault, self.fault_turn, self.next_api = t0 + s.fault_every, 0, t0 + 5
        self.http = httpx.Client(timeout=10, limits=httpx.Limits(
            max_keepalive_connections=0 if s.http_client == "new-connection" else None))
        while self.thread.is_alive():
            self.tick()
            now = time.monotonic()
            el = now - t0
            quiet_end = el > s.minutes * 60 - s.broker_down - 60
            if now >= next_broker and not quiet_end:
                self.broker_outage()
                next_broker = time.monotonic() + s.broker_every
            elif now >= next_camera and not quiet_end:
                self.camera_outage()
                next_camera = time.monotonic() + s.camera_every
            elif self.faults and now >= next_fault:
                kind = self.next_fault()
                if kind and el < s.minutes * 60 - self.fault_margin(kind):
                    self.inject(kind)
                elif kind:
                    self.fault_turn -= 1  # too close to the end for this one: the schedule is over
                next_fault = time.monotonic() + s.fault_every
            if now - last_report >= 60:
                last_report = now
                log.info("%.0f/%.0f min: %d frames, RSS %.1f MB (%s), %d summaries received, broker recoveries %s, "
                         "camera recoveries %s, faults %d", el / 60, s.minutes, self.runner.frames, self.rss[-1][1],
                         self.breakdown[-1][1] if self.breakdown else {}, self.counter.received,
                         self.broker_recovery[-5:], self.camera_recovery[-5:], len(self.fault_events))
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
        self.cleanup()

    def cleanup(self) -> None:
        """Unmount the fault's tmpfs cards and remove the preload folder (also after a failed start)."""
        for point in self.mounts:
            subprocess.run(["umount", "-l", str(point)], capture_output=True, check=False)
        self.mounts = []
        if self.preload is not None:
            shutil.rmtree(self.preload, ignore_errors=True)

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
            "harness_error": self.harness_error,
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
            "loop_stalls": self.stalls,
            "api": {"calls": self.api_calls, "errors": self.api_errors},
            "camera_reconnects": stats["camera"]["reconnects"],
        }
        if self.faults:
            report["faults"] = fault_summary(self.fault_events, self.faults, self.not_injected, s, self.uptime_range)
        report["verdict"] = verdict(report)
        return report


def fault_summary(events: list[dict], scheduled: tuple[str, ...], not_injected: dict[str, str],
                  s: SoakSettings, uptime_range: dict[str, tuple]) -> dict:
    """The fault schedule's part of the report: its settings, every fault
    (``events``: ``fault``, ``at_s``, ``visible_s``, ``recovered_s`` and
    what the kind adds), those ``not_injected`` and why, per kind (leaving
    out a fault the run's end cut short, counted in ``cut_by_run_end``) the count
    and the slowest visibility and recovery (s; None when one never came),
    the slowest visibility over the kinds the status shows, and the lowest
    and highest ``uptime_s`` /v1/stats reported (``api``, ``live``: s)."""
    by_kind, whole = {}, [e for e in events if not e.get("cut_by_run_end")]
    for kind in scheduled:
        mine = [e for e in whole if e["fault"] == kind]
        vis = [e["visible_s"] for e in mine]
        rec = [e["recovered_s"] for e in mine]
        by_kind[kind] = {"count": len(mine), "shown_in_status": kind in SHOWN_IN_STATUS,
                         "max_visible_s": None if None in vis or not vis else max(vis),
                         "max_recovered_s": None if None in rec or not rec else max(rec)}
    shown = [e["visible_s"] for e in whole if e["fault"] in SHOWN_IN_STATUS]
    return {"scheduled": list(scheduled), "every_s": s.fault_every, "hold_s": s.fault_hold,
            "slow_fsync_ms": s.slow_fsync_ms, "capture_timeout_s": s.capture_timeout,
            "not_injected": dict(not_injected), "events": events, "by_kind": by_kind,
            "cut_by_run_end": len(events) - len(whole),
            "max_visible_s": None if None in shown or not shown else max(shown),
            "uptime_range_s": {k: list(v) for k, v in uptime_range.items()},
            **({"clock_step_by": "the soak's LD_PRELOAD shim (CLOCK_REALTIME only), not libfaketime: " + NOT_LIBFAKETIME}
               if "clock-step" in scheduled else {})}


def verdict(report: dict) -> dict[str, bool]:
    """The soak's goals: RSS growth under 1 MB/h after warm-up, no summary
    lost, broker and camera back within 5 s every time, no watchdog miss, no
    stall (no frame for :data:`STALL_S` with the camera live: a loop that
    stopped for good pings no more, so its watchdog counts no gap);
    with a fault schedule also (issue 31): RSS growth under 0.5 MB/h, every
    fault that could be injected injected, each shown in the status within
    :data:`VISIBLE_WITHIN_S` and recovered, the frame rate held to 80 % of
    the run's during a slow fsync (a fault the run's end cut short is
    listed, not judged), every ``uptime_s`` of /v1/stats between 0
    and the run's length across a clock step (on the monotonic clock),
    and the twin yielding without a traceback."""
    growth = report["rss_growth_mb_per_hour_after_warmup"]
    goals = {
        "rss_growth_below_1_mb_per_hour": growth is not None and growth < 1.0,
        "no_summary_lost": report["summaries"]["lost"] == 0,
        "broker_recovery_below_5_s": all(r is not None and r < 5 for r in report["broker_recovery_s"]),
        "camera_recovery_below_5_s": all(r is not None and r < 5 for r in report["camera_recovery_s"]),
        "no_watchdog_miss": report["watchdog"]["misses"] == 0,
        "no_loop_stall": not report.get("loop_stalls"),
        "no_harness_error": not report.get("harness_error"),
    }
    faults = report.get("faults")
    if not faults:
        return goals
    events, by_kind = [e for e in faults["events"] if not e.get("cut_by_run_end")], faults["by_kind"]
    goals["rss_growth_below_0_5_mb_per_hour"] = growth is not None and growth < 0.5
    goals["every_fault_injected"] = all(k["count"] > 0 for kind, k in by_kind.items()
                                        if kind not in faults["not_injected"])
    goals["faults_visible_within_5_s"] = all(e["visible_s"] is not None and e["visible_s"] <= VISIBLE_WITHIN_S
                                             for e in events if e["fault"] in SHOWN_IN_STATUS)
    goals["faults_recovered"] = all(e["recovered_s"] is not None for e in events)
    slow = [e for e in events if e["fault"] == "slow-fsync"]
    if slow:
        goals["fps_held_during_slow_fsync"] = all(e["fps_during"] >= 0.8 * report["fps_achieved"] for e in slow)
    if any(e["fault"] == "clock-step" for e in events):
        longest = report["minutes"] * 60 + UPTIME_SLACK_S  # the vehicle started a little before the soak's clock
        goals["clock_step_seen_and_uptime_on_the_monotonic_clock"] = (
            all(e["visible_s"] is not None for e in events if e["fault"] == "clock-step")
            and all(0 <= low and high <= longest for low, high in faults["uptime_range_s"].values()))
    twins = [e for e in events if e["fault"] == "twin"]
    if twins:
        goals["twin_yielded"] = all(e["yielded"] and not e["traceback"] for e in twins)
    return goals


def check_settings(s: SoakSettings) -> None:
    """Raise ``ValueError`` naming the first fault-schedule setting out of its range."""
    for name, value, low, high in (("--fault-every", s.fault_every, 1.0, 86400.0),
                                   ("--fault-hold", s.fault_hold, 0.0, 3600.0),
                                   ("--slow-fsync-ms", s.slow_fsync_ms, 0, 60000),
                                   ("--capture-timeout", s.capture_timeout, 0.1, 600.0),
                                   ("--publish-interval", s.publish_interval, 0.05, 3600.0)):
        if not low <= value <= high:
            raise ValueError(f"{name} {value:g} is out of range ({low:g} to {high:g})")


def run_soak(s: SoakSettings) -> int:
    """Run the soak, print its report as JSON (and write it to ``s.out``);
    returns 0 when every goal was met, 1 otherwise. Raises ``SystemExit``
    when the broker or the vehicle cannot start, or a setting is out of range (one line)."""
    try:
        faults = parse_faults(s.faults)
        check_settings(s)
    except ValueError as e:
        raise SystemExit(f"soak: {e}") from None
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import faulthandler
    faulthandler.register(signal.SIGUSR1)  # kill -USR1 PID: every thread's stack on stderr (a loop that stalls)
    for noisy in ("roadseg.run", "roadseg.mqtt", "roadseg.sources", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING if s.verbose and noisy != "httpx" else logging.ERROR)
    reexec_under_preload(faults)
    soak = Soak(s)
    try:
        soak.start()
    except BaseException:
        soak.cleanup()
        raise
    try:
        soak.watch()
    except Exception as e:  # the harness failed, not the vehicle: stop the vehicle, report what was measured
        log.error("soak: the harness failed (%s: %s): stopping the vehicle and reporting what was measured",
                  type(e).__name__, e)
        soak.harness_error = f"{type(e).__name__}: {e}"[:300]
        soak.vehicle.request_stop()
    finally:
        soak.stop()
    report = soak.report()
    text = json.dumps(report, indent=2)
    print(text)
    if s.out:
        atomic.write_text(s.out, text)
    shutil.rmtree(soak.work, ignore_errors=True)
    return 0 if all(report["verdict"].values()) else 1
