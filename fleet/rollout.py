"""A staged rollout of a model release over the fleet (issue 29), run from the workstation.

A canary set first; once every canary reports ``succeeded``, the rest at a
rate (vehicles per minute); at the end the release is announced fleet-wide
(``roadseg/fleet/release``, retained, for vehicles that join later) and the
per-vehicle overrides are cleared. Each vehicle is pointed at the release by
its own retained override ``roadseg/<device-id>/release``.

The abort rule (as AWS IoT Jobs' abort criteria): once at least
``min_reached`` vehicles were reached, the rollout stops when more than
``abort_share`` of the vehicles reached so far report ``rejected`` or
``rolled_back`` for this release; no further vehicle is announced. A rollback
(:func:`rollback`) points the fleet at another release (a re-release of an
older model under a new version: vehicles never run a lower version).

The plan and its progress are one JSON file (written atomically at every
change), so a rollout resumes where it was after the workstation restarts.
:class:`Rollout` is driven by :meth:`Rollout.observe` (each vehicle's model
state, from MQTT) and :meth:`Rollout.step` (what to announce now); the
``roadseg-rollout`` command (fleet.commands.rollout) wires them to a broker.
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from edge_runtime import atomic
from edge_runtime.contract import release as contract

FAILED = ("rejected", "rolled_back")
#: a rollout file holds a few KB per hundred vehicles
MAX_STATE_BYTES = 4 << 20

Publish = Callable[[str, bytes, bool], None]  # (topic, payload, retain)


class RolloutError(ValueError):
    """A plan that cannot run, or a rollout file that cannot be read (one line)."""


@dataclass
class Plan:
    """Release ``version`` (model target ``target`` in the repository at ``repo``) to
    ``devices``, ``canary`` first; then ``rate`` vehicles per minute; abort when more
    than ``abort_share`` (0..1) of at least ``min_reached`` vehicles reached failed."""
    version: int
    target: str
    repo: str
    devices: list[str]
    canary: list[str]
    rate: float = 6.0
    abort_share: float = 0.2
    min_reached: int = 1

    def check(self) -> Plan:
        """Raise RolloutError for a plan that cannot run; returns self."""
        import re
        contract.announcement(self.version, self.target, self.repo)  # ReleaseError names a bad field
        bad = [d for d in self.devices if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", d)]
        if bad:
            raise RolloutError(f"device id {bad[0][:70]!r} is not one (letters, digits, _ and -, at most 64)")
        if len(set(self.devices)) != len(self.devices) or not self.devices:
            raise RolloutError("the device list is empty or names a vehicle twice")
        if not set(self.canary) <= set(self.devices) or not self.canary:
            raise RolloutError("the canary set must be one or more of the devices")
        if not 0 < self.rate <= 6000 or not 0 <= self.abort_share < 1 or self.min_reached < 1:
            raise RolloutError("rate must be in (0, 6000] per minute, abort share in [0, 1), min reached >= 1")
        return self


@dataclass
class Progress:
    """``phase``: canary, rest, done, aborted; ``announced``: device -> time (epoch s);
    ``outcomes``: device -> its last state for this release; ``reason``: why it stopped."""
    phase: str = "canary"
    announced: dict[str, float] = field(default_factory=dict)
    outcomes: dict[str, str] = field(default_factory=dict)
    reason: str = ""
    last_announce: float = 0.0


class Rollout:
    """A rollout kept in ``path``: :meth:`start` a new one, or load it to resume."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise RolloutError(f"no rollout at {self.path}: start one")
        if self.path.stat().st_size > MAX_STATE_BYTES:
            raise RolloutError(f"{self.path} is larger than a rollout file may be")
        try:
            data = json.loads(self.path.read_bytes())
            self.plan = Plan(**data["plan"]).check()
            self.progress = Progress(**data["progress"])
        except (ValueError, KeyError, TypeError) as e:
            raise RolloutError(f"{self.path} is not a rollout file ({type(e).__name__}: {str(e)[:100]})") from None

    @classmethod
    def start(cls, path: str | Path, plan: Plan) -> Rollout:
        """A new rollout of ``plan`` in ``path``; refuses to replace one that has not finished."""
        path = Path(path)
        plan.check()
        if path.is_file():
            try:
                old = cls(path)
            except RolloutError:
                old = None
            if old is not None and old.progress.phase in ("canary", "rest"):
                raise RolloutError(f"{path} holds a rollout of release {old.plan.version} that has not finished: "
                                   "resume it, or abort it first")
        atomic.write_text(path, json.dumps({"plan": asdict(plan), "progress": asdict(Progress())}, indent=1))
        return cls(path)

    def save(self) -> None:
        """Write the plan and progress atomically."""
        atomic.write_text(self.path, json.dumps({"plan": asdict(self.plan), "progress": asdict(self.progress)},
                                                indent=1))

    # -- what the vehicles say ------------------------------------------------------------------
    def observe(self, device: str, state) -> str | None:
        """A vehicle's model state (a parsed :class:`edge_runtime.contract.payloads.ModelState`):
        records its outcome for this release when it concerns it; returns the outcome recorded
        (succeeded, rejected, rolled_back, or a state in between), else None."""
        if device not in self.plan.devices:
            return None
        v = self.plan.version
        trying = getattr(state.trying, "version", None) if state.trying is not None else None
        running = getattr(state.running, "version", None)
        if state.state in FAILED and trying == v:
            outcome = state.state
        elif running == v and state.state in ("succeeded", "idle"):
            outcome = "succeeded"
        elif trying == v:
            outcome = state.state
        else:
            return None
        if self.progress.outcomes.get(device) != outcome:
            self.progress.outcomes[device] = outcome
            self.save()
        return outcome

    # -- what to announce -----------------------------------------------------------------------
    def failed(self) -> list[str]:
        """The vehicles reached that rejected the release or rolled it back."""
        return [d for d in self.progress.announced if self.progress.outcomes.get(d) in FAILED]

    def step(self, publish: Publish, now: float | None = None) -> str:
        """Announce what is due now through ``publish``; returns the phase after it
        (canary, rest, done, aborted). Call it after every observation and on a timer."""
        now = time.time() if now is None else now
        p, plan = self.progress, self.plan
        if p.phase in ("done", "aborted"):
            return p.phase
        reached = len(p.announced)
        if reached >= plan.min_reached and len(self.failed()) > plan.abort_share * reached:
            return self._abort(f"{len(self.failed())} of the {reached} vehicles reached rejected or rolled back "
                               f"release {plan.version} (more than {plan.abort_share:.0%}): "
                               + ", ".join(f"{d} {p.outcomes[d]}" for d in self.failed()[:5]))
        if p.phase == "canary":
            for d in plan.canary:
                if d not in p.announced:
                    self._announce(publish, d, now)
            if all(p.outcomes.get(d) == "succeeded" for d in plan.canary):
                p.phase = "rest"
                self.save()
            else:
                return p.phase
        rest = [d for d in plan.devices if d not in p.announced]
        if rest and now - p.last_announce >= 60.0 / plan.rate:
            self._announce(publish, rest[0], now)
            rest = rest[1:]
        if not rest and all(p.outcomes.get(d) in ("succeeded", *FAILED) for d in plan.devices):
            publish(contract.FLEET_RELEASE_TOPIC, self._payload(), True)  # vehicles that join later
            for d in plan.devices:
                publish(f"roadseg/{d}/{contract.RELEASE_KIND}", b"", True)  # the fleet's is theirs now
            p.phase = "done"
            self.save()
        return p.phase

    def _payload(self) -> bytes:
        return json.dumps(contract.announcement(self.plan.version, self.plan.target, self.plan.repo)).encode()

    def _announce(self, publish: Publish, device: str, now: float) -> None:
        publish(f"roadseg/{device}/{contract.RELEASE_KIND}", self._payload(), True)
        self.progress.announced[device] = now
        self.progress.last_announce = now
        self.save()

    def _abort(self, reason: str) -> str:
        self.progress.phase, self.progress.reason = "aborted", reason
        self.save()
        return "aborted"

    def abort(self, reason: str = "aborted by the operator") -> None:
        """Stop announcing (the vehicles reached keep what they were told)."""
        if self.progress.phase not in ("done", "aborted"):
            self._abort(reason)

    def describe(self) -> dict:
        """Phase, reason and each vehicle's outcome (None: not reached yet)."""
        return {"version": self.plan.version, "phase": self.progress.phase, "reason": self.progress.reason,
                "vehicles": {d: (self.progress.outcomes.get(d) or ("announced" if d in self.progress.announced
                                                                   else None)) for d in self.plan.devices}}


def rollback(publish: Publish, version: int, target: str, repo: str, devices: list[str] = ()) -> None:
    """Point the whole fleet at release ``version`` (``target`` in ``repo``): fleet-wide, retained,
    and each of ``devices``' overrides cleared so the fleet's applies. Raises ReleaseError."""
    payload = json.dumps(contract.announcement(version, target, repo)).encode()
    publish(contract.FLEET_RELEASE_TOPIC, payload, True)
    for d in devices:
        publish(f"roadseg/{d}/{contract.RELEASE_KIND}", b"", True)
