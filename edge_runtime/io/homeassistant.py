"""Home Assistant MQTT discovery: one coverage sensor per category.

The retained configs are sent on every (re)connection and whenever Home
Assistant announces itself on ``homeassistant/status`` (its birth message),
so a broker restarted without persistence or a restarted Home Assistant gets
them again. The sensors read ``<prefix>/ha``, published every ``interval``
seconds with values rounded to 0.1 %, so the recorder stores a state a
minute, not one a second per sensor.

Availability follows the retained ``<prefix>/status``: its template maps
``online`` to available and every other state the vehicle publishes
(``offline``, ``camera_lost``, and any state a later version adds) to
unavailable; each sensor also expires (``expire_after``) when no state
arrives for :data:`EXPIRE_INTERVALS` intervals, so a vehicle whose loop has
stalled is not shown as current.
"""
from __future__ import annotations

import logging
import math
import re

from edge_runtime.contract import payloads

log = logging.getLogger("roadseg.mqtt")

#: a sensor expires after this many ``interval`` s without a state
EXPIRE_INTERVALS = 3


class HomeAssistant:
    """Discovery and sensor states for ``pub`` (an MqttPublisher). ``interval``:
    seconds between sensor updates. Raises ValueError for a device id Home
    Assistant cannot take as an entity id."""

    BIRTH_TOPIC = "homeassistant/status"

    def __init__(self, pub, model_name: str, interval: float = 60.0):
        if not re.fullmatch(r"[A-Za-z0-9_-]+", pub.s.device_id):
            raise ValueError(f"device id {pub.s.device_id!r}: Home Assistant needs letters, digits, _ and - only")
        self.pub, self.model_name, self.interval = pub, model_name, interval
        self.expire_after = max(1, math.ceil(EXPIRE_INTERVALS * interval))
        self.discoveries = 0
        self._last = -float("inf")
        pub.on_connected.append(self.send_discovery)
        pub.subscribe(self.BIRTH_TOPIC, self._on_birth)

    def _on_birth(self, payload: bytes) -> None:
        if payload.decode(errors="replace").strip() == "online":
            log.info("Home Assistant came online: sending discovery again")
            self.send_discovery()

    def send_discovery(self) -> None:
        """Publish the retained discovery config of every category's sensor."""
        from edge_runtime.contract.labels import CATEGORIES
        for c in CATEGORIES:
            uid, cfg = payloads.ha_sensor_config(self.pub.s.device_id, c, self.pub.topic("ha"),
                                                 self.pub.topic("status"), self.model_name,
                                                 expire_after=self.expire_after)
            self.pub.publish(f"homeassistant/sensor/{uid}/config", cfg, retain=True)
        self.discoveries += 1

    def update(self, summary: dict, now: float) -> None:
        """Publish the sensors' state (``summary``: CoverageAggregator.summary())
        when ``interval`` seconds have passed since the last (``now``: time.monotonic())."""
        if now - self._last >= self.interval:
            self._last = now
            self.pub.publish("ha", payloads.ha_state(summary))
