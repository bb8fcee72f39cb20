"""The vehicle's MQTT credentials: from the environment or a file, never from
the command line or the logs (:func:`credentials_from_env`).
"""
from __future__ import annotations

import os

from edge_runtime.atomic import read_small_text

#: the most a password or token file may hold (MQTT allows 65,535-byte passwords; nobody writes one that long)
MAX_SECRET_FILE_BYTES = 4096


def credentials_from_env(password_file: str | None = None) -> tuple[str | None, str | None]:
    """``(username, password)`` from ``ROADSEG_MQTT_USERNAME`` and
    ``ROADSEG_MQTT_PASSWORD`` (or the first line of ``password_file`` /
    ``ROADSEG_MQTT_PASSWORD_FILE``, a regular file of at most
    :data:`MAX_SECRET_FILE_BYTES`). Raises ValueError (one line naming the
    file, never its content) when the file is missing, not a regular file
    (a FIFO, a link to ``/dev/zero``), too large, not UTF-8 or empty."""
    user = os.environ.get("ROADSEG_MQTT_USERNAME")
    pw = os.environ.get("ROADSEG_MQTT_PASSWORD")
    pfile = password_file or os.environ.get("ROADSEG_MQTT_PASSWORD_FILE")
    if pfile:
        lines = read_small_text(pfile, MAX_SECRET_FILE_BYTES, "the MQTT password file").splitlines()
        if not lines or not lines[0].strip():
            raise ValueError(f"cannot read the MQTT password file {pfile}: it is empty")
        pw = lines[0].strip()
    return user, pw
