"""The vehicle's MQTT settings (:class:`MqttSettings`, declared once: ``roadseg-run``'s
settings extend them), the setting types they share with roadseg-run's, and
where the vehicle keeps its state (:func:`default_state_dir`). Every field is
checked before anything connects: a wrong value is a pydantic.ValidationError
naming the key.
"""
from __future__ import annotations

import os
import re
import ssl
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

#: longest topic prefix in UTF-8 bytes (MQTT allows 65535 per topic; the suffixes are short)
MAX_PREFIX_BYTES = 1024
#: ``counts["last_error"]`` is cut to this many characters (payloads.MqttCounters.last_error's bound)
MAX_ERROR_CHARS = 200
#: MQTT's largest packet: 1 + 4 bytes of header + 268,435,455 (OASIS MQTT 5.0, 1.5.5 and 2.1.4)
MQTT_MAX_PACKET = 268_435_460
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _not_bool(v):
    if isinstance(v, bool):
        raise ValueError("must be a number, not true/false")
    return v


def _check_device_id(v: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", v):
        raise ValueError("must be 1 to 64 letters, digits, _ or - (it names MQTT topics and Home Assistant "
                         "entities)")
    return v


def check_topic_prefix(prefix: str) -> str:
    """``prefix`` when a broker will accept topics under it for publishing
    (OASIS MQTT 5.0, 4.7: no ``+``/``#`` wildcards, no NUL; control
    characters, a leading ``$`` (reserved, e.g. ``$SYS``) and empty levels
    refused as well); raises ValueError saying what is wrong."""
    if not prefix:
        raise ValueError("must not be empty (leave it unset for roadseg/<device-id>)")
    if "+" in prefix or "#" in prefix:
        raise ValueError("must not contain the wildcards + or # (a topic to publish to names one topic)")
    if "\x00" in prefix:
        raise ValueError("must not contain NUL")
    if _CONTROL.search(prefix):
        raise ValueError("must not contain control characters")
    if prefix.startswith("$"):
        raise ValueError("must not start with $ (topics the broker reserves, e.g. $SYS)")
    if "" in prefix.split("/"):
        raise ValueError("must not have empty levels (a leading or trailing /, or //)")
    if len(prefix.encode()) > MAX_PREFIX_BYTES:
        raise ValueError(f"must be at most {MAX_PREFIX_BYTES} bytes")
    return prefix


def _check_host(v: str) -> str:
    if "://" in v:
        raise ValueError("must be a host name or address without a scheme (mqtt://, tcp://); TLS is --tls-ca")
    if not v or re.search(r"[\s/@]", v) or _CONTROL.search(v):
        raise ValueError("must be a host name or an IP address")
    if v.count(":") == 1:
        raise ValueError("must not include the port: that is mqtt_port")
    return v


def _check_client_id(v: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_.:-]{1,128}", v):
        raise ValueError("must be 1 to 128 letters, digits, _ . : or -")
    return v


def _existing_file(v: str) -> str:
    if not Path(v).is_file():
        raise ValueError("no such file")
    if not os.access(v, os.R_OK):
        raise ValueError("cannot be read by this user")
    return v


def _no_password():
    raise ValueError("the private key is encrypted (a key with a passphrase cannot start unattended)")


# setting types shared with roadseg-run's settings: a TOML/env true is not the number 1
PositiveInt = Annotated[int, BeforeValidator(_not_bool), Field(ge=1)]
NonNegative = Annotated[float, BeforeValidator(_not_bool), Field(ge=0)]
Positive = Annotated[float, BeforeValidator(_not_bool), Field(gt=0)]
Port = Annotated[int, BeforeValidator(_not_bool), Field(ge=1, le=65535)]
DeviceId = Annotated[str, AfterValidator(_check_device_id)]
TopicPrefix = Annotated[str, AfterValidator(check_topic_prefix)]
ExistingFile = Annotated[str, AfterValidator(_existing_file)]


class MqttSettings(BaseModel):
    """How the vehicle talks to its broker. Every field is also a
    ``roadseg-run`` setting: TOML key, ``ROADSEG_<NAME>`` variable and
    ``--flag`` of the same name. Sizes: ``mqtt_max_packet_kb`` in KiB,
    ``queue_max_mb`` in MiB; times in seconds. ``state_dir`` None: the
    offline queue stays in memory (roadseg-run's default is a directory,
    see ``edge_runtime.commands.settings``). Raises pydantic.ValidationError."""
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    device_id: DeviceId = Field("vehicle", validate_default=True)
    mqtt_host: Annotated[str, AfterValidator(_check_host)] | None = None
    mqtt_port: Port = 1883
    mqtt_protocol: Annotated[Literal["5", "3.1.1"], BeforeValidator(lambda v: str(v) if type(v) is int else v)] = "5"
    mqtt_qos: Annotated[int, BeforeValidator(_not_bool), Field(ge=0, le=2)] = 1
    mqtt_keepalive: Annotated[int, BeforeValidator(_not_bool), Field(ge=5, le=65535)] = 15
    topic_prefix: TopicPrefix | None = None
    mqtt_client_id: Annotated[str, AfterValidator(_check_client_id)] | None = None
    mqtt_max_packet_kb: Annotated[int, BeforeValidator(_not_bool), Field(ge=1, le=MQTT_MAX_PACKET // 1024)] = 128
    max_queued: PositiveInt = 1000
    queue_max_mb: Annotated[float, BeforeValidator(_not_bool), Field(gt=0, le=65536)] = 32.0
    state_dir: str | None = None
    tls_ca: ExistingFile | None = None
    tls_cert: ExistingFile | None = None
    tls_key: ExistingFile | None = None
    mqtt_password_file: ExistingFile | None = None

    @field_validator("tls_ca")
    @classmethod
    def _ca_loads(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                ssl.create_default_context(cafile=v)
            except ssl.SSLError as e:
                raise ValueError(f"is not a PEM CA certificate ({e.reason or e})") from None
        return v

    @model_validator(mode="after")
    def _tls_pair(self) -> "MqttSettings":
        if self.tls_key and not self.tls_cert:
            raise ValueError("--tls-key needs --tls-cert (the client certificate it belongs to)")
        if self.tls_cert:
            try:
                ssl.create_default_context().load_cert_chain(self.tls_cert, self.tls_key, password=_no_password)
            except (ssl.SSLError, ValueError) as e:
                raise ValueError(f"--tls-cert/--tls-key: not a PEM certificate and its private key "
                                 f"({getattr(e, 'reason', None) or e})") from None
        return self

    @property
    def prefix(self) -> str:
        """The topic prefix: ``topic_prefix`` or ``roadseg/<device_id>``."""
        return self.topic_prefix or f"roadseg/{self.device_id}"

    @property
    def host(self) -> str:
        """``mqtt_host``, or 127.0.0.1 (where roadseg-run starts its embedded broker) when unset."""
        return self.mqtt_host or "127.0.0.1"

    def tls_context(self) -> ssl.SSLContext | None:
        """The TLS context (server certificate and host name checked against
        ``tls_ca``, or the system's CAs), or None without TLS options."""
        if not (self.tls_ca or self.tls_cert):
            return None
        ctx = ssl.create_default_context(cafile=self.tls_ca)
        if self.tls_cert:
            ctx.load_cert_chain(self.tls_cert, self.tls_key, password=_no_password)
        return ctx


def default_state_dir() -> str | None:
    """Where roadseg-run keeps its offline queue and installation id:
    systemd's ``$STATE_DIRECTORY`` (``StateDirectory=roadseg``), else
    ``$XDG_STATE_HOME/roadseg``, else ``~/.local/state/roadseg``; None
    when there is no home directory (XDG Base Directory Specification 0.8)."""
    if os.environ.get("STATE_DIRECTORY"):
        return os.environ["STATE_DIRECTORY"].split(":")[0]
    base = os.environ.get("XDG_STATE_HOME")
    if not base:
        try:
            base = str(Path.home() / ".local" / "state")
        except RuntimeError:
            return None
    return str(Path(base) / "roadseg")
