"""Who this vehicle is: the installation id kept in the state directory
(:func:`installation_id`), which names the MQTT client and tells two
installations that share one device id apart (:class:`ClashGuard`); the
default device id, unique per machine when the host name is a factory
default (:func:`default_device_id`).
"""
from __future__ import annotations

import hashlib
import logging
import re
import secrets
import socket
from pathlib import Path

log = logging.getLogger("roadseg.mqtt")


def installation_id(state_dir: str | None) -> str:
    """8 hex digits naming this installation: a random value kept in
    ``<state_dir>/installation-id`` (made at the first start), else a hash of
    ``/etc/machine-id``, else random for this process only (with a warning)."""
    if state_dir:
        path = Path(state_dir) / "installation-id"
        try:
            text = path.read_text().strip()
            if re.fullmatch(r"[0-9a-f]{8}", text):
                return text
        except OSError:
            pass
        new = secrets.token_hex(4)
        try:
            from edge_runtime.atomic import write_text
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            write_text(path, new + "\n")
            return new
        except OSError:
            pass
    for f in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
        try:
            return hashlib.sha256(b"roadseg:" + Path(f).read_bytes().strip()).hexdigest()[:8]
        except OSError:
            continue
    log.warning("no writable state directory and no machine id: the MQTT client id is random for this run")
    return secrets.token_hex(4)


#: host names that a fresh image gives every machine (Raspberry Pi OS, Ubuntu, Debian, DietPi, Armbian,
#: JetPack's setup, containers): a vehicle named after one would share its device id with the whole fleet
FACTORY_HOSTNAMES = frozenset({"raspberrypi", "localhost", "ubuntu", "debian", "dietpi", "armbian", "pi", "rpi",
                               "jetson", "nvidia", "nvidia-desktop", "tegra-ubuntu", "orin", "nano", "xavier",
                               "linux", "vehicle", "host", "container", "docker"})


def machine_suffix(n: int = 6) -> str:
    """``n`` hex digits from a hash of /etc/machine-id (systemd's unique id of this
    installation of the OS), else from this host name's installation id; stable per machine."""
    for f in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
        try:
            return hashlib.sha256(b"roadseg-device:" + Path(f).read_bytes().strip()).hexdigest()[:n]
        except OSError:
            continue
    return hashlib.sha256(b"roadseg-device:" + socket.gethostname().encode()).hexdigest()[:n]


def default_device_id(hostname: str | None = None) -> str:
    """The device id when none is given: the short host name, unique per machine
    when that name is a factory default (``raspberrypi`` -> ``raspberrypi-3fa2c1``,
    :data:`FACTORY_HOSTNAMES`) or not a valid id (letters, digits, _ and -, 1..64)."""
    host = (hostname if hostname is not None else socket.gethostname()).split(".")[0]
    clean = re.sub(r"[^A-Za-z0-9_-]", "-", host)[:50].strip("-") or "vehicle"
    if clean.lower() in FACTORY_HOSTNAMES or clean != host:
        return f"{clean}-{machine_suffix()}"
    return clean


class ClashGuard:
    """Tells two live installations that publish under one device id apart, from
    the retained ``status`` messages on that device's own topic (each names its
    ``installation`` and when its process ``started``). The one that started
    later (ties: the higher installation id) yields: it publishes nothing under
    the device id until the other goes offline, and says so once.

    :meth:`seen` takes another status message (a :class:`edge_runtime.contract.payloads.Status`)
    and returns what to do: ``"yield"``, ``"resume"``, ``"reassert"`` (we hold the id and
    the other overwrote our retained status) or None."""

    def __init__(self, installation: str, started: str):
        self.installation, self.started = installation, started
        self.holder: str | None = None  # the other installation we yield to
        self.since: str | None = None

    @property
    def yielding(self) -> bool:
        """True while another live installation holds the device id."""
        return self.holder is not None

    def seen(self, status) -> str | None:
        """What to do about ``status`` (a payloads.Status seen on this device id's topic): "yield",
        "resume", "reassert" or None (our own, or nothing to do)."""
        other = getattr(status, "installation", None)
        if not other or other == self.installation:
            return None
        live = status.state != "offline"
        if self.holder is not None:
            if other == self.holder and not live:
                self.holder = None
                return "resume"
            return None
        if not live:
            return "reassert"  # its Last Will or stop overwrote the retained status we hold
        theirs = (getattr(status, "started", None) or "", other)
        if theirs < (self.started, self.installation):
            self.holder, self.since = other, status.ts
            return "yield"
        return "reassert"
