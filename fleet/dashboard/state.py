"""What the dashboard knows about the fleet, bounded in bytes.

One subscriber (:class:`fleet.broker.BrokerSubscriber`) to
``roadseg/+/{coverage,status,stats,snapshot,clash,model}``; every message passes
:class:`fleet.intake.Intake` (size, then schema) and, for a snapshot,
:func:`fleet.dashboard.snapshot.check_jpeg`, before it is kept. Per vehicle:
the latest status, stats and coverage (validated models, each at most its
kind's byte cap), fixed-size numeric histories of the last :data:`HISTORY`
summaries and stats (a NumPy ring each: :data:`RING_BYTES` per vehicle) and
the latest snapshot, all snapshots together within :data:`SNAPSHOT_BUDGET`.
So memory is at most about ``MAX_VEHICLES * (RING_BYTES + 32 KiB) +
SNAPSHOT_BUDGET`` (:meth:`FleetState.bytes_used` counts it), whatever arrives.

Who is kept: ids the operator lists (``known``) always; a vehicle already
tracked is never evicted for a new id. While :data:`MAX_VEHICLES` are
tracked, a new id is refused (counted on the page), unless one tracked vehicle
has been silent for ``forget_after_s`` and needs no attention (stopped on
purpose, or its alert acknowledged): that one is forgotten.
"""
from __future__ import annotations

import math
import os
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from edge_runtime.contract.labels import CATEGORIES
from fleet.dashboard.health import DELIBERATE_STOPS, parse_ts
from fleet.intake import Dropped, Intake

HISTORY = 600            # 10 minutes of 1 s summaries; 100 minutes of 10 s stats
MAX_VEHICLES = 500
SNAPSHOT_BUDGET = 32 * 1024 * 1024   # bytes of JPEG kept for all vehicles together
FORGET_AFTER_S = 24 * 3600.0
COVERAGE_COLUMNS = ("ts", *CATEGORIES)
STATS_COLUMNS = ("ts", "achieved", "target", "cpu_temp_c", "queued")
RING_BYTES = HISTORY * (len(COVERAGE_COLUMNS) + len(STATS_COLUMNS)) * 8
FLEET_FULL = "(new ids while the fleet is full)"
KINDS = ("coverage", "status", "stats", "snapshot", "clash", "model")


class Ring:
    """The last ``capacity`` rows of ``columns`` float64 values (NaN where unknown), in a fixed array."""

    def __init__(self, capacity: int, columns: int):
        self._a = np.full((capacity, columns), np.nan)
        self._n = 0

    def append(self, row) -> None:
        """Keep ``row`` (``columns`` numbers), overwriting the oldest once full."""
        self._a[self._n % len(self._a)] = row
        self._n += 1

    def rows(self) -> np.ndarray:
        """A copy, oldest first: shape ``(min(n, capacity), columns)``."""
        cap = len(self._a)
        if self._n <= cap:
            return self._a[: self._n].copy()
        i = self._n % cap
        return np.concatenate([self._a[i:], self._a[:i]])

    def __len__(self) -> int:
        return min(self._n, len(self._a))

    @property
    def nbytes(self) -> int:
        """Bytes of the fixed array (the same however many rows were appended)."""
        return self._a.nbytes


@dataclass
class Vehicle:
    """One tracked vehicle (mutable, under :attr:`FleetState.lock`)."""
    device_id: str
    first_seen: float
    pinned: bool = False
    status: object = None      # payloads.Status
    stats: object = None       # payloads.Stats
    coverage: object = None    # payloads.Coverage
    sizes: dict = field(default_factory=dict)  # kind -> bytes of the latest message kept
    coverage_ring: Ring | None = None
    stats_ring: Ring | None = None
    summaries: int = 0
    snapshot: bytes | None = None
    snapshot_at: float | None = None
    last_seen: float | None = None
    acknowledged: str | None = None
    clash: object = None       # payloads.Clash: a second live installation under this id (cleared when it ends)
    model_state: object = None  # payloads.ModelState: the release it runs, the one it tries (issue 29)


@dataclass(frozen=True)
class VehicleView:
    """A consistent copy of a vehicle for one page render (models are immutable)."""
    device_id: str
    pinned: bool
    first_seen: float
    last_seen: float | None
    status: object
    stats: object
    coverage: object
    coverage_rows: np.ndarray   # COVERAGE_COLUMNS
    stats_rows: np.ndarray      # STATS_COLUMNS
    summaries: int
    snapshot: bytes | None
    snapshot_at: float | None
    acknowledged: str | None
    clash: object = None
    model_state: object = None


def _number(x) -> float:
    return float(x) if x is not None else math.nan


class FleetState:
    """The fleet's state, fed by :meth:`handle` (the subscriber's handler). Thread-safe."""

    def __init__(self, known: tuple[str, ...] = (), prefix: str = "roadseg", max_vehicles: int = MAX_VEHICLES,
                 forget_after_s: float = FORGET_AFTER_S, snapshot_budget: int = SNAPSHOT_BUDGET):
        if len(known) > max_vehicles:
            raise ValueError(f"{len(known)} known vehicles, more than the {max_vehicles} the dashboard tracks")
        self.prefix, self.max_vehicles = prefix, max_vehicles
        self.forget_after_s, self.snapshot_budget = forget_after_s, snapshot_budget
        self.intake = Intake(KINDS, prefix)
        self.lock = threading.RLock()  # wait_for's predicate may call view()
        self.changed = threading.Condition(self.lock)
        now = time.time()
        self.started = now
        self.vehicles: dict[str, Vehicle] = {d: Vehicle(d, now, pinned=True) for d in known}
        self._snapshot_bytes = 0

    # -- intake (the subscriber's thread) -------------------------------------------
    def handle(self, topic: str, body: bytes, retained: bool = False, now: float | None = None) -> None:
        """Check one message and keep what it says. Refused messages are counted
        (:attr:`intake`); nothing raises except what a bug would."""
        now = time.time() if now is None else now
        if not body and topic.startswith(f"{self.prefix}/") and topic.endswith("/clash"):
            with self.changed:  # a cleared clash notice: the twin went away or got its own id
                v = self.vehicles.get(topic.split("/")[1])
                if v is not None:
                    v.clash = None
                    self.changed.notify_all()
            return
        try:
            m = self.intake.accept(topic, body, retained)
            if m is None:
                return
            if m.kind == "snapshot":
                from fleet.dashboard.snapshot import SnapshotError, check_jpeg
                try:
                    check_jpeg(m.payload)
                except SnapshotError as e:
                    raise self.intake.drop(m.device, str(e)) from None
            with self.changed:
                v = self._vehicle(m.device, now)
                if v is None:
                    raise self.intake.drop(FLEET_FULL, f"the dashboard tracks {self.max_vehicles} vehicles at most")
                self._keep(v, m, now)
                self.changed.notify_all()
        except Dropped:
            with self.changed:
                self.changed.notify_all()

    def _vehicle(self, device: str, now: float) -> Vehicle | None:
        v = self.vehicles.get(device)
        if v is not None:
            return v
        if len(self.vehicles) >= self.max_vehicles:
            idle = [x for x in self.vehicles.values() if not x.pinned and self._forgettable(x, now)]
            if not idle:
                return None
            gone = min(idle, key=lambda x: x.last_seen or 0)
            self._set_snapshot(gone, None, None)
            del self.vehicles[gone.device_id]
        v = self.vehicles[device] = Vehicle(device, now)
        return v

    def _forgettable(self, v: Vehicle, now: float) -> bool:
        if v.last_seen is None or now - v.last_seen < self.forget_after_s:
            return False
        stopped = v.status is not None and v.status.state == "offline" and v.status.reason in DELIBERATE_STOPS
        return stopped or v.acknowledged is not None

    def _keep(self, v: Vehicle, m, now: float) -> None:
        if not m.retained:
            v.last_seen = now
        elif v.last_seen is None:  # a retained message says when it was sent, not that the vehicle is there now
            sent = parse_ts(getattr(m.payload, "ts", None))
            v.last_seen = min(sent, now) if sent is not None else None
        p = m.payload
        if m.kind == "snapshot":
            self._set_snapshot(v, p, now)
            return
        v.sizes[m.kind] = m.size
        if m.kind == "clash":
            v.clash = p
        elif m.kind == "model":
            v.model_state = p
        elif m.kind == "status":
            v.status = p
        elif m.kind == "stats":
            v.stats = p
            v.stats_ring = v.stats_ring or Ring(HISTORY, len(STATS_COLUMNS))
            v.stats_ring.append((_number(parse_ts(p.ts)), p.fps.achieved, p.fps.target, _number(p.cpu_temp_c),
                                 _number(p.mqtt.queued)))
        elif m.kind == "coverage":
            v.coverage = p
            v.summaries += 1
            v.coverage_ring = v.coverage_ring or Ring(HISTORY, len(COVERAGE_COLUMNS))
            v.coverage_ring.append((_number(parse_ts(p.ts)), *(getattr(p.coverage, c) for c in CATEGORIES)))

    def _set_snapshot(self, v: Vehicle, jpeg: bytes | None, at: float | None) -> None:
        self._snapshot_bytes += len(jpeg or b"") - len(v.snapshot or b"")
        v.snapshot, v.snapshot_at = jpeg, at
        while self._snapshot_bytes > self.snapshot_budget:  # the oldest other snapshot goes, listed ids' last
            others = [x for x in self.vehicles.values() if x.snapshot is not None and x is not v]
            if not others:
                break
            old = min(others, key=lambda x: (x.pinned, x.snapshot_at or 0))
            self._snapshot_bytes -= len(old.snapshot)
            old.snapshot, old.snapshot_at = None, None

    # -- the page's side -----------------------------------------------------------------
    def view(self) -> list[VehicleView]:
        """A consistent copy of every vehicle, sorted by id."""
        empty_cov, empty_stats = np.empty((0, len(COVERAGE_COLUMNS))), np.empty((0, len(STATS_COLUMNS)))
        with self.lock:
            return [VehicleView(
                v.device_id, v.pinned, v.first_seen, v.last_seen, v.status, v.stats, v.coverage,
                v.coverage_ring.rows() if v.coverage_ring else empty_cov,
                v.stats_ring.rows() if v.stats_ring else empty_stats,
                v.summaries, v.snapshot, v.snapshot_at, v.acknowledged, v.clash, v.model_state)
                for _, v in sorted(self.vehicles.items())]

    def acknowledge(self, device: str, key: str | None) -> None:
        """Record that the operator has seen ``device``'s condition ``key``
        (:func:`fleet.dashboard.health.ack_key`); None clears it."""
        with self.lock:
            v = self.vehicles.get(device)
            if v is not None:
                v.acknowledged = key

    def bytes_used(self) -> int:
        """Bytes held for the vehicles: rings, the latest messages (as received) and snapshots."""
        with self.lock:
            return sum((v.coverage_ring.nbytes if v.coverage_ring else 0) + (v.stats_ring.nbytes if v.stats_ring else 0)
                       + sum(v.sizes.values()) + len(v.snapshot or b"") for v in self.vehicles.values())

    def wait_for(self, predicate, timeout: float) -> bool:
        """Block until ``predicate(self)`` holds, re-checked after every message (kept or dropped)."""
        with self.changed:
            return self.changed.wait_for(lambda: predicate(self), timeout)


class Fleet(FleetState):
    """:class:`FleetState` fed by a :class:`fleet.broker.BrokerSubscriber` to ``settings``' broker."""

    def __init__(self, settings, known: tuple[str, ...] = (), prefix: str = "roadseg", **kw):
        from fleet.broker import BrokerSubscriber
        super().__init__(known, prefix, **kw)
        self.settings = settings
        self.subscriber = BrokerSubscriber(settings, [f"{prefix}/+/{k}" for k in KINDS], self.handle,
                                           client_id=f"roadseg-dashboard-{os.getpid()}-{id(self):x}")

    @property
    def connected(self) -> bool:
        """Subscriptions acknowledged and the network thread alive."""
        return self.subscriber.connected and self.subscriber.stopped is None

    def close(self) -> None:
        """Disconnect and end the subscriber's thread."""
        self.subscriber.close()


_shared: dict[tuple, Fleet] = {}
_shared_lock = threading.Lock()


def shared_fleet(settings, known: tuple[str, ...] = ()) -> Fleet:
    """The one :class:`Fleet` of this process for ``settings`` and ``known``,
    shared by every page session (Streamlit reruns the page script often). One
    whose subscriber stopped is kept, not replaced, so the page says it stopped."""
    key = (settings, tuple(known))
    with _shared_lock:
        f = _shared.get(key)
        if f is None:
            f = _shared[key] = Fleet(settings, tuple(known))
        return f
