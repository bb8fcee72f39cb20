"""A vehicle's snapshot is checked before anything decodes it for the page.

A JPEG's header states its dimensions; a few hundred bytes can claim
13000 x 13000 pixels (about 500 MB once decoded). Pillow reads the header
without decoding (:func:`PIL.Image.open` is lazy), so the claim is refused
first; only a picture within :data:`MAX_PIXELS` is then decoded once, here,
so that one that cannot be decoded never reaches the page.
"""
from __future__ import annotations

import io
import warnings

#: the largest snapshot shown, in pixels: about 2 megapixels (1920 x 1080 = 2,073,600 fits);
#: a vehicle sends at most 480 px wide (edge_runtime.io.overlay.snapshot_jpeg)
MAX_PIXELS = 2_100_000


class SnapshotError(ValueError):
    """Not a JPEG the page may show; ``str()`` is one line."""


def check_jpeg(data: bytes) -> tuple[int, int]:
    """``(width, height)`` of a JPEG that is at most :data:`MAX_PIXELS` and
    decodes in full. Raises :class:`SnapshotError` otherwise (not a JPEG, a
    header claiming too many pixels, truncated or corrupt data)."""
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
    try:
        img.load()
    except Exception as e:  # noqa: BLE001
        raise SnapshotError(f"snapshot: {w}x{h} JPEG does not decode ({type(e).__name__})") from None
    return w, h
