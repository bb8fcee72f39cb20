"""What the dashboard shows of model releases (issue 29), from each vehicle's
retained model state (``roadseg/<id>/model``,
:class:`edge_runtime.contract.payloads.ModelState`): the release it runs, the
one it is trying and how far, and the progress of a rollout over the fleet.
Pure functions over :class:`fleet.dashboard.state.VehicleView`; every string
a vehicle sent comes out through :func:`fleet.text.clean` (the page shows it as
text)."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from fleet.text import clean

FAILED = ("rejected", "rolled_back")
IN_PROGRESS = ("queued", "downloading", "verifying", "trial")


def running_text(v) -> str | None:
    """``release 3`` (or ``install's model``) the vehicle runs, by its model state; None without one."""
    s = getattr(v, "model_state", None)
    if s is None:
        return None
    return f"release {s.running.version}" if s.running.version is not None else "install's model"


def trying_text(v) -> str | None:
    """What the vehicle is doing about another release: ``4: trial``, ``4: downloading 37%``,
    ``4: rolled back``; None when it tries none (idle, or it just succeeded)."""
    s = getattr(v, "model_state", None)
    if s is None or s.trying is None or s.state in ("idle", "succeeded"):
        return None
    what = f"{s.trying.version}" if s.trying.version is not None else clean(s.trying.name or "?", 40)
    state = s.state.replace("_", " ")
    if s.state == "downloading" and s.total_bytes:
        state += f" {100 * s.bytes / s.total_bytes:.0f}%"
    return f"{what}: {state}"


def cell(v) -> str | None:
    """The health table's ``release`` cell: ``3``, ``install``, ``3 → 4: trial``; None without a model state."""
    s = getattr(v, "model_state", None)
    if s is None:
        return None
    run = str(s.running.version) if s.running.version is not None else "install"
    trying = trying_text(v)
    return f"{run} → {trying}" if trying else run


def vehicle_line(v) -> str | None:
    """The vehicle section's line: ``car1: runs release 3; trying release 4: trial``, ``car1: runs release 3;
    rolled back release 4: <reason>`` or ``car1: runs release 4; succeeded: <reason>``; None without a model
    state. The reason is the vehicle's text, cleaned."""
    s = getattr(v, "model_state", None)
    if s is None:
        return None
    line = f"{v.device_id}: runs {running_text(v)}"
    trying = trying_text(v)
    if s.state in FAILED and s.trying is not None:
        what = f"release {s.trying.version}" if s.trying.version is not None else "a release"
        line += f"; {s.state.replace('_', ' ')} {what}" + (f": {clean(s.reason, 300)}" if s.reason else "")
    elif trying:
        line += f"; trying release {trying}"
    elif s.reason:
        line += f"; {s.state.replace('_', ' ')}: {clean(s.reason, 300)}"
    return line


def with_release(v, model: str | None) -> str | None:
    """The health table's ``model`` cell: the release first (:func:`cell`: ``r3``, ``r3 → 4: trial``) when
    the vehicle reports a model state, then ``model`` (name and sha256 prefix); the release comes first
    because the column is narrow."""
    release = cell(v)
    if release is None:
        return model
    release = release if release == "install" else f"r{release}"
    return f"{release} · {model}" if model else release


@dataclass(frozen=True)
class Rollout:
    """The fleet's releases now: ``running`` release label -> vehicles; for the newest
    release any vehicle tried (``version``), how many vehicles ``succeeded`` (run it),
    are ``in_progress``, ``failed`` (rejected or rolled back) and ``reporting`` (vehicles
    with a model state)."""
    running: dict[str, int]
    version: int | None
    succeeded: int
    in_progress: int
    failed: int
    reporting: int

    def text(self) -> str:
        """One line: ``release 4: 2 of 3 vehicles run it, 0 trying, 1 failed; running: release 3 x1, ...``."""
        runs = ", ".join(f"{k} ×{n}" for k, n in sorted(self.running.items()))
        if self.version is None:
            return f"running: {runs}"
        return (f"release {self.version}: {self.succeeded} of {self.reporting} vehicles run it, {self.in_progress} "
                f"trying, {self.failed} rejected or rolled back; running: {runs}")


def rollout(vehicles) -> Rollout | None:
    """The release progress of ``vehicles`` (see :class:`Rollout`); None when none reports a model state."""
    states = [v.model_state for v in vehicles if getattr(v, "model_state", None) is not None]
    if not states:
        return None
    running = Counter(f"release {s.running.version}" if s.running.version is not None else "install's model"
                      for s in states)
    tried = [s.trying.version for s in states if s.trying is not None and s.trying.version is not None]
    tried += [s.running.version for s in states if s.running.version is not None]
    newest = max(tried) if tried else None
    ok = sum(1 for s in states if newest is not None and s.running.version == newest)
    mine = [s for s in states if s.trying is not None and s.trying.version == newest and s.running.version != newest]
    return Rollout(dict(running), newest, ok, sum(1 for s in mine if s.state in IN_PROGRESS),
                   sum(1 for s in mine if s.state in FAILED), len(states))


def failure(v):
    """``(message, since_ts, reason)`` when the vehicle's last update was rejected or rolled back, else None
    (``message`` built from validated numbers; ``reason`` is the vehicle's text, cleaned)."""
    s = getattr(v, "model_state", None)
    if s is None or s.state not in FAILED or s.trying is None:
        return None
    what = f"release {s.trying.version}" if s.trying.version is not None else "a release"
    verb = "rolled back" if s.state == "rolled_back" else "rejected"
    return (f"{v.device_id} {verb} {what} (runs {running_text(v)})", s.ts, clean(s.reason or "", 300))
