"""What is wrong with a vehicle, and since when: the dashboard's alerts, from
what the vehicles publish (``status`` and ``stats``). Pure functions over the
fleet's state, so they are tested without a browser."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass


@dataclass
class Thresholds:
    silent_after_s: float = 30.0     # no message for this long: offline (3 stats intervals by default)
    min_fps_fraction: float = 0.8    # achieved below this fraction of the target
    max_temp_c: float = 80.0         # CPU temperature above this
    max_queued: int = 10             # MQTT messages waiting, and growing


@dataclass
class Alert:
    vehicle: str
    kind: str          # offline, camera_lost, fps_low, hot, queue_growing
    message: str
    since: float       # epoch seconds

    @property
    def since_text(self) -> str:
        return dt.datetime.fromtimestamp(self.since, dt.timezone.utc).strftime("%H:%M:%S UTC")


def parse_ts(ts: str | None) -> float | None:
    """The vehicles' RFC 3339 ``ts`` -> epoch seconds."""
    if not ts:
        return None
    try:
        return dt.datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _since(history: list[dict], bad) -> float | None:
    """The ``ts`` of the first of the trailing run of stats for which ``bad`` holds."""
    since = None
    for s in reversed(history):
        if not bad(s):
            break
        since = parse_ts(s.get("ts")) or since
    return since


def vehicle_alerts(v: dict, now: float, th: Thresholds) -> list[Alert]:
    """``v``: a vehicle as :class:`fleet.dashboard.state.Fleet` keeps it."""
    name, out = v["device_id"], []
    state = v.get("state")
    state_since = parse_ts(v.get("status", {}).get("ts")) or v.get("last_seen") or now
    if state == "offline":
        why = v.get("status", {}).get("reason", "")
        out.append(Alert(name, "offline", f"{name} is offline" + (" (Last Will: connection lost)" if why == "lost"
                                                                   else f" ({why})" if why else ""), state_since))
    elif v.get("last_seen") and now - v["last_seen"] > th.silent_after_s:
        out.append(Alert(name, "offline", f"{name} silent for {now - v['last_seen']:.0f} s", v["last_seen"]))
    if state == "camera_lost":
        err = v.get("status", {}).get("error")
        out.append(Alert(name, "camera_lost", f"{name} lost its camera" + (f": {err}" if err else ""), state_since))
    hist = list(v.get("stats_history", ()))
    if not hist or state == "offline":
        return out

    def fps_low(s):
        f = s.get("fps", {})
        return bool(f.get("target")) and f.get("achieved", 0) < th.min_fps_fraction * f["target"]

    def hot(s):
        return s.get("cpu_temp_c") is not None and s["cpu_temp_c"] > th.max_temp_c

    last = hist[-1]
    if fps_low(last):
        f = last["fps"]
        out.append(Alert(name, "fps_low", f"{name} at {f['achieved']:.1f} FPS, target {f['target']:g}",
                         _since(hist, fps_low) or now))
    if hot(last):
        out.append(Alert(name, "hot", f"{name} CPU at {last['cpu_temp_c']:.0f} °C (limit {th.max_temp_c:g})",
                         _since(hist, hot) or now))
    queued = [s.get("mqtt", {}).get("queued", 0) for s in hist[-3:]]
    if queued[-1] > th.max_queued and all(b >= a for a, b in zip(queued, queued[1:])) and queued[-1] > queued[0]:
        out.append(Alert(name, "queue_growing", f"{name} has {queued[-1]} MQTT messages waiting, growing",
                         _since(hist, lambda s: s.get("mqtt", {}).get("queued", 0) > th.max_queued) or now))
    return out


def fleet_alerts(vehicles: list[dict], now: float, th: Thresholds) -> list[Alert]:
    alerts = [a for v in vehicles for a in vehicle_alerts(v, now, th)]
    return sorted(alerts, key=lambda a: a.since)
