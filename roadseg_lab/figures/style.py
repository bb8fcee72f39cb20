"""How every figure of ``docs/img`` looks: the project's palette for classes
and series, the caption line that says what was measured and on what, and
saving under the size the docs allow.

Colours are :data:`edge_runtime.contract.labels.PALETTE` (Okabe & Ito 2008,
colour-blind safe), never matplotlib's default cycle: a class is drawn in its
own colour, and series that are not classes take the palette's colours in
:data:`SERIES_ORDER`.
"""
from __future__ import annotations

import io
from pathlib import Path

from edge_runtime.contract.labels import CATEGORIES, PALETTE

#: the categories whose colours series take, in this order (void's black and
#: object's pale yellow last: they read worst as lines and markers on white)
SERIES_ORDER = ("vehicle", "human", "nature", "construction", "flat", "sky", "void", "object")
#: the largest PNG the docs keep (bytes): a figure above it is re-encoded with
#: a 256-colour palette (lossless for charts, slight banding for photographs)
MAX_BYTES = 300_000


def class_colour(name: str) -> tuple[float, float, float]:
    """Category ``name``'s palette colour as matplotlib RGB (0..1 floats).
    Raises ``ValueError`` for a name outside :data:`CATEGORIES`."""
    return tuple(float(v) / 255 for v in PALETTE[CATEGORIES.index(name)])


def series_colour(i: int) -> tuple[float, float, float]:
    """The ``i``-th series colour (0-based, cycling through :data:`SERIES_ORDER`)."""
    return class_colour(SERIES_ORDER[i % len(SERIES_ORDER)])


def pyplot():
    """matplotlib's pyplot on the Agg backend (no display), with small fonts.
    Raises ``ImportError`` when matplotlib (the ``plot`` or ``train`` extra) is missing."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    plt.rcParams.update({"font.size": 9, "axes.titlesize": 10, "figure.titlesize": 11})
    return plt


def caption(fig, text: str, width: int | None = None) -> int:
    """Put ``text`` (what was measured, on what hardware, when) at the bottom
    of ``fig``, small and left-aligned, each paragraph (``\\n``) wrapped at
    ``width`` characters (default: what fits the figure's width at 7.5 pt);
    returns the number of lines, for :func:`bottom_margin`."""
    import textwrap
    width = width or int(fig.get_figwidth() * 16)
    lines = [w for para in text.split("\n") for w in textwrap.wrap(para, width)]
    fig.text(0.01, 0.01, "\n".join(lines), fontsize=7.5, ha="left", va="bottom", color="#333333")
    return len(lines)


def bottom_margin(fig, lines: int, extra_in: float = 0.5) -> float:
    """The figure fraction to keep free below the axes for ``lines`` caption
    lines plus ``extra_in`` inches (tick labels, an x label)."""
    return (0.12 + 0.135 * lines + extra_in) / fig.get_figheight()


def save(fig, path: str | Path, dpi: int = 100) -> Path:
    """Write ``fig`` as a PNG at ``path`` (through a temporary name) and close
    it; re-encoded with a 256-colour palette when it would exceed
    :data:`MAX_BYTES`. Returns the path. Raises ``OSError`` when it cannot be
    written."""
    from PIL import Image

    from edge_runtime import atomic
    plt = pyplot()
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=dpi)
    finally:
        plt.close(fig)
    data = buf.getvalue()
    if len(data) > MAX_BYTES:
        img = Image.open(io.BytesIO(data)).convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT)
        buf = io.BytesIO()
        img.save(buf, format="png", optimize=True)
        data = buf.getvalue()
    return atomic.write_bytes(path, data)
