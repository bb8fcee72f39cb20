"""./scripts/demo.sh, the README's quickstart, run as written (issue 33: its last step printed nothing).

The whole pipeline at smoke scale on synthetic scenes (a few minutes on 2 cores: integration). What it
prints at the end are roadseg-monitor's lines: summaries that went from roadseg-run through its embedded
broker (amqtt, MQTT 3.1.1 only) to another process subscribed to it, with nothing pinned on the command line.
"""
from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.integration
#: one of roadseg-monitor's lines for a coverage summary (fleet.monitor.describe), stamped when it arrived
MONITOR_LINE = re.compile(r"^\d\d:\d\d:\d\d\.\d{3} demo-car coverage #(\d+): \d+ frames, [\d.]+ FPS, ")


def test_demo_prints_coverage_summaries_it_received_over_mqtt(tmp_path):
    out = tmp_path / "demo"
    r = subprocess.run(["./scripts/demo.sh"], cwd=ROOT, env=dict(os.environ, OUT=str(out)), capture_output=True,
                       text=True, timeout=1800)
    assert r.returncode == 0, (r.stdout[-3000:], r.stderr[-3000:])
    seqs = [int(m.group(1)) for m in map(MONITOR_LINE.match, r.stdout.splitlines()) if m]
    assert len(seqs) >= 5, r.stdout[-3000:]  # ~15 s of summaries, one a second
    assert seqs == sorted(set(seqs)), seqs  # each summary once, in order: as published
    assert "demo-car status: online" in r.stdout
    for produced in ("preview.png", "dist/student-int8.tflite", "dist/student-int8.json", "preview.mp4"):
        assert (out / produced).is_file(), produced
