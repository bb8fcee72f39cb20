"""The uploader's journal (:mod:`edge_runtime.flywheel.upload`): a small JSON
document that must survive a power cut and must be writable on a full card.

**Written in place, without new blocks.** The file (``<store>/.upload/journal``)
is made once, at its full size (two slots of :data:`SLOT_BYTES`, zeros, fsynced,
renamed into place); after that every write overwrites the older slot with
``magic, generation, length, CRC-32, JSON`` and fsyncs the file. Overwriting
blocks a file already owns needs no free block on ext4, FAT/vfat and tmpfs, so a
card filled to the last byte still takes the journal, and the uploader can
send the frames whose deletion frees it (a rename-based atomic write needs a
new file each time, and fails there). A power cut in the middle of a write
tears at most the slot being written: its CRC no longer matches, and the other
slot, one generation older, is read instead. Limits: a copy-on-write file
system (btrfs, ZFS) needs new blocks for an overwrite too; only making the
file (16 KiB) needs room (the uploader then sends frames unrecorded until
their deletions made that room: see there).

**The budget on the monotonic clock** (:class:`Spending`): bytes sent are
entries ``(t, bytes)`` with ``t`` on ``CLOCK_BOOTTIME`` (monotonic seconds
since boot, suspend included: real time, never stepped by NTP or a user), and
a budget is granted against the sum of the last 24 hours (sliding). The
journal records the boot (``/proc/sys/kernel/random/boot_id``) and the
boot-clock time of the write (times rounded to milliseconds, ``at`` never
below an entry's, so every write reads back). A restart within the same boot
reads the entries as they are. Where the boot is unknown (no boot id) and the
clock is not behind the write, the restart is taken for one within the same
boot: that reading makes every entry the youngest it can be, so it never
overspends (after a real reboot it can hold the budget longer, by the time
since this boot's start at most). After a reboot the boot clock starts again at zero and
the time the vehicle was off is unknown, so each entry keeps the age it had
at the last write and ages from this boot's start: it counts for *at least*
as long as it really should (for up to the time the vehicle was off in
addition), never shorter. So no wall-clock step and no reboot grants more
than the budget in any 24 hours of real time; what a reboot can cost is a
late start of the next grant, by at most the time the vehicle was off.
"""
from __future__ import annotations

import json
import math
import os
import struct
import time
import zlib
from pathlib import Path

#: bytes of one slot (two per file): a document of 16 names (upload.MAX_ACKED) and MAX_ENTRIES entries fits
SLOT_BYTES = 8 * 1024
#: the 24 hours of the sliding budget (seconds)
WINDOW_S = 86400.0
#: the longest span of one entry (seconds): sends less than this after an entry's first send join it,
#: stamped with the latest send (never younger; held at most WINDOW_S + BUCKET_S)
BUCKET_S = 1800.0
#: entries kept at most: the buckets of 24 hours (over it, after restarts, the two closest are merged,
#: stamped with the later time)
MAX_ENTRIES = int(WINDOW_S // BUCKET_S) + 1
#: decimals of the times in the journal (milliseconds)
TIME_DECIMALS = 3
#: how far rounded times may be off each other when read back (seconds): the rounding's, and no more
TIME_EPS_S = 10.0 ** -TIME_DECIMALS
_MAGIC = b"RSJ1"
_HEADER = struct.Struct(">4sQII")  # magic, generation, length, crc32


def boot_clock() -> float:
    """Seconds since boot, suspend included (``CLOCK_BOOTTIME``; ``time.monotonic``
    where there is none): monotonic, never stepped."""
    try:
        return time.clock_gettime(time.CLOCK_BOOTTIME)
    except (AttributeError, OSError):
        return time.monotonic()


def boot_id() -> str:
    """This boot's id (``/proc/sys/kernel/random/boot_id``), ``""`` where there is none."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()[:64]
    except OSError:
        return ""


class JournalFile:
    """A JSON document in a two-slot file written in place (see the module).
    :meth:`read` and :meth:`write` raise OSError for the disk; :meth:`read`
    raises ValueError when the file exists and neither slot holds a whole
    document."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.generation = 0

    def read(self) -> dict | None:
        """The newest whole document, None when there is no file."""
        try:
            with open(self.path, "rb") as f:
                data = f.read(2 * SLOT_BYTES)
        except FileNotFoundError:
            return None
        best: tuple[int, dict] | None = None
        for i in range(2):
            slot = data[i * SLOT_BYTES:(i + 1) * SLOT_BYTES]
            if len(slot) < _HEADER.size:
                continue
            magic, gen, length, crc = _HEADER.unpack_from(slot)
            body = slot[_HEADER.size:_HEADER.size + length]
            if magic != _MAGIC or len(body) != length or zlib.crc32(body) != crc:
                continue  # never written, or torn by a power cut: the other slot holds the one before
            try:
                doc = json.loads(body)
            except (ValueError, RecursionError):  # RecursionError: nested too deep to be ours
                continue
            if isinstance(doc, dict) and (best is None or gen > best[0]):
                best = (gen, doc)
        if best is None:
            raise ValueError(f"{self.path}: no whole journal in either slot")
        self.generation = best[0]
        return best[1]

    def write(self, doc: dict) -> None:
        """Overwrite the older slot with ``doc`` and fsync. Makes the file first when there
        is none (the only write that needs free blocks). Raises ValueError for a document
        over a slot, OSError for the disk."""
        body = json.dumps(doc, separators=(",", ":")).encode()
        if len(body) > SLOT_BYTES - _HEADER.size:
            raise ValueError(f"journal document of {len(body)} bytes is over a slot")
        if not self.path.exists():
            self._make()
        gen = self.generation + 1
        fd = os.open(self.path, os.O_WRONLY)
        try:
            os.pwrite(fd, _HEADER.pack(_MAGIC, gen, len(body), zlib.crc32(body)) + body, (gen % 2) * SLOT_BYTES)
            os.fsync(fd)
        finally:
            os.close(fd)
        self.generation = gen

    def _make(self) -> None:
        from edge_runtime.atomic import durable_write
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        durable_write(self.path, bytes(2 * SLOT_BYTES), mode=0o600)  # every block allocated now, once
        self.generation = 0


class Spending:
    """Bytes sent in the last :data:`WINDOW_S` seconds of ``clock()`` (monotonic
    seconds, :func:`boot_clock`), as ``[t, bytes]`` entries (see the module).

    An entry is a bucket of the sends of at most :data:`BUCKET_S` seconds: a
    send joins the last entry while less than ``BUCKET_S`` seconds passed since
    that entry's *first* send (so a bucket never spans more than ``BUCKET_S``),
    and the entry is stamped with its *last* send. So no byte counts as older
    than it is (the budget is never overrun in any 24 hours), and none counts
    for more than ``WINDOW_S + BUCKET_S`` seconds (the budget is used). Within
    24 hours there are at most ``MAX_ENTRIES`` such buckets; the first send of an
    entry read back from the journal is not known, so a send after a restart
    starts a new entry (over ``MAX_ENTRIES``, the two closest are merged,
    stamped with the later time: never younger)."""

    def __init__(self, clock=boot_clock):
        self.clock = clock
        self.entries: list[list[float]] = []
        self._open_since: float | None = None  # the first send of the last entry, while it takes sends

    def _expire(self, now: float) -> None:
        self.entries = [e for e in self.entries if now - e[0] < WINDOW_S]
        if not self.entries:
            self._open_since = None

    def spent(self) -> int:
        """Bytes sent in the last 24 hours."""
        self._expire(self.clock())
        return int(sum(e[1] for e in self.entries))

    def add(self, n: int) -> None:
        """Count ``n`` bytes sent now."""
        now = self.clock()
        self._expire(now)
        if self.entries and self._open_since is not None and now - self._open_since < BUCKET_S:
            self.entries[-1] = [max(now, self.entries[-1][0]), self.entries[-1][1] + n]
        else:
            self.entries.append([max([now] + [e[0] for e in self.entries[-1:]]), n])
            self._open_since = now
        while len(self.entries) > MAX_ENTRIES:  # only after restarts (entries read back): merge the closest two
            i = min(range(len(self.entries) - 1), key=lambda k: self.entries[k + 1][0] - self.entries[k][0])
            (_, a), (t, b) = self.entries[i], self.entries[i + 1]
            self.entries[i:i + 2] = [[t, a + b]]

    def refund(self, n: int) -> None:
        """Take back ``n`` bytes of the last :meth:`add` (a try refused before anything went out)."""
        if self.entries:
            self.entries[-1][1] = max(0, self.entries[-1][1] - n)
            if not self.entries[-1][1]:
                self.entries.pop()
                self._open_since = None

    def seconds_until(self, room: int, budget: int) -> float:
        """Seconds until ``room`` bytes fit within ``budget`` (0 when they do now)."""
        now = self.clock()
        self._expire(now)
        over = sum(e[1] for e in self.entries) + room - budget
        for t, n in self.entries:
            if over <= 0:
                break
            over -= n
            if over <= 0:
                return max(0.0, t + WINDOW_S - now)
        return 0.0 if over <= 0 else WINDOW_S

    def dump(self, boot: str) -> dict:
        """The entries as the journal keeps them, with this boot and the clock's time now.
        Times are rounded to :data:`TIME_DECIMALS` decimals, ``at`` the same way and never
        below an entry's, so what is dumped always loads back."""
        now = self.clock()
        self._expire(now)
        spent = [[round(t, TIME_DECIMALS), int(n)] for t, n in self.entries]
        at = max([round(now, TIME_DECIMALS)] + [t for t, _ in spent])  # rounding is monotonic: t <= now stays so
        return {"boot": boot, "at": at, "spent": spent}

    def load(self, doc: dict, boot: str) -> None:
        """Entries from :meth:`dump`: as they are within the same boot; after a reboot (a
        different boot, or the clock behind the write), each keeps the age it had when written
        and ages from this boot's start, the clock's zero (never younger than it really is:
        see the module). Where either boot is unknown (``""``) and the clock is not behind
        the write, the same boot is assumed (it makes each entry the youngest it can be).
        Times may be :data:`TIME_EPS_S` apart from each other by the rounding; raises
        ValueError (or KeyError, TypeError) for a bad document."""
        now = self.clock()
        at = float(doc["at"])
        entries = [[float(t), int(n)] for t, n in doc["spent"]]
        if not math.isfinite(at) or any(not math.isfinite(t) for t, _ in entries):
            raise ValueError("journal times not finite")
        if any(n < 0 for _, n in entries) or any(t > at + TIME_EPS_S for t, _ in entries):
            raise ValueError("journal entries out of range")
        entries = [[min(t, at), n] for t, n in entries]
        behind = at > now + TIME_EPS_S  # the clock cannot go back within a boot: a reboot
        known = bool(boot) and bool(doc.get("boot"))
        if behind or (known and doc.get("boot") != boot):
            entries = [[min(now, t - at), n] for t, n in entries]
        else:  # the same boot, or possibly so: as they are (the youngest reading, never overspending)
            entries = [[min(now, t), n] for t, n in entries]
        self.entries = sorted(entries)
        self._open_since = None  # its first send is not known: the next send starts a new entry
        self._expire(now)
