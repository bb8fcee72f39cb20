"""The broker of docs/deploy.md under one stolen vehicle password (issue 32, item 1): run as written
(tests/fleet/test_broker_acl.py's fixture), with a memory ceiling where a probe could take the host's.
car2's own valid password cannot take car1's session, keep more than one session, publish retained
junk outside its own topics, or grow the broker past a bound by flooding readers that stop reading."""
from __future__ import annotations

import os
import re
import socket
import ssl
import struct
import threading
from pathlib import Path

import pytest

from tests.fleet.test_broker_acl import (
    PASSWORDS,
    docs_block,
    publish_rc,
    running_deploy_broker,
)

pytestmark = pytest.mark.skipif(not (__import__("shutil").which("prlimit")), reason="needs prlimit (util-linux)")

#: the ceiling the flood probe runs mosquitto under: a config without bounds fails the test, not the host
CEILING_BYTES = 1 << 30
MESSAGE_BYTES = 1_000_000  # under deploy.md's 1 MiB max_packet_size


def _conf_value(name: str) -> int:
    conf = docs_block("# /etc/mosquitto/conf.d/roadseg.conf")
    m = re.search(rf"^{name} (\d+)$", conf, flags=re.MULTILINE)
    assert m, f"deploy.md's roadseg.conf sets no {name}"
    return int(m.group(1))


def _vm_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


def _utf8(s: str) -> bytes:
    b = s.encode()
    return struct.pack("!H", len(b)) + b


def _remaining_length(n: int) -> bytes:
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


class RawClient:
    """An MQTT 3.1.1 client over TLS on a plain socket that reads only its CONNACK and SUBACK, then
    never again (a reader that stopped reading); its receive buffer is small, so what the broker
    sends it piles up in the broker."""

    def __init__(self, b: dict, user: str, client_id: str, topic: str):
        raw = socket.socket()
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        raw.settimeout(20)
        raw.connect(("127.0.0.1", b["port"]))
        self.sock = ssl.create_default_context(cafile=b["ca"]).wrap_socket(raw, server_hostname="127.0.0.1")
        body = _utf8("MQTT") + bytes([4, 0xC2]) + struct.pack("!H", 60) + _utf8(client_id) + _utf8(user) \
            + _utf8(PASSWORDS[user])
        self.sock.sendall(b"\x10" + _remaining_length(len(body)) + body)
        assert self._read(4) == b"\x20\x02\x00\x00", f"{user}: login refused"
        body = struct.pack("!H", 1) + _utf8(topic) + b"\x00"
        self.sock.sendall(b"\x82" + _remaining_length(len(body)) + body)
        assert self._read(5) == b"\x90\x03\x00\x01\x00", f"{user}: subscription to {topic} refused"

    def _read(self, n: int) -> bytes:
        got = b""
        while len(got) < n:
            chunk = self.sock.recv(n - len(got))
            assert chunk, "the broker closed the connection"
            got += chunk
        return got

    def publish(self, topic: str, payload: bytes) -> None:
        body = _utf8(topic) + payload
        self.sock.sendall(b"\x30" + _remaining_length(len(body)) + body)

    def close(self) -> None:
        self.sock.close()


def _paho(b: dict, user: str, client_id: str):
    """A paho client logged in as ``user``: ``(client, connected, disconnects)``; disconnects are
    appended as they happen and each sets ``disconnected``."""
    import paho.mqtt.client as mqtt
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    c.tls_set(ca_certs=b["ca"])
    c.username_pw_set(user, PASSWORDS[user])
    connected, disconnected, disconnects = threading.Event(), threading.Event(), []
    c.on_connect = lambda cl, u, f, rc, p=None: connected.set() if not rc.is_failure else None
    c.on_disconnect = lambda cl, u, f, rc, p=None: (disconnects.append(str(rc)), disconnected.set())
    c.reconnect_delay_set(30, 30)  # a kicked client stays out for the test's length
    c.connect("127.0.0.1", b["port"])
    c.loop_start()
    assert connected.wait(10), f"{user} could not log in"
    c.disconnected, c.disconnects = disconnected, disconnects
    return c


def test_a_vehicle_password_is_one_session_of_its_own_and_no_retained_junk(tmp_path):
    with running_deploy_broker(tmp_path) as b:
        car1 = _paho(b, "car1", "roadseg-car1-0badcafe")
        clients = [car1]
        try:
            # car2's password with car1's client id: the broker gives it car2's own session, car1 stays
            thief = _paho(b, "car2", "roadseg-car1-0badcafe")
            clients.append(thief)
            info = car1.publish("roadseg/car1/coverage", b"{}", qos=1)
            info.wait_for_publish(10)
            assert info.is_published() and car1.disconnects == [], car1.disconnects
            # a second session with the same password replaces the first: one password, one connection
            second = _paho(b, "car2", "anything-else")
            clients.append(second)
            assert thief.disconnected.wait(10), "car2 kept two sessions open with one password"
            assert car1.disconnects == []
            # retained messages only on its own named topics (at most 15 per password), none elsewhere
            assert publish_rc(b, "car2", "roadseg/car2/junk/1", "x" * 1000, retain=True) == "refused"
            assert publish_rc(b, "car2", "roadseg/car2/release", "{}", retain=True) == "refused"
            assert publish_rc(b, "car2", "roadseg/car2/snapshot", "x", retain=True) == "accepted"
        finally:
            for c in clients:
                c.loop_stop()
                c.disconnect()


def test_readers_that_stop_reading_hold_a_bounded_queue_while_car2_floods(tmp_path):
    per_client = _conf_value("max_queued_messages")
    with running_deploy_broker(tmp_path, wrapper=["prlimit", f"--as={CEILING_BYTES}"]) as b:
        pid = b["pid"]
        watcher = _paho(b, "monitor", "monitor")  # reads: the flood's end is car2's small message after it
        done, car1_seen, subscribed = threading.Event(), threading.Event(), threading.Event()
        watcher.on_message = lambda cl, u, m: (done if m.topic == "roadseg/car2/coverage" else car1_seen).set()
        watcher.on_subscribe = lambda *a: subscribed.set()
        watcher.subscribe([("roadseg/car2/coverage", 0), ("roadseg/car1/coverage", 0)])
        assert subscribed.wait(10)
        stalled_reader = RawClient(b, "dashboard", "dashboard", "roadseg/#")
        # car2 reads its own status (a vehicle's own-status check) and never reads what comes
        car2 = RawClient(b, "car2", "car2", "roadseg/car2/status")
        base_kib = _vm_kib(pid, "VmRSS")
        flood = 3 * per_client
        try:
            body = os.urandom(MESSAGE_BYTES)
            for _ in range(flood):
                car2.publish("roadseg/car2/status", body)
            car2.publish("roadseg/car2/coverage", b"end")
            assert done.wait(60), "the broker did not get through car2's messages"
            assert b["process"].poll() is None, "mosquitto died under the flood"
            peak_mib = (_vm_kib(pid, "VmHWM") - base_kib) / 1024
            # two stalled readers, each at most max_queued_messages packets of about 1 MB, plus slack
            bound_mib = 2 * per_client * MESSAGE_BYTES / 2**20 + 64
            assert peak_mib < bound_mib, (f"mosquitto grew {peak_mib:.0f} MiB under {flood} messages of 1 MB "
                                          f"to two readers that stopped reading (bound {bound_mib:.0f})")
            # and it still serves everyone else: car1 publishes, a reader gets it
            car1 = _paho(b, "car1", "car1")
            car1.publish("roadseg/car1/coverage", b"{}", qos=1).wait_for_publish(10)
            assert car1_seen.wait(20)
            car1.loop_stop()
            car1.disconnect()
        finally:
            stalled_reader.close()
            car2.close()
            watcher.loop_stop()
            watcher.disconnect()
