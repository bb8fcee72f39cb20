"""Test helpers shared by the suites: a broker the tests can stop and restart, a real MQTT subscriber."""
from __future__ import annotations

from pathlib import Path


# --- MQTT broker: real mosquitto on a free loopback port ---------------------------

class Broker:
    """A broker the tests can stop and restart on the same port: mosquitto
    (edge_runtime.io.broker), or the embedded amqtt where mosquitto is missing."""

    def __init__(self, workdir, persistence: bool = True):
        from edge_runtime.io.broker import mosquitto_path
        from edge_runtime.io.publisher import free_port
        self.persistence = persistence
        self.kind = "mosquitto" if mosquitto_path() else "amqtt"
        self.port = free_port()
        self.workdir = Path(workdir)
        self.process = None
        self.embedded = None

    @property
    def mqtt5(self) -> bool:
        return self.kind == "mosquitto"

    def start(self):
        if self.kind == "amqtt":
            from edge_runtime.io.publisher import EmbeddedBroker
            self.embedded = EmbeddedBroker("127.0.0.1", self.port).start()
            return self
        from edge_runtime.io.broker import MosquittoProcess
        self.process = MosquittoProcess(self.workdir, self.port, self.persistence).start()
        return self

    def stop(self):
        if self.embedded is not None:
            self.embedded.stop()
            self.embedded = None
        if self.process is not None:
            self.process.stop()
            self.process = None


class Subscriber:
    """A real MQTT client collecting messages (persistent session, QoS 1)."""

    def __init__(self, port, topic="roadseg/#", client_id="test-sub"):
        import threading

        import paho.mqtt.client as mqtt
        self.messages = []
        self.arrived = []  # time.monotonic() of each message, parallel to messages
        self.lock = threading.Condition()
        self.topic = topic
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False,
                             protocol=mqtt.MQTTv311)
        self.c.on_connect = lambda c, u, f, rc, p=None: c.subscribe(topic, qos=1)
        self.c.on_message = self._on_message
        self.c.reconnect_delay_set(0.2, 1)
        self.c.connect("127.0.0.1", port, keepalive=5)
        self.c.loop_start()

    def _on_message(self, c, u, msg):
        import json
        try:
            item = (msg.topic, json.loads(msg.payload) if msg.payload else None, msg.retain)
        except ValueError:
            item = (msg.topic, msg.payload, msg.retain)
        import time
        with self.lock:
            self.messages.append(item)
            self.arrived.append(time.monotonic())
            self.lock.notify_all()

    def of(self, suffix):
        with self.lock:
            return [m for m in self.messages if m[0].endswith(suffix)]

    def wait_for(self, pred, timeout=20.0):
        """Block until a message satisfies ``pred`` (woken by each arrival, never polling); False on timeout."""
        with self.lock:
            return self.lock.wait_for(lambda: any(pred(m) for m in self.messages), timeout)

    def wait_for_count(self, pred, n: int, timeout=20.0):
        """Block until ``n`` messages satisfy ``pred``; False on timeout."""
        with self.lock:
            return self.lock.wait_for(lambda: sum(1 for m in self.messages if pred(m)) >= n, timeout)

    def arrival_times(self, suffix):
        """Monotonic arrival times of the messages whose topic ends with ``suffix``."""
        with self.lock:
            return [t for m, t in zip(self.messages, self.arrived) if m[0].endswith(suffix)]

    def wait_for_all(self, preds, timeout=20.0):
        """Block until every predicate in ``preds`` is satisfied by some message; False on timeout."""
        with self.lock:
            return self.lock.wait_for(lambda: all(any(p(m) for m in self.messages) for p in preds), timeout)

    def close(self):
        self.c.loop_stop()
        self.c.disconnect()
