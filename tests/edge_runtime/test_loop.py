"""The run loop: capture -> segment -> summarize -> publish, pacing, stop, camera loss."""
from __future__ import annotations

import json
import logging
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from edge_runtime.commands.run import Vehicle
from edge_runtime.commands.run import main as run_main
from edge_runtime.commands.settings import load_settings
from edge_runtime.contract.coverage import ZONES
from edge_runtime.contract.labels import CATEGORIES
from edge_runtime.io.sources import (
    LatestFrameSource,
    SyntheticCamera,
)
from edge_runtime.loop import Runner
from tests.support import Subscriber, Watchdog, until


def test_latency_windows_are_bounded(tiny_tflite, monkeypatch):
    import edge_runtime.loop as run
    from edge_runtime.io.mqtt import NullPublisher
    monkeypatch.setattr(run, "LATENCY_WINDOW", 50)
    s = load_settings({"model": str(tiny_tflite), "source": "synthetic:64x128@1000", "fps": 0,
                       "max_frames": 200, "device_id": "mem"}, None, env={})
    runner = Runner(s, publisher=NullPublisher())
    summary = runner.run()
    assert summary["frames"] == 200
    assert len(runner.latencies) == 50 and len(runner.inference) == 50

ROOT = Path(__file__).resolve().parents[2]

def _run_cli(*args, timeout=60, env=None):
    import os
    return subprocess.run([sys.executable, "-m", "edge_runtime.commands.run", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, env=dict(os.environ, **(env or {})))

def test_http_port_in_use_fails_with_exit_4(tiny_tflite, broker):
    pytest.importorskip("fastapi")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = _run_cli("--model", str(tiny_tflite), "--source", "synthetic:64x128@30", "--mqtt-host", "127.0.0.1",
                     "--mqtt-port", str(broker.port), "--mqtt-protocol", "3.1.1", "--http", f"127.0.0.1:{port}",
                     "--max-frames", "5")
    assert r.returncode == 4 and f"--http 127.0.0.1:{port}: cannot listen there" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr

def _settings(model, broker, **kw):
    base = {"model": str(model), "source": "synthetic:64x128@30", "fps": 20, "device_id": "t1",
            "mqtt_host": "127.0.0.1", "mqtt_port": broker.port,
            "mqtt_protocol": "5" if broker.mqtt5 else "3.1.1", "publish_interval": 0.2}
    return load_settings(base | kw, None, env={})


def _states(sub):
    return [m[1]["state"] for m in sub.of("/status") if m[1]]

def test_camera_lost_is_a_state_with_watchdog_pings_and_recovery(tiny_tflite, broker, tmp_path, monkeypatch):
    wd = Watchdog(tmp_path / "notify")
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify"))
    cam = SyntheticCamera((64, 128), 30.0)
    cam.unplug()  # not there at start: the first open retries too
    source = LatestFrameSource(cam, "usb-cam").start(wait=False)
    sub = Subscriber(broker.port, "roadseg/t1/#", client_id="cam-sub")
    vehicle = Vehicle(_settings(tiny_tflite, broker, duration=40.0, camera_wait=30.0), source=source)
    t = threading.Thread(target=vehicle.run)
    t.start()
    try:
        assert vehicle.ready.wait(30)
        runner = vehicle.runner
        assert sub.wait_for(lambda m: m[0].endswith("/status") and m[1]["state"] == "camera_lost", timeout=15)
        cam.plug()
        t_back = time.monotonic()
        assert sub.wait_for(lambda m: m[0].endswith("/coverage"), timeout=10)
        assert time.monotonic() - t_back < 5
        assert _states(sub)[-1] == "online"
        n = runner.frames
        last_cov = sub.of("/coverage")[-1][1]["ts"]
        cam.unplug()  # unplugged while running
        t_lost = time.monotonic()
        assert sub.wait_for(lambda m: m[0].endswith("/status") and m[1]["state"] == "camera_lost"
                            and m[1]["ts"] > last_cov, timeout=10)
        time.sleep(3)
        pings_while_lost = [p for p in wd.pings if p > t_lost + 1]
        assert len(pings_while_lost) >= 2  # systemd keeps hearing from the loop
        cam.plug()
        t_back = time.monotonic()
        while runner.frames <= n + 5 and time.monotonic() - t_back < 10:
            time.sleep(0.05)
        assert runner.frames > n + 5 and time.monotonic() - t_back < 5
        assert source.reconnects >= 1 and t.is_alive()
    finally:
        vehicle.request_stop()
        t.join(timeout=30)
        sub.close()
        wd.stop.set()
    # the retained status a newcomer sees is the latest
    late = Subscriber(broker.port, "roadseg/t1/status", client_id="late-cam")
    try:
        assert late.wait_for(lambda m: m[2] and m[1]["state"] == "offline", timeout=10)
    finally:
        late.close()

def test_a_low_fps_keeps_the_watchdog_stats_and_signals_between_its_frames(tiny_tflite, broker, tmp_path,
                                                                          monkeypatch):
    """At --fps 0.02 (a frame every 50 s) the pacer slept the whole period: one watchdog ping per frame
    (systemd's WatchdogSec=60 a hair away, and any --fps under 1/60 restarted the vehicle for nothing),
    stats late by up to a period and a stop request waiting as long. Now the loop wakes every second
    between frames; its liveness between them comes from the camera's own frames."""
    wd = Watchdog(tmp_path / "notify")
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify"))
    sub = Subscriber(broker.port, "roadseg/t1/#", client_id="slow-fps-sub")
    vehicle = Vehicle(_settings(tiny_tflite, broker, fps=0.02, stats_interval=1.0, duration=300.0))
    t = threading.Thread(target=vehicle.run)
    t.start()
    try:
        assert vehicle.ready.wait(30)
        assert until(lambda: vehicle.runner.frames == 1, 20)
        first = len(wd.pings)
        assert until(lambda: len(wd.pings) >= first + 3, 20)  # a ping a second, not a ping a frame
        assert sub.wait_for(lambda m: m[0].endswith("/stats") and m[1]["frames"] == 1, timeout=20)
        assert vehicle.runner.frames == 1 and vehicle.runner.liveness()["status"] == "ok"
    finally:
        asked = time.monotonic()
        vehicle.request_stop()
        t.join(timeout=45)
        sub.close()
        wd.stop.set()
    assert not t.is_alive() and time.monotonic() - asked < 30  # not the rest of a 50 s frame period


def test_a_low_fps_window_gives_no_verdict_until_it_spans_two_frame_periods():
    """The progress line looks every --log-interval; between two frames of --fps 0.1 a 5 s window holds 0 or
    1 frames, and it said "the model is the limit" of a loop that kept its target (adversary, low --fps)."""
    from edge_runtime.loop import LoadWindow
    w = LoadWindow(0.0)
    w.frames = 1
    assert w.limit(5.0, 0.1, 0.3) == ""  # 5 s of a 10 s period: no verdict, and it goes on counting
    w.frames += 1
    assert w.limit(20.0, 0.1, 0.3) == ""  # 2 frames in 20 s: the target kept
    w.frames = 1
    assert "the model is the limit" in w.limit(40.0, 0.1, 9000.0)  # 1 frame in 20 s: below it
    fast = LoadWindow(0.0)
    fast.frames = 10
    assert "the model is the limit" in fast.limit(5.0, 10.0, 80.0)  # a normal --fps is judged as before


def test_between_the_frames_of_a_low_fps_a_swap_is_applied_and_a_file_that_ended_stops_the_run(tiny_tflite,
                                                                                            tmp_path):
    """A model update waited for the next tick (50 s at --fps 0.02: the updater gives up after 30 s), and a
    video that ended between two ticks was noticed only at the next one (/healthz read stalled meanwhile)."""
    import cv2
    import numpy as np

    from edge_runtime.io.mqtt import NullPublisher
    from edge_runtime.model.segmenter import DeviceSegmenter
    s = load_settings({"model": str(tiny_tflite), "source": "synthetic:64x128@30", "fps": 0.02, "device_id": "sw1",
                       "duration": 300.0}, None, env={})
    runner = Runner(s, publisher=NullPublisher())
    t = threading.Thread(target=runner.run)
    t.start()
    try:
        assert until(lambda: runner.frames == 1, 20)
        swapped = threading.Event()
        runner.request_swap(DeviceSegmenter(str(tiny_tflite), 1, None, {}, size=runner.seg.input_size),
                            lambda old: swapped.set())
        assert swapped.wait(10) and runner.frames == 1  # between two frames, not at the next one
    finally:
        runner.request_stop()
        t.join(30)
    video = tmp_path / "short.avi"
    out = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (128, 64))
    for i in range(10):  # one second of video
        out.write(np.full((64, 128, 3), 20 * i, np.uint8))
    out.release()
    s = load_settings({"model": str(tiny_tflite), "source": str(video), "fps": 0.02, "device_id": "end1"},
                      None, env={})
    runner = Runner(s, publisher=NullPublisher())
    done = threading.Event()
    t = threading.Thread(target=lambda: (runner.run(), done.set()))
    t.start()
    try:
        assert done.wait(30)  # not the rest of a 50 s frame period
    finally:
        runner.request_stop()
        t.join(30)
    assert runner.exit_reason == "end of source" and runner.frames == 1


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
    proc = subprocess.Popen([sys.executable, "-m", "edge_runtime.commands.run",
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
    proc = subprocess.Popen([sys.executable, "-m", "edge_runtime.commands.run",
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

class SlowSegmenter:
    """Wraps the real segmenter and adds 40 ms per frame: slower than the target."""

    def __init__(self, seg):
        self.seg = seg

    def __getattr__(self, name):
        return getattr(self.seg, name)

    def segment(self, frame, order="rgb"):
        time.sleep(0.04)
        return self.seg.segment(frame, order)

def test_pacing_skips_frames_when_model_is_slower(tiny_tflite, broker, caplog):
    from edge_runtime.model.segmenter import DeviceSegmenter
    settings = load_settings({"model": str(tiny_tflite), "source": "synthetic:64x128@60", "fps": 50,
                              "device_id": "car5", "mqtt_host": "127.0.0.1", "mqtt_port": broker.port,
                              "mqtt_protocol": "5" if broker.mqtt5 else "3.1.1", "duration": 3.0}, None, env={})
    with caplog.at_level(logging.INFO, logger="roadseg.run"):
        summary = Vehicle(settings, segmenter=SlowSegmenter(DeviceSegmenter(tiny_tflite))).run()
    stop = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("stopped"))
    assert "the model is the limit" in stop and "the source delivers" not in stop, stop
    achieved = summary["fps"]["achieved"]
    assert achieved < 30  # honest: about 1 / 40 ms, not the target of 50
    assert summary["dropped_frames"] > 30  # the camera's newer frames replaced unread ones
    assert summary["skipped_ticks"] > 0


def _marker_roundtrip(sub, port, topic, payload):
    """Publish ``payload`` on ``topic`` and wait until ``sub`` has it: everything the
    broker had for ``sub`` before (retained messages included) has arrived by then."""
    import paho.mqtt.publish as publish
    publish.single(topic, payload, qos=1, hostname="127.0.0.1", port=port)
    assert sub.wait_for(lambda m: m[0] == topic and m[1] == payload, timeout=20)


def test_display_without_a_gui_fails_before_anything_starts(tiny_tflite, broker):
    from edge_runtime.io.views import check_display
    try:
        check_display()
        pytest.skip("this OpenCV can open a window here")
    except RuntimeError:
        pass
    sub = Subscriber(broker.port, "roadseg/disp/#", client_id="disp-sub")
    try:
        _marker_roundtrip(sub, broker.port, "roadseg/disp/marker", 1)  # subscribed before the run
        r = _run_cli(*_args(tiny_tflite, broker, "--source", "synthetic:64x128@30", "--device-id", "disp",
                            "--display", "--max-frames", "5"))
        errors = [ln for ln in r.stderr.splitlines() if "error" in ln]
        assert r.returncode == 4 and len(errors) == 1 and "--display" in errors[0], r.stderr
        assert "opencv-python" in errors[0] or "--preview" in errors[0]
        assert "cmake" not in r.stderr and "Traceback" not in r.stderr
        _marker_roundtrip(sub, broker.port, "roadseg/disp/marker", 2)
        assert sub.of("/status") == []  # the publisher never connected: nothing was started
    finally:
        sub.close()


def test_display_without_a_gui_fails_before_the_model_loads(tiny_tflite, tmp_path):
    """Issue 33: --display is checked first: with a model file that cannot load, the one error is --display's."""
    import shutil

    from edge_runtime.io.views import check_display
    try:
        check_display()
        pytest.skip("this OpenCV can open a window here")
    except RuntimeError:
        pass
    bad = tmp_path / "broken.tflite"
    bad.write_bytes(b"\0" * 4096)  # loading it fails ("not a TFLite model") if it is ever loaded
    shutil.copyfile(tiny_tflite.with_suffix(".json"), bad.with_suffix(".json"))
    r = _run_cli("--model", str(bad), "--source", "synthetic:64x128@30", "--display", "--max-frames", "3",
                 "--mqtt-host", "127.0.0.1", "--mqtt-port", "1")
    errors = [ln for ln in r.stderr.splitlines() if "error" in ln]
    assert r.returncode == 4 and len(errors) == 1 and "--display" in errors[0], r.stderr
    assert "TFLite" not in r.stderr, r.stderr


def test_embedded_broker_refuses_a_taken_port(tiny_tflite):
    """A broker already on the port (apt's mosquitto on 1883): one line, exit 4, no quiet move elsewhere."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = _run_cli("--model", str(tiny_tflite), "--source", "synthetic:64x128@30", "--mqtt-port", str(port),
                     "--max-frames", "3")
    errors = [ln for ln in r.stderr.splitlines() if "error" in ln]
    assert r.returncode == 4 and len(errors) == 1, r.stderr
    assert f"port {port} on 127.0.0.1 is taken" in errors[0] and "--mqtt-host" in errors[0]


@pytest.mark.parametrize("extra,target", [([], 0), (["--fps", "7"], 7)])
def test_no_realtime_is_unpaced_unless_fps_is_given(tiny_tflite, broker, extra, target):
    r = _run_cli(*_args(tiny_tflite, broker, "--source", "synthetic:64x128", "--no-realtime", "--device-id", "nrt",
                        "--max-frames", "20", "--json", *extra))
    assert r.returncode == 0, r.stderr
    stats = json.loads(r.stdout.strip().splitlines()[-1])
    assert stats["fps"]["target"] == target and stats["frames"] == 20
    assert ("target none" in r.stderr) == (target == 0) and ("unpaced" in r.stderr) == (target == 0)


def test_start_up_line_names_model_backend_threads_source_and_resolution(tiny_tflite, caplog):
    from edge_runtime.io.mqtt import NullPublisher
    s = load_settings({"model": str(tiny_tflite), "source": "synthetic:72x136@1000", "fps": 0, "max_frames": 2,
                       "threads": 1, "device_id": "start"}, None, env={})
    with caplog.at_level(logging.INFO, logger="roadseg.run"):
        Runner(s, publisher=NullPublisher()).run()
    line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("running "))
    for part in (str(tiny_tflite), "int8", "input 64x128", "litert", "1 threads", "synthetic:72x136@1000",
                 "72x136 frames", "unpaced"):
        assert part in line, (part, line)


def test_progress_says_the_source_is_the_limit(tiny_tflite, caplog):
    """--fps above what the camera delivers: the log names the source, not a vague shortfall."""
    from edge_runtime.io.mqtt import NullPublisher
    s = load_settings({"model": str(tiny_tflite), "source": "synthetic:64x128@8", "fps": 30, "duration": 2.5,
                       "log_interval": 1.0, "device_id": "slowcam"}, None, env={})
    with caplog.at_level(logging.INFO, logger="roadseg.run"):
        Runner(s, publisher=NullPublisher()).run()
    progress = [r.getMessage() for r in caplog.records if "FPS (target 30" in r.getMessage()]
    stop = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("stopped"))
    assert progress and all("the source delivers only" in p for p in progress), progress
    assert "the source delivers only" in stop and "the model is the limit" not in stop


def test_the_status_lists_every_store_a_view_or_fault_source_holds(tiny_tflite):
    """A view may hold several stores (the kept frames and their upload journal); model updates are a fault
    source beside the views: every fault of every one is listed, in the payload's schema."""
    from edge_runtime.contract import payloads
    from edge_runtime.io.mqtt import NullPublisher

    def fault(store):
        return {"store": store, "path": f"/var/lib/roadseg/{store}", "error": "disk full", "since": "2026-12-06T00:00:00Z"}

    class KeepView:
        disk_faults = [fault("kept-frames"), fault("upload-journal")]

        def show(self, *a, **k):
            pass

    class Updates:
        disk_fault = fault("model-update")

    s = load_settings({"model": str(tiny_tflite), "source": "synthetic:64x128@30", "device_id": "f1"}, None, env={})
    runner = Runner(s, publisher=NullPublisher(), views=[KeepView()])
    runner.fault_sources.append(Updates())
    stores = [f["store"] for f in runner.faults()]
    assert stores == ["kept-frames", "upload-journal", "model-update"]
    payloads.Stats.model_validate(dict(runner.stats_payload(), faults=runner.faults()))
