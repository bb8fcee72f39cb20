"""The health of the machine the runtime runs on, and its service manager:
CPU temperature, resident memory, and systemd's notify/watchdog protocol."""
from __future__ import annotations

import logging
import os
import resource
import socket
import threading
from pathlib import Path

log = logging.getLogger("roadseg.run")


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


class Heartbeat:
    """Touches ``path`` (a container's HEALTHCHECK reads its age) on a thread of
    its own each time :meth:`beat` is called, so a disk that hangs or refuses
    never holds up the caller. A touch that fails (full or read-only disk,
    I/O error) is logged once and reported by :attr:`fault` (``{"store":
    "heartbeat", "path", "error", "since"}``) until a touch succeeds again.
    ``path`` None: nothing is written."""

    def __init__(self, path: str | None):
        self.path = path
        self.fault: dict | None = None
        self._due = threading.Event()
        self._stop = False
        self._thread = None
        if path:
            self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)
            self._thread.start()

    def beat(self) -> None:
        """Ask for a touch (never blocks; beats while one is being written merge into one)."""
        self._due.set()

    def _run(self) -> None:
        while True:
            self._due.wait()
            self._due.clear()
            if self._stop:
                return
            try:
                Path(self.path).touch()
            except OSError as e:
                if self.fault is None:
                    from edge_runtime.io.outbox import utc_now
                    log.warning("cannot touch the heartbeat file %s (%s): container health checks will see it "
                                "age; retrying every beat", self.path, e.strerror or e)
                    self.fault = {"store": "heartbeat", "path": self.path, "error": str(e.strerror or e)[:200],
                                  "since": utc_now()}
                continue
            if self.fault is not None:
                log.warning("the heartbeat file %s is touched again", self.path)
                self.fault = None

    def close(self) -> None:
        """Stop the thread (it ends after a touch in progress)."""
        self._stop = True
        self._due.set()


def heartbeat_age(path: str) -> float:
    """Seconds since the heartbeat last touched ``path`` (inf when never). A file
    touched more than a second in the future was touched before the wall clock stepped
    back (an NTP sync on a Pi without a real-time clock): its age is unknown, so inf
    (stale) rather than a negative age that would read healthy until the clock caught up;
    a live loop touches it again within a second."""
    import time
    try:
        age = time.time() - Path(path).stat().st_mtime
    except OSError:
        return float("inf")
    return age if age >= -1.0 else float("inf")


# --- device health --------------------------------------------------------------

def cpu_temperature() -> float | None:
    """Celsius from the first readable thermal zone (Pi and Jetson kernels expose
    millidegrees in /sys/class/thermal/thermal_zone*/temp); None where there is none."""
    for zone in sorted(Path("/sys/class/thermal").glob("thermal_zone*/temp")):
        try:
            return round(int(zone.read_text().strip()) / 1000.0, 1)
        except (OSError, ValueError):
            continue
    return None


def memory_mb() -> dict:
    """``{"rss_mb": resident set size now (MiB, from /proc/self/status; None where
    there is none), "peak_rss_mb": the process's peak (MiB, getrusage, which Linux
    reports in KiB)}``."""
    rss = None
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"rss_mb": round(rss, 1) if rss else None, "peak_rss_mb": round(peak, 1)}
