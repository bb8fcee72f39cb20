"""Sources that name their real cause (issue 31, cases 8 and 9): a video still being written is
followed to its last frame, a recording cut before it was finalised is called truncated, and a Jetson
CSI camera on an OpenCV without GStreamer fails at once with its own exit code."""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_runtime.io.sources import (
    SourceError,
    open_source,
    opencv_has_gstreamer,
    video_state,
)

FRAMES = 194


def _video(path: Path, fourcc: str, frames: int = FRAMES, fps: float = 25.0) -> Path:
    """Frame i is a flat grey of level i (read back to tell frames apart and in order)."""
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (96, 64))
    assert w.isOpened()
    for i in range(frames):
        w.write(np.full((64, 96, 3), i, np.uint8))
    w.release()
    return path


class Recorder(threading.Thread):
    """Writes ``data`` to ``path`` as a recorder does: a first part now, the rest in chunks while it is read."""

    def __init__(self, path: Path, data: bytes, first: float = 0.45, chunk: int = 4096, every: float = 0.02):
        super().__init__(daemon=True)
        self.path, self.data, self.chunk, self.every = path, data, chunk, every
        self.done = int(len(data) * first)
        path.write_bytes(data[: self.done])

    def run(self):
        with open(self.path, "ab") as f:
            while self.done < len(self.data):
                time.sleep(self.every)
                f.write(self.data[self.done:self.done + self.chunk])
                f.flush()
                self.done += self.chunk


def _levels(source) -> list[int]:
    levels = []
    while (got := source.read()) is not None:
        levels.append(int(np.median(got[0])))
    return levels


def test_a_video_still_being_written_is_followed_to_its_last_frame(tmp_path, caplog):
    """Issue 31 (8): --no-realtime stopped at 91 of 194 frames with 'end of source' while the recorder was
    still writing; now reading waits for the file to grow, reopens it after the last frame read, and every
    frame comes, in order, once."""
    data = _video(tmp_path / "full.avi", "MJPG").read_bytes()
    growing = tmp_path / "drive.avi"
    rec = Recorder(growing, data)
    assert video_state(growing) == "unfinished"
    source = open_source(str(growing), realtime=False)  # as roadseg-run --no-realtime
    rec.start()
    with caplog.at_level("INFO", logger="roadseg.sources"):
        levels = _levels(source)
    rec.join(10)
    assert source.ended and len(levels) == FRAMES, (len(levels), rec.done, len(data))
    assert all(abs(a - i) <= 2 for i, a in enumerate(levels)), levels  # in order, none twice (JPEG: +-2)
    assert video_state(growing) == "finished"
    assert sum("is still being written: following it" in r.getMessage() for r in caplog.records) == 1


def test_a_finished_video_ends_at_once(tmp_path):
    """A finished file (its index written) is not waited for at its end, however fresh it is."""
    for name, fourcc in (("done.avi", "MJPG"), ("done.mp4", "mp4v")):
        path = _video(tmp_path / name, fourcc, frames=20)
        assert video_state(path) == "finished"
        source = open_source(str(path), realtime=False)
        t = time.monotonic()
        assert len(_levels(source)) == 20
        assert time.monotonic() - t < 2.0  # FOLLOW_TIMEOUT (3 s) was not waited
        source.stop()


def test_a_truncated_mp4_is_named_truncated_not_a_codec(tmp_path):
    """Issue 31 (8): a recording cut before it was finalised (no moov) was blamed on a missing codec."""
    whole = _video(tmp_path / "whole.mp4", "mp4v").read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole[: len(whole) * 6 // 10])
    old = time.time() - 3600
    os.utime(cut, (old, old))  # found after the power cut: not growing
    assert video_state(cut) == "unfinished"
    with pytest.raises(SourceError) as e:
        open_source(str(cut), realtime=False)
    msg = str(e.value)
    assert "is truncated" in msg and "cut before it was finalised" in msg and "codec" not in msg
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(SourceError, match="the file is empty"):
        open_source(str(tmp_path / "empty.mp4"), realtime=False)
    (tmp_path / "text.mp4").write_bytes(b"not a video at all, just text" * 10)
    with pytest.raises(SourceError, match="missing codec or not a video"):
        open_source(str(tmp_path / "text.mp4"), realtime=False)


def test_an_mp4_still_being_written_is_said_to_be(tmp_path):
    """An MP4 being recorded has no index until the recorder ends: said so, not 'truncated' nor a codec."""
    data = _video(tmp_path / "whole.mp4", "mp4v").read_bytes()
    rec = Recorder(tmp_path / "rec.mp4", data, first=0.3, chunk=512, every=0.05)
    rec.start()
    with pytest.raises(SourceError, match="is still being written and has no index yet"):
        open_source(str(tmp_path / "rec.mp4"), realtime=False)
    rec.join(30)


@pytest.mark.skipif(opencv_has_gstreamer(), reason="this cv2 has GStreamer")
def test_csi_without_gstreamer_fails_at_once_with_its_own_exit_code(tiny_tflite, capsys):
    """Issue 31 (9): --source csi:0 with pip's OpenCV (no GStreamer) was retried as a lost camera until
    exit 4; now it fails at once, in one line naming the cause, with exit 78 (which the systemd unit does
    not restart), even with a --camera-wait of ten minutes."""
    from edge_runtime.commands import cli
    from edge_runtime.commands.run import main
    rc = main(["--model", str(tiny_tflite), "--source", "csi:0", "--camera-wait", "600", "--duration", "600"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == cli.EXIT_UNSUPPORTED == 78
    line = [ln for ln in err if ln.startswith("roadseg-run: error:")]
    assert len(line) == 1 and "needs an OpenCV built with GStreamer" in line[0] and "opencv-python-headless" in line[0]
    assert "Traceback" not in "\n".join(err) and "lost" not in line[0]


def test_opencv_without_its_logging_module_still_opens_files(monkeypatch, tmp_path):
    """Debian bookworm's OpenCV 4.6 (the Pi's) has no cv2.utils.logging: the quiet wrappers fall back to
    cv2.setLogLevel, or to nothing, instead of failing every video (the aarch64 check found it)."""
    import types

    import cv2

    from edge_runtime.io import sources
    monkeypatch.setattr(cv2, "utils", types.SimpleNamespace(), raising=False)
    assert sources._quiet(lambda: 42) == 42
    assert sources._quiet_imdecode(cv2.imencode(".png", np.zeros((4, 4, 3), np.uint8))[1]).shape == (4, 4, 3)
    monkeypatch.delattr(cv2, "setLogLevel", raising=False)
    assert sources._quiet(lambda: 7) == 7
