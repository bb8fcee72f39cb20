"""The vehicle commands the docs show, as a user types them (issue 24):
a ``mosquitto_sub ... > FILE`` must write the payload alone (``-N``: without it
mosquitto_sub appends a newline, and the saved JPEG is not the one published)."""
from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
MOSQUITTO_SUB = shutil.which("mosquitto_sub")


SAVED = re.compile(r"(mosquitto_sub\b[^`>\n]*)>\s*([^\s`]+)")  # `mosquitto_sub ARGS > FILE`


def saved_subscriptions() -> list[tuple[str, list[str], str]]:
    """(document, mosquitto_sub's argv, file) of every documented subscription whose output goes to a file."""
    return [(doc.name, shlex.split(m.group(1)), m.group(2)) for doc in DOCS for m in SAVED.finditer(doc.read_text())]


def test_every_saved_subscription_in_the_docs_writes_the_payload_alone():
    saved = saved_subscriptions()
    assert any(doc == "README.md" and "car1.jpg" in target for doc, _, target in saved)  # the snapshot example
    for doc, argv, target in saved:
        assert "-N" in argv, f"{doc}: {shlex.join(argv)} > {target}"


@pytest.mark.skipif(MOSQUITTO_SUB is None or shutil.which("mosquitto") is None,
                    reason="needs mosquitto and mosquitto-clients (scripts/test.sh installs them)")
def test_the_readme_snapshot_command_saves_the_jpeg_the_vehicle_sent(tiny_tflite, broker, tmp_path):
    argv, target = next((a, t) for doc, a, t in saved_subscriptions() if doc == "README.md" and t.endswith(".jpg"))
    argv[argv.index("-h") + 1] = "127.0.0.1"
    level = argv[argv.index("-t") + 1].split("/")[1]  # roadseg/<device>/snapshot
    device = "car1" if level in ("+", "#") else level
    run = subprocess.Popen([str(Path(sys.executable).parent / "roadseg-run"), "--model", str(tiny_tflite),
                            "--source", "synthetic:240x320@20", "--fps", "10", "--device-id", device,
                            "--mqtt-host", "127.0.0.1", "--mqtt-port", str(broker.port), "--snapshot-interval", "1",
                            "--duration", "30"], cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        out = tmp_path / target
        with out.open("wb") as f:  # the shell's `> car1.jpg`
            sub = subprocess.run([MOSQUITTO_SUB, *argv[1:], "-p", str(broker.port), "-W", "30"], stdout=f,
                                 timeout=40)
        assert sub.returncode == 0
        jpg = out.read_bytes()
        assert jpg[:2] == b"\xff\xd8" and jpg[-2:] == b"\xff\xd9", jpg[-8:]  # SOI ... EOI, nothing after
        img = cv2.imdecode(np.frombuffer(jpg, np.uint8), cv2.IMREAD_COLOR)
        assert img is not None and img.shape[0] > 100
    finally:
        run.terminate()
        run.wait(timeout=30)
