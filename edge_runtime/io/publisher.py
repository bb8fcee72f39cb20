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
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from edge_runtime import messages

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

    def publish(self, kind: str, payload: dict, retain: bool = False) -> None:
        json.dumps(payload)  # the serialization cost is part of the pipeline
        self.counts["sent"] += 1

    def stop(self, timeout: float = 5.0) -> None:
        pass

    @property
    def connected(self) -> bool:
        return True


class MqttPublisher:
    def __init__(self, settings: MqttSettings):
        self.s = settings
        self.counts = {"queued": 0, "sent": 0, "dropped": 0}
        self._queue: collections.deque = collections.deque()
        self._lock = threading.Lock()
        self._connected = threading.Event()
        self._inflight: set[int] = set()
        self._status: dict = {}
        self._client = None
        self._stopping = False
        self._warned_at = 0.0
        self.connect_failures = 0

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
        c.reconnect_delay_set(min_delay=1, max_delay=30)
        c.max_queued_messages_set(0)  # our own bounded queue holds messages while offline
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_publish = self._on_publish
        c.on_connect_fail = self._on_connect_fail
        self._client = c
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
        self.publish("status", self._status_payload("offline", reason="stopped"), retain=True)
        while time.monotonic() < deadline and (self._queue or self._inflight) and self._connected.is_set():
            time.sleep(0.05)
        if self._queue or self._inflight:
            log.warning("MQTT: %d queued and %d unacknowledged messages not delivered at stop",
                        len(self._queue), len(self._inflight))
        self._stopping = True
        self._client.disconnect()
        self._client.loop_stop()
        self._client = None

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def topic(self, kind: str) -> str:
        return f"{self.s.prefix}/{kind}"

    def _status_payload(self, state: str, **extra) -> dict:
        return messages.status(state, self.s.device_id, **self._status, **extra)

    # -- publishing ----------------------------------------------------------
    def publish(self, kind: str, payload: dict, retain: bool = False) -> None:
        item = (self.topic(kind) if "/" not in kind else kind, json.dumps(payload), retain)
        with self._lock:
            if self._connected.is_set() and not self._queue:
                self._send(item)
                return
            if len(self._queue) >= self.s.max_queued:
                self._queue.popleft()
                self.counts["dropped"] += 1
            self._queue.append(item)
            self.counts["queued"] += 1
        if self._connected.is_set():
            self._flush()

    def _send(self, item) -> bool:
        topic, body, retain = item
        info = self._client.publish(topic, body, qos=self.s.qos, retain=retain)
        if info.rc != 0:
            return False
        if self.s.qos > 0:
            self._inflight.add(info.mid)
        else:
            self.counts["sent"] += 1
        return True

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
        client.publish(self.topic("status"), json.dumps(self._status_payload("online")), qos=1, retain=True)
        if self._queue:
            log.info("MQTT: delivering %d queued messages", len(self._queue))
        threading.Thread(target=self._flush, daemon=True).start()

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
            self.counts["sent"] += 1


def home_assistant_discovery(pub: MqttPublisher, model_name: str) -> None:
    """Retained Home Assistant MQTT discovery configs: one sensor per category."""
    from edge_runtime.labels import CATEGORIES
    for c in CATEGORIES:
        uid, cfg = messages.ha_sensor_config(pub.s.device_id, c, pub.topic("coverage"), pub.topic("status"),
                                             model_name)
        pub.publish(f"homeassistant/sensor/{uid}/config", cfg, retain=True)


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
