"""The payload contract: one pydantic model per payload, used by the builders
(what the vehicle sends keeps its shape) and by the readers (size first, then
the schema), published as JSON Schema files that stay current."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edge_runtime.contract import payloads
from edge_runtime.contract.coverage import ZONES, CoverageAggregator
from edge_runtime.contract.labels import CATEGORIES

ROOT = Path(__file__).resolve().parents[2]
MODEL = {"name": "student-int8", "sha256": "ab" * 32, "precision": "int8", "input_size": [64, 128]}


def _summary():
    agg = CoverageAggregator()
    agg.add(np.array([[1, 1, 7, 5], [1, 1, 6, 4]], np.uint8), 5.0, 6.0)
    return agg.summary()


def _stats(**over):
    kw = {"achieved_fps": 14.234, "target_fps": 15, "frames": 900, "dropped_frames": 12, "skipped_ticks": 3,
          "camera_reconnects": 0, "camera_state": "live", "latency_ms": {"p50": 20.1, "p90": 25.0, "p99": 31.4},
          "cpu_temp_c": 71.5, "memory": {"rss_mb": 140.2, "peak_rss_mb": 150.0}, "uptime_s": 61.04,
          "mqtt": {"queued": 0, "queued_total": 10, "sent": 10, "dropped": 0, "skipped": 0, "connected": True},
          "model": MODEL}
    return payloads.stats("bus9", **(kw | over))


def _built() -> dict[str, dict]:
    return {"status": payloads.status("online", "bus9", model=MODEL, source="synthetic:64x128@30", target_fps=15,
                                      api="http://10.0.0.9:8080"),
            "coverage": payloads.coverage("bus9", 3, _summary(), 14.237, MODEL),
            "stats": _stats(),
            "ha": payloads.ha_state(_summary()),
            "clash": payloads.clash("bus9", "0123abcd", "89abcdef"),
            "model": payloads.model_state("bus9", "trial", {"version": 1, "name": "student-int8", "sha256": "ab" * 32},
                                          trying={"version": 2, "name": "student-int8", "sha256": "cd" * 32},
                                          bytes=1000, total_bytes=2000)}


def test_builders_keep_the_shape_the_vehicle_sends():
    b = _built()
    assert list(b["status"]) == ["state", "ts", "device_id", "model", "source", "target_fps", "api"]
    assert b["status"]["target_fps"] == 15 and isinstance(b["status"]["target_fps"], int)  # 15, not 15.0
    assert list(b["coverage"]) == ["schema", "device_id", "seq", "ts", "frames", "coverage", "zones", "fps",
                                   "latency_ms", "model"]
    assert list(b["coverage"]["coverage"]) == list(CATEGORIES) and list(b["coverage"]["zones"]) == list(ZONES)
    assert b["coverage"]["fps"] == 14.24 and b["coverage"]["model"] == {"name": "student-int8", "sha256": "ab" * 32}
    assert list(b["stats"]) == ["schema", "device_id", "ts", "fps", "frames", "dropped_frames", "skipped_ticks",
                                "camera", "camera_reconnects", "latency_ms", "cpu_temp_c", "memory", "uptime_s",
                                "mqtt", "model"]
    assert b["stats"]["fps"] == {"achieved": 14.23, "target": 15} and b["stats"]["uptime_s"] == 61.0
    assert _stats(cpu_temp_c=None)["cpu_temp_c"] is None  # unknown temperature: sent as null, not left out
    assert set(payloads.status("offline", "bus9", reason="lost")) == {"state", "ts", "device_id", "reason"}
    seg = payloads.segment_result(128, 64, _summary(), 4.0, 6.5, MODEL)
    assert list(seg) == ["schema", "width", "height", "coverage", "zones", "latency_ms", "model"]
    uid, cfg = payloads.ha_sensor_config("car1", "flat", "roadseg/car1/ha", "roadseg/car1/status", "m")
    assert uid == "roadseg_car1_flat" and cfg["value_template"] == "{{ value_json.coverage.flat }}"
    # NumPy scalars from the loop are accepted by the builders and sent as plain JSON numbers
    s = _stats(frames=np.int64(5), cpu_temp_c=np.float64(40.25))
    assert json.loads(json.dumps(s))["frames"] == 5


def test_every_built_payload_parses_back():
    for kind, p in _built().items():
        m = payloads.parse(kind, json.dumps(p).encode())
        assert m.model_dump(mode="json", by_alias=True, exclude_unset=True) == p


def test_builders_refuse_what_the_schema_does_not_define():
    with pytest.raises(payloads.PayloadError, match="status .*extra|Extra inputs"):
        payloads.status("online", "bus9", colour="red")
    with pytest.raises(payloads.PayloadError, match="device_id"):
        payloads.status("online", "bus/9#")
    with pytest.raises(payloads.PayloadError, match="api"):
        payloads.status("online", "bus9", api="javascript:alert(1)")


@pytest.mark.parametrize("kind, mutate", [
    ("stats", lambda p: p["fps"].update(achieved="fast")),        # the wrong types
    ("stats", lambda p: p.update(cpu_temp_c="hot")),
    ("stats", lambda p: p.update(uptime_s=1e400)),                 # inf once parsed
    ("stats", lambda p: p.pop("fps")),
    ("stats", lambda p: p["mqtt"].update(queued=True)),            # a bool is not a count
    ("stats", lambda p: p["latency_ms"].update(p50=-1)),
    ("status", lambda p: p.update(model="str")),
    ("status", lambda p: p.update(ts=12345)),
    ("status", lambda p: p.update(ts="yesterday")),
    ("status", lambda p: p.update(state="online\x1b]0;owned\x07")),
    ("status", lambda p: p.update(error="x" * 501)),
    ("status", lambda p: p.update(device_id="../car1")),
    ("coverage", lambda p: p.pop("zones")),
    ("coverage", lambda p: p["coverage"].update(flat=1.5)),
    ("coverage", lambda p: p["coverage"].pop("vehicle")),
    ("coverage", lambda p: p.update(schema="roadseg.coverage/2")),
    ("coverage", lambda p: p.update(seq="1")),                     # no "1" for 1: strict, as JSON has types
    ("ha", lambda p: p["coverage"].update(sky=101)),
])
def test_readers_refuse_wrong_types_and_values(kind, mutate):
    p = json.loads(json.dumps(_built()[kind]))
    mutate(p)
    body = json.dumps(p).encode()  # 1e400 -> Infinity, which Python writes and a strict reader must refuse
    with pytest.raises(payloads.PayloadError) as e:
        payloads.parse(kind, body)
    assert "\n" not in str(e.value) and "owned" not in str(e.value)  # one line, never echoing the payload


@pytest.mark.parametrize("body", [b"[" * 50_000, b"[" * 5_000, b'{"a":' * 1_000, b"\xff\xfe", b"", b"null",
                                  b"[]", b'"online"', b"{}", b"NaN"])
def test_readers_survive_hostile_json(body):
    with pytest.raises(payloads.PayloadError):
        payloads.parse("status", body)


def test_size_is_checked_before_parsing():
    valid = json.loads(json.dumps(_built()["status"]))
    big = json.dumps(valid | {"source": " " * 100}).encode()
    big = big.replace(b'"source"', b' ' * payloads.MAX_BYTES["status"] + b'"source"')  # valid JSON, too large
    assert len(big) > payloads.MAX_BYTES["status"]
    with pytest.raises(payloads.PayloadError, match=r"bytes, more than the 8192"):
        payloads.parse("status", big)
    for kind in payloads.MODELS:  # every reader has a cap, and the vehicle's own payloads fit with room to spare
        assert len(json.dumps(_built()[kind])) * 4 < payloads.MAX_BYTES[kind]


def test_the_publishers_own_counters_fit_the_stats_schema():
    from edge_runtime.io.mqtt import MqttPublisher, MqttSettings
    counts = MqttPublisher(MqttSettings(device_id="bus9")).counts  # not started: nothing connects
    assert _stats(mqtt=counts)["mqtt"] == counts


def test_mqtt_block_takes_new_counters_within_bounds():
    h1 = {"queued": 0, "connected": False, "last_error": "not authorised", "refused": 3, "dropped": 1,
          "reconnects": 7, "auth_failures": 2}
    assert _stats(mqtt=h1)["mqtt"] == h1  # a newer publisher's counters pass through
    p = json.loads(json.dumps(_stats()))
    for bad in ({f"c{i}": i for i in range(payloads.MAX_MQTT_EXTRA + 1)},  # too many
                {"nested": {"a": [1] * 100}},                             # not a scalar
                {"Bad-Name": 1}, {"x" * 40: 1},                           # not a snake_case name
                {"note": "y" * 201}):                                     # too long
        q = json.loads(json.dumps(p))
        q["mqtt"].update(bad)
        with pytest.raises(payloads.PayloadError):
            payloads.parse("stats", json.dumps(q).encode())


@pytest.mark.parametrize("url, ok", [
    ("http://10.0.0.9:8080", True), ("https://car1.fleet.example", True), ("http://car-1:80", True),
    ("http://[fe80::1]:8080", True), ("https://evil.example", True),     # well-formed: what the ACL is for
    ("http://my_pi:8080", True), ("http://::1:8080", False),            # a hostname with _; IPv6 needs brackets
    ("javascript:alert(1)", False), ("http://evil.example/phish", False), ("http://user:pw@car1:8080", False),
    ("ftp://car1", False), ("http://car1:8080?x=1", False), ("http://car1#x", False), ("http://", False),
    ("http://car1:8080/", False), ("HTTP://car1 ", False), ("http://car_1\n:80", False), ("data:text/html,x", False),
])
def test_api_is_only_http_host_port(url, ok):
    p = json.loads(json.dumps(_built()["status"])) | {"api": url}
    if ok:
        assert payloads.parse("status", json.dumps(p).encode()).api == url
    else:
        with pytest.raises(payloads.PayloadError, match="api"):
            payloads.parse("status", json.dumps(p).encode())


def test_json_schema_files_are_current_and_agree_with_the_models():
    jsonschema = pytest.importorskip("jsonschema")
    folder = ROOT / "docs" / "schemas"
    for name, text in payloads.json_schemas().items():
        assert (folder / name).read_text() == text, \
            f"docs/schemas/{name} is stale: python -m edge_runtime.contract.payloads docs/schemas"
    built = _built() | {"segment": payloads.segment_result(128, 64, _summary(), 4.0, 6.5, MODEL)}
    files = {"status": "status.json", "coverage": "coverage.json", "stats": "stats.json", "ha": "ha-state.json",
             "segment": "segment.json"}
    for kind, name in files.items():
        schema = json.loads((folder / name).read_text())
        jsonschema.Draft202012Validator.check_schema(schema)
        jsonschema.validate(built[kind], schema)
        with pytest.raises(jsonschema.ValidationError):  # the same refusals as the models
            jsonschema.validate(built[kind] | {"unexpected": 1}, schema)
    _, cfg = payloads.ha_sensor_config("car1", "sky", "t", "s", "m")
    jsonschema.validate(cfg, json.loads((folder / "ha-discovery.json").read_text()))
    stats = json.loads((folder / "stats.json").read_text())
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(json.loads(json.dumps(_built()["stats"])) | {"uptime_s": "long"}, stats)


def test_parsing_keeps_no_received_string_values():
    """Every status a vehicle receives (its own, echoed by the broker, and a twin's) carries new
    timestamps: pydantic-core's default JSON string cache (16,384 entries, process-wide) kept them,
    about 1.2 MB that grew over hours of a soak. Only the keys may be cached."""
    import sys
    for i in range(3):
        ts = f"2026-01-01T00:00:{i:02d}.{i:03d}Z"  # unique strings, as each message's ts is
        body = json.dumps({"state": "online", "ts": ts, "device_id": "car1", "installation": "1234abcd",
                           "started": f"2026-01-01T00:00:00.{100 + i}Z"}).encode()
        m = payloads.parse("status", body)
        kept = m.ts
        del m
        assert kept == ts
        assert sys.getrefcount(kept) == 2, "a parsed value is still referenced after its message is gone (cached)"
    for kind, model in payloads.MODELS.items():
        assert model.model_config.get("cache_strings") == "keys", kind
