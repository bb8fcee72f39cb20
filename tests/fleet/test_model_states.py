"""The fleet's view of model releases (issue 29): each vehicle's model state
(``roadseg/<id>/model``) passes the intake like any payload (size, schema, the
topic's id), roadseg-monitor prints every transition and the announcements,
and the dashboard's state knows the release each vehicle runs, the one it
tries, a rollout's progress and an update that failed (an alert)."""
from __future__ import annotations

import json

from edge_runtime.contract import payloads
from edge_runtime.contract import release as contract
from fleet.dashboard import health, releases
from fleet.dashboard.state import FleetState
from tests.fleet.messages import status_body
from tests.fleet.test_monitor import run_monitor

SHA = "cd" * 32
R3 = {"version": 3, "name": "student-int8", "sha256": "ab" * 32}
R4 = {"version": 4, "name": "student-int8", "sha256": SHA, "target": "releases/4/student-int8.tflite"}


def model_body(device: str, state: str, running=R3, **kw) -> str:
    return json.dumps(payloads.model_state(device, state, running, **kw))


def test_monitor_prints_each_transition_and_the_announcements(broker):
    ann = json.dumps(contract.announcement(4, R4["target"], "https://releases.example/fleet/"))
    rows = run_monitor(broker, [
        ("roadseg/fleet/release", ann, False),
        ("roadseg/car1/model", model_body("car1", "idle"), False),
        ("roadseg/car1/model", model_body("car1", "queued", trying={"version": 4, "target": R4["target"]}), False),
        ("roadseg/car1/model", model_body("car1", "downloading", trying=R4, bytes=1000, total_bytes=4000), False),
        ("roadseg/car1/model", model_body("car1", "trial", trying=R4), False),
        ("roadseg/car1/model", model_body("car1", "rolled_back", trying=R4,
                                          reason="class maps collapsed\x1b[2J"), False),
        ("roadseg/car2/model", model_body("car1", "succeeded", running=R4), False),  # another vehicle's state
        ("roadseg/car3/release", b"{" * 3000, False),                                   # not an announcement
    ])
    text = "\n".join(rows)
    assert "fleet release announced: release 4, releases/4/student-int8.tflite at https://releases.example" in text
    assert "car1 model: idle; running release 3 (student-int8, sha256 abababab)" in text
    assert "car1 model: idle -> queued release 4" in text
    assert "car1 model: queued -> downloading release 4 (student-int8, sha256 cdcdcdcd), 1000 of 4000 bytes" in text
    assert "car1 model: downloading -> trial release 4" in text
    line = next(r for r in rows if "trial -> rolled_back" in r)
    assert "reason: class maps collapsed" in line and "\x1b" not in line
    assert any("dropped from car2" in r and "device_id" in r for r in rows)  # forged: another vehicle's id
    assert any("dropped a release announcement on roadseg/car3/release" in r for r in rows)


def test_dashboard_state_shows_releases_the_rollout_and_a_failed_update():
    fleet = FleetState()
    for topic, body in [
        ("roadseg/car1/model", model_body("car1", "succeeded", running=R4)),
        ("roadseg/car2/model", model_body("car2", "downloading", trying=R4, bytes=1000, total_bytes=4000)),
        ("roadseg/car3/model", model_body("car3", "rolled_back", trying=R4, reason="3.1x slower")),
        ("roadseg/car4/model", model_body("car4", "idle", running={"name": "shipped", "sha256": SHA})),
        ("roadseg/car3/status", status_body("car3")),
        ("roadseg/car5/model", model_body("car1", "succeeded", running=R4)),  # forged: dropped
        ("roadseg/car6/model", b"x" * 5000),                                  # too large: dropped unread
    ]:
        fleet.handle(topic, body.encode() if isinstance(body, str) else body)
    views = {v.device_id: v for v in fleet.view()}
    assert set(views) == {"car1", "car2", "car3", "car4"}
    assert [releases.cell(views[d]) for d in ("car1", "car2", "car3", "car4")] == [
        "4", "3 → 4: downloading 25%", "3 → 4: rolled back", "install"]
    assert releases.with_release(views["car3"], "student-int8 abababab") == "r3 → 4: rolled back · student-int8 abababab"
    assert releases.with_release(views["car4"], None) == "install"
    assert [releases.vehicle_line(views[d]) for d in ("car1", "car2", "car3")] == [
        "car1: runs release 4", "car2: runs release 3; trying release 4: downloading 25%",
        "car3: runs release 3; rolled back release 4: 3.1x slower"]
    assert releases.with_release(fleet.view()[0].__class__(**{**views["car1"].__dict__, "model_state": None}),
                                 "m") == "m"  # no model state: the model alone
    progress = releases.rollout(list(views.values()))
    assert (progress.version, progress.succeeded, progress.in_progress, progress.failed, progress.reporting) == \
        (4, 1, 1, 1, 4)
    assert progress.text().startswith("release 4: 1 of 4 vehicles run it, 1 trying, 1 rejected or rolled back")
    alerts = [a for a in health.fleet_alerts(list(views.values()), 0.0, health.Thresholds())
              if a.kind == "update_failed"]
    assert [(a.vehicle, a.message, a.detail) for a in alerts] == [
        ("car3", "car3 rolled back release 4 (runs release 3)", "3.1x slower")]
    assert {s for s, _ in fleet.intake.drops()} == {"car5", "car6"}
