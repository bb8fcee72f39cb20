"""The vehicle keeps the frames its model is unsure of (issue 30, item 1): the score, the bounded and diverse
store, the writer thread off the loop with its disk-fault report, roadseg-run's --keep-frames. Issue 31: a card
that is read-only or full at start, goes bad or comes back while running (real tmpfs and loop-mounted ext4),
the free-space reserve, a stop that does not wait on a refusing disk, windows on the monotonic clock."""
from __future__ import annotations

import datetime as dt
import json
import logging
import os
import subprocess
import time

import numpy as np
import pytest

from edge_runtime.eval.synthetic import synthetic_scene
from edge_runtime.flywheel.keep import KeepFrames, KeepPolicy
from edge_runtime.flywheel.score import TeachScorer
from edge_runtime.flywheel.store import FrameStore, read_record
from edge_runtime.model.segmenter import DeviceSegmenter
from roadseg_lab.checks.soak import fill
from tests.edge_runtime.conftest import io_error_remounts_read_only, remount

START = dt.datetime(2026, 5, 4, 8, 0, tzinfo=dt.timezone.utc).timestamp()


class Clock:
    """Seconds that move only when told (the wall clock, or the monotonic one, or both)."""

    def __init__(self, t: float = START):
        self.t = t

    def __call__(self) -> float:
        return self.t


def _drive(keep: KeepFrames, seg: DeviceSegmenter, clock: Clock, frames: int, step_s: float, size=(96, 160)):
    """``frames`` distinct synthetic street scenes through the view, ``step_s`` simulated seconds apart."""
    for i in range(frames):
        frame, _ = synthetic_scene(i, *size)
        keep.update(frame, "rgb", seg.segment(frame, "rgb"), 0.0)
        clock.t += step_s


def test_score_rises_with_doubt_flicker_and_rare_categories():
    scorer = TeachScorer("logits", scale=0.1, zero=0)
    sure = np.full((4, 4, 8), -100, np.int8)
    sure[..., 1] = 100  # every pixel: flat, by far
    road = np.ones((4, 4), np.uint8)
    a = scorer(sure, road)
    assert a.uncertain == 0 and a.entropy < 0.01 and a.flicker == 0 and a.rare == 0 and a.score < 0.01
    unsure = np.zeros((4, 4, 8), np.int8)  # every class equally likely: margin 0, entropy log(8)
    people = np.full((4, 4), 6, np.uint8)
    b = scorer(unsure, people)
    assert b.uncertain == 1 and b.entropy == pytest.approx(1, abs=1e-5) and b.flicker == 1 and b.rare == 1
    assert b.score == pytest.approx(1, abs=1e-5)
    probs = TeachScorer("probabilities")(np.full((2, 2, 8), 1 / 8, np.float32), people)
    assert probs.uncertain == 1 and probs.entropy == pytest.approx(1, abs=1e-5)
    ids = TeachScorer("class_map")(people[..., None], people)  # a class-map model: no probabilities to doubt
    assert ids.uncertain == 0 and ids.entropy == 0 and ids.rare == 1
    with pytest.raises(ValueError, match="classes must be"):
        scorer(unsure, people[None])


def test_segmenter_keeps_the_raw_output_the_score_reads(tiny_tflite):
    seg = DeviceSegmenter(tiny_tflite)
    assert seg.last_output is None
    frame, _ = synthetic_scene(3, 64, 128)
    classes = seg.segment(frame, "rgb")
    raw = seg.last_output
    assert raw.shape == (*seg.output_size, 8) and raw.dtype == np.int8
    assert np.array_equal(np.argmax(raw, axis=-1).astype(np.uint8), classes)  # the scores behind the class map
    seg.segment(synthetic_scene(4, 64, 128)[0], "rgb")
    assert seg.last_output is not raw  # a new array each frame: a kept reference stays valid
    s = TeachScorer.for_segmenter(seg)(raw, classes)
    assert 0 <= s.score <= 1


def test_store_never_exceeds_its_frames_per_hour(tiny_tflite, tmp_path):
    seg, clock = DeviceSegmenter(tiny_tflite), Clock()
    keep = KeepFrames(FrameStore(tmp_path / "kept", 50 * 2 ** 20), seg, "car1", KeepPolicy(per_hour=4, similarity=0),
                      clock=clock, monotonic=clock)
    _drive(keep, seg, clock, 200, 97.0)  # 5.4 simulated hours, one frame every 97 s
    keep.close()
    records = [read_record(p) for p in sorted((tmp_path / "kept").glob("*.json"))]
    times = sorted(dt.datetime.fromisoformat(r.captured_utc).timestamp() for r in records)
    assert len(times) == keep.counts["kept"] >= 16
    for t in times:  # any hour (sliding) holds at most 4
        assert sum(1 for u in times if t <= u < t + 3600) <= 4
    r = records[0]
    assert r.model["sha256"] == seg.describe()["sha256"] and r.device_id == "car1" and 0 <= r.score <= 1
    assert set(r.why) == {"uncertain", "entropy", "flicker", "rare"} and r.captured_utc.endswith("+00:00")
    jpeg = (tmp_path / "kept" / f"{r.name}.jpg").read_bytes()
    import hashlib
    assert r.bytes == len(jpeg) and r.sha256 == hashlib.sha256(jpeg).hexdigest()
    import cv2
    assert cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR).shape == (96, 160, 3)  # full size


def test_restarts_do_not_reset_the_frames_per_hour(tiny_tflite, tmp_path):
    """A vehicle restarted every few minutes (a crash loop, a flaky power supply) keeps at most per_hour frames in
    any hour: the hour's times outlive the process (<store>/.keep/recent.json); one that is not a list of
    numbers is ignored with a warning; a clock stepped back counts the times ahead of it as now."""
    seg, clock = DeviceSegmenter(tiny_tflite), Clock()
    store_dir = tmp_path / "kept"
    for _ in range(12):  # 12 runs of 4 simulated minutes, 10 distinct scenes each
        keep = KeepFrames(FrameStore(store_dir, 50 * 2 ** 20), seg, "car1",
                          KeepPolicy(per_hour=3, similarity=0), clock=clock, monotonic=clock)
        _drive(keep, seg, clock, 10, 24.0)
        keep.close()
    times = sorted(dt.datetime.fromisoformat(read_record(p).captured_utc).timestamp()
                   for p in store_dir.glob("*.json"))
    assert len(times) == 3  # each run keeps its open window's best at stop: 12 before; 48 minutes hold 3
    (store_dir / ".keep" / "recent.json").write_text('{"not": "a list"}')
    keep = KeepFrames(FrameStore(store_dir, 50 * 2 ** 20), seg, "car1", KeepPolicy(per_hour=3), clock=clock,
                      monotonic=clock)
    assert len(keep._kept_times) == 0
    keep.close()
    (store_dir / ".keep" / "recent.json").write_text(json.dumps([clock.t + 7200.0, clock.t - 7200.0]))
    keep = KeepFrames(FrameStore(store_dir, 50 * 2 ** 20), seg, "car1", KeepPolicy(per_hour=3), clock=clock,
                      monotonic=clock)
    assert list(keep._kept_times) == [clock.t]  # ahead of the clock: now; two hours ago: gone
    keep.close()
    assert json.loads((store_dir / ".keep" / "recent.json").read_text()) == [clock.t]  # saved as now: it ages out


def test_store_never_exceeds_its_bytes_and_keeps_the_best(tiny_tflite, tmp_path):
    seg, clock = DeviceSegmenter(tiny_tflite), Clock()
    limit = 40_000  # a few frames of 96x160
    keep = KeepFrames(FrameStore(tmp_path / "kept", limit), seg, "car1", KeepPolicy(per_hour=60, similarity=0),
                      clock=clock, monotonic=clock)
    for i in range(60):
        _drive(keep, seg, clock, 1, 61.0)
        assert keep.wait_for(lambda: keep.pending == 0, 10)
        used = sum(p.stat().st_size for p in (tmp_path / "kept").iterdir() if p.is_file())
        assert used <= limit and keep.store.bytes_used == used
    keep.close()
    assert keep.counts["evicted"] + keep.counts["store_full"] > 0  # it was full, and stayed within bounds
    scores = sorted(read_record(p).score for p in (tmp_path / "kept").glob("*.json"))
    assert scores and len(scores) == len(keep.store)
    again = FrameStore(tmp_path / "kept", limit)  # a restart finds the same frames
    assert again.names() == keep.store.names() and again.bytes_used == keep.store.bytes_used


def test_one_traffic_jam_is_kept_once(tiny_tflite, tmp_path):
    seg, clock = DeviceSegmenter(tiny_tflite), Clock()
    keep = KeepFrames(FrameStore(tmp_path / "kept", 2 ** 24), seg, "car1", KeepPolicy(per_hour=60), clock=clock,
                      monotonic=clock)
    jam, _ = synthetic_scene(7, 96, 160)
    rng = np.random.default_rng(0)
    for _ in range(40):  # 40 minutes of the same scene, with sensor noise
        frame = np.clip(jam.astype(np.int16) + rng.integers(-3, 4, jam.shape), 0, 255).astype(np.uint8)
        keep.update(frame, "rgb", seg.segment(frame, "rgb"), 0.0)
        clock.t += 60
    keep.close()
    assert keep.counts["kept"] == 1 and keep.counts["similar"] >= 30


def test_half_written_frames_are_removed_at_start(tmp_path):
    (tmp_path / "car1-a.jpg").write_bytes(b"jpeg without record")
    (tmp_path / "car1-b.json").write_text("{}")  # a record without its JPEG (and not the schema)
    (tmp_path / ".car1-c.123.tmp.jpg").write_bytes(b"partial")
    store = FrameStore(tmp_path, 10_000)
    assert len(store) == 0 and store.bytes_used == 0 and sorted(os.listdir(tmp_path)) == []


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 256 KiB tmpfs (we are root in CI): a disk that fills up for real."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)], capture_output=True,
                       check=False)
    if r.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode().strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_a_full_disk_is_reported_once_retried_and_never_raises_into_the_loop(tiny_tflite, small_tmpfs, caplog):
    seg, clock = DeviceSegmenter(tiny_tflite), Clock()
    (small_tmpfs / "filler").write_bytes(b"\0" * 252 * 1024)  # the disk is nearly full already
    keep = KeepFrames(FrameStore(small_tmpfs, 2 ** 24, reserve_bytes=0), seg, "car1",
                      KeepPolicy(per_hour=60, similarity=0, retry_s=0.05), clock=clock, monotonic=clock)
    _drive(keep, seg, clock, 3, 61.0, size=(240, 320))  # frames larger than what is left
    assert keep.wait_for(lambda: keep.disk_fault is not None, 10)
    fault = keep.disk_fault
    assert fault["store"] == "kept-frames" and fault["path"] == str(small_tmpfs)
    assert "No space left" in fault["error"] and fault["since"].endswith("Z")
    from edge_runtime.contract.payloads import Fault
    Fault.model_validate(fault)  # what the loop puts into the retained status as it is
    _drive(keep, seg, clock, 5, 61.0, size=(240, 320))  # the loop goes on; the queue fills and drops, counted
    assert keep.counts["queue_full"] >= 1 and keep.disk_fault == fault
    (small_tmpfs / "filler").unlink()  # room again: the writer's retry succeeds
    assert keep.wait_for(lambda: keep.disk_fault is None and keep.counts["kept"] >= 1, 10)
    keep.close()
    warnings = [r for r in caplog.records if "cannot write" in r.getMessage()]
    assert len(warnings) == 1  # reported once, not once per retry
    assert not list(small_tmpfs.glob(".*tmp*"))  # no half-written file left behind


def _keep(store, seg, clock=None, **policy) -> KeepFrames:
    clock = clock or Clock()
    return KeepFrames(store, seg, "car1", KeepPolicy(**{"per_hour": 60, "similarity": 0, **policy}), clock=clock,
                      monotonic=clock)


def _warnings(caplog, text: str) -> int:
    return sum(1 for r in caplog.records if r.levelno >= logging.WARNING and text in r.getMessage())


def test_a_read_only_card_at_start_is_a_fault_not_an_exit_and_stop_does_not_wait(tiny_tflite, ext4_card, caplog):
    """issue 31 #1, #2: `--keep-frames DIR` on a card the kernel remounted read-only, with a leftover temporary
    file and a JPEG without its record to tidy, and with the folder not yet made: the vehicle starts, the kept
    frames are a fault at once (said once), the loop goes on, and close() does not wait on the disk."""
    seg = DeviceSegmenter(tiny_tflite)
    (ext4_card / "kept").mkdir()
    (ext4_card / "kept" / ".f.123.tmp.jpg").write_bytes(b"partial")
    (ext4_card / "kept" / "x.jpg").write_bytes(b"jpeg without record")
    io_error_remounts_read_only(ext4_card)
    for folder in (ext4_card / "kept", ext4_card / "not-yet" / "kept"):
        caplog.clear()
        store = FrameStore(folder, 2 ** 24, reserve_bytes=0)  # raised EROFS before
        assert not store.ready and store.open_error is not None
        clock = Clock()
        keep = _keep(store, seg, clock, retry_s=30.0)
        fault = keep.disk_fault  # at once, not when the first window closes
        assert fault is not None and fault["store"] == "kept-frames" and fault["path"] == str(folder)
        assert "Read-only file system" in fault["error"] and fault["since"].endswith("Z")
        assert keep.disk_faults == [fault]
        _drive(keep, seg, clock, 4, 61.0)  # three windows close: queued for a writer that cannot write
        assert keep.pending >= 1
        t0 = time.monotonic()
        keep.close()  # used to wait 10 s (the writer asleep for its 30 s retry)
        assert time.monotonic() - t0 < 2.0
        assert keep.counts["not_written"] >= 1 and keep.pending == 0
        assert _warnings(caplog, "kept-frames: cannot write") == 1
        assert _warnings(caplog, "not written at stop") == 1


def test_a_full_card_at_start_is_a_fault_and_keeping_resumes_when_it_has_room(tiny_tflite, ext4_card, caplog):
    """issue 31 #1: the folder cannot be made on a card full to the last byte; the writer's look makes it once
    there is room, by itself, and frames are kept again."""
    seg, clock = DeviceSegmenter(tiny_tflite), Clock()
    filler = fill(ext4_card)
    store = FrameStore(ext4_card / "kept", 2 ** 24, reserve_bytes=0)
    keep = _keep(store, seg, clock, retry_s=0.05, check_s=0.05)
    try:
        assert "No space left" in keep.disk_fault["error"] and not store.ready
        _drive(keep, seg, clock, 2, 61.0)
        filler.unlink()
        assert keep.wait_for(lambda: keep.disk_fault is None and keep.counts["kept"] >= 1, 10)
        assert store.ready and len(store) == keep.counts["kept"]
    finally:
        keep.close()
    assert _warnings(caplog, "kept-frames: cannot write") == 1


def test_a_card_going_read_only_is_a_fault_within_seconds_and_ends_when_it_is_back(tiny_tflite, small_tmpfs):
    """issue 31 #2: with the default windows (120 s), a card remounted read-only is seen by the writer's look
    (statvfs every second), not when a window closes; and the look that finds it writable ends the fault."""
    seg = DeviceSegmenter(tiny_tflite)
    keep = KeepFrames(FrameStore(small_tmpfs / "kept", 2 ** 24, reserve_bytes=0), seg, "car1")  # real clocks
    try:
        frame, _ = synthetic_scene(1, 96, 160)
        keep.update(frame, "rgb", seg.segment(frame, "rgb"), 0.0)
        remount(small_tmpfs, "ro")
        assert keep.wait_for(lambda: keep.disk_fault is not None, 5), "a read-only card was not seen"
        assert keep.disk_fault["error"] == "read-only file system"
        remount(small_tmpfs, "rw")
        assert keep.wait_for(lambda: keep.disk_fault is None, 5), "the fault outlived the card's recovery"
    finally:
        keep.close()
    assert keep.counts["kept"] == 1  # the open window's candidate, at the stop


def test_the_store_leaves_its_reserve_free_on_the_card(tiny_tflite, small_tmpfs, caplog):
    """issue 31 #3: the kept frames stop short of the free-space reserve (room for the offline queue), whatever
    their byte bound allows; said once, and a fault while it lasts."""
    seg, clock = DeviceSegmenter(tiny_tflite), Clock()
    reserve = 200 * 1024  # of the 256 KiB card
    keep = _keep(FrameStore(small_tmpfs, 2 ** 24, reserve_bytes=reserve), seg, clock, retry_s=0.05, check_s=0.05)
    try:
        for _ in range(12):
            _drive(keep, seg, clock, 1, 61.0, size=(120, 200))
            assert keep.wait_for(lambda: keep.pending == 0 or keep.disk_fault is not None, 10)
            if keep.disk_fault is not None:
                break
        assert "disk nearly full: keeping 0.195312 MiB free" in keep.disk_fault["error"]
        st = os.statvfs(small_tmpfs)
        assert st.f_bfree * st.f_frsize >= reserve and 1 <= keep.counts["kept"] < 12
    finally:
        keep.close()
    assert _warnings(caplog, "kept-frames: cannot write") == 1


def test_windows_and_the_hourly_limit_run_on_the_monotonic_clock(tiny_tflite, tmp_path):
    """issue 31 #12: the wall clock steps back a year and then two forward (NTP on a Pi without a real-time
    clock); what is kept is what a steady clock keeps, only dated by the wall clock."""
    seg = DeviceSegmenter(tiny_tflite)
    runs = {}
    for steps in (False, True):
        wall, mono = Clock(), Clock(1000.0)
        keep = KeepFrames(FrameStore(tmp_path / f"kept-{steps}", 2 ** 24), seg, "car1",
                          KeepPolicy(per_hour=6, similarity=0), clock=wall, monotonic=mono)
        for i in range(90):  # 1.5 hours, a frame every 61 s: nine windows of 600 s
            if steps and i == 30:
                wall.t -= 365 * 86400
            if steps and i == 60:
                wall.t += 2 * 365 * 86400
            frame, _ = synthetic_scene(i, 96, 160)
            keep.update(frame, "rgb", seg.segment(frame, "rgb"), 0.0)
            wall.t += 61
            mono.t += 61
        keep.close()
        records = [read_record(p) for p in (tmp_path / f"kept-{steps}").glob("*.json")]
        runs[steps] = (dict(keep.counts), sorted(r.score for r in records), {r.captured_utc[:4] for r in records})
    assert runs[True][0] == runs[False][0] and runs[True][1] == runs[False][1]
    assert runs[False][0]["kept"] >= 8
    assert runs[False][2] == {"2026"} and runs[True][2] == {"2025", "2026", "2027"}  # dated by the wall clock


def test_roadseg_run_keeps_frames_with_its_flags(tiny_tflite, tmp_path):
    from edge_runtime.commands.run import Vehicle, build_parser, cli_settings
    from edge_runtime.commands.settings import load_settings
    args = build_parser().parse_args(["--model", str(tiny_tflite), "--source", "synthetic:96x160@1000", "--fps", "0",
                                      "--max-frames", "20", "--device-id", "car9", "--keep-frames",
                                      str(tmp_path / "kept"), "--keep-max-mb", "1", "--keep-per-hour", "10"])
    settings = load_settings(cli_settings(args), None, env={})
    assert (settings.keep_max_mb, settings.keep_per_hour) == (1.0, 10)
    from edge_runtime.io.mqtt import NullPublisher
    Vehicle(settings, publisher=NullPublisher()).run()
    records = list((tmp_path / "kept").glob("car9-*.json"))
    assert len(records) == 1  # the run's one window: its best frame, kept at the stop
    assert json.loads(records[0].read_text())["model"]["name"] == "tiny-int8"


def test_roadseg_run_starts_with_keep_frames_on_a_read_only_card(tiny_tflite, small_tmpfs, caplog):
    """issue 31 #1: it exited 4 ([Errno 30] Read-only file system from the store's mkdir); now it runs and says
    so once."""
    from edge_runtime.commands.run import Vehicle, build_parser, cli_settings
    from edge_runtime.commands.settings import load_settings
    from edge_runtime.io.mqtt import NullPublisher
    remount(small_tmpfs, "ro")
    args = build_parser().parse_args(["--model", str(tiny_tflite), "--source", "synthetic:96x160@1000", "--fps", "0",
                                      "--max-frames", "20", "--device-id", "car9", "--keep-frames",
                                      str(small_tmpfs / "kept")])
    stats = Vehicle(load_settings(cli_settings(args), None, env={}), publisher=NullPublisher()).run()
    assert stats["frames"] == 20
    assert _warnings(caplog, "kept-frames: cannot write") == 1 and _warnings(caplog, "not written at stop") == 1


def test_upload_flags_need_keep_frames_and_one_target(tiny_tflite):
    from edge_runtime.commands.settings import ConfigError, load_settings
    base = {"model": str(tiny_tflite)}
    with pytest.raises(ConfigError, match="give --keep-frames DIR too"):
        load_settings(base | {"upload_url": "http://ws:8080/kept"}, None, env={})
    with pytest.raises(ConfigError, match="not both"):
        load_settings(base | {"keep_frames": "/tmp/k", "upload_url": "http://a/", "upload_presign": "http://b/"},
                      None, env={})


def test_bench_reports_what_the_score_costs_per_frame(tiny_tflite, capsys):
    from edge_runtime.commands.bench import main
    from edge_runtime.eval.bench import format_markdown, format_table
    assert main(["--model", str(tiny_tflite), "--threads", "1", "--frames", "20", "--warmup", "2", "--rounds", "2",
                 "--frame-size", "96x160", "--keep-score", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    r = report["results"][0]
    assert report["settings"]["keep_score"] is True and r["score_ms"] > 0 and 0 < r["score_share"] < 1
    assert "score ms" in format_table(report).splitlines()[0] and "score %" in format_markdown(report)
    assert main(["--model", str(tiny_tflite), "--threads", "1", "--frames", "4", "--warmup", "1", "--rounds", "1",
                 "--frame-size", "96x160", "--json"]) == 0
    plain = json.loads(capsys.readouterr().out)
    assert plain["results"][0]["score_ms"] is None and "score ms" not in format_table(plain)


def test_a_full_store_refusing_a_candidate_does_not_end_a_read_only_fault(tiny_tflite, small_tmpfs, caplog):
    """issue 31b #3: a candidate that the full store refuses (every kept frame scores higher) was taken for a write
    that succeeded: a card still read-only was said to write again."""
    caplog.set_level(logging.INFO, logger="roadseg.keep")
    seg, clock = DeviceSegmenter(tiny_tflite), Clock()
    store = FrameStore(small_tmpfs / "kept", 2 ** 24, reserve_bytes=0)
    for i in range(2):
        store.add(f"car1-best-{i}", b"\xff" * 20_000, b"{}", 1.0)
    store.max_bytes = store.bytes_used  # full of frames that no candidate beats
    keep = _keep(store, seg, clock, check_s=3600.0)  # the test looks, not the writer
    try:
        remount(small_tmpfs, "ro")
        keep._look()
        fault = keep.disk_fault
        assert fault is not None and fault["error"] == "read-only file system"
        _drive(keep, seg, clock, 3, 61.0)  # two windows close: two candidates for the writer
        assert keep.wait_for(lambda: keep.counts["store_full"] >= 2 and keep.pending == 0, 10)
        assert keep.disk_fault is fault  # the same fault, its since unchanged
        keep._look()
        assert keep.disk_fault is fault
    finally:
        keep.close()
        remount(small_tmpfs, "rw")
    assert sum("writes again" in r.getMessage() for r in caplog.records) == 0


def test_free_space_hovering_at_the_reserve_is_one_fault(tiny_tflite, tmp_path, monkeypatch, caplog):
    """issue 31b #4: free space going a little under and over the reserve (another writer's log) set and cleared
    the fault at every look, said and published again each time; it ends now only with a margin over the
    reserve (8 MiB for the default 64 MiB)."""
    import edge_runtime.flywheel.keep as keep_module
    caplog.set_level(logging.INFO, logger="roadseg.keep")
    reserve = 64 * 2 ** 20
    margin = 8 * 2 ** 20  # keep.reserve_margin(reserve)
    free = [reserve - 1]
    monkeypatch.setattr(keep_module, "free_bytes", lambda folder: (free[0], False))
    keep = _keep(FrameStore(tmp_path / "kept", 2 ** 24, reserve_bytes=reserve), DeviceSegmenter(tiny_tflite),
                 check_s=3600.0)  # the test looks, not the writer
    try:
        keep._look()
        fault = keep.disk_fault
        assert fault is not None and "disk nearly full" in fault["error"]
        for f in (reserve + 1, reserve - 4096, reserve + 16384, reserve - 1, reserve + margin - 1):
            free[0] = f
            keep._look()
            assert keep.disk_fault is fault, f
        free[0] = reserve + margin
        keep._look()
        assert keep.disk_fault is None
        free[0] = reserve + 1  # over the reserve: no fault to begin
        keep._look()
        assert keep.disk_fault is None
        free[0] = reserve - 1
        keep._look()
        assert keep.disk_fault is not None
    finally:
        keep.close()
    assert _warnings(caplog, "kept-frames: cannot write") == 2
    assert sum("writes again" in r.getMessage() for r in caplog.records) == 1
    assert keep_module.reserve_margin(reserve) == margin  # an eighth of larger reserves
    assert keep_module.reserve_margin(256 * 2 ** 20) == 32 * 2 ** 20


def _kept_files(i: int, device: str = "car1", size=(48, 64), score: float = 0.5) -> tuple[str, bytes, bytes]:
    """One kept frame's name, JPEG and record, as the writer thread makes them."""
    import cv2
    import hashlib

    from edge_runtime.flywheel.store import KeptRecord
    frame, _ = synthetic_scene(i, *size)
    jpeg = cv2.imencode(".jpg", frame[..., ::-1])[1].tobytes()
    when = dt.datetime.fromtimestamp(START + i, dt.timezone.utc)
    name = f"{device}-{when:%Y%m%dT%H%M%S.%f}Z"
    rec = KeptRecord(name=name, device_id=device, captured_utc=when.isoformat(), model={"name": "m", "sha256": None},
                     score=score, why={"uncertain": score}, reason="test", size=list(size), bytes=len(jpeg),
                     sha256=hashlib.sha256(jpeg).hexdigest())
    return name, jpeg, rec.to_json()


def test_the_store_opens_at_once_whatever_a_record_file_is(tmp_path):
    """Records that are a FIFO, a link to /dev/zero, JSON nested too deep for the parser, or name another frame
    are removed at open (with their JPEGs), without a wait and without reading more than a record may hold;
    the whole frame beside them stays."""
    folder = tmp_path / "kept"
    store = FrameStore(folder, 2 ** 24, reserve_bytes=0)
    keep, jpeg, record = _kept_files(0)
    store.add(keep, jpeg, record, 0.5)
    bad = [_kept_files(i)[0] for i in range(1, 5)]
    for name in bad:
        (folder / f"{name}.jpg").write_bytes(jpeg)
    os.mkfifo(folder / f"{bad[0]}.json")
    (folder / f"{bad[1]}.json").symlink_to("/dev/zero")
    (folder / f"{bad[2]}.json").write_text("[" * 8000 + "]" * 8000)  # under the 16 KiB a record may have
    (folder / f"{bad[3]}.json").write_bytes(record)  # the record of another frame
    reopened = FrameStore(folder, 2 ** 24, reserve_bytes=0)  # would hang on the FIFO, fill memory on /dev/zero
    assert reopened.ready and reopened.names() == [keep]
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) == [f"{keep}.jpg", f"{keep}.json"]


def test_a_frame_cut_short_by_a_power_cut_is_not_kept(tmp_path):
    """A JPEG that is not the size its record says (written, renamed, its data lost with the power: the store
    now fsyncs before the rename, a file system may still lose it) is removed at open, never uploaded whole."""
    folder = tmp_path / "kept"
    store = FrameStore(folder, 2 ** 24, reserve_bytes=0)
    names = []
    for i, cut in enumerate((0, 100, None)):
        name, jpeg, record = _kept_files(i)
        store.add(name, jpeg, record, 0.5)
        if cut is not None:
            (folder / f"{name}.jpg").write_bytes(jpeg[:cut])
        names.append(name)
    assert FrameStore(folder, 2 ** 24, reserve_bytes=0).names() == [names[2]]


def test_the_store_is_within_its_bytes_from_the_moment_it_opens(tmp_path):
    """A restart with a smaller bound (or a folder that holds more): the lowest-scoring frames go at open."""
    folder = tmp_path / "kept"
    store = FrameStore(folder, 2 ** 24, reserve_bytes=0)
    sizes = {}
    for i in range(8):
        name, jpeg, record = _kept_files(i, score=i / 10)
        store.add(name, jpeg, record, i / 10)
        sizes[name] = len(jpeg) + len(record)
    bound = sum(sorted(sizes.values())[:3]) + 10
    smaller = FrameStore(folder, bound, reserve_bytes=0)
    assert smaller.bytes_used <= bound
    kept = smaller.names()
    assert kept == sorted(sizes, reverse=True)[:len(kept)] and len(kept) >= 2  # the best ones, by score
    on_disk = sum(p.stat().st_size for p in folder.iterdir() if not p.name.startswith("."))
    assert on_disk == smaller.bytes_used


@pytest.mark.parametrize("field,value", [
    ("why", {"uncertain": float("nan")}), ("why", {"rare": float("inf")}), ("score", float("nan")),
    ("size", [-5, 0]), ("size", [100000, 100]), ("captured_utc", "yesterday"),
    ("captured_utc", "2026-05-04T08:00:00"), ("bytes", 0), ("name", "car2-20260504T080000.000000Z"),
    ("name", "car1-x/../../y"), ("model", {f"k{i}": "v" for i in range(50)})])
def test_a_record_that_breaks_the_schema_is_refused(field, value):
    """What a record may say: finite numbers, a size in pixels, an ISO 8601 time with its offset, a name that is
    its own vehicle's (car1's frames are named car1-...) and no path."""
    from pydantic import ValidationError

    from edge_runtime.flywheel.store import KeptRecord
    doc = json.loads(_kept_files(0)[2])
    KeptRecord.model_validate(doc)  # the record as written is valid
    doc[field] = value
    with pytest.raises(ValidationError):
        KeptRecord.model_validate(doc)
