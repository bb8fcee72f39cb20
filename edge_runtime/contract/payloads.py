"""Every payload the vehicle sends, built in one place each.

MQTT topics under ``roadseg/<device-id>/`` and the device API answer with
these, and nothing else assembles them:

* :func:`status`   ``status`` topic (retained; also the Last Will)
* :func:`coverage` ``coverage`` topic, schema ``roadseg.coverage/1``
* :func:`stats`    ``stats`` topic, schema ``roadseg.stats/1``
* :func:`segment`  ``POST /v1/segment`` JSON answer, schema ``roadseg.segment/1``
* :func:`ha_sensor_config`, :func:`ha_state` Home Assistant discovery and the sensors' state

Times are RFC 3339 UTC with milliseconds (:func:`now`).
"""
from __future__ import annotations

import datetime as dt

from edge_runtime.contract.labels import CATEGORIES

COVERAGE_SCHEMA = "roadseg.coverage/1"
STATS_SCHEMA = "roadseg.stats/1"
SEGMENT_SCHEMA = "roadseg.segment/1"


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def model_ref(info: dict) -> dict:
    """The short model reference every summary carries."""
    return {"name": info["name"], "sha256": info["sha256"]}


def status(state: str, device_id: str, **extra) -> dict:
    """``{"state": "online"|"offline", "ts", "device_id", ...}``; ``extra``
    carries the model, source and target FPS given at start, and a reason."""
    return {"state": state, "ts": now(), "device_id": device_id, **extra}


def coverage(device_id: str, seq: int, summary: dict, fps: float, model: dict) -> dict:
    """One publish interval: ``summary`` is :meth:`CoverageAggregator.summary`."""
    return {"schema": COVERAGE_SCHEMA, "device_id": device_id, "seq": seq, "ts": now(),
            "frames": summary["frames"], "coverage": summary["coverage"], "zones": summary["zones"],
            "fps": round(fps, 2), "latency_ms": summary["latency_ms"], "model": model_ref(model)}


def stats(device_id: str, *, achieved_fps: float, target_fps: float, frames: int, dropped_frames: int,
          skipped_ticks: int, camera_reconnects: int, camera_state: str, latency_ms: dict, cpu_temp_c: float | None,
          memory: dict, uptime_s: float, mqtt: dict, model: dict) -> dict:
    return {"schema": STATS_SCHEMA, "device_id": device_id, "ts": now(),
            "fps": {"achieved": round(achieved_fps, 2), "target": target_fps},
            "frames": frames, "dropped_frames": dropped_frames, "skipped_ticks": skipped_ticks,
            "camera": {"state": camera_state, "reconnects": camera_reconnects},
            "camera_reconnects": camera_reconnects, "latency_ms": latency_ms, "cpu_temp_c": cpu_temp_c,
            "memory": memory, "uptime_s": round(uptime_s, 1), "mqtt": mqtt, "model": model}


def segment(width: int, height: int, summary: dict, inference_ms: float, total_ms: float, model: dict) -> dict:
    return {"schema": SEGMENT_SCHEMA, "width": width, "height": height,
            "coverage": summary["coverage"], "zones": summary["zones"],
            "latency_ms": {"inference": round(inference_ms, 3), "total": round(total_ms, 3)},
            "model": model_ref(model)}


def ha_state(summary: dict) -> dict:
    """The Home Assistant sensors' state: coverage in percent, rounded to 0.1."""
    return {"coverage": {c: round(100 * v, 1) for c, v in summary["coverage"].items()}, "ts": now()}


def ha_sensor_config(device_id: str, category: str, state_topic: str, status_topic: str,
                     model_name: str) -> tuple[str, dict]:
    """``(unique id, discovery config)`` of the coverage sensor of one category."""
    if category not in CATEGORIES:
        raise ValueError(f"unknown category {category!r}")
    uid = f"roadseg_{device_id}_{category}"
    return uid, {
        "name": f"{category} coverage", "unique_id": uid, "state_topic": state_topic,
        "value_template": f"{{{{ value_json.coverage.{category} }}}}",
        "unit_of_measurement": "%", "state_class": "measurement",
        "availability_topic": status_topic, "availability_template": "{{ value_json.state }}",
        "payload_available": "online", "payload_not_available": "offline",
        "device": {"identifiers": [f"roadseg_{device_id}"], "name": f"roadseg {device_id}", "model": model_name},
    }
