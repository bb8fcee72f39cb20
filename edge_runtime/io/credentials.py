"""The vehicle's MQTT credentials: from the environment or a file, never from
the command line or the logs (:func:`credentials_from_env`).
"""
from __future__ import annotations

import os
from pathlib import Path


def credentials_from_env(password_file: str | None = None) -> tuple[str | None, str | None]:
    """``(username, password)`` from ``ROADSEG_MQTT_USERNAME`` and
    ``ROADSEG_MQTT_PASSWORD`` (or the first line of ``password_file`` /
    ``ROADSEG_MQTT_PASSWORD_FILE``). Raises ValueError (naming the file,
    never its content) when the file cannot be read or is empty."""
    user = os.environ.get("ROADSEG_MQTT_USERNAME")
    pw = os.environ.get("ROADSEG_MQTT_PASSWORD")
    pfile = password_file or os.environ.get("ROADSEG_MQTT_PASSWORD_FILE")
    if pfile:
        try:
            pw = Path(pfile).read_text().splitlines()[0].strip()
        except (OSError, IndexError, UnicodeDecodeError) as e:
            reason = "it is empty" if isinstance(e, IndexError) else type(e).__name__
            raise ValueError(f"cannot read the MQTT password file {pfile}: {reason}") from None
    return user, pw
