"""A vehicle's snapshot is checked before anything decodes it for the page.

A JPEG's header states its dimensions; a few hundred bytes can claim
13000 x 13000 pixels (about 500 MB once decoded). Pillow reads the header
without decoding (:func:`PIL.Image.open` is lazy), so the claim is refused
first; only a picture within :data:`MAX_PIXELS` is then decoded once, here,
so that one that cannot be decoded never reaches the page.

Decoding costs a pass over the whole picture per scan, and a progressive JPEG
may hold any number of scans: a 12-byte scan repeated 41,610 times (512 KB,
1440 x 1440) took 6.5 s of the dashboard's only MQTT thread. So the scans are
counted first, by walking the JPEG's segments (no decoding, linear in the
bytes), and more than :data:`MAX_SCANS` is refused unseen.
"""
from __future__ import annotations

import io
import re
import warnings

#: the largest snapshot shown, in pixels: about 2 megapixels (1920 x 1080 = 2,073,600 fits);
#: a vehicle sends at most 480 px wide (edge_runtime.io.overlay.snapshot_jpeg)
MAX_PIXELS = 2_100_000
#: the most scans a snapshot may have: a baseline JPEG has 1, libjpeg's progressive script 10 (colour)
MAX_SCANS = 32
_MARKER_AFTER_SCAN = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")  # in entropy-coded data: FF00 is a byte, FFDn RST


class SnapshotError(ValueError):
    """Not a JPEG the page may show; ``str()`` is one line."""


def count_scans(data: bytes, limit: int = MAX_SCANS) -> int:
    """The number of scans (SOS segments) in JPEG ``data``, counted up to ``limit + 1``
    (then it stops: the caller refuses it). Walks the segments by their lengths and the
    entropy-coded data to its next marker; linear in ``len(data)``, decodes nothing.
    A structure it cannot follow ends the walk (the decoder then says what is wrong)."""
    scans, i, n = 0, 2, len(data)
    while i + 1 < n and scans <= limit:
        if data[i] != 0xFF:
            break
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0xD9:  # end of image
            break
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        if i + 3 >= n:
            break
        end = i + 2 + int.from_bytes(data[i + 2:i + 4], "big")
        if marker == 0xDA:
            scans += 1
            m = _MARKER_AFTER_SCAN.search(data, end)
            end = m.start() if m else n
        i = end
    return scans


def check_jpeg(data: bytes) -> tuple[int, int]:
    """``(width, height)`` of a JPEG that is at most :data:`MAX_PIXELS` and
    decodes in full. Raises :class:`SnapshotError` otherwise (not a JPEG, a
    header claiming too many pixels, more than :data:`MAX_SCANS` scans, truncated
    or corrupt data); the header and the scan count are checked before any decoding."""
    from PIL import Image
    try:
        with warnings.catch_warnings():  # a header over Pillow's own bomb limit is refused below, not warned about
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=["JPEG"])
        w, h = img.size
    except Exception as e:  # noqa: BLE001 - anything Pillow raises means: not a JPEG we show
        raise SnapshotError(f"snapshot: not a readable JPEG ({type(e).__name__})") from None
    if w * h > MAX_PIXELS:
        raise SnapshotError(f"snapshot: header claims {w}x{h} pixels, more than the {MAX_PIXELS:,} shown")
    scans = count_scans(data)
    if scans > MAX_SCANS:
        raise SnapshotError(f"snapshot: {w}x{h} JPEG with more than {MAX_SCANS} scans (each one a pass over the "
                            f"picture to decode): refused unseen")
    try:
        img.load()
    except Exception as e:  # noqa: BLE001
        raise SnapshotError(f"snapshot: {w}x{h} JPEG does not decode ({type(e).__name__})") from None
    return w, h
