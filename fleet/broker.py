"""How the fleet's readers log in to the broker, and the subscriber they share.

``roadseg-dashboard`` and ``roadseg-monitor`` take the same broker options as
``roadseg-run`` (:func:`add_arguments`): ``--mqtt-host``, ``--mqtt-port``,
``--mqtt-protocol``, ``--mqtt-username`` (or ``ROADSEG_MQTT_USERNAME``), the
password from ``ROADSEG_MQTT_PASSWORD`` or ``--mqtt-password-file`` (never on
the command line), and TLS with ``--tls-ca``/``--tls-cert``/``--tls-key``
(also spelled ``--mqtt-tls-ca`` ...).

:class:`BrokerSubscriber` runs paho's network loop on a thread it owns, so it
knows when that thread ends and why (:attr:`BrokerSubscriber.stopped`); the
message handler it is given runs inside a guard that no exception passes
(paho's thread would die with it). Over MQTT 5 it declares a Maximum Packet
Size, so the broker never sends it a message larger than the readers accept.

The MQTT version is negotiated (``--mqtt-protocol auto``, the default): MQTT 5
first, then 3.1.1 when the broker answers CONNECT with "unsupported protocol
version" or closes the connection before any CONNACK (amqtt, roadseg-run's
embedded broker, speaks 3.1.1 only; so does an old mosquitto). A broker that
refuses one version is tried with the other at once, alternating while it
refuses both (:func:`next_protocol`). ``5`` or ``3.1.1`` pins the version.
"""
from __future__ import annotations

import argparse
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from fleet.text import clean

#: ``--mqtt-protocol`` choices: negotiated (MQTT 5, else 3.1.1) or pinned
PROTOCOLS = ("auto", "5", "3.1.1")

#: the environment the Streamlit process reads its broker settings from (set by roadseg-dashboard)
ENV = {"host": "ROADSEG_DASH_MQTT_HOST", "port": "ROADSEG_DASH_MQTT_PORT", "protocol": "ROADSEG_DASH_MQTT_PROTOCOL",
       "tls_ca": "ROADSEG_DASH_TLS_CA", "tls_cert": "ROADSEG_DASH_TLS_CERT", "tls_key": "ROADSEG_DASH_TLS_KEY"}


@dataclass(frozen=True)
class BrokerSettings:
    """Where and as whom a fleet reader connects. ``password`` is never
    printed (``repr`` hides it); ``max_packet_bytes`` is declared to an MQTT 5
    broker as the largest message this client takes."""
    host: str = "127.0.0.1"
    port: int = 1883
    protocol: str = "auto"            # "auto" (5, else 3.1.1), "5" or "3.1.1"
    username: str | None = None
    password: str | None = None
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    max_packet_bytes: int = 600 * 1024

    def __repr__(self) -> str:
        return (f"BrokerSettings({self.host}:{self.port}, MQTT {self.protocol}, user={self.username!r}, "
                f"tls={'yes' if self.tls_ca or self.tls_cert else 'no'})")

    @property
    def address(self) -> str:
        """``host:port`` and how it is secured, for logs and the page (no secret)."""
        return f"{self.host}:{self.port}" + (" (TLS)" if self.tls_ca or self.tls_cert else "")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The broker options of every fleet reader, named as ``roadseg-run`` names them."""
    p.add_argument("--mqtt-host", default="127.0.0.1", help="broker host")
    p.add_argument("--mqtt-port", type=int, default=None, help="broker port; default 1883, 8883 with TLS")
    p.add_argument("--mqtt-protocol", choices=PROTOCOLS, default="auto",
                   help="MQTT version; default auto: 5, or 3.1.1 when the broker refuses 5 (as roadseg-run's "
                        "embedded broker does)")
    p.add_argument("--mqtt-username", help="broker user name (or ROADSEG_MQTT_USERNAME)")
    p.add_argument("--mqtt-password-file",
                   help="file whose first line is the MQTT password (or ROADSEG_MQTT_PASSWORD)")
    p.add_argument("--tls-ca", "--mqtt-tls-ca", dest="tls_ca", help="CA certificate that signed the broker's")
    p.add_argument("--tls-cert", "--mqtt-tls-cert", dest="tls_cert", help="client certificate (with --tls-key)")
    p.add_argument("--tls-key", "--mqtt-tls-key", dest="tls_key", help="client certificate's private key")


def from_args(args: argparse.Namespace) -> BrokerSettings:
    """Settings from :func:`add_arguments`' options and the environment's
    credentials. Raises ValueError for an unreadable password file, a key
    without a certificate, or a port outside 1..65535."""
    from edge_runtime.io.credentials import credentials_from_env
    user, password = credentials_from_env(args.mqtt_password_file)
    tls = bool(args.tls_ca or args.tls_cert)
    return _checked(BrokerSettings(
        host=args.mqtt_host, port=(8883 if tls else 1883) if args.mqtt_port is None else args.mqtt_port,
        protocol=args.mqtt_protocol,
        username=args.mqtt_username or user, password=password, tls_ca=args.tls_ca, tls_cert=args.tls_cert,
        tls_key=args.tls_key))


def _checked(s: BrokerSettings) -> BrokerSettings:
    if not 1 <= s.port <= 65535:
        raise ValueError(f"--mqtt-port {s.port}: use 1..65535")
    if bool(s.tls_cert) != bool(s.tls_key):
        raise ValueError("--tls-cert and --tls-key go together")
    for name in ("tls_ca", "tls_cert", "tls_key"):
        path = getattr(s, name)
        if path and not os.path.isfile(path):
            raise ValueError(f"--{name.replace('_', '-')} {path}: no such file")
    if s.password and not s.username:
        raise ValueError("an MQTT password without a user name: set --mqtt-username or ROADSEG_MQTT_USERNAME")
    return s


def to_env(s: BrokerSettings, password_file: str | None) -> dict[str, str]:
    """The environment that hands ``s`` to the Streamlit process: the password
    stays where it was (ROADSEG_MQTT_PASSWORD, or the file's path), never copied."""
    env = {ENV["host"]: s.host, ENV["port"]: str(s.port), ENV["protocol"]: s.protocol}
    env.update({ENV[k]: getattr(s, k) for k in ("tls_ca", "tls_cert", "tls_key") if getattr(s, k)})
    if s.username:
        env["ROADSEG_MQTT_USERNAME"] = s.username
    if password_file:
        env["ROADSEG_MQTT_PASSWORD_FILE"] = password_file
    return env


def from_env(environ: dict[str, str] | None = None) -> BrokerSettings:
    """Settings from :func:`to_env`'s variables (the dashboard's Streamlit
    process). Raises ValueError as :func:`from_args`."""
    from edge_runtime.io.credentials import credentials_from_env
    e = os.environ if environ is None else environ
    user, password = credentials_from_env(None)
    tls = {k: e.get(ENV[k]) or None for k in ("tls_ca", "tls_cert", "tls_key")}
    try:
        port = int(e.get(ENV["port"]) or (8883 if tls["tls_ca"] or tls["tls_cert"] else 1883))
    except ValueError:
        raise ValueError(f"{ENV['port']}={e.get(ENV['port'])!r}: not a port number") from None
    protocol = e.get(ENV["protocol"]) or "auto"
    if protocol not in PROTOCOLS:
        raise ValueError(f"{ENV['protocol']}={protocol!r}: use one of {', '.join(PROTOCOLS)}")
    return _checked(BrokerSettings(host=e.get(ENV["host"]) or "127.0.0.1", port=port,
                                   protocol=protocol, username=user, password=password, **tls))


Handler = Callable[[str, bytes, bool], None]

#: CONNACK reason code "Unsupported protocol version" (OASIS MQTT 5.0, 3.2.2.2; MQTT 3.1.1's return code 1,
#: which paho reports as the same reason code)
UNSUPPORTED_PROTOCOL = 0x84
#: the first connection is retried every this many seconds at most (a reader started before its broker)
FIRST_CONNECT_MAX_DELAY = 2.0
#: seconds a broker has to answer CONNECT; then the version counts as refused
CONNACK_TIMEOUT = 3.0


def next_protocol(setting: str, tried: str) -> str | None:
    """The MQTT version to try after the broker refused ``tried`` ("5" or
    "3.1.1": CONNACK "unsupported protocol version", or the connection closed
    before any CONNACK): the other version when ``setting`` is ``auto``, None
    when the version is pinned (the refusal is then reported, not worked around)."""
    if setting != "auto":
        return None
    return "3.1.1" if tried == "5" else "5"


class BrokerSubscriber:
    """One paho client subscribed to ``topics`` on a thread of its own.

    ``handler(topic, payload, retained)`` runs on that thread for every
    message; whatever it raises is counted (:attr:`handler_errors`) and the
    thread goes on. State, for a page or a command to report:
    :attr:`connected` (subscriptions acknowledged), :attr:`error` (the last
    connection problem, one line), :attr:`refused` (the broker refused the
    login), :attr:`stopped` (the network thread ended, and why). Every change
    notifies :attr:`changed` (a Condition), so callers wait on it, not on sleeps.
    :attr:`protocol` is the MQTT version in use or being tried ("5" or
    "3.1.1"); with ``settings.protocol == "auto"`` it moves to the other one
    when the broker refuses it (:func:`next_protocol`)."""

    def __init__(self, settings: BrokerSettings, topics: list[str], handler: Handler, client_id: str = ""):
        self.s, self.topics, self.handler = settings, topics, handler
        self.changed = threading.Condition()
        self.connected = False
        self.error: str | None = None
        self.refused = False
        self.stopped: str | None = None
        self.handler_errors = 0
        self.messages = 0
        self._closing = threading.Event()
        self._sub_mid: int | None = None
        self._client_id = client_id
        self.protocol = "5" if settings.protocol == "auto" else settings.protocol
        self._switch_to: str | None = None  # set by a callback: the broker refused self.protocol
        self._connacked: bool | None = False  # a CONNACK arrived on this connection (None: none came in time)
        self._refused_both = False
        self._lost = False  # the last connection ended by failure (not by a disconnect() of its own)
        self._ever_connected = False
        self._delay: float | None = None
        self.client = self._make_client(self.protocol)
        self.thread = threading.Thread(target=self._run, name="fleet-mqtt", daemon=True)
        self.thread.start()

    def _make_client(self, protocol: str):
        """A paho client speaking ``protocol`` ("5" or "3.1.1") with this subscriber's callbacks."""
        import paho.mqtt.client as mqtt
        s = self.s
        # it never reconnects by itself: _run does, so a refused version can be followed by the other one
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self._client_id,
                        protocol=mqtt.MQTTv5 if protocol == "5" else mqtt.MQTTv311, reconnect_on_failure=False)
        if s.tls_ca or s.tls_cert:
            c.tls_set(ca_certs=s.tls_ca, certfile=s.tls_cert, keyfile=s.tls_key)
        if s.username:
            c.username_pw_set(s.username, s.password)
        c.on_pre_connect = lambda *a: setattr(self, "_connacked", False)
        c.on_connect, c.on_disconnect = self._on_connect, self._on_disconnect
        c.on_subscribe, c.on_message = self._on_subscribe, self._on_message
        self._connect_properties = None
        if protocol == "5":
            from paho.mqtt.packettypes import PacketTypes
            from paho.mqtt.properties import Properties
            props = Properties(PacketTypes.CONNECT)
            props.MaximumPacketSize = s.max_packet_bytes
            self._connect_properties = props
        return c

    # -- the network thread ----------------------------------------------------------
    def _run(self) -> None:
        """Connect, serve the connection, and again after it is lost (backing off, :meth:`_backoff`);
        a refused MQTT version is followed at once by the other (``auto``). Ends on :meth:`close`,
        on a disconnect() of the client's own, or on an exception (:attr:`stopped` says which)."""
        why = "disconnected"
        try:
            while not self._closing.is_set():
                if self._connect():
                    self._lost = False
                    self._serve()
                    if self._closing.is_set():
                        break
                    switch, self._switch_to = self._switch_to, None
                    if switch is not None:  # the broker refused this version: a new client speaks the other
                        self.protocol = switch
                        self.client = self._make_client(switch)
                        continue
                    if not self._lost:  # the client disconnected on its own: nothing reconnects it
                        break
                self._closing.wait(self._backoff())
            why = "closed" if self._closing.is_set() else "the network loop ended"
        except BaseException as e:  # noqa: BLE001 - reported on the page, never lost
            why = f"{type(e).__name__}: {clean(e, 160)}"
        self._update(connected=False, stopped=why)

    def _serve(self) -> None:
        """paho's network loop for one connection, until it ends or :meth:`close`. A broker that
        sends no CONNACK within :data:`CONNACK_TIMEOUT` s has refused the version (amqtt waits for
        more bytes after an MQTT 5 CONNECT with properties): the connection is dropped."""
        import paho.mqtt.client as mqtt
        c, deadline = self.client, time.monotonic() + CONNACK_TIMEOUT
        while not self._closing.is_set():
            if c.loop(timeout=0.5) != mqtt.MQTT_ERR_SUCCESS:
                return  # the connection ended (on_disconnect has run)
            if not self._connacked and time.monotonic() >= deadline:
                self._connacked = None  # neither answered nor closed: on_disconnect leaves the reason as is
                self._protocol_refused(c, "the broker did not answer MQTT {v} within " f"{CONNACK_TIMEOUT:g} s")
                c.disconnect()
                c.loop(timeout=0.1)  # sends DISCONNECT and closes the socket
                self._lost = True
                return

    def _connect(self) -> bool:
        """One connection attempt (TCP, TLS, CONNECT sent); False with the reason kept in
        :attr:`error` (a refused connection, a TLS or DNS error)."""
        try:
            self.client.connect(self.s.host, self.s.port, keepalive=15, properties=self._connect_properties)
            return True
        except (OSError, ValueError) as e:
            self._update(error=f"cannot connect to {self.s.address}: {clean(e, 160)}")
            return False

    def _backoff(self) -> float:
        """Seconds to wait before the next attempt: doubling from 0.25 to
        :data:`FIRST_CONNECT_MAX_DELAY` until a first subscription, then from 1 to 10;
        back to the start after every acknowledged subscription."""
        low, high = (1.0, 10.0) if self._ever_connected else (0.25, FIRST_CONNECT_MAX_DELAY)
        self._delay = low if self._delay is None else min(self._delay * 2, high)
        return self._delay

    def _protocol_refused(self, c, how: str) -> bool:
        """The broker refused :attr:`protocol` (``how``: what it did, ``{v}`` the version). With ``auto``, end this
        client's loop so :meth:`_run` tries the other version (True); else keep the reason (False)."""
        other = next_protocol(self.s.protocol, self.protocol)
        if other is None:
            hint = "3.1.1" if self.protocol == "5" else "5"
            self._update(connected=False, error=f"{how.format(v=self.protocol)} (try --mqtt-protocol {hint} or auto)")
            return False
        self._refused_both = self._refused_both or self.protocol == "3.1.1"
        if self._refused_both:  # refused in both versions: say so, then keep trying (the broker may change)
            tls = "" if self.s.tls_ca or self.s.tls_cert else "a TLS port? (give --tls-ca), or "
            self._update(connected=False, error=f"{self.s.address} answers neither MQTT 5 nor 3.1.1: {tls}"
                                                f"not an MQTT broker; retrying")
        self._switch_to = other
        c.disconnect()
        return True

    def _update(self, **state) -> None:
        with self.changed:
            for k, v in state.items():
                setattr(self, k, v)
            self.changed.notify_all()

    def _on_connect(self, c, userdata, flags, rc, props=None):
        self._connacked = True
        if rc.value == UNSUPPORTED_PROTOCOL:
            if not self._protocol_refused(c, "the broker does not speak MQTT {v}"):
                self._update(refused=True)  # a pinned version: said once, not retried
            return
        if rc.is_failure:
            self._update(connected=False, refused=True, error=f"the broker refused the login: {clean(rc, 80)}")
            return
        # QoS 0: a live view needs no redelivery (the session is clean anyway), and over QoS 1 mosquitto 2.0.11
        # stalls a subscriber after 20 messages larger than its Maximum Packet Size (they hold its in-flight window)
        _, self._sub_mid = c.subscribe([(t, 0) for t in self.topics])

    def _on_subscribe(self, c, userdata, mid, reason_codes, props=None):
        if mid != self._sub_mid:
            return
        denied = [t for t, rc in zip(self.topics, reason_codes) if rc.is_failure]
        self._refused_both, self._ever_connected, self._delay = False, True, None
        self._update(connected=not denied, refused=False,
                     error=f"the broker refused the subscription to {', '.join(denied)}" if denied else None)

    def _on_disconnect(self, c, userdata, flags, rc, props=None):
        self._lost = rc.is_failure
        if self._closing.is_set() or self._switch_to is not None:
            return
        if self._connacked is None:  # _serve gave up waiting for CONNACK, and said why
            return
        if not self._connacked:  # closed before answering CONNECT: a broker that does not take this version
            if self._protocol_refused(c, "the broker closed the connection before answering MQTT {v}"):
                return
        elif not self.refused:  # after a refused login the broker hangs up: keep why
            self._update(connected=False, error=f"connection to {self.s.address} lost ({clean(rc, 80)}); reconnecting")

    def _on_message(self, c, userdata, msg) -> None:
        try:
            self.handler(msg.topic, msg.payload, bool(msg.retain))
        except Exception:  # noqa: BLE001 - counted; paho's network thread must survive any message
            self.handler_errors += 1
        with self.changed:
            self.messages += 1
            self.changed.notify_all()

    # -- callers' side ----------------------------------------------------------------
    def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Block until ``predicate()`` holds (checked at every state change and
        every :meth:`notify`); False after ``timeout`` seconds."""
        with self.changed:
            return self.changed.wait_for(predicate, timeout)

    def notify(self) -> None:
        """Wake :meth:`wait_for` callers (a handler calls it after it changed what they wait on)."""
        with self.changed:
            self.changed.notify_all()

    def close(self, timeout: float = 5.0) -> None:
        """Disconnect and end the network thread (waiting ``timeout`` s at most)."""
        self._closing.set()
        with self.changed:
            self.changed.notify_all()
        self.client.disconnect()
        self.thread.join(timeout)

