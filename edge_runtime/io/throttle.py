"""Warnings that repeat (a broker away for an hour, a disk that stays full)
logged once per interval per cause, with a count of the ones held back
(:class:`Throttled`)."""
from __future__ import annotations

import logging
import time

log = logging.getLogger("roadseg.mqtt")


class Throttled:
    """Warnings logged at most once per ``every`` seconds per key; the next
    line says how many were held back. Keys are a small fixed set (a cause)."""

    def __init__(self, every: float = 60.0, max_keys: int = 64):
        self.every, self.max_keys = every, max_keys
        self._seen: dict[str, list] = {}  # key -> [monotonic time logged, held back since]

    def warn(self, key: str, message: str) -> bool:
        """Log ``message`` unless ``key`` was logged less than ``every`` s ago; True when logged."""
        now = time.monotonic()
        if len(self._seen) > self.max_keys:
            self._seen.clear()
        seen = self._seen.get(key)
        if seen is not None and now - seen[0] < self.every:
            seen[1] += 1
            return False
        held = seen[1] if seen else 0
        log.warning("%s%s", message, f" ({held} more like it in the last {self.every:g} s)" if held else "")
        self._seen[key] = [now, 0]
        return True
