"""The vehicle keeps the frames its model is unsure of (issue 30, item 1): the score, the bounded and diverse
store, the writer thread off the loop with its disk-fault report, roadseg-run's --keep-frames."""
from __future__ import annotations

import datetime as dt
import json
import os
import subprocess

import numpy as np
import pytest

from edge_runtime.eval.synthetic import synthetic_scene
from edge_runtime.flywheel.keep import KeepFrames, KeepPolicy
from edge_runtime.flywheel.score import TeachScorer
from edge_runtime.flywheel.store import FrameStore, read_record
from edge_runtime.model.segmenter import DeviceSegmenter

START = dt.datetime(2026, 5, 4, 8, 0, tzinfo=dt.timezone.utc).timestamp()


class Clock:
    """Unix seconds that move only when told."""

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
                      clock=clock)
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


def test_store_never_exceeds_its_bytes_and_keeps_the_best(tiny_tflite, tmp_path):
    seg, clock = DeviceSegmenter(tiny_tflite), Clock()
    limit = 40_000  # a few frames of 96x160
    keep = KeepFrames(FrameStore(tmp_path / "kept", limit), seg, "car1", KeepPolicy(per_hour=60, similarity=0),
                      clock=clock)
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
    keep = KeepFrames(FrameStore(tmp_path / "kept", 2 ** 24), seg, "car1", KeepPolicy(per_hour=60), clock=clock)
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
    keep = KeepFrames(FrameStore(small_tmpfs, 2 ** 24), seg, "car1",
                      KeepPolicy(per_hour=60, similarity=0, retry_s=0.05), clock=clock)
    _drive(keep, seg, clock, 3, 61.0, size=(240, 320))  # frames larger than what is left
    assert keep.wait_for(lambda: keep.disk_fault is not None, 10)
    fault = keep.disk_fault
    assert fault["store"] == "kept-frames" and fault["path"] == str(small_tmpfs)
    assert "No space left" in fault["error"] and fault["since"].endswith("+00:00")
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
