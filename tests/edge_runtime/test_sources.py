"""Frame sources: files, folders, videos, device nodes, stream URLs."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
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
    r = _run_cli(*_args(tiny_tflite, broker, "--source", "v4l2:/dev/video99", "--max-frames", "1",
                                  "--camera-wait", "1"))
    assert r.returncode == 4 and "cannot open camera" in r.stderr  # a runtime failure, not bad usage


# --- what cannot be read is skipped, once, and reading goes on (issue 22 item 4) -------------------------------

def _street_folder(folder: Path, n: int = 6, bad: dict | None = None) -> list[int]:
    """Real PNG street frames 0..n-1 (``bad``: index -> bytes written instead); returns the readable indices."""
    from edge_runtime.eval.synthetic import synthetic_scene
    folder.mkdir()
    bad = bad or {}
    for i in range(n):
        if i in bad:
            (folder / f"{i:03d}.png").write_bytes(bad[i])
        else:
            cv2.imwrite(str(folder / f"{i:03d}.png"), synthetic_scene(i, 32, 64)[0])
    return [i for i in range(n) if i not in bad]


def _frame_ids(frames, folder: Path, readable: list[int]) -> list[int]:
    """Which file each frame came from (frames are compared with the readable files' pixels)."""
    files = {i: cv2.imread(str(folder / f"{i:03d}.png")) for i in readable}
    return [next((i for i, f in files.items() if np.array_equal(f, g[0])), -1) for g in frames]


BAD_FILES = {"empty": b"", "corrupt": b"\x89PNG\r\n\x1a\n" + b"\0" * 64, "truncated": None}


@pytest.mark.parametrize("kind", sorted(BAD_FILES))
def test_folder_skips_an_unreadable_image_with_one_warning(kind, tmp_path, caplog):
    from edge_runtime.eval.synthetic import synthetic_scene
    png = cv2.imencode(".png", synthetic_scene(9, 32, 64)[0])[1].tobytes()
    data = BAD_FILES[kind] if BAD_FILES[kind] is not None else png[: len(png) // 2]
    folder = tmp_path / "frames"
    readable = _street_folder(folder, 6, {2: data, 3: data})
    with caplog.at_level("WARNING", logger="roadseg.sources"):
        src = open_source(str(folder), realtime=False)
        got = [src.read() for _ in range(len(readable) + 1)]
        assert got[-1] is None and src.ended and all(g is not None for g in got[:-1])
        assert _frame_ids(got[:-1], folder, readable) == readable  # every later image is read, in order
        looped = open_source(str(folder), realtime=False, loop=True)
        frames = [looped.read() for _ in range(3 * len(readable))]
        assert _frame_ids(frames, folder, readable) == readable * 3  # --loop gets past them, pass after pass
    skips = [r.getMessage() for r in caplog.records if "skipping" in r.getMessage()]
    assert len(skips) == 4 and len(set(skips)) == 2  # once per file and source (two sources), naming it
    assert all(("002.png" in m) or ("003.png" in m) for m in skips)
    looped.stop()
    # 2 per pass for the 3 passes read; the reader decodes up to READ_AHEAD + 1 frames ahead, which may have
    # taken it past the two bad files of a fourth pass
    assert looped.camera.skipped in (6, 8)


def test_folder_in_realtime_with_loop_never_loses_the_camera(tmp_path, caplog):
    from edge_runtime.io.sources import FileCamera
    folder = tmp_path / "frames"
    _street_folder(folder, 4, {1: b""})
    cam = FileCamera(folder, realtime=True, loop=True, folder_fps=500)
    src = LatestFrameSource(cam, str(folder), finite=False)
    with caplog.at_level("WARNING", logger="roadseg.sources"):
        src.start()
        try:
            frames = [src.read(timeout=5) for _ in range(12)]
        finally:
            src.stop()
    assert all(f is not None for f in frames) and src.reconnects == 0 and src.state == "live"
    assert not [r for r in caplog.records if "lost" in r.getMessage()]
    assert len([r for r in caplog.records if "skipping" in r.getMessage()]) == 1


@pytest.mark.parametrize("realtime", [False, True])
def test_a_folder_with_nothing_readable_is_an_error(realtime, tmp_path):
    from edge_runtime.io.sources import SourceError
    folder = tmp_path / "frames"
    _street_folder(folder, 3, {0: b"", 1: b"not a png", 2: b""})
    with pytest.raises(SourceError, match=r"nothing readable in folder .* \(3 images\)"):
        open_source(str(folder), realtime=realtime)


def test_video_skips_an_unreadable_frame(tmp_path, caplog):
    """An MJPEG AVI whose 5th frame is zeroed: OpenCV's read fails there, then reads on."""
    video = tmp_path / "v.avi"
    w = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 32))
    for i in range(8):
        w.write(np.full((32, 64, 3), 20 * i + 10, np.uint8))
    w.release()
    data = bytearray(video.read_bytes())
    starts = [i for i in range(len(data) - 2) if data[i:i + 3] == b"\xff\xd8\xff"]
    data[starts[4]:starts[5] - 8] = bytes(starts[5] - 8 - starts[4])
    video.write_bytes(bytes(data))
    with caplog.at_level("WARNING", logger="roadseg.sources"):
        src = open_source(str(video), realtime=False)
        frames = [src.read() for _ in range(8)]
        assert frames[-1] is None and src.ended
        levels = [round((int(f[0].mean()) - 10) / 20) for f in frames[:-1]]
        assert levels == [0, 1, 2, 3, 5, 6, 7]
        looped = open_source(str(video), realtime=False, loop=True)
        levels = [round((int(looped.read()[0].mean()) - 10) / 20) for _ in range(14)]
        assert levels == [0, 1, 2, 3, 5, 6, 7] * 2
    assert any("unreadable frame" in r.getMessage() and "v.avi" in r.getMessage() for r in caplog.records)


def _roadseg_run(*args, timeout=120):
    return subprocess.run([sys.executable, "-c", "import sys; from edge_runtime.commands.launch import run; "
                           "sys.exit(run(sys.argv[1:]))", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def test_roadseg_run_reads_past_an_empty_png(tiny_tflite, broker, tmp_path):
    folder = tmp_path / "frames"
    readable = _street_folder(folder, 6, {2: b""})
    r = _roadseg_run(*_args(tiny_tflite, broker, "--source", str(folder), "--no-realtime", "--json"))
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.strip().splitlines()[-1])["frames"] == len(readable)
    assert r.stderr.count("skipping") == 1 and "002.png: empty file" in r.stderr
    r = _roadseg_run(*_args(tiny_tflite, broker, "--source", str(folder), "--no-realtime", "--loop",
                            "--max-frames", "12", "--json"))
    assert r.returncode == 0 and json.loads(r.stdout.strip().splitlines()[-1])["frames"] == 12, r.stderr
    assert r.stderr.count("skipping") == 1 and "lost" not in r.stderr
    for f in folder.iterdir():
        f.write_bytes(b"")
    r = _roadseg_run(*_args(tiny_tflite, broker, "--source", str(folder), "--no-realtime"))
    errors = [ln for ln in r.stderr.splitlines() if "error" in ln]
    assert r.returncode == 4 and len(errors) == 1 and "nothing readable" in errors[0], r.stderr
