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


#: files that name this machine (the OS installation, else the board or firmware): systemd's machine id,
#: D-Bus's copy, the device-tree serial number (Raspberry Pi, Jetson), the SMBIOS system UUID (x86)
MACHINE_ID_FILES = ("/etc/machine-id", "/var/lib/dbus/machine-id", "/sys/firmware/devicetree/base/serial-number",
                    "/sys/class/dmi/id/product_uuid")
_NOT_IDS = {b"", b"uninitialized", b"00000000-0000-0000-0000-000000000000", b"0" * 32, b"0" * 16}
_said: set[str] = set()


def machine_key() -> bytes | None:
    """The first usable value of :data:`MACHINE_ID_FILES` (at most 256 bytes each; empty,
    ``uninitialized`` as systemd's first boot leaves it, and all-zero values skipped), else the
    MAC address of a network interface (``uuid.getnode``, when it is a real one), else None."""
    import uuid
    for f in MACHINE_ID_FILES:
        try:
            with open(f, "rb") as fh:
                value = fh.read(256).strip(b"\0 \t\r\n")
        except OSError:
            continue
        if value.lower() not in _NOT_IDS:
            return value
    node = uuid.getnode()
    if not (node >> 40) & 1:  # the multicast bit marks a random stand-in (RFC 4122, section 4.5)
        return node.to_bytes(6, "big")
    return None


def _say_once(key: str, text: str, *args) -> None:
    if key not in _said:
        _said.add(key)
        log.warning(text, *args)


def installation_id(state_dir: str | None) -> str:
    """8 hex digits naming this installation: a random value kept in
    ``<state_dir>/installation-id`` (made at the first start). A state
    directory that cannot be written (read-only card, full disk) or none at all
    proves nothing about uniqueness (two processes could read one file, or share
    one machine id), so the id is then random for this process, said once in
    the log: two vehicles on one device id are always told apart
    (:class:`ClashGuard`), at the cost of a new MQTT client id at each start."""
    import os
    if state_dir:
        path = Path(state_dir) / "installation-id"
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            writable = os.access(path.parent, os.W_OK)
        except OSError as e:
            writable, why = False, e.strerror or str(e)
        else:
            why = "the folder is not writable"
        if writable:
            from edge_runtime.atomic import read_small_text, write_text
            try:
                text = (read_small_text(path, 64, "installation id", missing_ok=True) or "").strip()
                if re.fullmatch(r"[0-9a-f]{8}", text):
                    return text
                new = secrets.token_hex(4)
                write_text(path, new + "\n")
                return new
            except (OSError, ValueError) as e:
                why = str(e)[:200]
        _say_once("installation", "cannot keep the installation id in %s (%s): this run's id is random, so the "
                  "MQTT client id changes at each start until the folder takes writes", state_dir, why)
    return secrets.token_hex(4)


#: host names that a fresh image gives every machine (Raspberry Pi OS, Ubuntu, Debian, DietPi, Armbian,
#: JetPack's setup, containers): a vehicle named after one would share its device id with the whole fleet
FACTORY_HOSTNAMES = frozenset({"raspberrypi", "localhost", "ubuntu", "debian", "dietpi", "armbian", "pi", "rpi",
                               "jetson", "nvidia", "nvidia-desktop", "tegra-ubuntu", "orin", "nano", "xavier",
                               "linux", "vehicle", "host", "container", "docker"})


def machine_suffix(n: int = 6) -> str:
    """``n`` hex digits from a hash of :func:`machine_key` (stable per machine); without one,
    from the host name, with a warning (then machines of one name share it: set --device-id)."""
    key = machine_key()
    if key is None:
        _say_once("machine", "no machine id (%s) and no network address: the default device id comes from the "
                  "host name and may be shared; set --device-id", ", ".join(MACHINE_ID_FILES[:2]))
        key = socket.gethostname().encode()
    return hashlib.sha256(b"roadseg-device:" + key).hexdigest()[:n]


def default_device_id(hostname: str | None = None) -> str:
    """The device id when none is given: the short host name, unique per machine
    when that name is a factory default (``raspberrypi`` -> ``raspberrypi-3fa2c1``,
    :data:`FACTORY_HOSTNAMES`) or not a valid id (letters, digits, _ and -, 1..64);
    ``vehicle-3fa2c1`` when it is a container's id (12 or 64 hex digits: Docker's
    default host name, new at every re-create; mount the host's /etc/machine-id
    read-only into the container to keep the host's suffix)."""
    host = (hostname if hostname is not None else socket.gethostname()).split(".")[0]
    if re.fullmatch(r"[0-9a-f]{12}|[0-9a-f]{64}", host):  # a container's id: new at every re-create, not a name
        return f"vehicle-{machine_suffix()}"
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
