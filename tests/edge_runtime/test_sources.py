"""Frame sources: files, folders, videos, device nodes, stream URLs."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import cv2
import pytest
from tests.support import Subscriber

from edge_runtime.io.sources import (
    LatestFrameSource,
    SyntheticCamera,
    open_source,
    redact,
)

ROOT = Path(__file__).resolve().parents[2]

def _run_cli(*args, timeout=60, env=None):
    import os
    return subprocess.run([sys.executable, "-m", "edge_runtime.commands.run", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, env=dict(os.environ, **(env or {})))

def test_credentials_in_a_stream_url_never_leave_the_process(tiny_tflite, broker):
    assert redact("rtsp://admin:hunter2@10.0.0.5:554/live") == "rtsp://***@10.0.0.5:554/live"
    sub = Subscriber(broker.port, "roadseg/cam9/status", client_id="secret-sub")
    try:
        r = _run_cli("--model", str(tiny_tflite), "--mqtt-host", "127.0.0.1", "--mqtt-port", str(broker.port),
                     "--mqtt-protocol", "3.1.1", "--device-id", "cam9", "--source",
                     "rtsp://admin:hunter2@127.0.0.1:1/live", "--camera-wait", "2", timeout=90)
        assert r.returncode == 4 and "within --camera-wait" in r.stderr, r.stderr
        assert "hunter2" not in r.stderr + r.stdout and "***@127.0.0.1" in r.stderr
        assert sub.wait_for(lambda m: m[1] and m[1].get("state") == "camera_lost", timeout=10)
        assert all("hunter2" not in json.dumps(m[1]) for m in sub.messages)
    finally:
        sub.close()

def test_device_node_is_a_camera_not_a_file():
    src = open_source("/dev/video99", (64, 128), wait=False)
    try:
        assert isinstance(src, LatestFrameSource) and not src.finite
        time.sleep(0.3)
        assert src.state == "opening" and "cannot open camera" in src.last_error
    finally:
        src.stop()

def test_sources(tmp_path):
    from edge_runtime.eval.synthetic import synthetic_scene
    from edge_runtime.io.sources import LatestFrameSource, SourceError, open_source
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / f"{i}.png"), synthetic_scene(i, 32, 64)[0])
    src = open_source(str(folder), realtime=False)
    got = [src.read() for _ in range(4)]
    assert [g is None for g in got] == [False, False, False, True] and src.ended
    assert got[0][1] == "bgr"
    video = tmp_path / "v.mp4"
    w = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 20, (64, 32))
    for i in range(5):
        w.write(synthetic_scene(i, 32, 64)[0])
    w.release()
    src = open_source(str(video), realtime=False, loop=True)
    assert all(src.read() is not None for _ in range(12))  # loops past the 5 frames
    src.stop()
    with pytest.raises(SourceError, match="neither a camera spec"):
        open_source(str(tmp_path / "nope.mp4"))
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    with pytest.raises(SourceError, match="cannot read video"):
        open_source(str(bad))
    # a live camera that disappears is reopened, and unread frames are counted as dropped
    cam = SyntheticCamera((32, 64), fps=200, scenes=2, fail_after=20, outage=0.3)
    live = LatestFrameSource(cam, "fake").start()
    time.sleep(1.0)
    frames = [live.read(timeout=2) for _ in range(3)]
    live.stop()
    assert all(f is not None for f in frames)
    assert live.reconnects >= 1 and cam.opens >= 2
    assert live.dropped > 10

def _args(model, broker, *extra):
    return ["--model", str(model), "--mqtt-host", "127.0.0.1", "--mqtt-port", str(broker.port),
            "--mqtt-protocol", "5" if broker.mqtt5 else "3.1.1", *extra]

def _run_cli(*args, timeout=60):
    return subprocess.run([sys.executable, "-m", "edge_runtime.commands.run", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)

def test_source_cannot_be_opened(tiny_tflite, broker):
    r = _run_cli(*_args(tiny_tflite, broker, "--source", "v4l2:/dev/video99", "--max-frames", "1"))
    assert r.returncode == 4 and "cannot open camera" in r.stderr  # a runtime failure, not bad usage
