"""The vehicle on real SD cards, clocks, cameras and names (issue 31, cases 1-5 and 10): every write can fail
(a full tmpfs, a loop-mounted ext4 image remounted read-only, an fsync slowed by an LD_PRELOAD shim) and the loop
neither crashes nor waits; liveness is measured on frames (a camera whose capture hangs); one device id, one
vehicle; an outage without a FIN is named as one. Real mosquitto, real LiteRT, real filesystems."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from roadseg_lab.checks.soak import fill  # the soak's own: a card filled to the last byte
from tests.edge_runtime.conftest import io_error_remounts_read_only as _io_error_remounts_read_only
from tests.support import Subscriber, Watchdog, until

ROOT = Path(__file__).resolve().parents[2]


# -- real filesystems: tests/edge_runtime/conftest.py (small_tmpfs, ext4_card) ------------------------------

def _vehicle(model, port, state_dir, *extra, env=None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "edge_runtime.commands.run", "--model", str(model), "--source", "synthetic:64x128@30",
         "--fps", "20", "--device-id", "car1", "--mqtt-host", "127.0.0.1", "--mqtt-port", str(port),
         "--publish-interval", "0", "--stats-interval", "0.5", "--state-dir", str(state_dir), *extra],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=dict(os.environ, **(env or {})))


def _stop(proc: subprocess.Popen, timeout: float = 30) -> tuple[int, str]:
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err


def _faults(m) -> list[str]:
    return [f["store"] for f in (m[1] or {}).get("faults") or []] if isinstance(m[1], dict) else []


def _status_with(store):
    return lambda m: m[0].endswith("/status") and store in _faults(m)


def _status_without_faults(m):
    return m[0].endswith("/status") and isinstance(m[1], dict) and m[1].get("state") == "online" and not _faults(m)


# -- case 1: a full disk -----------------------------------------------------------------------------

def test_a_full_disk_is_a_fault_not_a_crash_and_it_resumes_and_restarts(tiny_tflite, broker, small_tmpfs):
    sub = Subscriber(broker.port, "roadseg/car1/#", client_id="full-sub")
    proc = _vehicle(tiny_tflite, broker.port, small_tmpfs / "state")
    try:
        assert sub.wait_for(lambda m: m[0].endswith("/coverage"), timeout=30)
        filler = fill(small_tmpfs)
        # the sequence reservation (every 50 summaries, one per frame here) meets the full disk
        assert sub.wait_for(_status_with("offline-queue"), timeout=30), "the fault never reached the status"
        stats = [m for m in sub.of("/stats") if "offline-queue" in _faults(m)]
        assert sub.wait_for(lambda m: m[0].endswith("/stats") and "offline-queue" in _faults(m), timeout=10)
        assert proc.poll() is None  # still running
        n = len(sub.of("/coverage"))
        assert sub.wait_for_count(lambda m: m[0].endswith("/coverage"), n + 20, timeout=20)  # and publishing
        filler.unlink()
        assert sub.wait_for(lambda m: _status_without_faults(m) and m in sub.messages[n:], timeout=30), \
            "the fault was not cleared when the disk had room again"
    finally:
        rc, err = _stop(proc)
    sub.close()
    assert rc == 0 and "Traceback" not in err, err[-2000:]
    assert err.count("offline queue: cannot write") == 1, err[-2000:]  # said once
    assert "takes writes again" in err

    # restarted on a disk that is still full: it starts, says so, and runs
    filler = fill(small_tmpfs)
    proc = _vehicle(tiny_tflite, broker.port, small_tmpfs / "state", "--duration", "4")
    out, err = proc.communicate(timeout=60)
    filler.unlink()
    assert proc.returncode == 0 and "Traceback" not in err, err[-2000:]
    assert "offline queue: cannot write" in err and "disk full" in err
    assert json.loads(out.strip().splitlines()[-1])["frames"] > 10
    del stats


def test_a_full_card_is_a_fault_before_any_write_meets_it_and_ends_with_room(small_tmpfs):
    """The soak's blind spot: with the broker up nothing is written, so a full card went unseen until the
    next sequence reservation; the writer's look at the file system shows it within its interval."""
    from edge_runtime.io.outbox import Outbox
    box = Outbox(small_tmpfs / "state" / "outbox.sqlite", max_bytes=1 << 20, max_count=100, check=0.1)
    try:
        assert box.flush(10) and box.fault is None
        filler = fill(small_tmpfs)
        assert until(lambda: box.fault is not None, 10), "a full card with nothing to write was not seen"
        assert box.fault["store"] == "offline-queue" and "disk full" in box.fault["error"]
        for i in range(5):  # kept in memory meanwhile, within the bounds
            box.append("roadseg/car1/coverage", b"x" * 100, 1)
        assert len(box) == 5
        filler.unlink()
        assert until(lambda: box.fault is None, 10), "the fault outlived the room made on the card"
        assert box.flush(10)
    finally:
        box.close()
    again = Outbox(small_tmpfs / "state" / "outbox.sqlite", max_bytes=1 << 20, max_count=100)
    try:
        assert len(again) == 5  # nothing lost
    finally:
        again.close()


# -- case 2: a card remounted read-only ------------------------------------------------------------------

def test_a_card_remounted_read_only_keeps_the_vehicle_and_its_sequence(tiny_tflite, broker, ext4_card):
    sub = Subscriber(broker.port, "roadseg/car1/#", client_id="ro-sub")
    state, beat = ext4_card / "state", ext4_card / "heartbeat"
    proc = _vehicle(tiny_tflite, broker.port, state, "--heartbeat-file", str(beat))
    try:
        assert sub.wait_for_count(lambda m: m[0].endswith("/coverage"), 5, timeout=30)
        _io_error_remounts_read_only(ext4_card)
        assert sub.wait_for(_status_with("heartbeat"), timeout=15), "the heartbeat's fault never reached the status"
        assert sub.wait_for(_status_with("offline-queue"), timeout=30)
        n = len(sub.of("/coverage"))
        assert sub.wait_for_count(lambda m: m[0].endswith("/coverage"), n + 20, timeout=20)
    finally:
        rc, err = _stop(proc)
    assert rc == 0 and "Traceback" not in err, err[-2000:]
    assert err.count("cannot touch the heartbeat file") == 1 and err.count("offline queue: cannot write") == 1
    last = max(m[1]["seq"] for m in sub.of("/coverage"))

    # restarted with the card still read-only: it starts, reads its queue file, and seq goes on
    proc = _vehicle(tiny_tflite, broker.port, state, "--heartbeat-file", str(beat), "--duration", "4")
    out, err = proc.communicate(timeout=60)
    sub.close()
    assert proc.returncode == 0 and "Traceback" not in err, err[-2000:]
    assert "read-only file system" in err
    later = [m[1]["seq"] for m in sub.of("/coverage") if m[1]["seq"] > last]
    assert later, "no coverage after the restart"
    assert min(m[1]["seq"] for m in sub.of("/coverage")[-len(later):]) > last  # never back to 1


# -- case 3: a slow card ---------------------------------------------------------------------------------

SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <unistd.h>
static void pause_(void) { const char *e = getenv("SLOW_FSYNC_MS"); if (e) usleep(atoi(e) * 1000); }
int fsync(int fd) { static int (*real)(int); if (!real) real = dlsym(RTLD_NEXT, "fsync"); pause_(); return real(fd); }
int fdatasync(int fd) { static int (*real)(int); if (!real) real = dlsym(RTLD_NEXT, "fdatasync"); pause_();
                        return real(fd); }
"""


@pytest.fixture(scope="module")
def slow_fsync(tmp_path_factory) -> Path:
    """An LD_PRELOAD library that makes every fsync/fdatasync take SLOW_FSYNC_MS milliseconds."""
    if shutil.which("gcc") is None:
        pytest.skip("gcc is needed to build the slow-fsync shim")
    folder = tmp_path_factory.mktemp("shim")
    (folder / "slow.c").write_text(SHIM)
    subprocess.run(["gcc", "-shared", "-fPIC", "-O2", "-o", str(folder / "slow.so"), str(folder / "slow.c"), "-ldl"],
                   check=True, capture_output=True)
    return folder / "slow.so"


def test_a_slow_fsync_never_holds_up_the_camera_loop(tiny_tflite, slow_fsync, tmp_path):
    """No broker: every summary is queued on disk, each commit waits 1.5 s for its fsync. The loop keeps its
    10 FPS (0.86 FPS when the commits ran on its thread), and the progress lines do not blame the model."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there
    proc = _vehicle(tiny_tflite, port, tmp_path / "state", "--duration", "8", "--fps", "10", "--json",
                    env={"LD_PRELOAD": str(slow_fsync), "SLOW_FSYNC_MS": "1500"})
    out, err = proc.communicate(timeout=120)
    stats = json.loads(out.strip().splitlines()[-1])
    assert stats["frames"] >= 0.8 * 10 * 8, (stats["frames"], err[-1500:])
    assert "the model is the limit" not in err


def test_a_first_start_on_a_card_whose_fsync_hangs_runs_and_says_the_disk_is_slow(tiny_tflite, broker,
                                                                                  slow_fsync, tmp_path):
    """The new queue file's fsyncs (WAL, schema) ran on the starting thread: 32 s at 4 s each before the first
    frame; here they never return at all, and the vehicle must run, publish, and name the slow disk."""
    sub = Subscriber(broker.port, "roadseg/car1/#", client_id="slowstart-sub")
    proc = _vehicle(tiny_tflite, broker.port, tmp_path / "new-state", "--stop-timeout", "2",
                    env={"LD_PRELOAD": str(slow_fsync), "SLOW_FSYNC_MS": "600000"})
    try:
        assert sub.wait_for(lambda m: m[0].endswith("/coverage"), timeout=60), "nothing published"
        assert sub.wait_for(lambda m: _status_with("offline-queue")(m) and "slow disk" in json.dumps(m[1]),
                            timeout=30), "the slow disk never reached the status"
    finally:
        rc, err = _stop(proc, timeout=60)
        sub.close()
    assert rc == 0 and "Traceback" not in err, err[-2000:]


# -- case 4: a camera whose capture hangs ------------------------------------------------------------------

class HangingCamera:
    """A camera driver whose capture blocks for ever after ``good`` frames, as picamera2's capture_array() does
    (raspberrypi/picamera2#794): the hardware is the point, so it is faked behind the Camera interface.
    ``recovers``: a release (from the restart) lets the stuck call return and the camera works again."""
    channel_order = "rgb"
    nominal_fps = 30.0

    def __init__(self, good: int, recovers: bool):
        import numpy as np
        self.frame = np.zeros((64, 128, 3), np.uint8)
        self.good, self.recovers = good, recovers
        self.n, self.opens = 0, 0
        self.unblock = threading.Event()

    def open(self):
        self.opens += 1
        if self.opens > 1 and not self.recovers:
            self.unblock.wait()  # the reopen hangs too

    def grab(self):
        time.sleep(1 / 30)
        self.n += 1
        if self.n == self.good or (self.n > self.good and not self.recovers):
            self.unblock.wait()
            return None
        return self.frame

    def release(self):
        if self.recovers:
            self.unblock.set()


def _run_with(camera, tiny_tflite, broker, tmp_path, monkeypatch, **settings):
    from edge_runtime.commands.run import Vehicle
    from edge_runtime.commands.settings import load_settings
    from edge_runtime.io.sources import LatestFrameSource
    wd = Watchdog(tmp_path / "notify")
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify"))
    source = LatestFrameSource(camera, "csi-cam").start(wait=True)
    s = load_settings({"model": str(tiny_tflite), "source": "synthetic", "fps": 10, "device_id": "cam1",
                       "mqtt_host": "127.0.0.1", "mqtt_port": broker.port, "stats_interval": 0.5,
                       "capture_timeout": 1.0, "heartbeat_file": str(tmp_path / "beat"), **settings}, None, env={})
    vehicle = Vehicle(s, source=source)
    result: dict = {}

    def body():
        try:
            result["stats"] = vehicle.run()
        except Exception as e:  # what roadseg-run's main turns into an exit code
            result["error"] = e
    t = threading.Thread(target=body)
    t.start()
    result["source"] = source  # a given source is the caller's to stop
    return vehicle, t, wd, result


def test_a_hanging_capture_is_reported_abandoned_and_reopened(tiny_tflite, broker, tmp_path, monkeypatch):
    sub = Subscriber(broker.port, "roadseg/cam1/#", client_id="hang-sub")
    cam = HangingCamera(good=15, recovers=True)
    vehicle, t, wd, result = _run_with(cam, tiny_tflite, broker, tmp_path, monkeypatch, duration=12.0)
    try:
        lost = lambda m: m[0].endswith("/status") and m[1]["state"] == "camera_lost"  # noqa: E731
        assert sub.wait_for(lost, timeout=20)
        status = next(m[1] for m in sub.messages if lost(m))
        assert "did not return within --capture-timeout 1 s" in status["error"]
        back = lambda m: m[0].endswith("/status") and m[1]["state"] == "online" and m in sub.messages[  # noqa
            sub.messages.index(next(x for x in sub.messages if lost(x))):]
        assert sub.wait_for(back, timeout=20), "the camera was not reopened"
        assert cam.opens == 2
        before = vehicle.runner.frames
        assert sub.wait_for_count(lambda m: m[0].endswith("/stats") and m[1]["frames"] > before + 5, 1, timeout=20)
    finally:
        vehicle.request_stop()
        t.join(30)
        result["source"].stop()
        wd.stop.set()
        sub.close()
    assert "error" not in result, result


def test_a_camera_that_stays_hung_exits_4_for_a_restart(tiny_tflite, broker, tmp_path, monkeypatch):
    """Never alive while blind: stats keep coming with no frames, camera_lost is published while the camera is
    reopened (the watchdog fed meanwhile: the process is doing its job), and once the reopening hangs too the run
    gives up (exit 4: systemd restarts it) instead of looking alive while blind."""
    from edge_runtime.errors import RuntimeFailure
    sub = Subscriber(broker.port, "roadseg/cam1/#", client_id="hung-sub")
    cam = HangingCamera(good=10, recovers=False)
    vehicle, t, wd, result = _run_with(cam, tiny_tflite, broker, tmp_path, monkeypatch, duration=60.0)
    try:
        t.join(45)
        assert not t.is_alive(), "the run did not give up on a camera that stays hung"
    finally:
        vehicle.request_stop()
        cam.unblock.set()
        result["source"].stop()
        wd.stop.set()
        sub.close()
    assert isinstance(result.get("error"), RuntimeFailure), result
    assert "times without a frame" in str(result["error"])
    assert any(m[0].endswith("/status") and m[1]["state"] == "camera_lost" for m in sub.messages)
    stats_times = sub.arrival_times("/stats")
    frames_end = max(m[1]["frames"] for m in sub.of("/stats"))
    assert frames_end <= 10 and len(stats_times) >= 4  # stats came on time without frames
    gaps = [b - a for a, b in zip(stats_times, stats_times[1:])]
    assert max(gaps) < 2.0, gaps
    assert wd.pings  # fed while frames came and while camera_lost was published


# -- case 5: two vehicles on one device id -----------------------------------------------------------------

@pytest.mark.parametrize("cards", ["writable", "read-only"])
def test_two_installations_on_one_device_id_the_later_yields_and_says_so(tiny_tflite, broker, tmp_path, cards,
                                                                          request):
    """Also when neither state dir can be written (both fell back to one machine id: told apart by nothing)."""
    if cards == "read-only":
        card = request.getfixturevalue("ext4_card")
        (card / "a").mkdir()
        (card / "b").mkdir()
        _io_error_remounts_read_only(card)
        tmp_path = card
    sub = Subscriber(broker.port, "roadseg/car1/#", client_id=f"twin-sub-{cards}")
    first = _vehicle(tiny_tflite, broker.port, tmp_path / "a", "--publish-interval", "0.2")
    try:
        assert sub.wait_for(lambda m: m[0].endswith("/coverage"), timeout=30)
        second = _vehicle(tiny_tflite, broker.port, tmp_path / "b", "--publish-interval", "0.2")
        try:
            assert sub.wait_for(lambda m: m[0].endswith("/clash") and m[1], timeout=30)
            clash = next(m[1] for m in sub.messages if m[0].endswith("/clash") and m[1])
            n = len(sub.messages)
            assert sub.wait_for_count(lambda m: m[0].endswith("/coverage"), 15 + len(sub.of("/coverage")), 30)
            seqs = [m[1]["seq"] for m in sub.messages[n:] if m[0].endswith("/coverage")]
            assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), seqs  # one sender, not 1,1,2,2
            installs = {m[1].get("installation") for m in sub.messages[n:] if m[0].endswith("/status")}
            assert clash["installation"] not in installs
        finally:
            rc2, err2 = _stop(second)
        assert rc2 in (0, 4) and "Traceback" not in err2
        assert err2.count("is in use by another live installation") == 1, err2[-2000:]
        assert clash["holder"] in err2 and "give each vehicle its own --device-id" in err2
    finally:
        rc1, err1 = _stop(first)
        sub.close()
    assert rc1 == 0 and "Traceback" not in err1


def test_the_default_device_id_of_a_container_is_not_its_container_id():
    from edge_runtime.io.identity import default_device_id, machine_suffix
    for container in ("3f9c2a1b7d4e", "3f9c2a1b7d4e" * 5 + "0a1b"):
        assert default_device_id(container) == f"vehicle-{machine_suffix()}"


@pytest.mark.parametrize("content", [b"", b"uninitialized\n", b"0" * 32 + b"\n"])
def test_a_machine_id_that_names_no_machine_is_skipped(tmp_path, monkeypatch, content):
    """An empty or first-boot machine id gave every machine one suffix (sha256 of "roadseg-device:")."""
    from edge_runtime.io import identity
    empty = tmp_path / "machine-id"
    empty.write_bytes(content)
    real = tmp_path / "serial-number"
    real.write_bytes(b"10000000abcdef01\0")
    monkeypatch.setattr(identity, "MACHINE_ID_FILES", (str(empty), str(tmp_path / "missing"), str(real)))
    assert identity.machine_key() == b"10000000abcdef01"
    other = tmp_path / "other-serial"
    other.write_bytes(b"10000000abcdef02\0")
    first = identity.machine_suffix()
    monkeypatch.setattr(identity, "MACHINE_ID_FILES", (str(empty), str(other)))
    assert identity.machine_suffix() != first  # two boards, two suffixes


def test_the_default_device_id_is_unique_per_machine_for_factory_host_names():
    from edge_runtime.io.identity import default_device_id, machine_suffix
    assert default_device_id("car7") == "car7" and default_device_id("car7.fleet.lan") == "car7"
    for factory in ("raspberrypi", "ubuntu", "localhost", "jetson"):
        got = default_device_id(factory)
        assert got == f"{factory}-{machine_suffix()}" and got != factory
    assert default_device_id("my pi!") .startswith("my-pi-")  # not a valid id: made one, still per machine


# -- case 10: a network that vanishes without a FIN -------------------------------------------------------

class Blackhole:
    """A TCP proxy to the broker that can go silent: it stops forwarding and answering, closing nothing,
    as a network that vanished (a cable pulled, a tunnel) looks to both ends."""

    def __init__(self, port: int):
        self.target = port
        self.silent = threading.Event()
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(16)
        self.port = self.lsock.getsockname()[1]
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            self.held.append(c)
            if self.silent.is_set():
                continue  # accepted and never answered
            u = socket.create_connection(("127.0.0.1", self.target))
            self.held.append(u)
            for a, b in ((c, u), (u, c)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, a, b):
        while True:
            try:
                data = a.recv(65536)
            except OSError:
                return
            if not data:
                return
            while self.silent.is_set():
                time.sleep(0.05)  # swallowed: nothing goes through, nothing is closed
                data = b""
            if data:
                try:
                    b.sendall(data)
                except OSError:
                    return


def test_an_outage_without_a_fin_is_named_as_one_and_forgotten_once_over(broker):
    from edge_runtime.io.mqtt import MqttPublisher, MqttSettings
    hole = Blackhole(broker.port)
    pub = MqttPublisher(MqttSettings(device_id="fin1", mqtt_host="127.0.0.1", mqtt_port=hole.port,
                                     mqtt_keepalive=5, mqtt_protocol="5" if broker.mqtt5 else "3.1.1"))
    pub.start({})
    try:
        assert pub.wait_connected(15)
        hole.silent.set()
        assert pub.wait_until(lambda c: c["connect_failures"] >= 1, timeout=40)
        error = pub.counts["last_error"]
        assert "no answer" in error and "TLS" not in error and "MQTT 5" not in error, error
        hole.silent.clear()
        assert pub.wait_until(lambda c: c["connected"], timeout=40)
        assert pub.counts["last_error"] is None  # the outage is over: nothing stale on the dashboard
    finally:
        pub.stop(1)


def test_a_heartbeat_touched_before_the_clock_stepped_back_reads_stale_not_young(tmp_path):
    """A negative age read healthy to the container's health check until the wall clock caught up."""
    from edge_runtime.io.device import heartbeat_age
    beat = tmp_path / "beat"
    beat.touch()
    assert 0 <= heartbeat_age(str(beat)) < 60
    year = 365 * 86400
    os.utime(beat, (time.time() + year, time.time() + year))  # touched while the clock was a year ahead
    assert heartbeat_age(str(beat)) == float("inf")
