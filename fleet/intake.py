"""The gate every broker message passes before a fleet reader uses it.

A topic ``roadseg/<device-id>/<kind>`` names its sender; the id must be one
``roadseg-run`` would accept, the payload at most
:data:`edge_runtime.contract.payloads.MAX_BYTES` of its kind (checked before
anything parses it), then valid against the kind's model, whose ``device_id``
must be the topic's. A snapshot is at most its cap and starts like a JPEG
(readers that decode it check its header first: :mod:`fleet.dashboard.snapshot`).
What fails is dropped and counted per sender (:meth:`Intake.drops`), in a table
bounded in senders, so a flood of made-up ids cannot grow it. The ``model``
kind is a vehicle's model-update state (:class:`edge_runtime.contract.payloads.ModelState`,
retained on ``roadseg/<id>/model``): one claiming another vehicle's id is dropped
like any other payload.
"""
from __future__ import annotations

import re
import threading
from dataclasses import dataclass

from edge_runtime.contract import payloads
from fleet.text import clean

#: senders whose drops are counted one by one; the rest are summed under :data:`OTHERS`
MAX_SENDERS = 1000
OTHERS = "(other senders)"
INVALID_ID = "(invalid device id)"


class Dropped(ValueError):
    """A message refused by the gate; ``sender`` is the topic's device id (or
    :data:`INVALID_ID`), ``str()`` one line of why, never the payload."""

    def __init__(self, sender: str, reason: str):
        super().__init__(reason)
        self.sender = sender


@dataclass(frozen=True)
class Message:
    """A message that passed the gate: ``payload`` is the kind's model, or the
    JPEG bytes of a ``snapshot``; ``size`` in bytes as received."""
    device: str
    kind: str
    payload: object
    retained: bool
    size: int


@dataclass
class SenderDrops:
    """Messages dropped from one sender: how many, and the last reason (one line)."""
    count: int = 0
    last_reason: str = ""


class Intake:
    """Checks messages on ``<prefix>/<id>/<kind>`` for ``kinds`` (any of
    :data:`edge_runtime.contract.payloads.MODELS` and ``snapshot``). Thread-safe."""

    def __init__(self, kinds: tuple[str, ...] = ("status", "coverage", "stats", "snapshot"), prefix: str = "roadseg"):
        unknown = set(kinds) - set(payloads.MODELS) - {"snapshot"}
        if unknown:
            raise ValueError(f"no payload model for {sorted(unknown)}; valid: {sorted(payloads.MODELS)}, snapshot")
        self.kinds, self.prefix = tuple(kinds), prefix
        self._drops: dict[str, SenderDrops] = {}
        self._lock = threading.Lock()
        self.dropped_total = 0

    def accept(self, topic: str, body: bytes, retained: bool = False) -> Message | None:
        """The checked message, or None for a topic that is not ``<prefix>/<id>/<kind>``
        with one of :attr:`kinds`, or an empty payload (a cleared retained message).
        Raises :class:`Dropped` (already counted) for anything refused."""
        parts = topic.split("/")
        if len(parts) != 3 or parts[0] != self.prefix or parts[2] not in self.kinds or not body:
            return None
        device, kind = parts[1], parts[2]
        if not re.fullmatch(payloads.DEVICE_ID_PATTERN, device):
            raise self.drop(INVALID_ID, f"topic device id {clean(device, 40)!r} is not 1 to 64 of A-Z a-z 0-9 _ -")
        limit = payloads.MAX_BYTES[kind]
        if len(body) > limit:
            raise self.drop(device, f"{kind}: {len(body)} bytes, more than the {limit} a {kind} may have")
        if kind == "snapshot":
            if bytes(body[:3]) != b"\xff\xd8\xff":
                raise self.drop(device, "snapshot: not a JPEG")
            return Message(device, kind, bytes(body), retained, len(body))
        try:
            model = payloads.parse(kind, bytes(body))
        except payloads.PayloadError as e:
            raise self.drop(device, clean(e, 200)) from None
        if getattr(model, "device_id", device) != device:
            raise self.drop(device, f"{kind}: device_id {model.device_id!r} is not the topic's {device!r}")
        return Message(device, kind, model, retained, len(body))

    def drop(self, sender: str, reason: str) -> Dropped:
        """Count a refused message of ``sender`` (also for checks done after
        :meth:`accept`, e.g. a snapshot's dimensions); returns the exception to raise."""
        reason = clean(reason, 200)
        with self._lock:
            self.dropped_total += 1
            key = sender if sender in self._drops or len(self._drops) < MAX_SENDERS else OTHERS
            d = self._drops.setdefault(key, SenderDrops())
            d.count += 1
            d.last_reason = reason
        return Dropped(sender, reason)

    def drops(self) -> list[tuple[str, SenderDrops]]:
        """``(sender, counts)`` of every sender with dropped messages, most first."""
        with self._lock:
            items = [(k, SenderDrops(v.count, v.last_reason)) for k, v in self._drops.items()]
        return sorted(items, key=lambda kv: -kv[1].count)
