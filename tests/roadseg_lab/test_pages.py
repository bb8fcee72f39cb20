"""roadseg_lab.pages: a measurement section replaces its namesake or is appended; files are written whole."""
from __future__ import annotations

from roadseg_lab.pages import upsert_section, write_section


def test_upsert_replaces_the_section_of_the_same_heading_only(tmp_path):
    page = tmp_path / "RESULTS.md"
    page.write_text("# roadseg results\n\n## A\n\nold a\n\n## B\n\nb stays\n")
    upsert_section("## A\n\nnew a\nline 2", page)
    assert page.read_text() == "# roadseg results\n\n## A\n\nnew a\nline 2\n\n## B\n\nb stays\n"
    upsert_section("## B\n\nnew b", page)  # the last section: no blank line added after it
    assert page.read_text().endswith("## B\n\nnew b\n")
    upsert_section("## C\n\nc", page)
    assert page.read_text().endswith("## B\n\nnew b\n\n## C\n\nc\n")
    assert page.read_text().count("## A") == 1


def test_upsert_starts_a_page_and_write_section_writes_both(tmp_path):
    page = tmp_path / "new" / "RESULTS.md"
    page.parent.mkdir()
    upsert_section("## Only\n\nx", page)
    assert page.read_text() == "# roadseg results\n\n## Only\n\nx\n"
    out = write_section("## Sec\n\ny\n", tmp_path / "m" / "sec.md", page)
    assert out.read_text() == "## Sec\n\ny\n" and page.read_text().endswith("## Sec\n\ny\n")
    write_section("## Sec\n\nz\n", out, None)  # page None: only the file
    assert out.read_text() == "## Sec\n\nz\n" and page.read_text().endswith("## Sec\n\ny\n")
    assert not list(tmp_path.rglob("*.tmp*")) and not list(tmp_path.rglob(".*"))
