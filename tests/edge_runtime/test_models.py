"""The model shipped inside the runtime package (edge_runtime/models): its pair, its card, its use."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

from edge_runtime.contract.labels import CATEGORIES
from edge_runtime.contract.sidecar import read_sidecar
from edge_runtime.models import card, default_model

ROOT = Path(__file__).resolve().parents[2]


def test_shipped_model_matches_its_sidecar_and_the_taxonomy():
    model = default_model()
    meta = read_sidecar(model)  # verifies the sha256 of the .tflite against the sidecar
    assert meta is not None and [c["name"] for c in meta["classes"]] == list(CATEGORIES)
    assert model.stat().st_size <= 10 * 1024 * 1024
    c = card()
    assert c["sha256"] == meta["sha256"] and c["input"] == f"{meta['input']['height']}x{meta['input']['width']}"
    from edge_runtime.model.segmenter import DeviceSegmenter
    seg = DeviceSegmenter(model, threads=1)
    assert tuple(seg.input_size) == (meta["input"]["height"], meta["input"]["width"])
    # a real street-like frame is not one class: the shipped model is not a smoke-scale model
    from edge_runtime.eval.synthetic import synthetic_scene
    frame = synthetic_scene(0, 360, 480)[0]
    classes = seg.segment_classes(frame)
    assert len(np.unique(classes)) >= 3


def _section(text: str, title: str) -> str:
    m = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, flags=re.S | re.M)
    assert m, f"docs/RESULTS.md has no section '## {title}'"
    return m.group(1)


def test_model_card_numbers_are_the_ones_in_results():
    c = card()
    results = _section((ROOT / "docs" / "RESULTS.md").read_text(), "The shipped model")
    card_md = (default_model().parent / "MODEL_CARD.md").read_text()
    h = c["heldout"]
    numbers = [h["int8_miou7"], h["float_miou7"], h["int8_miou8"], *h["iou7"].values()]
    for x in numbers:
        assert f"{x:.3f}" in results and f"{x:.3f}" in card_md, x
    assert c["sha256"] in results and c["sha256"] in card_md
    for row in (c["speed"] or {}).get("rows", []):
        assert f"{row['e2e_fps']:.1f}" in results, row
    assert "research use" in card_md and c["command"] in card_md


def test_run_without_model_uses_the_shipped_one(tmp_path, broker):
    import cv2

    from edge_runtime.eval.synthetic import synthetic_scene
    video = tmp_path / "street.avi"
    w = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (320, 240))
    for i in range(12):
        w.write(cv2.cvtColor(synthetic_scene(i, 240, 320)[0], cv2.COLOR_RGB2BGR))
    w.release()
    exe = Path(sys.executable).parent / "roadseg-run"  # the console script, as a user runs it
    r = subprocess.run([str(exe), "--source", str(video), "--no-realtime", "--max-frames", "10",
                        "--mqtt-host", "127.0.0.1", "--mqtt-port", str(broker.port), "--json"],
                       capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "roadseg-default" in r.stderr  # the start-up line names the model it runs
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["frames"] == 10
