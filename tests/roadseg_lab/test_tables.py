"""roadseg_lab.tables: the one formatter of the lab's tables (no project imports, milliseconds)."""
from __future__ import annotations

import pytest

from roadseg_lab.tables import MISSING, NOT_AVAILABLE, f3, per_class_table, percent, points, row, signed, table


@pytest.mark.parametrize("x,text", [(0.0, "0.000"), (0.12345, "0.123"), (1.0, "1.000"), (0.9995, "1.000"),
                                    (-0.0004, "-0.000")])
def test_f3_three_decimals(x, text):
    assert f3(x) == text


@pytest.mark.parametrize("fmt", [f3, points])
def test_missing_marks(fmt):
    assert fmt(None) == MISSING == "-"
    assert fmt(None, NOT_AVAILABLE) == "n/a"
    assert fmt(0.5, NOT_AVAILABLE) != "n/a"


def test_points_signed_percent():
    assert points(0.1234) == "12.3" and points(0.0) == "0.0"
    assert signed(0.421) == "+0.42" and signed(-1.0, 1) == "-1.0" and signed(0.0) == "+0.00"
    assert percent(0.98712) == "98.7%" and percent(1.0, 2) == "100.00%"


def test_row_and_table_shape():
    assert row(["a", 1, 2.5, None]) == "| a | 1 | 2.5 | None |"
    lines = table(["x", "y"], [[1, 2], ["a", ""]])
    assert lines == ["| x | y |", "|---|---|", "| 1 | 2 |", "| a |  |"]
    assert table(["only"], []) == ["| only |", "|---|"]
    gen = table(["k"], ([i] for i in range(3)))  # rows may be any iterable, read once
    assert gen[2:] == ["| 0 |", "| 1 |", "| 2 |"]


def test_per_class_table_columns_follow_the_given_classes():
    rows = {"teacher": {"flat": 0.9, "sky": 0.8}, "student": {"flat": 0.5}}
    lines = per_class_table("model", ["sky", "flat"], rows)
    assert lines[0] == "| model | sky | flat |" and lines[1] == "|---|---|---|"
    assert lines[2] == "| teacher | 0.800 | 0.900 |" and lines[3] == "| student | - | 0.500 |"
    assert per_class_table("model", ["sky"], rows, NOT_AVAILABLE)[3] == "| student | n/a |"


def test_results_page_uses_the_taxonomy_not_its_own_class_list():
    """The per-class tables of the results page take their columns from the
    label taxonomy (it once hard-coded them)."""
    import ast
    from pathlib import Path

    import roadseg_lab.reports.results as results
    tree = ast.parse(Path(results.__file__).read_text())
    literals = [n for n in ast.walk(tree) if isinstance(n, (ast.Tuple, ast.List))
                and {getattr(e, "value", None) for e in n.elts} >= {"void", "flat", "sky"}]
    assert literals == [] and "CATEGORIES" in Path(results.__file__).read_text()


def test_read_table_is_the_inverse_of_table():
    from roadseg_lab.tables import read_table
    text = "\n".join(["intro", *table(["model", "flat", "sky"], [["a (int8)", "0.900", "**0.800**"], ["b", "", "x"]]),
                      "", *table(["model", "void"], [["c", "0.1"]]), "after"])
    assert read_table(text, ["model", "flat"]) == [{"model": "a (int8)", "flat": "0.900", "sky": "0.800"},
                                                   {"model": "b", "flat": "", "sky": "x"}]
    assert read_table(text, ["model", "void"]) == [{"model": "c", "void": "0.1"}]
    with pytest.raises(ValueError, match="model | human"):
        read_table(text, ["model", "human"])
