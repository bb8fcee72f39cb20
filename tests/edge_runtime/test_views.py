"""The preview video (``--preview``): written off the loop's thread at the rate frames were read,
and finished with what fits when its disk fills (issue 31, cases 7 and 11), on a real tmpfs."""
from __future__ import annotations

import errno
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_runtime.io.views import PREVIEW_DEFAULT_FPS, Preview, preview_rate

ROOT = Path(__file__).resolve().parents[2]


def _noise_video(path: Path, frames: int, fps: float, size=(240, 320), seed: int = 0) -> Path:
    """A video of random frames (they compress badly: a preview of them fills a disk quickly)."""
    rng = np.random.default_rng(seed)
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size[::-1])
    assert w.isOpened()
    for _ in range(frames):
        w.write(rng.integers(0, 256, (*size, 3), dtype=np.uint8))
    w.release()
    return path


def _frames_in(path: Path) -> tuple[int, float]:
    """(frames that decode, the file's frame rate); (0, 0.0) when it does not open."""
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        return 0, 0.0
    n = 0
    while cap.read()[0]:
        n += 1
    fps = cap.get(cv2.CAP_PROP_FPS)
    cap.release()
    return n, fps


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs (we are root in CI); skipped where mounting is not permitted."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def _wait(cond, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def _fill(folder: Path) -> None:
    """Take every free byte of ``folder``'s filesystem, as another program on the vehicle would."""
    fd = os.open(folder / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"\1" * 65536)
    except OSError as e:
        assert e.errno == errno.ENOSPC
    finally:
        os.close(fd)
    assert os.statvfs(folder).f_bavail == 0


def test_preview_rate_is_the_rate_frames_were_read():
    assert preview_rate(0.0, False, 25.0) == 25.0      # --no-realtime, unpaced: every frame of a 25 FPS file
    assert preview_rate(10.0, False, 25.0) == 25.0     # --no-realtime --fps 10: still every frame of it
    assert preview_rate(15.0, True, 25.0) == 15.0      # a file in real time, the loop at 15 FPS
    assert preview_rate(15.0, True, 10.0) == 10.0      # a 10 FPS camera cannot give 15
    assert preview_rate(15.0, True, None) == 15.0
    assert preview_rate(0.0, True, 30.0) == 30.0       # unpaced camera: its own rate
    assert preview_rate(0.0, False, None) == PREVIEW_DEFAULT_FPS
    assert preview_rate(0.2, True, None) == 1.0        # at least 1 (OpenCV's writers need it)


def test_no_realtime_preview_plays_as_long_as_the_drive(tiny_tflite, broker, tmp_path):
    """Issue 31 (11): a 17 s video at 25 FPS read with --no-realtime gave a 1 FPS preview (7 minutes);
    now it is written at 25 FPS, every frame, and plays 17 s."""
    from edge_runtime.commands.run import main
    video = _noise_video(tmp_path / "drive.mp4", 17 * 25, 25.0, size=(48, 64))
    out = tmp_path / "preview.mp4"
    rc = main(["--model", str(tiny_tflite), "--source", str(video), "--no-realtime", "--preview", str(out),
               "--mqtt-host", "127.0.0.1", "--mqtt-port", str(broker.port),
               "--mqtt-protocol", "5" if broker.mqtt5 else "3.1.1", "--device-id", "pv"])
    assert rc == 0
    frames, fps = _frames_in(out)
    assert (frames, fps) == (17 * 25, 25.0)
    assert frames / fps == pytest.approx(17.0)


def test_preview_never_holds_up_the_loop(tmp_path):
    """The loop only queues: when the writer falls behind (large frames, a slow disk), frames are dropped and
    counted, and what was queued is written and the file finished at close."""
    rng = np.random.default_rng(1)
    frame = rng.integers(0, 256, (1080, 1920, 3), dtype=np.uint8)  # slow to draw and encode
    classes = rng.integers(0, 8, (72, 96), dtype=np.uint8)
    p = Preview(str(tmp_path / "p.mp4"), 25.0, max_queue=2)
    for _ in range(40):
        p.update(frame, "rgb", classes, 10.0)
    p.close()
    assert p.dropped > 0 and p.written + p.dropped == 40 and p.disk_fault is None
    assert _frames_in(tmp_path / "p.mp4") == (p.written, 25.0)
    assert not (tmp_path / ".p.mp4.reserve").exists()


def test_preview_on_a_full_disk_keeps_what_fits_and_the_run_goes_on(tiny_tflite, broker, tmp_path, small_disk):
    """Issue 31 (7): --preview on a disk that fills: the run exits 0, the fault is logged once (not ten
    OpenCV warnings a second), and the file is finished with the frames that fit: it opens and plays
    (before: 'moov atom not found', every frame lost)."""
    video = _noise_video(tmp_path / "noise.mp4", 150, 25.0)  # ~3 MB of preview: three times the disk
    out = small_disk / "preview.mp4"
    r = subprocess.run([sys.executable, "-m", "edge_runtime.commands.run", "--model", str(tiny_tflite),
                        "--source", str(video), "--no-realtime", "--preview", str(out), "--mqtt-host", "127.0.0.1",
                        "--mqtt-port", str(broker.port), "--mqtt-protocol", "5" if broker.mqtt5 else "3.1.1",
                        "--device-id", "full", "--json"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    faults = [ln for ln in r.stderr.splitlines() if "roadseg.views" in ln and "disk is full" in ln]
    assert len(faults) == 1, r.stderr[-3000:]
    assert "ENOSPC" in faults[0] and str(out) in faults[0] and "Traceback" not in r.stderr
    frames, fps = _frames_in(out)
    assert 5 <= frames < 150 and fps == 25.0
    assert f"the {frames} frames written" in faults[0]  # every frame it says it kept is in the file
    assert not (small_disk / ".preview.mp4.reserve").exists()


def test_preview_finishes_its_file_when_another_program_fills_the_disk(small_disk, caplog):
    """The disk fills between two frames (another writer): the reserve held beside the file is given
    back, so the index still fits and the frames written so far play; disk_fault says what happened."""
    rng = np.random.default_rng(2)
    frames = [rng.integers(0, 256, (120, 160, 3), dtype=np.uint8) for _ in range(4)]
    classes = rng.integers(0, 8, (30, 40), dtype=np.uint8)
    p = Preview(str(small_disk / "p.mp4"), 10.0, max_queue=32)
    for i in range(12):
        p.update(frames[i % 4], "rgb", classes, 10.0)
    _wait(lambda: p.written == 12)
    assert (small_disk / ".p.mp4.reserve").stat().st_size >= 256 << 10
    _fill(small_disk)
    with caplog.at_level(logging.WARNING, logger="roadseg.views"):
        for i in range(12):
            p.update(frames[i % 4], "rgb", classes, 10.0)
        p.close()
    fault = p.disk_fault
    assert fault is not None and fault["store"] == "preview" and fault["path"] == str(small_disk / "p.mp4")
    assert "ENOSPC" in fault["error"] and fault["since"].endswith("Z")
    assert p.written == 12 and p.not_written == 12
    assert _frames_in(small_disk / "p.mp4") == (12, 10.0)
    assert len([r for r in caplog.records if "disk is full" in r.getMessage()]) == 1
    from edge_runtime.contract.payloads import Fault
    Fault.model_validate(fault)  # what the lead's status/stats carry


@pytest.fixture
def ext4_disk(tmp_path):
    """An 8 MiB ext4 image, loop-mounted with errors=remount-ro; ``fail()`` makes the kernel remount it
    read-only as after an I/O error (open files and all). Skipped where loop mounts are not permitted."""
    img, mnt = tmp_path / "sd.img", tmp_path / "sd"
    mnt.mkdir()
    with open(img, "wb") as f:
        f.truncate(8 << 20)
    for cmd in (["mkfs.ext4", "-q", str(img)], ["mount", "-o", "loop,errors=remount-ro", str(img), str(mnt)]):
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode:
            pytest.skip(f"{cmd[0]} failed here: {r.stderr.strip()}")
    dev = Path(subprocess.run(["findmnt", "-n", "-o", "SOURCE", str(mnt)], capture_output=True, text=True,
                              check=True).stdout.strip()).name

    def fail():
        Path(f"/sys/fs/ext4/{dev}/trigger_fs_error").write_text("roadseg test: as an SD card's I/O error")
    yield mnt, fail
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_preview_on_a_disk_remounted_read_only_says_so_once(ext4_disk, caplog):
    """An SD card the kernel remounted read-only after an I/O error: noticed before the next write, said
    once, and the loop goes on (nothing raised, later frames counted)."""
    mnt, fail = ext4_disk
    rng = np.random.default_rng(3)
    frame, classes = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8), np.zeros((30, 40), np.uint8)
    p = Preview(str(mnt / "p.mp4"), 10.0)
    p.update(frame, "rgb", classes, 10.0)
    _wait(lambda: p.written == 1)
    fail()
    with caplog.at_level(logging.WARNING, logger="roadseg.views"):
        for _ in range(5):
            p.update(frame, "rgb", classes, 10.0)
        p.close()
    assert p.disk_fault is not None and "Read-only file system (EROFS)" in p.disk_fault["error"]
    assert p.written == 1 and p.not_written == 5
    assert len([r for r in caplog.records if "EROFS" in r.getMessage()]) == 1
