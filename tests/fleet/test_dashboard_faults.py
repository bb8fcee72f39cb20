"""The fleet side of issue 31: a store that cannot write and a device id used by two installations are alerts
on the dashboard (fleet/dashboard/state.py + health.py), and a cleared clash notice clears its alert."""
from __future__ import annotations

import json
import time

from edge_runtime.contract import payloads
from fleet.dashboard.health import Thresholds, fleet_alerts
from fleet.dashboard.state import FleetState


def _alerts(state: FleetState) -> dict[str, list]:
    got: dict[str, list] = {}
    for a in fleet_alerts(state.view(), time.time(), Thresholds()):
        got.setdefault(a.kind, []).append(a)
    return got


def test_faults_and_id_clashes_are_alerts_until_they_end():
    state = FleetState()
    fault = {"store": "offline-queue", "path": "/var/lib/roadseg/outbox-car1.sqlite", "error": "disk full (x)",
             "since": payloads.now()}
    status = payloads.status("online", "car1", installation="0123abcd", started=payloads.now(), faults=[fault])
    state.handle("roadseg/car1/status", json.dumps(status).encode())
    clash = payloads.clash("car1", "ffff0000", "0123abcd")
    state.handle("roadseg/car1/clash", json.dumps(clash).encode(), retained=True)
    alerts = _alerts(state)
    assert "offline-queue cannot write" in alerts["disk_fault"][0].message
    assert alerts["disk_fault"][0].detail.startswith("disk full")
    assert "ffff0000" in alerts["id_clash"][0].message and "0123abcd" in alerts["id_clash"][0].message
    state.handle("roadseg/car1/clash", b"", retained=True)  # the twin left: the retained notice is cleared
    state.handle("roadseg/car1/status", json.dumps(payloads.status("online", "car1")).encode())
    assert not {"id_clash", "disk_fault"} & set(_alerts(state))


def test_a_clash_notice_for_another_device_is_refused():
    state = FleetState()
    state.handle("roadseg/car2/clash", json.dumps(payloads.clash("car1", "ffff0000", "0123abcd")).encode())
    assert "car2" not in {v.device_id for v in state.view()} or state.view()[0].clash is None
