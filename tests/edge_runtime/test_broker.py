"""Brokers to run against (edge_runtime/io/broker.py): the embedded amqtt broker roadseg-run starts
without --mqtt-host, and mosquitto with the configurations the tests use (password file, ACL, TLS)."""
from __future__ import annotations

import shutil
import socket
from pathlib import Path

import pytest
from tests.support import Broker, Subscriber

from edge_runtime.io.broker import EmbeddedBroker, MosquittoProcess, free_port
from edge_runtime.io.mqtt import MqttPublisher, MqttSettings

needs_mosquitto = pytest.mark.skipif(shutil.which("mosquitto") is None and not Path("/usr/sbin/mosquitto").exists(),
                                     reason="needs mosquitto")


def test_free_port_is_bindable():
    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


def test_the_embedded_broker_carries_messages_and_moves_off_a_taken_port():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        busy = taken.getsockname()[1]
        broker = EmbeddedBroker("127.0.0.1", busy).start()
    try:
        assert broker.port != busy
        sub = Subscriber(broker.port, "roadseg/emb1/#", client_id="emb-sub")
        pub = MqttPublisher(MqttSettings(mqtt_port=broker.port, mqtt_protocol="3.1.1", device_id="emb1"))
        pub.start()
        pub.publish("coverage", {"seq": 1})
        assert sub.wait_for(lambda m: m[0].endswith("/coverage") and m[1] == {"seq": 1})
        pub.stop(1)
        sub.close()
    finally:
        broker.stop()


@needs_mosquitto
def test_mosquitto_with_a_password_file_refuses_anonymous_clients(tmp_path):
    b = Broker(tmp_path, users={"car1": "s3cret"}).start()
    try:
        anonymous = MqttPublisher(MqttSettings(mqtt_port=b.port, device_id="anon"))
        anonymous.start()
        assert anonymous.wait_until(lambda c: c["connect_failures"] >= 1, timeout=10)
        assert "the broker wants a user name and password" in anonymous.counts["last_error"]
        anonymous.stop(0.1)
        member = MqttPublisher(MqttSettings(mqtt_port=b.port, device_id="car1"), ("car1", "s3cret"))
        member.start()
        assert member.wait_connected(10)
        member.stop(1)
    finally:
        b.stop()


@needs_mosquitto
def test_mosquitto_config_lines_go_where_mosquitto_reads_them(tmp_path):
    m = MosquittoProcess(tmp_path, listener_options=["cafile /x/ca.pem"], options=["allow_anonymous false",
                                                                                    "message_size_limit 8000"])
    lines = m.config().splitlines()
    listener = next(i for i, line in enumerate(lines) if line.startswith("listener "))
    assert lines[listener + 1] == "cafile /x/ca.pem"  # listener options follow their listener
    assert "allow_anonymous true" not in lines and "message_size_limit 8000" in lines
    broken = MosquittoProcess(tmp_path / "broken", options=["no_such_option 1"])
    with pytest.raises(RuntimeError, match="mosquitto did not start on port"):
        broken.start(timeout=30)  # mosquitto exits on a bad config: the wait ends with the process
    assert broken.proc is None


def test_an_mqtt5_client_at_the_embedded_broker_is_told_to_try_3_1_1():
    """amqtt speaks MQTT 3.1.1 only and never answers an MQTT 5 CONNECT: the connection times out
    after the keepalive, and the cause names the protocol."""
    broker = EmbeddedBroker("127.0.0.1", free_port()).start()
    pub = MqttPublisher(MqttSettings(mqtt_port=broker.port, mqtt_protocol="5", mqtt_keepalive=5))
    try:
        pub.start()
        assert pub.wait_until(lambda c: c["connect_failures"] >= 1, timeout=30)
        assert "does not accept MQTT 5 (try --mqtt-protocol 3.1.1)" in pub.counts["last_error"]
    finally:
        pub.stop(0.1)
        broker.stop()
