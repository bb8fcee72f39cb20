"""The soak benchmark's fault schedule (issue 31): its pure parts, and a short run with each fault once on real
tmpfs mounts, the soak's LD_PRELOAD shim, a real mosquitto, the real LiteRT interpreter and a second
``edge_runtime.commands.run`` process as the twin."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from roadseg_lab.checks.soak import (
    FAULTS,
    SHOWN_IN_STATUS,
    HangingCamera,
    SoakSettings,
    fault_summary,
    parse_faults,
    verdict,
)

ROOT = Path(__file__).resolve().parents[2]


def test_parse_faults_names_an_unknown_one():
    assert parse_faults("") == () and parse_faults("all") == FAULTS
    assert parse_faults("twin, disk-full,twin") == ("twin", "disk-full")
    with pytest.raises(ValueError, match="unknown meteor"):
        parse_faults("disk-full,meteor")


def _report(events, **extra):
    s = SoakSettings(model="m.tflite", faults="all")
    faults = fault_summary(events, FAULTS, extra.pop("not_injected", {}), s,
                           extra.pop("uptime", {"api": (5.0, 600.0), "live": (5.0, 600.0)}))
    return {"rss_growth_mb_per_hour_after_warmup": 0.3, "summaries": {"lost": 0}, "broker_recovery_s": [],
            "camera_recovery_s": [], "watchdog": {"misses": 0}, "fps_achieved": 10.0, "minutes": 125.0,
            "faults": faults, **extra}


def _event(kind, visible=1.0, recovered=1.0, **extra):
    extra = {"slow-fsync": {"fps_during": 9.5}, "twin": {"yielded": True, "traceback": False}}.get(kind, {}) | extra
    return {"fault": kind, "at_s": 60.0, "visible_s": None if kind == "slow-fsync" else visible,
            "recovered_s": recovered, **extra}


def test_the_fault_goals_judge_visibility_recovery_fps_uptime_and_the_twin():
    good = _report([_event(k) for k in FAULTS])
    assert good["faults"]["max_visible_s"] == 1.0 and good["faults"]["by_kind"]["twin"]["count"] == 1
    assert all(verdict(good).values()), verdict(good)
    late = _report([_event(k, visible=5.5 if k == "camera-hang" else 1.0) for k in FAULTS])
    assert not verdict(late)["faults_visible_within_5_s"] and late["faults"]["max_visible_s"] == 5.5
    never = _report([_event(k, visible=None if k == "disk-full" else 1.0) for k in FAULTS])
    assert not verdict(never)["faults_visible_within_5_s"] and never["faults"]["by_kind"]["disk-full"][
        "max_visible_s"] is None
    v = verdict(_report([_event(k, recovered=None if k == "twin" else 1.0) for k in FAULTS]))
    assert not v["faults_recovered"]
    v = verdict(_report([_event("slow-fsync", fps_during=7.0)] + [_event(k) for k in FAULTS[3:]]))
    assert not v["fps_held_during_slow_fsync"] and not v["every_fault_injected"]  # disk-full, read-only never ran
    assert not verdict(_report([_event(k) for k in FAULTS], uptime={"api": (5.0, 31536000.0)}))[
        "clock_step_seen_and_uptime_on_the_monotonic_clock"]  # an uptime on the wall clock, across the step
    assert not verdict(_report([_event(k) for k in FAULTS[:-1]] + [_event("twin", yielded=False)]))["twin_yielded"]
    # a fault that could not be injected is said, not failed; a run's growth over 0.5 MB/h is
    quiet = _report([_event(k) for k in FAULTS[:-1]], not_injected={"twin": "why"},
                    rss_growth_mb_per_hour_after_warmup=0.7)
    v = verdict(quiet)
    assert v["every_fault_injected"] and "twin_yielded" not in v and not v["rss_growth_below_0_5_mb_per_hour"]
    assert set(SHOWN_IN_STATUS) < set(FAULTS)
    # a fault the run's end cut short is listed, not judged
    cut = _report([_event(k) for k in FAULTS] + [_event("disk-full", visible=None, recovered=None, cut_by_run_end=True)])
    assert all(verdict(cut).values()) and cut["faults"]["cut_by_run_end"] == 1
    assert cut["faults"]["by_kind"]["disk-full"] == {"count": 1, "shown_in_status": True, "max_visible_s": 1.0,
                                                     "max_recovered_s": 1.0}


def test_the_hanging_camera_blocks_until_released_then_delivers_again():
    import threading

    from edge_runtime.io.sources import SyntheticCamera
    cam = HangingCamera(SyntheticCamera((16, 32), fps=0))
    cam.open()
    assert cam.grab().shape == (16, 32, 3)
    cam.hang()
    got = []
    t = threading.Thread(target=lambda: got.append(cam.grab()))
    t.start()
    t.join(0.3)
    assert t.is_alive() and cam.hangs == 1  # blocked, as picamera2's capture_array() can be
    cam.release()
    t.join(5)
    assert got == [None]
    cam.open()
    assert cam.grab() is not None


def _can_mount(tmp_path: Path) -> str | None:
    point = tmp_path / "probe"
    point.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(point)], capture_output=True, text=True,
                       check=False)
    if r.returncode != 0:
        return r.stderr.strip()[:80] or "mount failed"
    subprocess.run(["umount", str(point)], capture_output=True, check=False)
    return None


def _soak_mounts() -> int:
    return Path("/proc/self/mounts").read_text().count("roadseg-soak-")


@pytest.mark.integration
def test_a_short_soak_injects_each_fault_once_and_the_status_shows_each_within_5_s(tiny_tflite, tmp_path):
    """About 2 minutes (105 s of soak): every fault of the schedule at least once (disk full, read-only, slow fsync, a hanging
    camera, a clock step, a twin); each store fault, the hang and the twin are in the retained status within 5 s,
    each recovers, no summary is lost, the loop keeps its FPS during the slow fsync, the watchdog never misses."""
    from edge_runtime.io.broker import mosquitto_path
    why = _can_mount(tmp_path)
    if why:
        pytest.skip(f"cannot mount a tmpfs here ({why}): the disk faults need root")
    for tool, need in (("gcc", shutil.which("gcc")), ("mosquitto", mosquitto_path())):
        if not need:
            pytest.skip(f"{tool} is not installed")
    out, mounts_before = tmp_path / "soak.json", _soak_mounts()
    r = subprocess.run([sys.executable, "-m", "roadseg_lab", "soak", "--model", str(tiny_tflite), "--minutes", "1.75",
                        "--warmup-minutes", "0.5", "--fps", "10", "--threads", "1", "--frame-size", "64x128",
                        "--broker-every", "10000", "--camera-every", "10000", "--api-every", "2",
                        "--publish-interval", "0.2", "--faults", "all", "--fault-every", "2", "--fault-hold", "3",
                        "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=400, check=False)
    assert out.is_file(), r.stderr[-3000:]
    report = json.loads(out.read_text())
    faults, v = report["faults"], report["verdict"]
    assert faults["not_injected"] == {} and faults["scheduled"] == list(FAULTS)
    assert all(k["count"] >= 1 for k in faults["by_kind"].values()), faults["by_kind"]
    for goal in ("every_fault_injected", "faults_visible_within_5_s", "faults_recovered", "no_summary_lost",
                 "fps_held_during_slow_fsync", "twin_yielded", "no_watchdog_miss", "no_loop_stall"):
        assert v[goal], (goal, faults["events"], r.stderr[-2000:])
    assert faults["max_visible_s"] <= 5.0
    hang = next(e for e in faults["events"] if e["fault"] == "camera-hang")
    assert 2.0 <= hang["visible_s"] <= 5.0  # after --capture-timeout 2 s, not before
    twin = next(e for e in faults["events"] if e["fault"] == "twin")
    assert twin["exit_code"] == 0 and twin["yielded"] and not twin["traceback"]
    step = next(e for e in faults["events"] if e["fault"] == "clock-step")
    assert step["visible_s"] is not None and step["recovered_s"] is not None  # summaries carried the step, and back
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    assert _soak_mounts() == mounts_before  # its tmpfs cards are gone (another soak may hold its own)


def _fault_run(tmp_path: Path) -> dict[str, dict]:
    from roadseg_lab.reports.soak import load_runs
    from tests.roadseg_lab import artifacts
    runs = load_runs(artifacts.soak_runs(tmp_path))
    with_faults = runs["arena=2, 90 min"]
    events = [dict(_event(k, visible=0.4 + i, recovered=2.0), at_s=600.0 * (i + 1)) for i, k in enumerate(FAULTS)]
    with_faults["faults"] = fault_summary(events, FAULTS, {}, SoakSettings(model="m", faults="all"),
                                          {"api": (5.0, 5400.0)})
    with_faults["loop_stalls"] = 0
    return runs


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def test_the_soak_table_adds_the_faults_only_to_a_run_that_had_them(tmp_path):
    from roadseg_lab.reports.soak import soak_table
    main, events = soak_table(_fault_run(tmp_path)).split("\n\n")
    rows = {cells[0]: cells[1:] for cells in map(_cells, main.splitlines()[2:])}
    assert rows["fault: disk full (offline queue): times, slowest to status s, slowest recovery s"] == ["n/a",
                                                                                                       "1, 0.4, 2"]
    assert rows["faults: slowest to status s (goal 5)"] == ["n/a", "5.4"]  # the twin's, the slowest here
    assert rows["fault: slow fsync, broker stopped: times, slowest to status s, slowest recovery s"][1] == \
        "1, nothing to show, 2"
    assert rows["FPS during a slow fsync, lowest"][1] == "9.5 (run 10.0)"
    assert rows["uptime_s from /v1/stats, lowest to highest"][1] == "api 5 to 5400"
    assert list(rows)[-1] == "all goals met"  # the verdict stays last
    lines = events.splitlines()  # then the run's faults in time order
    assert _cells(lines[0])[:2] == ["arena=2, 90 min: minute", "fault"] and len(lines) == 2 + len(FAULTS)
    assert _cells(lines[2]) == ["10.0", "disk full (offline queue)", "0.4", "2", ""]
    assert _cells(lines[-1])[:4] == ["60.0", "twin vehicle on the device id", "5.4", "2"]


def test_the_soak_plot_marks_each_fault_on_its_run(tmp_path, monkeypatch):
    from edge_runtime import atomic
    from roadseg_lab.reports.soak import plot
    figs = []
    save = atomic.save_figure
    monkeypatch.setattr(atomic, "save_figure", lambda fig, path, *a, **k: (figs.append(fig), save(fig, path, *a, **k)))
    plot(_fault_run(tmp_path), tmp_path / "rss.png")
    assert (tmp_path / "rss.png").is_file()
    ax = figs[-1].axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[:2] == ["shared client", "arena=2, 90 min"]
    assert "hanging camera" in labels and "twin vehicle on the device id" in labels and len(labels) == 2 + len(FAULTS)
    assert "faults (markers)" in ax.get_title()


@pytest.mark.parametrize("args, says", [(["--faults", "disk-full,meteor"], "soak: --faults: unknown meteor"),
                                        (["--slow-fsync-ms", "90000"], "soak: --slow-fsync-ms 90000 is out of range"),
                                        (["--fault-every", "0"], "soak: --fault-every 0 is out of range")])
def test_a_bad_fault_setting_is_one_line_before_anything_starts(args, says):
    from roadseg_lab.cli import main
    with pytest.raises(SystemExit) as e:
        main(["soak", "--model", "missing.tflite", *args])
    assert str(e.value).startswith(says) and "\n" not in str(e.value)


def test_a_stopped_brokers_port_is_held_and_mosquitto_starts_on_it_again(tmp_path):
    """A soak beside a test suite lost its broker's port to another process during a 5 s outage and ended at
    77 minutes ("mosquitto did not start on port ..."): while the broker is down its port is held."""
    import socket

    from edge_runtime.io.broker import MosquittoProcess, mosquitto_path
    from roadseg_lab.checks.soak import PortHold
    if mosquitto_path() is None:
        pytest.skip("mosquitto is not installed (scripts/test.sh installs it)")
    broker = MosquittoProcess(tmp_path / "b").start()
    port = broker.port
    broker.stop()
    held = PortHold(port)
    try:
        other = socket.socket()
        with pytest.raises(OSError):  # nobody else takes it
            other.bind(("127.0.0.1", port))
        other.close()
        with pytest.raises(ConnectionRefusedError):  # and a vehicle meets a broker that is down
            socket.create_connection(("127.0.0.1", port), timeout=2)
        broker.start()  # mosquitto binds it again while it is held
    finally:
        held.release()
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    finally:
        broker.stop()
