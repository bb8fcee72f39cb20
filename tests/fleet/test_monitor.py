"""roadseg-monitor against a real broker and whatever any client sends:
nothing a sender chose reaches the terminal as a control sequence, a bad
message is one ``dropped`` line and the monitor goes on, lines carry their
arrival time and a status its reason and since; if its subscriber stops, it
exits non-zero."""
from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import threading
import time
import unicodedata
from pathlib import Path

import pytest

from tests.fleet.messages import Raw, coverage_body, stats_body, status_body

ROOT = Path(__file__).resolve().parents[2]
ESC = "\x1b]0;owned\x07\x1b[2J\x1b]8;;http://evil.example/\x07all vehicles OK\x1b]8;;\x07\x9b31m\u202e"


def _escapes():
    """Escape sequences in every string a sender controls (retained: waiting when the monitor subscribes)."""
    return [
        ("roadseg/car1/status", json.dumps(json.loads(status_body("car1")) | {"device_id": "car1" + ESC}), True),
        ("roadseg/car2/status", json.dumps(json.loads(status_body("car2")) | {"state": "online" + ESC}), True),
        ("roadseg/car3/status", status_body("car3", "offline", reason="lost" + ESC, error="cam" + ESC,
                                            since="2026-11-25T10:00:00.000Z"), True)]


def _bad_shapes():
    """A stats without fps (KeyError in the old monitor), a deep array, a wrong Home Assistant state."""
    stats = json.loads(stats_body("car1"))
    del stats["fps"]
    return [("roadseg/car4/status", b"[" * 50_000, True), ("roadseg/car1/stats", json.dumps(stats), False),
            ("roadseg/car1/ha", b'{"coverage": "x"}', False)]


def run_monitor(broker, messages) -> list[str]:
    """roadseg-monitor --count 2 while ``messages`` arrive, then two coverage summaries; its lines."""
    raw = Raw(broker.port)
    retained = [m for m in messages if m[2]]
    raw.send(*retained, ("roadseg/car0/status", status_body("car0"), True))
    proc = subprocess.Popen([sys.executable, "-m", "fleet.monitor", "--mqtt-port", str(broker.port),
                             "--count", "2", "--duration", "30"], cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        lines = [proc.stdout.readline() for _ in range(len(retained) + 1)]  # the retained ones: it has subscribed
        raw.send(*[m for m in messages if not m[2]],
                 ("roadseg/car1/coverage", coverage_body("car1", 1)), ("roadseg/car1/coverage", coverage_body("car1", 2)))
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill() if proc.poll() is None else None
        raw.close()
    assert proc.returncode == 0, err.decode()[-2000:]
    return (b"".join(lines).decode() + out.decode()).splitlines()


def test_monitor_prints_no_control_sequence(broker):
    rows = run_monitor(broker, _escapes())
    bad = sorted({f"U+{ord(c):04X}" for r in rows for c in r if unicodedata.category(c) in ("Cc", "Cf")})
    assert not bad, bad  # no screen clearing, title change, hyperlink or bidirectional override
    assert sum(" dropped from car" in r for r in rows) == 2  # an id or a state is never free text
    car3 = next(r for r in rows if "car3 status" in r)
    assert "offline" in car3 and "since 2026-11-25T10:00:00.000Z" in car3 and "reason lost" in car3
    assert all(re.match(r"\d\d:\d\d:\d\d\.\d{3} ", r) for r in rows), rows  # every line says when it arrived


def test_monitor_survives_any_message(broker):
    rows = run_monitor(broker, _bad_shapes())
    assert sum("coverage #" in r for r in rows) == 2  # it went on after every bad message
    assert sum(" dropped from car" in r for r in rows) == 3
    assert any("dropped from car1" in r and "fps" in r for r in rows)


def test_monitor_exits_non_zero_when_its_subscriber_stops(broker):
    from edge_runtime.commands import cli
    from fleet import monitor
    from fleet.broker import BrokerSettings, BrokerSubscriber
    printer = monitor.Printer(out=io.StringIO())
    sub = BrokerSubscriber(BrokerSettings(port=broker.port), ["roadseg/+/#"], printer)
    printer.subscriber = sub
    raised = []
    t = threading.Thread(target=lambda: raised.append(pytest.raises(cli.RuntimeFailure, monitor.watch, sub, printer,
                                                                    duration=60)))
    assert sub.wait_for(lambda: sub.connected, 20)
    t.start()
    sub.client.disconnect()  # the network loop ends, as when paho's thread dies
    t.join(30)
    assert not t.is_alive() and "subscriber stopped" in str(raised[0].value)
    assert cli.run("roadseg-monitor", lambda: monitor.watch(sub, printer, duration=1)) == cli.EXIT_RUNTIME


def test_monitor_refuses_bad_options_in_one_line(tmp_path):
    for args, needle in ((["--mqtt-password-file", str(tmp_path / "missing")], "password file"),
                         (["--tls-cert", str(tmp_path / "c.pem")], "--tls-cert"),
                         (["--mqtt-port", "0"], "--mqtt-port")):
        r = subprocess.run([sys.executable, "-m", "fleet.monitor", *args, "--duration", "1"], cwd=ROOT, check=False,
                           env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True, text=True, timeout=60)
        assert r.returncode == 2 and needle in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def _monitor(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "fleet.monitor", *args], cwd=ROOT,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_monitor_started_before_the_embedded_broker_negotiates_mqtt_3_1_1(tmp_path):
    """Issue 33: as in demo.sh, the monitor starts before roadseg-run's embedded broker (amqtt,
    MQTT 3.1.1 only), without --mqtt-protocol, and prints the summaries that broker relays."""
    import socket

    from edge_runtime.io.broker import EmbeddedBroker
    early = socket.create_server(("127.0.0.1", 0))  # the port, before any broker: proves the monitor came first
    port = early.getsockname()[1]
    proc = _monitor("--mqtt-port", str(port), "--count", "2", "--duration", "60")
    broker = None
    try:
        early.settimeout(30)
        early.accept()[0].close()  # the monitor knocked: no broker answered it
        early.close()
        broker = EmbeddedBroker("127.0.0.1", port).start()
        deadline = time.monotonic() + 15
        while True:  # the embedded broker's listener, up (a loaded machine may take a moment after start())
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        raw = Raw(port)
        raw.send(("roadseg/car1/status", status_body("car1"), True))  # retained: delivered once it subscribed
        assert "car1 status: online" in proc.stdout.readline()
        raw.send(("roadseg/car1/coverage", coverage_body("car1", 1)),
                 ("roadseg/car1/coverage", coverage_body("car1", 2)))
        out, err = proc.communicate(timeout=60)
        raw.close()
    finally:
        proc.kill() if proc.poll() is None else None
        if broker is not None:
            broker.stop()
    assert proc.returncode == 0, err[-2000:]
    assert [ln.split(" ", 1)[1].split(":")[0] for ln in out.splitlines()] == ["car1 coverage #1", "car1 coverage #2"]


def test_monitor_duration_holds_while_no_broker_answers():
    """Issue 33: with no broker at all, --duration 2 ends the monitor in about 2 s (not after the
    30 s --connect-timeout), exit 4, one line naming the address and why."""
    import time

    from edge_runtime.io.broker import free_port
    port = free_port()
    start = time.monotonic()
    proc = _monitor("--mqtt-port", str(port), "--duration", "2")
    out, err = proc.communicate(timeout=60)
    took = time.monotonic() - start
    assert proc.returncode == 4 and out == "", err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and f"127.0.0.1:{port} within 2 s" in lines[0] and "refused" in lines[0], err
    assert took < 15, took  # --duration 2 plus the interpreter's start, far below the 30 s connect timeout


def test_subscriber_negotiates_the_version_or_says_which_to_pin(tmp_path):
    """auto: MQTT 5 against mosquitto, 3.1.1 against amqtt (which leaves an MQTT 5 CONNECT with
    properties unanswered); a pinned version the broker refuses is one line naming the other."""
    from fleet.broker import BrokerSettings, BrokerSubscriber
    from tests.support import Broker
    for kind in ("mosquitto", "amqtt"):
        b = Broker(tmp_path / kind)
        if kind == "amqtt":
            b.kind = "amqtt"  # the embedded broker, also where mosquitto is installed
        elif b.kind != "mosquitto":
            continue
        b.start()
        try:
            sub = BrokerSubscriber(BrokerSettings(port=b.port), ["roadseg/#"], lambda *a: None)
            assert sub.wait_for(lambda: sub.connected, 20), sub.error
            assert sub.protocol == ("5" if kind == "mosquitto" else "3.1.1")
            sub.close()
            if kind == "amqtt":
                pinned = BrokerSubscriber(BrokerSettings(port=b.port, protocol="5"), ["roadseg/#"], lambda *a: None)
                assert pinned.wait_for(lambda: pinned.error is not None and "MQTT 5" in pinned.error, 20)
                assert "--mqtt-protocol 3.1.1" in pinned.error and not pinned.connected
                pinned.close()
        finally:
            b.stop()


def test_subscriber_alternates_versions_against_a_port_that_answers_neither():
    """A server that closes every connection before CONNACK (e.g. a TLS port) is tried in both
    versions and named once as answering neither; the subscriber keeps trying, close() ends it."""
    import socket

    from fleet.broker import BrokerSettings, BrokerSubscriber
    srv = socket.create_server(("127.0.0.1", 0))
    seen = []

    def serve():
        while True:
            try:
                s, _ = srv.accept()
            except OSError:
                return
            seen.append(s.recv(16)[8:9])  # MQTT 5 CONNECT: protocol level 5; 3.1.1: 4
            s.close()
    t = threading.Thread(target=serve, daemon=True)
    t.start()
    sub = BrokerSubscriber(BrokerSettings(port=srv.getsockname()[1]), ["roadseg/#"], lambda *a: None)
    try:
        assert sub.wait_for(lambda: sub.error is not None and "neither MQTT 5 nor 3.1.1" in sub.error, 20), sub.error
        assert seen[:2] == [b"\x05", b"\x04"] and not sub.connected and sub.stopped is None
    finally:
        sub.close()
        srv.close()
    assert sub.stopped == "closed"
