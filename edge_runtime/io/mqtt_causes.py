"""What a refused or failed MQTT connection means, as one line a user can act
on: CONNACK reason codes (:func:`connack_cause`), socket and TLS errors
(:func:`connect_error_cause`), a broker that hangs up before answering
(:func:`closed_before_connack`).
"""
from __future__ import annotations

import socket
import ssl

from edge_runtime.io.mqtt_settings import MqttSettings

#: CONNACK reason (OASIS MQTT 5.0, 3.2.2.2; 3.1.1 return codes map onto these) -> what to do about it
CONNACK_CAUSES = {
    0x80: "the broker refused the connection (unspecified error)",
    0x84: "the broker does not speak MQTT {protocol}: try --mqtt-protocol {other}",
    0x85: "the broker refused the client id {client_id} (--mqtt-client-id)",
    0x86: "bad user name or password (ROADSEG_MQTT_USERNAME, ROADSEG_MQTT_PASSWORD or --mqtt-password-file)",
    0x87: "not authorised: wrong user name or password, or user {user} may not connect (ROADSEG_MQTT_USERNAME, "
          "ROADSEG_MQTT_PASSWORD or --mqtt-password-file)",
    0x88: "the broker is unavailable", 0x89: "the broker is busy", 0x8A: "this client is banned by the broker",
    0x8C: "bad authentication method", 0x9C: "the broker says: use another server",
    0x9D: "the broker has moved", 0x9F: "connection rate exceeded",
}
#: DISCONNECT reasons that mean "the broker refused what this client sent" (OASIS MQTT 5.0, 3.14.2.1);
#: paho reports a PUBACK it cannot parse as 0x82 (protocol error)
REFUSAL_REASONS = {0x81, 0x82, 0x83, 0x87, 0x90, 0x93, 0x94, 0x95, 0x97, 0x99}
#: DISCONNECT reason: another connection with the same client id took the session over
SESSION_TAKEN_OVER = 0x8E
#: DISCONNECT reason paho reports when the keepalive expired without an answer (OASIS MQTT 5.0, 3.14.2.1)
KEEPALIVE_TIMEOUT = 0x8D


def connack_cause(value: int, name: str, s: MqttSettings, client_id: str, user: str | None) -> str:
    """One line for a refused CONNACK: ``value`` its reason code, ``name`` paho's name for it."""
    if value == 0x87 and not user:
        return ("not authorised: the broker wants a user name and password (ROADSEG_MQTT_USERNAME and "
                "ROADSEG_MQTT_PASSWORD or --mqtt-password-file)")
    text = CONNACK_CAUSES.get(value, f"the broker refused the connection: {name}")
    return text.format(protocol=s.mqtt_protocol, other="3.1.1" if s.mqtt_protocol == "5" else "5",
                       client_id=client_id, user=repr(user))


def connect_error_cause(err: BaseException | None, s: MqttSettings) -> str:
    """One line for a connection that failed before MQTT (``err`` from the socket or TLS layer)."""
    if isinstance(err, ssl.SSLCertVerificationError):
        return f"TLS: the broker's certificate is not trusted ({err.verify_message}; --tls-ca names the CA)"
    plain_answer = isinstance(err, (ConnectionResetError, BrokenPipeError, ssl.SSLEOFError)) or (
        isinstance(err, ssl.SSLError) and ("WRONG_VERSION_NUMBER" in str(err) or "record layer" in str(err).lower()))
    if s.tls_ca or s.tls_cert:
        if plain_answer:  # a plain MQTT listener reads the TLS hello as a bad packet and hangs up
            return ("TLS handshake failed: the port does not speak TLS (a plain MQTT port? use the TLS port or "
                    "drop --tls-ca)")
        if isinstance(err, ssl.SSLError):
            return f"TLS handshake failed: {err.reason or err}"
    if isinstance(err, ConnectionRefusedError):
        return "unreachable: connection refused (no broker listening there?)"
    if isinstance(err, socket.gaierror):
        return f"unreachable: cannot resolve {s.host} ({err.strerror})"
    if isinstance(err, (TimeoutError, socket.timeout)):
        return "unreachable: no answer in time"
    return f"unreachable: {getattr(err, 'strerror', None) or err or 'connection failed'}"


def closed_before_connack(s: MqttSettings) -> str:
    """One line for a broker that closed the connection, or let it time out, before answering CONNECT."""
    other = "3.1.1" if s.mqtt_protocol == "5" else "5"
    if s.tls_context() is None:
        return (f"the broker closed the connection before answering: a TLS port? (give --tls-ca), or it does not "
                f"accept MQTT {s.mqtt_protocol} (try --mqtt-protocol {other})")
    return (f"the broker closed the connection before answering (MQTT {s.mqtt_protocol} over TLS; try "
            f"--mqtt-protocol {other})")
