"""python -m roadseg_lab: every command answers --help, bad input is one line and a non-zero exit."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from roadseg_lab.cli import HANDLERS, build_parser, main

ROOT = Path(__file__).resolve().parents[2]


def test_every_command_has_a_handler_and_help(capsys):
    parser = build_parser()
    commands = set(parser._subparsers._group_actions[0].choices)
    assert commands == set(HANDLERS)
    for cmd in sorted(commands):
        with pytest.raises(SystemExit) as e:
            main([cmd, "--help"])
        assert e.value.code == 0 and f"roadseg_lab {cmd}" in capsys.readouterr().out


def test_soak_report_cli_writes_the_table(tmp_path, capsys):
    from tests.roadseg_lab import artifacts
    items = artifacts.soak_runs(tmp_path)
    md = tmp_path / "soak.md"
    assert main(["soak-report", *items, "--markdown", str(md)]) == 0
    assert capsys.readouterr().out.strip() == md.read_text().strip()
    assert main(["soak-report", "nolabel.json"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("soak-report: give LABEL=JSON") and len(err.strip().splitlines()) == 1


def test_recipes_refuse_a_missing_folder(tmp_path):
    r = subprocess.run([sys.executable, "-m", "roadseg_lab", "reproduce-scratch", str(tmp_path / "nope")],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "is not a folder" in r.stderr and "Traceback" not in r.stderr
