"""The one formatter of the lab's Markdown tables and the numbers in them.

Scores are fractions (IoU, mIoU, pixel agreement: 0..1) shown with three
decimals; drops and gains are in points (100 x a difference of fractions)
with a sign; ``None`` (not measured) is shown as ``missing``, "-" unless a
report says otherwise. Rows are lists of cells already formatted.
"""
from __future__ import annotations

from typing import Iterable, Sequence

#: what a cell shows for a number that was not measured, unless a report chooses another mark
MISSING = "-"
#: the mark the pretrained and GPU-students reports have always used
NOT_AVAILABLE = "n/a"


def f3(x: float | None, missing: str = MISSING) -> str:
    """A fraction (0..1) with three decimals, ``missing`` for None."""
    return missing if x is None else f"{x:.3f}"


def points(x: float | None, missing: str = MISSING) -> str:
    """A fraction as points with one decimal (0.123 -> "12.3"), ``missing`` for None."""
    return missing if x is None else f"{100 * x:.1f}"


def signed(x: float, digits: int = 2) -> str:
    """A signed number with ``digits`` decimals (a drop or gain in points: "+0.42")."""
    return f"{x:+.{digits}f}"


def percent(fraction: float, digits: int = 1) -> str:
    """A fraction as a percentage with ``digits`` decimals (0.9871 -> "98.7%")."""
    return f"{100 * fraction:.{digits}f}%"


def row(cells: Iterable[object]) -> str:
    """One Markdown table row: ``| a | b |`` (cells shown with ``str``)."""
    return "| " + " | ".join(str(c) for c in cells) + " |"


def table(header: Sequence[str], rows: Iterable[Iterable[object]]) -> list[str]:
    """A Markdown table as lines: the header, the ``|---|`` rule, the rows."""
    return [row(header), "|---" * len(header) + "|", *(row(r) for r in rows)]


def per_class_table(label: str, classes: Sequence[str], rows: dict[str, dict], missing: str = MISSING) -> list[str]:
    """Per-class IoU: one row per ``rows`` key (a model), one column per
    class of ``classes``; ``rows[name][class]`` is an IoU (0..1) or None."""
    return table([label, *classes], ([name, *(f3(ious.get(c), missing) for c in classes)]
                                     for name, ious in rows.items()))


def read_tables(text: str, header: Sequence[str]) -> list[list[dict[str, str]]]:
    """Every Markdown table in ``text`` whose header row starts with the
    cells ``header`` (the inverse of :func:`table`), in order: each a list of
    rows, one dict per row, header cell -> cell text (stripped, ``**`` bold
    marks removed)."""
    lines, tables = text.splitlines(), []
    for i, line in enumerate(lines):
        cells = _cells(line)
        if cells[:len(header)] == list(header) and i + 1 < len(lines) and lines[i + 1].startswith("|---"):
            rows = []
            for body in lines[i + 2:]:
                if not body.startswith("|"):
                    break
                rows.append(dict(zip(cells, _cells(body))))
            tables.append(rows)
    return tables


def read_table(text: str, header: Sequence[str]) -> list[dict[str, str]]:
    """The first table :func:`read_tables` finds. Raises ``ValueError``
    naming ``header`` when ``text`` holds no such table."""
    tables = read_tables(text, header)
    if not tables:
        raise ValueError(f"no Markdown table with a header starting {' | '.join(header)!r}")
    return tables[0]


def _cells(line: str) -> list[str]:
    """The cells of one ``| a | b |`` line ([] for a line that is not a table row)."""
    if not line.startswith("|"):
        return []
    return [c.strip().replace("**", "") for c in line.strip().strip("|").split("|")]
