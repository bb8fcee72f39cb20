"""Staged rollouts (issue 29): 30 simulated vehicles, each a real Updater with its own state folder,
fetching from a real HTTP server through TUF; a third of them hold a foreign trust root and refuse
the release: the abort rule stops the rollout. The plan resumes from its file."""
from __future__ import annotations

import json
import threading

import pytest

pytest.importorskip("tuf.ngclient")

from calibration.release import ReleaseRepo  # noqa: E402
from edge_runtime.contract import payloads  # noqa: E402
from fleet.rollout import Plan, Rollout, RolloutError, rollback  # noqa: E402
from tests.edge_runtime.test_update import TINY, make_updater, serve  # noqa: E402


@pytest.fixture
def fleet(tmp_path):
    repo = ReleaseRepo.init(tmp_path / "repo", tmp_path / "keys")
    repo.add(TINY)
    repo.add(TINY)
    foreign = ReleaseRepo.init(tmp_path / "foreign", tmp_path / "foreign-keys")
    server = serve(repo.repo, tmp_path / "www")
    yield repo, repo.trust_root(tmp_path / "root.json"), foreign.trust_root(tmp_path / "foreign-root.json"), server
    server.stop()


def _vehicles(n, bad_every, fleet, tmp_path, rollout_box, cond):
    repo, root, foreign_root, server = fleet
    vehicles = {}
    for i in range(n):
        name = f"car{i:02d}"
        u, _ = make_updater(tmp_path / "state" / name, foreign_root if i % bad_every == bad_every - 1 else root,
                            [server.url])

        def publish_state(p, name=name):
            with cond:  # the fleet side reads it as it reads MQTT: size, then schema
                rollout_box["r"].observe(name, payloads.parse("model", json.dumps(p).encode()))
                cond.notify_all()
        u.c.device_id = name
        u.publish_state = publish_state
        vehicles[name] = u
    return vehicles


def _drive(rollout, vehicles, cond, timeout=120):
    def publish(topic, payload, retain):
        parts = topic.split("/")
        if parts[1] == "fleet":
            for u in vehicles.values():
                u.on_announcement("fleet", payload)
        else:
            vehicles[parts[1]].on_announcement("device", payload)
    import time
    deadline = time.monotonic() + timeout
    with cond:  # as the command: a step after every observation, and on a timer (the rate)
        while time.monotonic() < deadline:
            if rollout.step(publish) in ("done", "aborted"):
                return True
            cond.wait(0.05)
    return False


def test_thirty_vehicles_a_third_fail_and_the_rollout_stops(fleet, tmp_path):
    cond = threading.Condition()
    box = {}
    vehicles = _vehicles(30, 3, fleet, tmp_path, box, cond)  # car02, car05, ... trust another fleet's keys
    for u in vehicles.values():
        u.boot()
    plan = Plan(1, "releases/1/tiny-int8.tflite", fleet[3].url, sorted(vehicles), ["car00", "car01"], rate=6000,
                abort_share=0.2, min_reached=5)
    box["r"] = rollout = Rollout.start(tmp_path / "rollout.json", plan)
    for u in vehicles.values():
        u.start()
    try:
        assert _drive(rollout, vehicles, cond)
        with cond:  # vehicles already told go on reporting (car03: verifying -> succeeded): compare one moment
            d = rollout.describe()
            resumed = Rollout(tmp_path / "rollout.json")  # the workstation restarts: the state is on disk
            assert resumed.describe() == d
        assert d["phase"] == "aborted" and "rejected" in d["reason"], d
        reached = [v for v, o in d["vehicles"].items() if o is not None]
        assert 5 <= len(reached) < 30  # stopped before the whole fleet
        assert d["vehicles"]["car00"] == d["vehicles"]["car01"] == "succeeded"
        assert all(d["vehicles"][v] == "rejected" for v in reached if int(v[3:]) % 3 == 2)
    finally:
        for u in vehicles.values():
            u.stop()


def test_canary_then_the_rest_then_fleet_wide_and_a_rollback(fleet, tmp_path):
    cond = threading.Condition()
    box = {}
    vehicles = _vehicles(3, 1000, fleet, tmp_path, box, cond)
    for u in vehicles.values():
        u.boot()
    plan = Plan(1, "releases/1/tiny-int8.tflite", fleet[3].url, sorted(vehicles), ["car00"], rate=6000)
    box["r"] = rollout = Rollout.start(tmp_path / "rollout.json", plan)
    with pytest.raises(RolloutError, match="has not finished"):
        Rollout.start(tmp_path / "rollout.json", plan)
    for u in vehicles.values():
        u.start()
    try:
        assert _drive(rollout, vehicles, cond)
        d = rollout.describe()
        assert d["phase"] == "done" and set(d["vehicles"].values()) == {"succeeded"}, d
        first = {v: rollout.progress.announced[v] for v in vehicles}
        assert first["car00"] <= min(first["car01"], first["car02"])  # the canary first
        # back to the old model: re-released under a new version, announced fleet-wide
        rel = fleet[0].rerelease(0)
        done = threading.Event()
        for u in vehicles.values():
            u.publish_state = lambda p: done.set() if p["state"] == "succeeded" and p["running"].get(
                "version") == rel["version"] and all(x.running and x.running["version"] == rel["version"]
                                                     for x in vehicles.values()) else None
        rollback(lambda t, p, r: [u.on_announcement("fleet", p) for u in vehicles.values()] if "fleet" in t else None,
                 rel["version"], rel["target"], fleet[3].url, list(vehicles))
        assert done.wait(60)
    finally:
        for u in vehicles.values():
            u.stop()
