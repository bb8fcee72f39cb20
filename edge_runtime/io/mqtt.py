"""The vehicle's MQTT publisher (paho-mqtt 2.x): :class:`MqttPublisher`
(:class:`NullPublisher` for benchmarks). Its settings live in
:mod:`edge_runtime.io.mqtt_settings`, its credentials in
:mod:`edge_runtime.io.credentials`, what a failed connection means in
:mod:`edge_runtime.io.mqtt_causes`, the installation id in
:mod:`edge_runtime.io.identity`.

Topics under ``<prefix>`` (default ``roadseg/<device-id>``):

* ``<prefix>/status``   retained ``{"state": "online"|"offline"|"camera_lost", ...}``;
  the Last Will publishes ``offline`` (retained) if the process dies, and a
  clean stop publishes it too.
* ``<prefix>/coverage`` one summary per publish interval (QoS 1 by default).
* ``<prefix>/stats``    health every stats interval.
* ``<prefix>/snapshot`` a retained JPEG, QoS 0: never queued, never resent.

What the broker could refuse is checked before it is sent: the topic prefix
at start (no wildcards, NUL, control characters, ``$`` or empty levels), then
each message's size against the largest packet the broker accepts (MQTT 5
CONNACK Maximum Packet Size, and ``mqtt_max_packet_kb``), its QoS and retain
flag against what the CONNACK allows. A refusal is handled once: a PUBACK
with a failure reason is counted (``refused``), logged and never resent. A
message the broker answers by closing the connection is dropped the second
time it is the oldest unacknowledged one when that happens: mosquitto's
``message_size_limit`` answers an MQTT 5 QoS 1 message with PUBACK reason
0x95, which MQTT 5 does not allow in a PUBACK (OASIS MQTT 5.0, 3.4.2.1), so
paho closes the connection and would resend it after every reconnection.

Connection failures are named (CONNACK reason, TLS or network error) in one
rate-limited line and kept in ``counts["last_error"]``. The client id is
unique per installation (:func:`edge_runtime.io.identity.installation_id`); a session taken over by
another client with the same id (one device id on two vehicles, a cloned SD
card) is reported as "another client is using device id X" with a growing
back-off instead of a reconnection fight.

While the broker is away, messages wait in the :class:`~edge_runtime.io.outbox.Outbox`
(on disk in ``state_dir``: kept over a power cut, replayed in order at the
next start). Credentials come from the environment or a file, never from
the command line or the logs.
"""
from __future__ import annotations

import collections
import json
import logging
import sqlite3
import ssl
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from edge_runtime.contract import payloads
from edge_runtime.io.identity import ClashGuard, installation_id
from edge_runtime.io.mqtt_causes import (KEEPALIVE_TIMEOUT, REFUSAL_REASONS, SESSION_TAKEN_OVER, closed_before_connack,
                                         connack_cause, connect_error_cause)
from edge_runtime.io.mqtt_settings import MAX_ERROR_CHARS, MQTT_MAX_PACKET, MqttSettings
from edge_runtime.io.outbox import Outbox, OutboxBusy
from edge_runtime.io.throttle import Throttled

log = logging.getLogger("roadseg.mqtt")


def packet_size(topic: str, payload_bytes: int, qos: int, mqtt5: bool) -> int:
    """Bytes of a PUBLISH packet without properties (OASIS MQTT 5.0 and 3.1.1, 3.3):
    fixed header (1 byte + Remaining Length, 1 to 4 bytes) + topic (2 + UTF-8
    bytes) + packet id (2, QoS > 0) + property length (1, MQTT 5) + payload."""
    remaining = 2 + len(topic.encode()) + (2 if qos else 0) + (1 if mqtt5 else 0) + payload_bytes
    header = 1 + next(n for n, top in ((1, 128), (2, 16_384), (3, 2_097_152), (4, 1 << 62)) if remaining < top)
    return header + remaining


# -- the publisher -------------------------------------------------------------------------------

@dataclass
class _InFlight:
    topic: str
    size: int
    row_id: int | None
    strikes: int = 0


@dataclass
class _Subscription:
    topic: str
    callback: Callable[[bytes], None]
    max_bytes: int
    min_interval: float
    last: float = -float("inf")
    counted: bool = True  # a request (counted in ``requests``), not the publisher's own bookkeeping


class MqttPublisher:
    """Publishes through paho; see the module docstring for what it checks.

    ``counts`` (the ``mqtt`` block of ``stats``): ``queued`` messages
    waiting now, ``queued_total`` ever queued, ``sent`` delivered (acknowledged
    at QoS >= 1), ``dropped`` (oldest, when the queue was full), ``skipped``
    (not queued while the broker was away: snapshots), ``refused`` (the broker
    refused them), ``oversize`` (larger than the broker accepts: not sent),
    ``requests`` / ``requests_limited`` / ``requests_oversize`` (messages
    received on subscribed topics: served, under their minimum interval,
    too large), ``connections`` (accepted by the broker), ``connect_failures``;
    ``connected`` and ``last_error``.

    ``credentials``: ``(username, password)`` (:func:`credentials_from_env`).
    Raises ValueError for settings it cannot use (bad TLS files)."""

    #: seconds between reconnection attempts (min, max) after a lost connection
    RECONNECT_DELAY = (1, 2)
    #: after a refused connection (credentials, TLS): the broker will not change its mind every second
    REFUSED_DELAY = (5, 60)
    #: after a session takeover: first back-off in seconds, doubled each time up to TAKEOVER_MAX
    TAKEOVER_DELAY, TAKEOVER_MAX = 30, 300
    #: a connection closed this soon (s) after CONNACK, TAKEOVER_STRIKES times in a row, is a takeover fight
    SHORT_SESSION, TAKEOVER_STRIKES = 3.0, 3
    #: QoS >= 1 messages unacknowledged at once (also capped by the CONNACK's Receive Maximum)
    WINDOW = 20
    #: messages received on a subscribed topic larger than this (bytes) are ignored
    MAX_REQUEST_BYTES = 4096

    def __init__(self, settings: MqttSettings, credentials: tuple[str | None, str | None] = (None, None)):
        self.s = settings
        self._user, self._password = credentials
        self._tls = settings.tls_context()
        self.installation = installation_id(settings.state_dir)
        self._clash_actions: collections.deque = collections.deque(maxlen=8)
        self.client_id = settings.mqtt_client_id or f"roadseg-{settings.device_id}-{self.installation}"
        self.clash = ClashGuard(self.installation, payloads.now())
        self._attempt_at = 0.0
        self.outbox = self._open_outbox()
        self._counts = dict.fromkeys(("queued_total", "sent", "skipped", "refused", "oversize", "requests",
                                      "requests_limited", "requests_oversize", "connections", "connect_failures"), 0)
        self.last_error: str | None = None
        self._link_errors: collections.deque[str] = collections.deque(maxlen=4)  # causes a connection clears
        self._lock = threading.Lock()          # publish() and the worker: one order of sending
        self._ack_lock = threading.Condition()  # in-flight bookkeeping (paho's thread takes only this one)
        self._inflight: collections.OrderedDict[int, _InFlight] = collections.OrderedDict()
        self._early: collections.OrderedDict[int, object] = collections.OrderedDict()  # acks before publish() returned
        self._retained: dict[str, tuple[bytes, int]] = {}  # latest retained message per topic while offline
        self._connected = threading.Event()
        self._wake = threading.Event()
        self._announce_wanted = False
        self._connack_seen = False
        self._connected_at = 0.0
        self._short_sessions = self._takeovers = self._disconnects = 0
        self._unplaced: tuple[int, str] | None = None  # a refusal that found nothing in flight yet
        self._delay = self.RECONNECT_DELAY
        self._max_packet, self._max_qos, self._retain_ok, self._window = self._limits(None)
        self._status: dict = {}
        self._state, self._state_extra = "online", {}
        self._subs: list[_Subscription] = []
        self._client = None
        self._worker: threading.Thread | None = None
        self._stopping = self._closed = False
        self._throttle = Throttled()
        self.on_connected: list[Callable[[], None]] = []  # run on the worker thread after every (re)connection

    def _open_outbox(self) -> Outbox:
        path = None
        if self.s.state_dir:
            path = Path(self.s.state_dir) / f"outbox-{self.s.device_id}.sqlite"
        max_bytes = int(self.s.queue_max_mb * 1024 * 1024)
        try:
            box = Outbox(path, max_bytes, self.s.max_queued)
        except (OutboxBusy, OSError, sqlite3.Error) as e:
            log.warning("offline queue kept in memory (lost at a power cut): %s", e)
            return Outbox(None, max_bytes, self.s.max_queued)
        if len(box):
            log.info("MQTT: %d messages from the last run wait in %s; delivered first", len(box), path)
        return box

    @property
    def counts(self) -> dict:
        """The counters above, with ``connected`` (bool) and ``last_error`` (str or None)."""
        error = self.last_error
        if error is not None and len(error) > MAX_ERROR_CHARS:  # the stats schema bounds its strings
            error = error[:MAX_ERROR_CHARS - 1] + "…"
        return {"queued": len(self.outbox) + len(self._retained), "dropped": self.outbox.dropped, **self._counts,
                "connected": self.connected, "last_error": error}

    @property
    def connected(self) -> bool:
        """True while the broker has accepted the connection."""
        return self._connected.is_set()

    def topic(self, kind: str) -> str:
        """``<prefix>/<kind>``."""
        return f"{self.s.prefix}/{kind}"

    def next_seq(self) -> int:
        """The next ``seq`` of this device's summaries, continued across restarts (Outbox.next_seq)."""
        return self.outbox.next_seq()

    def payload_limit(self, kind: str, qos: int = 0) -> int:
        """The largest payload in bytes the broker accepts on ``kind``'s topic at ``qos`` now."""
        topic = self.topic(kind) if "/" not in kind else kind
        mqtt5 = self.s.mqtt_protocol == "5"
        limit = self._max_packet - packet_size(topic, 0, qos, mqtt5)
        while limit > 0 and packet_size(topic, limit, qos, mqtt5) > self._max_packet:
            limit -= 1  # a longer Remaining Length field (at most 3 more bytes)
        return limit

    def delivery_problem(self) -> str | None:
        """One line when nothing at all was delivered (no message acknowledged), else None."""
        if self._counts["sent"]:
            return None
        kept = f"; {len(self.outbox)} messages kept in {self.outbox.path} for the next start" \
            if self.outbox.path and len(self.outbox) else ""
        return (f"nothing was delivered to the MQTT broker {self.s.host}:{self.s.mqtt_port}: "
                f"{self.last_error or 'it never accepted the connection'}{kept}")

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self, status: dict | None = None) -> None:
        """Connect in the background (paho's thread) with ``status`` (extra
        fields of every ``status`` message: model, source, ...) as the online
        announcement; the Last Will says ``offline``."""
        import paho.mqtt.client as mqtt
        self._status = status or {}
        self._subs.append(_Subscription(self.topic("status"), self._on_own_status, payloads.MAX_BYTES["status"], 0.0,
                                        counted=False))
        proto = mqtt.MQTTv5 if self.s.mqtt_protocol == "5" else mqtt.MQTTv311
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=proto)
        c.will_set(self.topic("status"), json.dumps(self._status_payload("offline", reason="lost")), qos=1,
                   retain=True)
        if self._tls is not None:
            c.tls_set_context(self._tls)
        if self._user:
            c.username_pw_set(self._user, self._password)
        c.reconnect_delay_set(*self._delay)
        c.max_queued_messages_set(0)  # the Outbox bounds what waits
        c.max_inflight_messages_set(self.WINDOW)
        c.suppress_exceptions = True  # a callback's exception is logged by paho, never kills its thread
        c.on_pre_connect, c.on_connect = self._on_pre_connect, self._on_connect
        c.on_connect_fail = self._on_connect_fail
        c.on_disconnect, c.on_publish = self._on_disconnect, self._on_publish
        for sub in self._subs:
            c.message_callback_add(sub.topic, self._receiver(sub))
        self._client = c
        # one long-lived worker, not a thread per reconnection: a process that runs for days must not create
        # threads (and their malloc arenas) for every broker outage
        self._worker = threading.Thread(target=self._work, name="mqtt-worker", daemon=True)
        self._worker.start()
        log.info("MQTT %s:%d (MQTT %s%s) as %s, topics %s/{status,coverage,stats}; offline queue %s",
                 self.s.host, self.s.mqtt_port, self.s.mqtt_protocol, ", TLS" if self._tls else "", self.client_id,
                 self.s.prefix, self.outbox.path or "in memory")
        c.connect_async(self.s.host, self.s.mqtt_port, keepalive=self.s.mqtt_keepalive)
        c.loop_start()

    def wait_connected(self, timeout: float) -> bool:
        """Block until connected (True) or ``timeout`` seconds passed (False)."""
        return self._connected.wait(timeout)

    def wait_until(self, predicate: Callable[[dict], bool], timeout: float) -> bool:
        """Block until ``predicate(counts)`` holds, woken by every acknowledgement,
        connection, disconnection, failure and received request; False on timeout."""
        with self._ack_lock:
            return self._ack_lock.wait_for(lambda: predicate(self.counts), timeout)

    def stop(self, timeout: float = 5.0) -> None:
        """Publish ``offline`` (retained), deliver what waits within ``timeout``
        seconds (also waiting for a first connection still being made), then
        disconnect cleanly (the broker drops the Last Will). What is left stays
        in the Outbox: on disk, it is delivered at the next start."""
        if self._client is None:
            return
        # the state and its reason together: a reconnection announced during stop says why it is offline
        self._state, self._state_extra = "offline", {"reason": "stopped"}
        self.publish("status", self._status_payload("offline", reason="stopped"), retain=True)
        self._wake.set()
        with self._ack_lock:
            self._ack_lock.wait_for(self._settled, timeout)
        left = len(self.outbox) + len(self._inflight)
        if left:
            where = f"kept in {self.outbox.path} for the next start" if self.outbox.path else "lost (queue in memory)"
            log.warning("MQTT: %d messages not delivered at stop: %s", left, where)
        self._stopping = True
        self._wake.set()
        self._client.disconnect()
        self._client.loop_stop()
        if self._worker is not None:
            self._worker.join(timeout=5)
        self._client = None
        self._closed = True
        self.outbox.close()

    def _settled(self) -> bool:
        """Nothing left to deliver, or no connection to deliver it (and none being made for the first time)."""
        if not (len(self.outbox) or self._inflight or self._retained):
            return True
        first_try = not self._counts["connect_failures"] and self._connected_at == 0.0
        return not (self._connected.is_set() or first_try)

    def _status_payload(self, state: str, **extra) -> dict:
        return payloads.status(state, self.s.device_id, **self._status, installation=self.installation,
                               started=self.clash.started, **extra)

    def set_status_fields(self, **fields) -> None:
        """Change fields every ``status`` carries (e.g. ``model`` after a swap) and announce the current state again."""
        self._status.update(fields)
        self.set_state(self._state, **self._state_extra)

    def _on_own_status(self, body: bytes) -> None:
        """A status on this device id's own topic (paho's thread): another live
        installation publishing under it is a clash (identity.ClashGuard)."""
        try:
            status = payloads.parse("status", body)
        except (payloads.PayloadError, ValueError):
            return
        action = self.clash.seen(status)
        if action is not None:
            self._clash_actions.append((action, status))  # acted on by the worker, off paho's thread
            self._wake.set()

    def _act_on_clash(self, action: str, status) -> None:
        if action == "yield":
            self.last_error = (f"device id {self.s.device_id} is in use by another live installation "
                               f"({self.clash.holder}, started {getattr(status, 'started', None) or 'earlier'})")
            log.error("MQTT: %s: this installation (%s) publishes nothing under %s until it goes offline; give each "
                      "vehicle its own --device-id", self.last_error, self.installation, self.s.prefix)
            self.publish("clash", payloads.clash(self.s.device_id, self.installation, self.clash.holder), retain=True)
        elif action == "resume":
            log.warning("MQTT: installation %s went offline: publishing under %s again",
                        status.installation, self.s.prefix)
            self.last_error = None
            self.publish("clash", b"", retain=True)
            self.set_state(self._state, **self._state_extra)
        elif action == "reassert":
            self.set_state(self._state, **self._state_extra)

    def set_state(self, state: str, **extra) -> None:
        """Publish a new retained ``status`` (e.g. ``camera_lost``, then
        ``online`` again); it is also what a reconnection announces."""
        self._state, self._state_extra = state, extra
        self.publish("status", self._status_payload(state, **extra), retain=True)

    def subscribe(self, topic: str, callback: Callable[[bytes], None], *, min_interval: float = 0.0,
                  max_bytes: int = MAX_REQUEST_BYTES) -> None:
        """``callback(payload)`` on paho's thread for messages on ``topic``
        (subscribed again after every reconnection). A message over
        ``max_bytes`` bytes, or less than ``min_interval`` seconds after the
        last one served, is counted (``requests_oversize``,
        ``requests_limited``) and not served; an exception in ``callback`` is
        logged, never raised into paho."""
        sub = _Subscription(topic, callback, max_bytes, min_interval)
        self._subs.append(sub)
        if self._client is not None:
            self._client.message_callback_add(topic, self._receiver(sub))
            if self.connected:
                self._client.subscribe(topic, qos=min(1, self._max_qos))

    # -- publishing ------------------------------------------------------------------------------
    def publish(self, kind: str, payload: dict | bytes, retain: bool = False, queue: bool = True,
                qos: int | None = None) -> bool:
        """Send ``payload`` (a dict, sent as JSON, or bytes) on ``<prefix>/<kind>``
        (or on ``kind`` itself when it holds a ``/``) at ``qos`` (default
        ``mqtt_qos``), or queue it while the broker is away. ``queue=False``:
        dropped (``skipped``) rather than queued. A retained message waits as
        the latest of its topic only. Returns False when it was neither sent
        nor queued (too large for the broker: ``oversize``; skipped; dropped)."""
        topic = self.topic(kind) if "/" not in kind else kind
        if self.clash.yielding and topic != self.topic("clash"):
            self._counts["withheld"] = self._counts.get("withheld", 0) + 1  # another installation holds the id
            return False
        body = bytes(payload) if isinstance(payload, (bytes, bytearray)) else json.dumps(payload).encode()
        qos = self.s.mqtt_qos if qos is None else qos
        if self._closed or not self._fits(topic, body, qos):
            return False
        with self._lock:
            backlog = self._retained or self.outbox.waiting or len(self._inflight) >= self._window
            if self._connected.is_set() and (not backlog or not queue) and self._send(topic, body, qos, retain):
                return True
            if not queue:
                self._counts["skipped"] += 1
                return False
            if retain:
                self._retained[topic] = (body, qos)
            elif not self._enqueue(topic, body, qos):
                return False
        self._wake.set()
        return True

    def _fits(self, topic: str, body: bytes, qos: int) -> bool:
        size = packet_size(topic, len(body), min(qos, self._max_qos), self.s.mqtt_protocol == "5")
        if size <= self._max_packet:
            return True
        self._counts["oversize"] += 1
        self.last_error = (f"a {size}-byte message on {topic} is over the {self._max_packet} bytes the broker "
                           f"accepts: not sent")
        self._throttle.warn("oversize", f"MQTT: {self.last_error} (the smaller of the broker's Maximum Packet Size "
                                        f"and --mqtt-max-packet-kb {self.s.mqtt_max_packet_kb})")
        return False

    def _enqueue(self, topic: str, body: bytes, qos: int) -> bool:
        before = self.outbox.dropped
        try:
            queued = self.outbox.append(topic, body, qos)
        except sqlite3.Error as e:  # a full or failing disk: this message is lost, the loop goes on
            self.outbox.dropped += 1
            self._throttle.warn("queue-write", f"MQTT: cannot queue a message in {self.outbox.path}: {e}")
            return False
        if queued:
            self._counts["queued_total"] += 1
        if self.outbox.dropped > before:
            self._throttle.warn("queue-full", f"MQTT queue full (--max-queued {self.s.max_queued}, --queue-max-mb "
                                              f"{self.s.queue_max_mb:g}): dropped the oldest, {self.outbox.dropped} "
                                              f"in all")
        return queued

    def _send(self, topic: str, body: bytes, qos: int, retain: bool, row_id: int | None = None) -> bool:
        """Hand one message to paho (caller holds ``_lock``); False when it was not taken (no connection, QoS 0)."""
        import paho.mqtt.client as mqtt
        qos = min(qos, self._max_qos)
        before = self._disconnects
        info = self._client.publish(topic, body, qos=qos, retain=retain and self._retain_ok)
        if qos == 0:
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                return False
            with self._ack_lock:
                self._counts["sent"] += 1
            if row_id is not None:
                self.outbox.remove(row_id)
            return True
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):  # NO_CONN: paho keeps it for the reconnection
            return False
        out = None
        with self._ack_lock:
            msg = _InFlight(topic, len(body), row_id)
            if info.mid in self._early:
                self._settle(msg, self._early.pop(info.mid))
            else:
                self._inflight[info.mid] = msg
                unplaced, self._unplaced = self._unplaced, None
                if unplaced and unplaced[0] > before and next(iter(self._inflight)) == info.mid:
                    reason = unplaced[1]  # the broker hung up over this one before publish() returned
                    out = self._strike_first()
        if out is not None:
            self._drop_refused(*out, reason)
        return True

    def _settle(self, msg: _InFlight, reason) -> None:
        """An acknowledgement (caller holds ``_ack_lock``): delivered, or refused by the broker (never resent)."""
        if getattr(reason, "is_failure", False):
            self._counts["refused"] += 1
            self.last_error = f"the broker refused a {msg.size}-byte message on {msg.topic}: {reason}"
            self._throttle.warn(f"refused:{msg.topic}", f"MQTT: {self.last_error}; counted as refused, not resent")
        else:
            self._counts["sent"] += 1
        if msg.row_id is not None:
            self.outbox.remove(msg.row_id)
        self._ack_lock.notify_all()

    # -- the worker: announcements and the queue, off paho's thread --------------------------------
    def _work(self) -> None:
        while not self._stopping:
            self._wake.wait(0.5)
            self._wake.clear()
            if self._stopping or not self._connected.is_set():
                continue
            try:
                while self._clash_actions:
                    self._act_on_clash(*self._clash_actions.popleft())
                if self._announce_wanted:
                    self._announce_wanted = False
                    self._announce()
                self._flush()
            except Exception as e:  # never let the worker die: the next wake-up tries again
                self._throttle.warn("worker", f"MQTT worker: {type(e).__name__}: {e}")

    def _announce(self) -> None:
        """After each connection: the subscriptions, then the current status (the
        broker handles them in order, so whoever sees the status can send
        requests), then the on_connected hooks."""
        for sub in self._subs:
            self._client.subscribe(sub.topic, qos=min(1, self._max_qos))
        extra = self._state_extra if self._state != "online" else {}
        with self._lock:
            self._retained.pop(self.topic("status"), None)
            self._send(self.topic("status"), json.dumps(self._status_payload(self._state, **extra)).encode(),
                       1, True)
        if len(self.outbox):
            log.info("MQTT: delivering %d queued messages", len(self.outbox))
        for fn in list(self.on_connected):
            fn()

    def _flush(self) -> None:
        """Retained messages waiting, then the queue in order, at most ``_window`` unacknowledged."""
        with self._lock:
            for topic, (body, qos) in list(self._retained.items()):
                if not self._send(topic, body, qos, True):
                    return
                del self._retained[topic]
            while self._connected.is_set() and (room := self._window - len(self._inflight)) > 0:
                rows = self.outbox.take(room)
                for row in rows:
                    if not self._send(row.topic, row.payload, row.qos, False, row.id):
                        self.outbox.give_back(row.id)
                        return
                if not rows:
                    break
        with self._ack_lock:
            self._ack_lock.notify_all()

    # -- paho's callbacks (its network thread: bookkeeping only, never raise) -------------------------
    def _on_pre_connect(self, client, userdata) -> None:
        self._attempt_at = time.monotonic()
        self._connack_seen = False

    def _on_connect(self, client, userdata, flags, reason_code, properties=None) -> None:
        try:
            self._connack_seen = True
            if reason_code.is_failure:
                self._fail(connack_cause(reason_code.value, str(reason_code), self.s, self.client_id, self._user),
                           self.REFUSED_DELAY)
                return
            self._max_packet, self._max_qos, self._retain_ok, self._window = self._limits(properties)
            if self._delay == self.REFUSED_DELAY:  # a takeover back-off stays until a connection lasts
                self._set_delay(self.RECONNECT_DELAY)
            self._connected_at = time.monotonic()
            self._counts["connections"] += 1
            if self.last_error is not None and self.last_error in self._link_errors:
                self.last_error = None  # the outage is over: the dashboard shows the current state, not a stale cause
            self._connected.set()
            with self._ack_lock:
                self._ack_lock.notify_all()
            self._announce_wanted = True
            self._wake.set()
            log.info("MQTT connected to %s:%d", self.s.host, self.s.mqtt_port)
        except Exception as e:
            self._throttle.warn("callback", f"MQTT on_connect: {type(e).__name__}: {e}")

    def _limits(self, properties) -> tuple[int, int, bool, int]:
        """(max packet bytes, max QoS, retain available, window) from a CONNACK's properties (None: defaults)."""
        ours = self.s.mqtt_max_packet_kb * 1024
        theirs = getattr(properties, "MaximumPacketSize", None)
        receive = getattr(properties, "ReceiveMaximum", None)
        return (min(ours, theirs) if theirs else ours, getattr(properties, "MaximumQoS", 2),
                bool(getattr(properties, "RetainAvailable", 1)), min(self.WINDOW, receive or self.WINDOW))

    def _on_connect_fail(self, client, userdata) -> None:
        try:  # paho calls this inside its `except OSError` block: the error is sys.exc_info()'s
            err = sys.exc_info()[1]
            self._fail(connect_error_cause(err, self.s),
                       self.REFUSED_DELAY if isinstance(err, ssl.SSLError) else self.RECONNECT_DELAY)
        except Exception as e:
            self._throttle.warn("callback", f"MQTT on_connect_fail: {type(e).__name__}: {e}")

    def _fail(self, cause: str, delay: tuple[int, int]) -> None:
        """A connection attempt failed: remember and report ``cause`` (rate-limited), retry after ``delay``."""
        self._counts["connect_failures"] += 1
        self.last_error = cause
        self._link_errors.append(cause)
        self._set_delay(delay)
        with self._ack_lock:
            self._ack_lock.notify_all()  # stop() waits for a first connection only until it fails
        self._throttle.warn(f"connect:{cause}", f"MQTT {self.s.host}:{self.s.mqtt_port}: {cause}; retrying every "
                                                f"{delay[0]}-{delay[1]} s, {len(self.outbox)} messages queued")

    def _set_delay(self, delay: tuple[int, int]) -> None:
        if delay != self._delay and self._client is not None:
            self._delay = delay
            self._client.reconnect_delay_set(*delay)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties=None) -> None:
        try:
            was = self._connected.is_set()
            self._connected.clear()
            with self._ack_lock:
                self._ack_lock.notify_all()
            if self._stopping:
                return
            if not was:
                if not self._connack_seen:
                    waited = time.monotonic() - self._attempt_at
                    silent = reason_code.value == KEEPALIVE_TIMEOUT or waited >= 0.9 * self.s.mqtt_keepalive
                    if silent and self._counts["connections"]:
                        # it answered before in this protocol: no answer now is a network gone without a FIN
                        self._fail(f"unreachable: no answer from {self.s.host}:{self.s.mqtt_port} for {waited:.0f} s "
                                   f"(the network is down or drops packets)", self.RECONNECT_DELAY)
                    else:
                        self._fail(closed_before_connack(self.s), self.REFUSED_DELAY)
                return
            lasted = time.monotonic() - self._connected_at
            if reason_code.value in REFUSAL_REASONS:
                self._strike_oldest(str(reason_code))
            elif not self._takeover(reason_code.value, lasted):
                self.last_error = f"disconnected after {lasted:.0f} s: {reason_code}"
                self._link_errors.append(self.last_error)
                self._throttle.warn("disconnect", f"MQTT {self.last_error}; queueing up to {self.s.max_queued} "
                                                  f"messages, reconnecting with backoff")
        except Exception as e:
            self._throttle.warn("callback", f"MQTT on_disconnect: {type(e).__name__}: {e}")

    def _takeover(self, reason: int, lasted: float) -> bool:
        """Count connections closed right after they were accepted; True (and a
        back-off) when another client is taking this client id's session."""
        if reason != SESSION_TAKEN_OVER and lasted >= self.SHORT_SESSION:
            self._short_sessions = self._takeovers = 0
            self._set_delay(self.RECONNECT_DELAY)
            return False
        self._short_sessions += 1
        if reason != SESSION_TAKEN_OVER and self._short_sessions < self.TAKEOVER_STRIKES:
            return False
        self._short_sessions = 0
        self._takeovers += 1
        delay = min(self.TAKEOVER_DELAY * 2 ** (self._takeovers - 1), self.TAKEOVER_MAX)
        self._set_delay((delay, delay))
        self.last_error = (f"another client is using device id {self.s.device_id} (client id {self.client_id}): the "
                           f"broker closed this connection {lasted:.1f} s after accepting it; backing off {delay} s")
        self._throttle.warn("takeover", f"MQTT: {self.last_error} (two vehicles with one --device-id, or a cloned "
                                        f"SD card: give each its own id)")
        return True

    def _strike_oldest(self, reason: str) -> None:
        """The broker closed the connection over something this client sent: the
        oldest unacknowledged message (acknowledgements come in order) is the
        suspect; the second time it is, it is dropped rather than resent. When
        nothing is registered in flight yet (the refusal overtook publish()'s
        return), the strike waits for that registration (:meth:`_send`)."""
        with self._ack_lock:
            self._disconnects += 1
            if not self._inflight:
                self._unplaced = (self._disconnects, reason)
                return
            out = self._strike_first()
        if out is not None:
            self._drop_refused(*out, reason)

    def _strike_first(self) -> tuple[int, _InFlight] | None:
        """(Caller holds ``_ack_lock``.) One strike to the oldest in flight; ``(mid, message)`` at its second."""
        mid, msg = next(iter(self._inflight.items()))
        msg.strikes += 1
        if msg.strikes < 2:
            return None
        del self._inflight[mid]
        self._counts["refused"] += 1
        if msg.row_id is not None:
            self.outbox.remove(msg.row_id)
        return mid, msg

    def _drop_refused(self, mid: int, msg: _InFlight, reason: str) -> None:
        _forget(self._client, mid)
        self.last_error = f"the broker refused a {msg.size}-byte message on {msg.topic} ({reason})"
        self._throttle.warn(f"refused:{msg.topic}", f"MQTT: {self.last_error} by closing the connection twice: "
                                                    f"dropped, not resent (over the broker's size limit? set "
                                                    f"--mqtt-max-packet-kb to it)")

    def _on_publish(self, client, userdata, mid, reason_code=None, properties=None) -> None:
        try:
            with self._ack_lock:
                msg = self._inflight.pop(mid, None)
                if msg is not None:
                    self._settle(msg, reason_code)
                else:  # acknowledged before publish() returned (or a QoS 0 message): kept briefly
                    self._early[mid] = reason_code
                    while len(self._early) > 64:
                        self._early.popitem(last=False)
            self._wake.set()
        except Exception as e:
            self._throttle.warn("callback", f"MQTT on_publish: {type(e).__name__}: {e}")

    def _receiver(self, sub: _Subscription):
        def on_message(client, userdata, msg):
            try:
                now = time.monotonic()
                if len(msg.payload) > sub.max_bytes:
                    self._counts["requests_oversize"] += 1
                    self._throttle.warn(f"request-size:{sub.topic}",
                                        f"MQTT: ignored a {len(msg.payload)}-byte message on {msg.topic} (at most "
                                        f"{sub.max_bytes})")
                elif now - sub.last < sub.min_interval:
                    self._counts["requests_limited"] += 1
                    self._throttle.warn(f"request-rate:{sub.topic}", f"MQTT: requests on {msg.topic} come faster "
                                                                     f"than one per {sub.min_interval:g} s: counted, "
                                                                     f"not served")
                else:
                    sub.last = now
                    self._counts["requests"] += sub.counted
                    sub.callback(msg.payload)
                with self._ack_lock:
                    self._ack_lock.notify_all()
            except Exception as e:  # never into paho's thread
                self._throttle.warn("callback", f"MQTT message on {sub.topic}: {type(e).__name__}: {e}")
        return on_message


def _forget(client, mid: int) -> bool:
    """Remove ``mid`` from paho's resend list so a refused message is not sent
    again after the reconnection. paho has no public call for this; its
    ``_out_messages`` / ``_out_message_mutex`` exist in paho 1.x and 2.x.
    False when they are missing (a future paho): then it may be resent."""
    store, lock = getattr(client, "_out_messages", None), getattr(client, "_out_message_mutex", None)
    if store is None or lock is None:
        return False
    with lock:
        return store.pop(mid, None) is not None


class NullPublisher:
    """The publisher's interface, publishing nothing (benchmarks, tests of the loop alone)."""

    def __init__(self):
        self.counts = {"queued": 0, "sent": 0, "dropped": 0, "connected": True, "last_error": None}
        self._seq = 0

    def start(self, status: dict | None = None) -> None:
        """Nothing to start."""

    def set_state(self, state: str, **extra) -> None:
        """Nothing to announce."""

    def publish(self, kind: str, payload: dict | bytes, retain: bool = False, queue: bool = True,
                qos: int | None = None) -> bool:
        """Serialize ``payload`` (the cost is part of the pipeline) and count it as sent."""
        if not isinstance(payload, (bytes, bytearray)):
            json.dumps(payload)
        self.counts["sent"] += 1
        return True

    def subscribe(self, topic: str, callback, **limits) -> None:
        """Nothing arrives."""

    def next_seq(self) -> int:
        """1, 2, ... (in memory)."""
        self._seq += 1
        return self._seq

    def payload_limit(self, kind: str, qos: int = 0) -> int:
        """No broker: MQTT's own limit."""
        return MQTT_MAX_PACKET

    def delivery_problem(self) -> str | None:
        """Never a problem."""
        return None

    def stop(self, timeout: float = 5.0) -> None:
        """Nothing to stop."""

    @property
    def connected(self) -> bool:
        """Always True."""
        return True
