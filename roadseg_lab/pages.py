"""Where the lab's pages live (``docs/`` of the checkout) and how a
measurement section is put into ``docs/RESULTS.md`` without regenerating
the rest. The lab runs from a checkout: the paths are the checkout's."""
from __future__ import annotations

from pathlib import Path

from edge_runtime import atomic

#: the checkout that holds this package
ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
#: measurement sections, one Markdown file each, appended to RESULTS.md by the full report
MEASUREMENTS = DOCS / "measurements"
IMG = DOCS / "img"
RESULTS = DOCS / "RESULTS.md"


def upsert_section(text: str, page: Path = RESULTS) -> Path:
    """Put one measurement section (``text``, starting with its ``## ``
    heading) into ``page``: replace the section of the same heading (up to
    the next ``## ``), or append it, as the full report does with every
    ``docs/measurements`` file. Written through a temporary name; returns
    ``page``. Raises ``OSError`` when it cannot be written."""
    heading = text.splitlines()[0]
    lines = page.read_text().splitlines() if page.is_file() else ["# roadseg results"]
    if heading in lines:
        start = lines.index(heading)
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        lines[start:end] = text.splitlines() + ([""] if end < len(lines) else [])
    else:
        lines += [""] + text.splitlines()
    return atomic.write_text(page, "\n".join(lines) + "\n")


def write_section(text: str, out: str | Path, page: Path | None = RESULTS) -> Path:
    """Write a measurement section to ``out`` (its own file, through a
    temporary name) and, unless ``page`` is None, into ``page`` too."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_text(out, text)
    if page is not None:
        upsert_section(text.rstrip("\n"), page)
    return out
