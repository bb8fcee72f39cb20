"""Publishing scene summaries over MQTT (paho-mqtt 2.x).

Topics under ``<prefix>`` (default ``roadseg/<device-id>``):

* ``<prefix>/status``   retained ``{"state": "online"|"offline", ...}``; the
  Last Will publishes ``offline`` (retained) if the process dies, and a clean
  stop publishes it too.
* ``<prefix>/coverage`` one summary per publish interval (QoS 1 by default).
* ``<prefix>/stats``    health every stats interval.

While the broker is away, messages wait in a bounded queue (oldest dropped
and counted) and are delivered after reconnection; paho reconnects with
exponential backoff. Credentials come from the environment or a file, never
from the command line or the logs.
"""
from __future__ import annotations

import asyncio
import collections
import json
import logging
import os
import re
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from edge_runtime.contract import payloads

log = logging.getLogger("roadseg.mqtt")


@dataclass
class MqttSettings:
    host: str = "127.0.0.1"
    port: int = 1883
    device_id: str = "vehicle"
    topic_prefix: str | None = None
    protocol: str = "5"             # "5" or "3.1.1"
    qos: int = 1
    keepalive: int = 15
    max_queued: int = 1000
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    username: str | None = None
    password: str | None = None     # filled from env / file, never from argv

    @property
    def prefix(self) -> str:
        return self.topic_prefix or f"roadseg/{self.device_id}"


def credentials_from_env(password_file: str | None = None) -> tuple[str | None, str | None]:
    """``ROADSEG_MQTT_USERNAME`` and ``ROADSEG_MQTT_PASSWORD`` (or the first
    line of ``password_file`` / ``ROADSEG_MQTT_PASSWORD_FILE``)."""
    user = os.environ.get("ROADSEG_MQTT_USERNAME")
    pw = os.environ.get("ROADSEG_MQTT_PASSWORD")
    pfile = password_file or os.environ.get("ROADSEG_MQTT_PASSWORD_FILE")
    if pfile:
        try:
            pw = Path(pfile).read_text().splitlines()[0].strip()
        except (OSError, IndexError) as e:
            raise ValueError(f"cannot read the MQTT password file {pfile}: {e}") from None
    return user, pw


class NullPublisher:
    """Same interface, publishes nothing (benchmarks)."""

    def __init__(self):
        self.counts = {"queued": 0, "sent": 0, "dropped": 0}

    def start(self, status: dict | None = None) -> None:
        pass

    def set_state(self, state: str, **extra) -> None:
        pass

    def publish(self, kind: str, payload: dict | bytes, retain: bool = False, queue: bool = True) -> None:
        if not isinstance(payload, (bytes, bytearray)):
            json.dumps(payload)  # the serialization cost is part of the pipeline
        self.counts["sent"] += 1

    def subscribe(self, topic: str, callback) -> None:
        pass

    def stop(self, timeout: float = 5.0) -> None:
        pass

    @property
    def connected(self) -> bool:
        return True


class MqttPublisher:
    """Publishes through paho with its own bounded queue. ``counts``:
    ``queued`` waiting now, ``queued_total`` ever queued, ``sent``
    (acknowledged at QoS >= 1), ``dropped`` (oldest, when the queue was full)."""

    #: seconds between reconnection attempts at most: summaries resume soon after the broker returns
    RECONNECT_MAX_DELAY = 2

    def __init__(self, settings: MqttSettings):
        if settings.max_queued < 1:
            raise ValueError(f"max_queued must be at least 1, got {settings.max_queued}")
        self.s = settings
        self._queue: collections.deque = collections.deque()
        self._counts = {"queued_total": 0, "sent": 0, "dropped": 0, "skipped": 0}
        self._lock = threading.Lock()
        self._connected = threading.Event()
        self._inflight: set[int] = set()
        self._status: dict = {}
        self._state = "online"
        self._state_extra: dict = {}
        self._client = None
        self._stopping = False
        self._warned_at = 0.0
        self._dropped_logged = 0
        self._drop_warned_at = 0.0
        self.on_connected = []  # callables run (on paho's thread) after every (re)connection
        self._flush_wanted = threading.Event()
        self._flusher: threading.Thread | None = None
        self.connect_failures = 0

    @property
    def counts(self) -> dict:
        return {"queued": len(self._queue), **self._counts}

    # -- lifecycle -----------------------------------------------------------
    def start(self, status: dict | None = None) -> None:
        import paho.mqtt.client as mqtt
        self._status = status or {}
        proto = {"5": mqtt.MQTTv5, "3.1.1": mqtt.MQTTv311}.get(self.s.protocol)
        if proto is None:
            raise ValueError(f"unknown MQTT protocol {self.s.protocol!r}; valid: 5, 3.1.1")
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"roadseg-{self.s.device_id}-{os.getpid()}",
                        protocol=proto)
        c.will_set(self.topic("status"), json.dumps(self._status_payload("offline", reason="lost")),
                   qos=1, retain=True)
        if self.s.tls_ca or self.s.tls_cert:
            c.tls_set(ca_certs=self.s.tls_ca, certfile=self.s.tls_cert, keyfile=self.s.tls_key)
        if self.s.username:
            c.username_pw_set(self.s.username, self.s.password)
        c.reconnect_delay_set(min_delay=1, max_delay=self.RECONNECT_MAX_DELAY)
        c.max_queued_messages_set(0)  # our own bounded queue holds messages while offline
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_publish = self._on_publish
        c.on_connect_fail = self._on_connect_fail
        self._client = c
        # one long-lived flusher, not a thread per reconnection: a process that runs for days
        # must not create threads (and their malloc arenas) for every broker outage
        self._flusher = threading.Thread(target=self._flush_loop, name="mqtt-flush", daemon=True)
        self._flusher.start()
        c.connect_async(self.s.host, self.s.port, keepalive=self.s.keepalive)
        c.loop_start()
        log.info("MQTT %s:%d (MQTT %s), topics %s/{status,coverage,stats}", self.s.host, self.s.port,
                 self.s.protocol, self.s.prefix)

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def stop(self, timeout: float = 5.0) -> None:
        """Publish ``offline`` (retained), flush the queue within ``timeout``
        and disconnect cleanly (the broker then drops the Last Will)."""
        if self._client is None:
            return
        deadline = time.monotonic() + timeout
        self._state = "offline"
        self.publish("status", self._status_payload("offline", reason="stopped"), retain=True)
        while time.monotonic() < deadline and (self._queue or self._inflight) and self._connected.is_set():
            time.sleep(0.05)
        if self._queue or self._inflight:
            log.warning("MQTT: %d queued and %d unacknowledged messages not delivered at stop",
                        len(self._queue), len(self._inflight))
        self._stopping = True
        self._flush_wanted.set()
        self._client.disconnect()
        self._client.loop_stop()
        if self._flusher is not None:
            self._flusher.join(timeout=2)
        self._client = None

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def topic(self, kind: str) -> str:
        return f"{self.s.prefix}/{kind}"

    def _status_payload(self, state: str, **extra) -> dict:
        return payloads.status(state, self.s.device_id, **self._status, **extra)

    def subscribe(self, topic: str, callback) -> None:
        """``callback(payload bytes)`` for messages on ``topic``, subscribed again after every reconnection."""
        def on_message(client, userdata, msg):
            callback(msg.payload)

        def attach():
            self._client.message_callback_add(topic, on_message)
            self._client.subscribe(topic, qos=1)
        self.on_connected.append(attach)
        if self._client is not None and self._connected.is_set():
            attach()

    def set_state(self, state: str, **extra) -> None:
        """Publish a new retained ``status`` (e.g. ``camera_lost``, then
        ``online`` again); it is also what a reconnection re-announces."""
        self._state = state
        self._state_extra = extra
        self.publish("status", self._status_payload(state, **extra), retain=True)

    # -- publishing ----------------------------------------------------------
    def publish(self, kind: str, payload: dict | bytes, retain: bool = False, queue: bool = True) -> None:
        """``payload``: a dict (sent as JSON) or raw bytes (a snapshot JPEG).
        ``queue=False``: dropped, not queued, while the broker is away (large,
        replaceable messages must not push summaries out of the queue)."""
        body = payload if isinstance(payload, (bytes, bytearray)) else json.dumps(payload)
        item = (self.topic(kind) if "/" not in kind else kind, body, retain)
        with self._lock:
            if self._connected.is_set() and not self._queue:
                self._send(item)
                return
            if not queue:
                self._counts["skipped"] += 1
                return
            if len(self._queue) >= self.s.max_queued:
                self._queue.popleft()
                self._counts["dropped"] += 1
            self._queue.append(item)
            self._counts["queued_total"] += 1
        self._log_drops()
        if self._connected.is_set():
            self._flush()

    def _log_drops(self) -> None:
        """Every drop is counted; logged at most every 10 s so a long outage cannot flood the log."""
        dropped = self._counts["dropped"]
        now = time.monotonic()
        if dropped > self._dropped_logged and (now - self._drop_warned_at >= 10 or not self._dropped_logged):
            log.warning("MQTT queue full (%d messages, --max-queued): dropped %d oldest since the last warning, "
                        "%d in all", self.s.max_queued, dropped - self._dropped_logged, dropped)
            self._dropped_logged, self._drop_warned_at = dropped, now

    def _send(self, item) -> bool:
        topic, body, retain = item
        info = self._client.publish(topic, body, qos=self.s.qos, retain=retain)
        if info.rc != 0:
            return False
        if self.s.qos > 0:
            self._inflight.add(info.mid)
        else:
            self._counts["sent"] += 1
        return True

    def _flush_loop(self) -> None:
        while not self._stopping:
            if self._flush_wanted.wait(0.5):
                self._flush_wanted.clear()
                if self._client is not None:
                    self._flush()

    def _flush(self) -> None:
        with self._lock:
            while self._queue and self._connected.is_set():
                if not self._send(self._queue[0]):
                    break
                self._queue.popleft()

    # -- paho callbacks (network thread) -----------------------------------------
    def _on_connect(self, client, userdata, flags, reason_code, properties=None):
        if reason_code.is_failure:
            log.warning("MQTT broker %s:%d refused the connection: %s", self.s.host, self.s.port, reason_code)
            return
        self._connected.set()
        log.info("MQTT connected to %s:%d", self.s.host, self.s.port)
        extra = self._state_extra if self._state != "online" else {}
        client.publish(self.topic("status"), json.dumps(self._status_payload(self._state, **extra)), qos=1,
                       retain=True)
        if self._queue:
            log.info("MQTT: delivering %d queued messages", len(self._queue))
        for fn in self.on_connected:
            fn()
        self._flush_wanted.set()  # the flusher thread delivers the queue, off paho's network thread

    def _on_disconnect(self, client, userdata, flags, reason_code, properties=None):
        was = self._connected.is_set()
        self._connected.clear()
        if was and not self._stopping:
            log.warning("MQTT disconnected (%s); queueing up to %d messages, reconnecting with backoff",
                        reason_code, self.s.max_queued)

    def _on_connect_fail(self, client, userdata):
        self.connect_failures += 1
        now = time.monotonic()
        if now - self._warned_at > 10 or self.connect_failures == 1:
            self._warned_at = now
            log.warning("MQTT broker %s:%d unreachable (attempt %d); retrying with backoff, %d messages queued",
                        self.s.host, self.s.port, self.connect_failures, len(self._queue))

    def _on_publish(self, client, userdata, mid, reason_code=None, properties=None):
        if mid in self._inflight:
            self._inflight.discard(mid)
            self._counts["sent"] += 1


class HomeAssistant:
    """Home Assistant MQTT discovery: one coverage sensor per category.

    The retained configs are sent on every (re)connection and whenever Home
    Assistant announces itself on ``homeassistant/status`` (its birth
    message), so a broker restarted without persistence or a restarted Home
    Assistant gets them again. The sensors read ``<prefix>/ha``, published every
    ``interval`` seconds with values rounded to 0.1 %, so the recorder stores
    a state a minute, not one a second per sensor."""

    BIRTH_TOPIC = "homeassistant/status"

    def __init__(self, pub: MqttPublisher, model_name: str, interval: float = 60.0):
        if not re.fullmatch(r"[A-Za-z0-9_-]+", pub.s.device_id):
            raise ValueError(f"device id {pub.s.device_id!r}: Home Assistant needs letters, digits, _ and - only")
        self.pub, self.model_name, self.interval = pub, model_name, interval
        self.discoveries = 0
        self._last = -float("inf")
        pub.on_connected.append(self._on_connected)
        pub.subscribe(self.BIRTH_TOPIC, self._on_birth)

    def _on_connected(self) -> None:
        self.send_discovery()

    def _on_birth(self, payload: bytes) -> None:
        if payload.decode(errors="replace").strip() == "online":
            log.info("Home Assistant came online: sending discovery again")
            self.send_discovery()

    def send_discovery(self) -> None:
        from edge_runtime.contract.labels import CATEGORIES
        for c in CATEGORIES:
            uid, cfg = payloads.ha_sensor_config(self.pub.s.device_id, c, self.pub.topic("ha"),
                                                 self.pub.topic("status"), self.model_name)
            self.pub.publish(f"homeassistant/sensor/{uid}/config", cfg, retain=True)
        self.discoveries += 1

    def update(self, summary: dict, now: float) -> None:
        """Publish the sensors' state when ``interval`` has passed."""
        if now - self._last >= self.interval:
            self._last = now
            self.pub.publish("ha", payloads.ha_state(summary))


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class EmbeddedBroker:
    """An in-process amqtt broker (MQTT 3.1.1) bound to loopback, so a single
    machine works with no broker installed."""

    def __init__(self, host: str = "127.0.0.1", port: int = 1883):
        self.host, self.port = host, port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._broker = None

    def start(self, timeout: float = 10.0) -> "EmbeddedBroker":
        try:
            from amqtt.broker import Broker
        except ImportError as e:
            raise RuntimeError("no --mqtt-host given and amqtt is not installed (pip install amqtt)") from e
        with socket.socket() as s:
            try:
                s.bind((self.host, self.port))
            except OSError:
                self.port = free_port(self.host)
        config = {"listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
                  "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}}}
        ready = threading.Event()
        errors: list[BaseException] = []

        def run():
            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
            try:
                self._broker = Broker(config, loop=self._loop) if "loop" in Broker.__init__.__code__.co_varnames \
                    else Broker(config)
                self._loop.run_until_complete(self._broker.start())
            except BaseException as e:  # reported to the starting thread
                errors.append(e)
                ready.set()
                return
            ready.set()
            self._loop.run_forever()

        logging.getLogger("amqtt").setLevel(logging.WARNING)
        logging.getLogger("transitions").setLevel(logging.WARNING)
        self._thread = threading.Thread(target=run, name="embedded-broker", daemon=True)
        self._thread.start()
        if not ready.wait(timeout) or errors:
            raise RuntimeError(f"embedded MQTT broker failed to start: {errors[0] if errors else 'timeout'}")
        log.info("no --mqtt-host: started an embedded MQTT broker (amqtt, MQTT 3.1.1) on %s:%d; subscribe with: "
                 "mosquitto_sub -h %s -p %d -t 'roadseg/#' -v", self.host, self.port, self.host, self.port)
        return self

    def stop(self) -> None:
        if self._loop is None or self._broker is None:
            return
        fut = asyncio.run_coroutine_threadsafe(self._broker.shutdown(), self._loop)
        try:
            fut.result(timeout=5)
        except Exception:  # shutting down anyway
            pass
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread:
            self._thread.join(timeout=5)
