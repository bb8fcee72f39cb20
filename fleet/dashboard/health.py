"""What is wrong with a vehicle, and since when: the dashboard's alerts, from
what the vehicles publish (``status`` and ``stats``). Pure functions over
:class:`fleet.dashboard.state.VehicleView`, so they are tested without a browser.

Reachability first (:func:`condition`): a vehicle is ``online``, lost its
camera, ``offline`` (its Last Will or another failure), ``stopped`` on purpose
(a clean stop: greyed, never an alert), ``silent`` (no message for
``silent_after_s``) or, for an id the operator listed, ``never_seen``. An
operator may acknowledge an offline, silent or never-seen vehicle: its alert is
then hidden until its condition changes (:func:`ack_key`).
"""
from __future__ import annotations

import datetime as dt
import itertools
import math
from dataclasses import dataclass

#: ``status.reason`` of an ``offline`` status that means the vehicle was stopped on purpose
#: (edge_runtime's clean stop says ``stopped``; the loop's exit reasons are the others)
DELIBERATE_STOPS = frozenset({"stopped", "stop", "signal", "duration", "max-frames", "end of source"})
#: conditions in which a vehicle is shown greyed, without camera state or live view
UNREACHABLE = frozenset({"offline", "stopped", "silent", "never_seen"})


@dataclass
class Thresholds:
    """Alert settings (the dashboard's sidebar): seconds of silence before a vehicle counts as offline
    (3 stats intervals by default), the fraction of its target FPS below which it is slow, the CPU
    temperature limit in °C (a Pi 4 throttles at 80), and how many waiting MQTT messages, growing, alert."""
    silent_after_s: float = 30.0
    min_fps_fraction: float = 0.8
    max_temp_c: float = 80.0
    max_queued: int = 10


@dataclass
class Alert:
    """One alert: ``kind`` is offline, never_seen, camera_lost, fps_low, hot, queue_growing, id_clash
    (two installations on one device id), disk_fault (a store that cannot write) or update_failed
    (its last model update was rejected or rolled back: :mod:`fleet.dashboard.releases`);
    ``since`` in epoch seconds; ``message`` is composed by the dashboard from validated values,
    ``detail`` is text the vehicle sent (a reason or an error: shown verbatim, as code)."""
    vehicle: str
    kind: str
    message: str
    since: float
    detail: str = ""

    @property
    def since_text(self) -> str:
        """``since`` as ``HH:MM:SS UTC``."""
        return hhmmss(self.since)


@dataclass(frozen=True)
class Condition:
    """How reachable a vehicle is: ``kind`` (online, camera_lost, offline, stopped, silent,
    never_seen), since when (epoch s) and the status's reason or error (plain text, may be empty)."""
    kind: str
    since: float
    why: str = ""


def hhmmss(epoch: float | None) -> str:
    """Epoch seconds as ``HH:MM:SS UTC``; ``—`` where unknown or out of range."""
    try:
        return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).strftime("%H:%M:%S UTC")
    except (TypeError, ValueError, OverflowError, OSError):
        return "—"


def parse_ts(ts: object) -> float | None:
    """The vehicles' RFC 3339 ``ts`` -> epoch seconds; None for anything else (a number,
    an impossible date, a year outside what the platform's clock can hold)."""
    if not isinstance(ts, str) or not ts:
        return None
    try:
        return dt.datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()
    except (ValueError, OverflowError, OSError):
        return None


def condition(v, now: float, th: Thresholds) -> Condition:
    """``v``: a :class:`fleet.dashboard.state.VehicleView`."""
    st = v.status
    since = (parse_ts(st.since) or parse_ts(st.ts)) if st is not None else None
    since = since or v.last_seen or v.first_seen
    if st is None and v.last_seen is None:
        return Condition("never_seen", v.first_seen)
    if st is not None and st.state == "offline":
        why = st.reason or ""
        return Condition("stopped" if why in DELIBERATE_STOPS else "offline", since, why)
    if v.last_seen is not None and now - v.last_seen > th.silent_after_s:
        return Condition("silent", v.last_seen)
    if st is not None and st.state == "camera_lost":
        return Condition("camera_lost", since, st.error or "")
    return Condition("online", since)


def ack_key(v, now: float, th: Thresholds) -> str | None:
    """What an operator acknowledges: the vehicle's unreachable condition and
    since when (a later change makes a new key, so the alert returns); None when reachable."""
    c = condition(v, now, th)
    return f"{c.kind}@{c.since:.3f}" if c.kind in UNREACHABLE else None


def _reachability_alert(v, c: Condition, now: float) -> Alert | None:
    name = v.device_id
    if c.kind == "offline":
        if c.why == "lost":
            return Alert(name, "offline", f"{name} is offline (Last Will: connection lost)", c.since)
        return Alert(name, "offline", f"{name} is offline", c.since, c.why)
    if c.kind == "silent":
        return Alert(name, "offline", f"{name} silent for {now - c.since:.0f} s", c.since)
    if c.kind == "never_seen":
        return Alert(name, "never_seen", f"{name} has sent nothing since the dashboard started", c.since)
    if c.kind == "camera_lost":
        return Alert(name, "camera_lost", f"{name} lost its camera", c.since, c.why)
    return None


def _trailing_since(rows, bad) -> float | None:
    """The ``ts`` (column 0) of the first of the trailing run of ``rows`` for which ``bad(row)`` holds."""
    since = None
    for r in rows[::-1]:
        if not bad(r):
            break
        since = r[0] if math.isfinite(r[0]) else since
    return since


def vehicle_alerts(v, now: float, th: Thresholds) -> list[Alert]:
    """Alerts of one vehicle (a :class:`fleet.dashboard.state.VehicleView`); an acknowledged
    unreachable condition gives none, a deliberate stop never does."""
    c = condition(v, now, th)
    out = []
    first = _reachability_alert(v, c, now)
    if first is not None and not (c.kind in UNREACHABLE and v.acknowledged == ack_key(v, now, th)):
        out.append(first)
    clash = getattr(v, "clash", None)
    if clash is not None:
        out.append(Alert(v.device_id, "id_clash", f"{v.device_id}: two live installations use this device id "
                         f"(installation {clash.installation} publishes nothing while {clash.holder} runs): give "
                         f"each vehicle its own --device-id", parse_ts(clash.ts) or now))
    from fleet.dashboard.releases import failure
    failed = failure(v)
    if failed is not None:
        out.append(Alert(v.device_id, "update_failed", failed[0], parse_ts(failed[1]) or now, failed[2]))
    if c.kind not in UNREACHABLE and v.status is not None:
        for f in getattr(v.status, "faults", None) or []:
            out.append(Alert(v.device_id, "disk_fault", f"{v.device_id}: {f.store} cannot write, kept in memory "
                             f"meanwhile", parse_ts(f.since) or now, f"{f.error} ({f.path or '-'})"))
    rows = v.stats_rows  # columns: ts, achieved, target, cpu_temp_c, queued (NaN where unknown)
    if c.kind in UNREACHABLE or not len(rows):
        return out
    name = v.device_id

    def fps_low(r):
        return r[2] > 0 and r[1] < th.min_fps_fraction * r[2]

    def hot(r):
        return r[3] > th.max_temp_c  # NaN compares False: unknown is not hot

    last = rows[-1]
    if fps_low(last):
        out.append(Alert(name, "fps_low", f"{name} at {last[1]:.1f} FPS, target {last[2]:g}",
                         _trailing_since(rows, fps_low) or now))
    if hot(last):
        out.append(Alert(name, "hot", f"{name} CPU at {last[3]:.0f} °C (limit {th.max_temp_c:g})",
                         _trailing_since(rows, hot) or now))
    queued = [0.0 if math.isnan(r[4]) else r[4] for r in rows[-3:]]
    if queued[-1] > th.max_queued and all(b >= a for a, b in itertools.pairwise(queued)) and queued[-1] > queued[0]:
        out.append(Alert(name, "queue_growing", f"{name} has {queued[-1]:.0f} MQTT messages waiting, growing",
                         _trailing_since(rows, lambda r: r[4] > th.max_queued) or now))
    return out


def fleet_alerts(vehicles: list, now: float, th: Thresholds) -> list[Alert]:
    """Every vehicle's alerts, oldest first."""
    alerts = [a for v in vehicles for a in vehicle_alerts(v, now, th)]
    return sorted(alerts, key=lambda a: a.since)
