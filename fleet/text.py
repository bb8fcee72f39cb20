"""Strings from the broker, made safe to show: on a terminal (no control
sequences) and on a page (literal text, never Markdown).

A vehicle's error, a model name or a reason is whatever a client on the
broker chose to send. :func:`clean` removes what a terminal or a browser
would act on instead of showing. In Streamlit's Markdown, :func:`code` puts
such text in a code span, where CommonMark takes every character literally
(no link, image, ``:red[...]`` directive, ``$`` math, emoji shortcode, and no
GitHub-style autolink of a bare ``http://...`` or ``www.``, which backslash
escapes do not prevent); :func:`literal` escapes text the page composed
itself around validated values.
"""
from __future__ import annotations

import re
import unicodedata

#: Shown for a value that is not known (yet): never "None".
UNKNOWN = "—"


def clean(value: object, limit: int = 200) -> str:
    """``str(value)`` without control or format characters (Unicode categories
    Cc, Cf, Co, Cs, Zl, Zp: ESC and CSI sequences, BEL, bidirectional overrides,
    line breaks), each replaced by a space, cut to ``limit`` characters with an
    ellipsis. ``None`` becomes :data:`UNKNOWN`."""
    if value is None:
        return UNKNOWN
    text = "".join(" " if unicodedata.category(ch) in {"Cc", "Cf", "Co", "Cs", "Zl", "Zp"} else ch
                   for ch in str(value)[: limit + 1])
    return text if len(text) <= limit else text[: limit - 1] + "…"


def literal(value: object, limit: int = 200) -> str:
    """:func:`clean`, then every ASCII punctuation character backslash-escaped
    (CommonMark escapes any of them): ``[a](b)`` stays brackets, ``*`` stays a
    star. Not enough for text from outside (a bare URL is still auto-linked):
    use :func:`code` for that."""
    return "".join("\\" + ch if ch.isascii() and not ch.isalnum() and not ch.isspace() else ch
                   for ch in clean(value, limit))


def code(value: object, limit: int = 200) -> str:
    """:func:`clean` text as a Markdown code span, shown exactly as sent: fenced
    by one more backtick than its longest run of backticks (CommonMark 0.31,
    6.1), padded by a space each side (which CommonMark strips)."""
    text = clean(value, limit)
    fence = "`" * (1 + max((len(run) for run in re.findall(r"`+", text)), default=0))
    return f"{fence} {text} {fence}"
