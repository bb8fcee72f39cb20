"""The health of the machine the runtime runs on, and its service manager:
CPU temperature, resident memory, and systemd's notify/watchdog protocol."""
from __future__ import annotations

import os
import resource
import socket
from pathlib import Path


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


def heartbeat(path: str | None) -> None:
    """Touch ``path`` (a container's HEALTHCHECK reads its age); no-op without one."""
    if not path:
        return
    try:
        Path(path).touch()
    except OSError:
        pass


def heartbeat_age(path: str) -> float:
    """Seconds since :func:`heartbeat` last touched ``path`` (inf when never)."""
    import time
    try:
        return time.time() - Path(path).stat().st_mtime
    except OSError:
        return float("inf")


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
