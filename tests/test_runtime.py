"""The vehicle runtime against a real broker: schema, retained status, Last
Will, broker outage, pacing, sources, and bad inputs."""
import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import Subscriber
from edge_runtime.coverage import ZONES, CoverageAggregator, frame_coverage
from edge_runtime.labels import CATEGORIES
from edge_runtime.run import ConfigError, Runner, load_settings, main as run_main

ROOT = Path(__file__).resolve().parents[1]


def _args(model, broker, *extra):
    return ["--model", str(model), "--mqtt-host", "127.0.0.1", "--mqtt-port", str(broker.port),
            "--mqtt-protocol", "5" if broker.mqtt5 else "3.1.1", *extra]


def _check_coverage_schema(p):
    assert p["schema"] == "roadseg.coverage/1"
    assert set(p) >= {"device_id", "seq", "ts", "frames", "coverage", "zones", "fps", "latency_ms", "model"}
    assert list(p["coverage"]) == list(CATEGORIES)
    assert sum(p["coverage"].values()) == pytest.approx(1.0, abs=1e-4)
    assert set(p["zones"]) == set(ZONES)
    assert p["ts"].endswith("Z") and "T" in p["ts"]
    assert set(p["latency_ms"]) == {"inference", "total"} and p["model"]["sha256"]


# --- pieces ---------------------------------------------------------------------------

def test_coverage_one_pass_matches_zone_slices():
    """frame_coverage counts all zones in one bincount; check it against slicing each zone."""
    rng = np.random.default_rng(0)
    for h, w in ((8, 16), (32, 64), (7, 11), (1, 3)):
        m = rng.integers(0, 8, (h, w)).astype(np.uint8)
        t = w // 3
        boxes = {"road_ahead": m[h - max(1, round(h * 0.4)):, t:w - t], "left": m[:, :t],
                 "centre": m[:, t:w - t], "right": m[:, w - t:]}
        frac, zones = frame_coverage(m)
        np.testing.assert_allclose(frac, np.bincount(m.ravel(), minlength=8) / m.size)
        for z, got in zip(ZONES, zones):
            box = boxes[z]
            n = max(box.size, 1)
            assert got[0] == pytest.approx((box == 1).sum() / n)
            assert got[1] == pytest.approx(np.isin(box, [3, 6, 7]).sum() / n)


def test_coverage_fractions_and_zones():
    m = np.zeros((10, 9), np.uint8)
    m[6:, 3:6] = 1           # road ahead: drivable
    m[:, :3] = 7             # left third: vehicle
    frac, zones = frame_coverage(m)
    assert frac.sum() == pytest.approx(1.0)
    assert frac[7] == pytest.approx(30 / 90) and frac[1] == pytest.approx(12 / 90)
    z = dict(zip(ZONES, zones))
    assert z["road_ahead"][0] == pytest.approx(1.0)
    assert z["left"][1] == pytest.approx(1.0) and z["right"][1] == 0.0
    agg = CoverageAggregator()
    agg.add(m)
    agg.add(np.ones_like(m))
    s = agg.summary()
    assert s["frames"] == 2 and sum(s["coverage"].values()) == pytest.approx(1.0, abs=1e-5)
    assert s["coverage"]["flat"] == pytest.approx((12 / 90 + 1) / 2, abs=1e-6)


def test_segmenter_reads_interpreter_and_sidecar(tiny_tflite):
    from edge_runtime.model.segmenter import DeviceSegmenter
    from edge_runtime.synthetic import synthetic_scene
    seg = DeviceSegmenter(tiny_tflite, threads=1)
    assert seg.input_size == (64, 128) and seg.output_size == (8, 16) and seg.output_kind == "logits"
    img, _ = synthetic_scene(0, 120, 240)
    a = seg.segment(img, "rgb").copy()
    b = seg.segment(cv2.cvtColor(img, cv2.COLOR_RGB2BGR), "bgr").copy()
    assert a.shape == (8, 16) and a.dtype == np.uint8 and np.array_equal(a, b)
    assert seg.segment_classes(img).shape == (64, 128)
    assert seg.timing.invoke_ms > 0


def test_sources(tmp_path):
    from edge_runtime.io.sources import LatestFrameSource, SourceError, SyntheticCamera, open_source
    from edge_runtime.synthetic import synthetic_scene
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


def test_settings_precedence_and_errors(tmp_path):
    cfg = tmp_path / "r.toml"
    cfg.write_text('model = "from-file.tflite"\nfps = 5\ndevice_id = "file"\n')
    s = load_settings({"device_id": "cli"}, str(cfg), env={"ROADSEG_FPS": "7", "ROADSEG_MQTT_PORT": "1999"})
    assert (s.model, s.fps, s.device_id, s.mqtt_port) == ("from-file.tflite", 7.0, "cli", 1999)
    bad = tmp_path / "bad.toml"
    bad.write_text("model = [unclosed\n")
    with pytest.raises(ConfigError, match="malformed config file"):
        load_settings({}, str(bad), env={})
    unknown = tmp_path / "u.toml"
    unknown.write_text('modle = "x"\n')
    with pytest.raises(ConfigError, match="unknown settings"):
        load_settings({}, str(unknown), env={})
    with pytest.raises(ConfigError, match="not a valid"):
        load_settings({"model": "m"}, None, env={"ROADSEG_FPS": "fast"})


# --- against the broker -----------------------------------------------------------

def test_run_publishes_schema_valid_summaries_then_offline(tiny_tflite, broker, capsys):
    sub = Subscriber(broker.port, "roadseg/car1/#")
    try:
        rc = run_main(_args(tiny_tflite, broker, "--source", "synthetic:64x128@40", "--fps", "20",
                            "--device-id", "car1", "--max-frames", "30", "--publish-interval", "0.25",
                            "--stats-interval", "0.5"))
        assert rc == 0
        assert sub.wait_for(lambda m: m[0].endswith("/status") and m[1]["state"] == "offline")
        cov = [m[1] for m in sub.of("/coverage")]
        assert len(cov) >= 3
        for p in cov:
            _check_coverage_schema(p)
        seqs = [p["seq"] for p in cov]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
        assert sum(p["frames"] for p in cov) == 30
        stats = [m[1] for m in sub.of("/stats")]
        assert stats and stats[-1]["frames"] == 30 and stats[-1]["fps"]["target"] == 20
        assert {"p50", "p90", "p99"} <= set(stats[-1]["latency_ms"]) and "memory" in stats[-1]
        status = sub.of("/status")
        assert status[0][1]["state"] == "online" and status[-1][1]["state"] == "offline"
        assert status[0][1]["model"]["sha256"]
    finally:
        sub.close()
    # a late subscriber sees the retained offline status
    late = Subscriber(broker.port, "roadseg/car1/status", client_id="late")
    try:
        assert late.wait_for(lambda m: m[2] and m[1]["state"] == "offline", timeout=5)
    finally:
        late.close()


def test_last_will_when_killed(tiny_tflite, broker):
    sub = Subscriber(broker.port, "roadseg/car2/status")
    proc = subprocess.Popen([sys.executable, "-m", "edge_runtime.run",
                             *_args(tiny_tflite, broker, "--source", "synthetic:64x128@20", "--fps", "10",
                                    "--device-id", "car2", "--duration", "120")],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        assert sub.wait_for(lambda m: m[1]["state"] == "online", timeout=60)
        proc.kill()  # no clean stop: only the broker's Last Will can say offline
        proc.wait(timeout=10)
        assert sub.wait_for(lambda m: m[1]["state"] == "offline" and m[1].get("reason") == "lost", timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        sub.close()


def test_sigterm_stops_cleanly(tiny_tflite, broker):
    sub = Subscriber(broker.port, "roadseg/car3/status")
    proc = subprocess.Popen([sys.executable, "-m", "edge_runtime.run",
                             *_args(tiny_tflite, broker, "--source", "synthetic:64x128@20", "--fps", "10",
                                    "--device-id", "car3", "--duration", "120")],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert sub.wait_for(lambda m: m[1]["state"] == "online", timeout=60)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert "stopped (signal)" in err
        assert sub.wait_for(lambda m: m[1]["state"] == "offline" and m[1].get("reason") == "stopped", timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
        sub.close()


def test_broker_outage_loses_nothing_within_queue(tiny_tflite, broker):
    sub = Subscriber(broker.port, "roadseg/car4/coverage", client_id="outage-sub")
    settings = load_settings({"model": str(tiny_tflite), "source": "synthetic:64x128@30", "fps": 20,
                              "device_id": "car4", "mqtt_host": "127.0.0.1", "mqtt_port": broker.port,
                              "mqtt_protocol": "5" if broker.mqtt5 else "3.1.1", "publish_interval": 0.2,
                              "duration": 9.0, "max_queued": 500}, None, env={})
    runner = Runner(settings)
    t = threading.Thread(target=runner.run)
    t.start()
    try:
        assert sub.wait_for(lambda m: True, timeout=30)
        time.sleep(1.0)
        broker.stop()
        time.sleep(3.0)  # summaries pile up in the runtime's queue
        broker.start()
        t.join(timeout=60)
        assert not t.is_alive()
        time.sleep(2.0)
        seqs = sorted(m[1]["seq"] for m in sub.of("/coverage"))
        assert runner.publisher.counts["dropped"] == 0
        assert seqs[-1] == runner.seq  # the last summary arrived
        assert seqs == list(range(seqs[0], seqs[-1] + 1)), f"gaps in {seqs}"
        assert len(seqs) >= runner.seq - 1  # at most the first one, sent before the subscriber's session
    finally:
        runner.request_stop()
        t.join(timeout=30)
        sub.close()


def test_bounded_queue_drops_oldest_and_counts():
    from edge_runtime.io.publisher import MqttPublisher, MqttSettings
    from edge_runtime.io.publisher import free_port
    pub = MqttPublisher(MqttSettings(port=free_port(), max_queued=3, device_id="q"))
    pub.start()
    try:
        for i in range(5):
            pub.publish("coverage", {"seq": i})
        assert pub.counts["dropped"] == 2
        assert [json.loads(b)["seq"] for _, b, _ in pub._queue] == [2, 3, 4]
    finally:
        pub.stop(timeout=0.1)


class SlowSegmenter:
    """Wraps the real segmenter and adds 40 ms per frame: slower than the target."""

    def __init__(self, seg):
        self.seg = seg

    def __getattr__(self, name):
        return getattr(self.seg, name)

    def segment(self, frame, order="rgb"):
        time.sleep(0.04)
        return self.seg.segment(frame, order)


def test_pacing_skips_frames_when_model_is_slower(tiny_tflite, broker):
    from edge_runtime.model.segmenter import DeviceSegmenter
    settings = load_settings({"model": str(tiny_tflite), "source": "synthetic:64x128@60", "fps": 50,
                              "device_id": "car5", "mqtt_host": "127.0.0.1", "mqtt_port": broker.port,
                              "mqtt_protocol": "5" if broker.mqtt5 else "3.1.1", "duration": 3.0}, None, env={})
    runner = Runner(settings, segmenter=SlowSegmenter(DeviceSegmenter(tiny_tflite)))
    summary = runner.run()
    achieved = summary["fps"]["achieved"]
    assert achieved < 30  # honest: about 1 / 40 ms, not the target of 50
    assert summary["dropped_frames"] > 30  # the camera's newer frames replaced unread ones
    assert summary["skipped_ticks"] > 0


# --- bad inputs: clear errors, non-zero exits ------------------------------------------

def _run_cli(*args, timeout=60):
    return subprocess.run([sys.executable, "-m", "edge_runtime.run", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


def test_missing_and_non_tflite_model(tmp_path):
    r = _run_cli("--model", str(tmp_path / "missing.tflite"), "--source", "synthetic")
    assert r.returncode == 2 and "model not found" in r.stderr
    junk = tmp_path / "x.tflite"
    junk.write_text("hello")
    r = _run_cli("--model", str(junk), "--source", "synthetic")
    assert r.returncode == 2 and "not a TFLite model" in r.stderr


def test_model_input_not_an_image(tmp_path):
    tf = pytest.importorskip("tensorflow")

    @tf.function(input_signature=[tf.TensorSpec([1, 10], tf.float32)])
    def f(x):
        return {"y": x * 2.0}
    conv = tf.lite.TFLiteConverter.from_concrete_functions([f.get_concrete_function()], None)
    path = tmp_path / "vec.tflite"
    path.write_bytes(conv.convert())
    r = _run_cli("--model", str(path), "--source", "synthetic")
    assert r.returncode == 2 and "not an image" in r.stderr


def test_source_cannot_be_opened(tiny_tflite, broker):
    r = _run_cli(*_args(tiny_tflite, broker, "--source", "v4l2:/dev/video99", "--max-frames", "1"))
    assert r.returncode == 4 and "cannot open camera" in r.stderr  # a runtime failure, not bad usage


def test_malformed_config(tmp_path):
    bad = tmp_path / "c.toml"
    bad.write_text("fps = = 3")
    r = _run_cli("--config", str(bad))
    assert r.returncode == 2 and "malformed config file" in r.stderr


def test_unreachable_broker_keeps_running_and_says_so(tiny_tflite):
    from edge_runtime.io.publisher import free_port
    port = free_port()
    r = _run_cli("--model", str(tiny_tflite), "--source", "synthetic:64x128@30", "--fps", "10",
                 "--mqtt-host", "127.0.0.1", "--mqtt-port", str(port), "--duration", "3",
                 "--device-id", "car6")
    assert r.returncode == 0, r.stderr
    assert "unreachable" in r.stderr and "retrying" in r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["frames"] > 0 and out["mqtt"]["queued"] > 0 and out["mqtt"]["sent"] == 0
