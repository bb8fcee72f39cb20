"""The reports moved from scripts/ into roadseg_lab write what the scripts
wrote: each is run on synthetic artifacts (tests/roadseg_lab/artifacts.py) and
compared with the page the old script wrote from the same artifacts
(data/*.md, made by scripts/*_report.py before the move). Allowed
differences: the names of the commands that moved, and the blank in an empty
header cell ("|  |" for "| |")."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.roadseg_lab import artifacts

DATA = Path(__file__).parent / "data"
MOVED = {"`scripts/reproduce_pretrained.py`": "`python -m roadseg_lab reproduce-pretrained`",
         "`scripts/teacher_keras_backend.py train": "`python -m distill.commands.keras_backend train",
         "`scripts/results_report.py`": "`python -m roadseg_lab results-report`"}


def _same_page(new: str, golden: str) -> None:
    for old, moved in MOVED.items():
        golden = golden.replace(old, moved)
    new, golden = (re.sub(r"\|  \|", "| |", t) for t in (new, golden))
    assert new.splitlines() == golden.splitlines()


@pytest.fixture
def bench_table(monkeypatch):
    """roadseg-bench's own table is the runtime's (tested there): a stand-in here, as in the golden."""
    import edge_runtime.eval.bench as eb
    monkeypatch.setattr(eb, "format_markdown", lambda b: "BENCH TABLE")


def test_pretrained_report_unchanged(tmp_path):
    from roadseg_lab.reports.pretrained import Settings, write_report
    a = artifacts.pretrained_artifacts(tmp_path / "pre")
    page = tmp_path / "RESULTS.md"
    out = write_report(Settings(**a, extra="A paragraph of reading.", out=tmp_path / "pre.md",
                                figure=tmp_path / "pre.png", page=page, date="2026-11-30", machine="Test CPU (2 cores)"))
    _same_page(out.read_text(), (DATA / "pretrained.md").read_text())
    assert (tmp_path / "pre.png").stat().st_size > 0
    assert page.read_text().startswith("# roadseg results\n\n## Pretrained encoders")


def test_gpu_students_report_unchanged(tmp_path):
    from roadseg_lab.reports.gpu_students import Settings, write_report
    g = artifacts.gpu_students_artifacts(tmp_path / "gpu")
    text = write_report(Settings(**g, out=tmp_path / "gpu.md", figure=tmp_path / "gpu.png", page=None))
    _same_page(text, (DATA / "gpu-students.md").read_text())
    assert (tmp_path / "gpu.md").read_text() == text and (tmp_path / "gpu.png").is_file()


def test_results_page_unchanged(tmp_path, monkeypatch, bench_table):
    from roadseg_lab.reports import results
    drawn = []
    monkeypatch.setattr(results, "grid", lambda *a, **k: drawn.append(a))  # needs trained models; tested by use
    r = artifacts.results_artifacts(tmp_path / "res")
    docs = tmp_path / "docs"
    (docs / "measurements").mkdir(parents=True)
    (docs / "measurements" / "99-extra.md").write_text("## An extra measurement\n\nMeasured by hand.\n")
    page = results.write_results(**r, docs=docs)
    _same_page(page.read_text(), (DATA / "results.md").read_text())
    assert len(drawn) == 1 and drawn[0][-1] == docs / "img" / "scratch-qualitative.png"
    assert not (docs / "img" / "fps_vs_miou.png").exists()  # issue 24: no speed-vs-accuracy at two input sizes


def test_soak_report_unchanged(tmp_path):
    from roadseg_lab.reports.soak import load_runs, soak_table
    runs = load_runs(artifacts.soak_runs(tmp_path))
    assert list(runs) == ["shared client", "arena=2, 90 min"]  # the label may hold "="
    _same_page(soak_table(runs) + "\n", (DATA / "soak.md").read_text())
    for bad in ("no-label.json", "=x.json", f"x={tmp_path / 'missing.json'}"):
        with pytest.raises(ValueError):
            load_runs([bad])
