"""Who this vehicle is: the installation id kept in the state directory
(:func:`installation_id`), which names the MQTT client and tells two
installations that share one device id apart.
"""
from __future__ import annotations

import hashlib
import logging
import re
import secrets
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
