"""Every payload the vehicle sends: one pydantic model each, one builder each.

MQTT topics under ``roadseg/<device-id>/`` and the device API answer with
these, and nothing else assembles them. The same models check what the
fleet's readers receive (:func:`parse`), and are published as JSON Schema
(``docs/schemas/``, written by ``python -m edge_runtime.contract.payloads
docs/schemas``) so that integrators validate against the same definition.

=============  ==================  ==================================================
model          builder             where
=============  ==================  ==================================================
:class:`Status`    :func:`status`      ``status`` topic (retained; also the Last Will)
:class:`Coverage`  :func:`coverage`    ``coverage`` topic, schema ``roadseg.coverage/1``
:class:`Stats`     :func:`stats`       ``stats`` topic, schema ``roadseg.stats/1``
:class:`SegmentResult` :func:`segment_result` ``POST /v1/segment`` JSON answer, ``roadseg.segment/1``
:class:`HaState`   :func:`ha_state`    ``ha`` topic: Home Assistant sensors' state
:class:`HaDiscovery` :func:`ha_sensor_config` ``homeassistant/sensor/<uid>/config``
=============  ==================  ==================================================

A reader checks the size in bytes first (:data:`MAX_BYTES`), then the model
(:func:`parse`: strict types, finite numbers, bounded strings and key counts,
no unknown keys except a bounded set in ``stats.mqtt``). Free text (a camera's
error, a model name) may hold any character: readers strip control characters
before they show it (``fleet.text``). Times are RFC 3339 UTC with milliseconds
(:func:`now`).
"""
from __future__ import annotations

import datetime as dt
import json
import re
import sys
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StringConstraints,
    ValidationError,
    WithJsonSchema,
    create_model,
    model_validator,
)

from edge_runtime.contract.coverage import ZONES
from edge_runtime.contract.labels import CATEGORIES

COVERAGE_SCHEMA = "roadseg.coverage/1"
STATS_SCHEMA = "roadseg.stats/1"
SEGMENT_SCHEMA = "roadseg.segment/1"

#: The largest message of each kind a reader accepts, in bytes, checked before parsing. Each is several
#: times the largest the vehicle builds (a status with a 500-character error is about 1.5 KiB).
MAX_BYTES = {"status": 8 * 1024, "coverage": 8 * 1024, "stats": 16 * 1024, "ha": 4 * 1024,
             "segment": 8 * 1024, "snapshot": 512 * 1024}
#: A device id, as ``roadseg-run --device-id`` accepts it (it names MQTT topics).
DEVICE_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
#: The announced device API: ``http(s)://host[:port]`` only (a host name, also with ``_`` as some machines'
#: names have, IPv4 or [IPv6]; no path, user, query or fragment).
API_URL_PATTERN = (r"^https?://(?:[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?(?:\.[A-Za-z0-9_]"
                   r"(?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*|\[[0-9A-Fa-f:.]{2,45}\])(?::[0-9]{1,5})?$")
#: Extra counters a newer publisher may add to ``stats.mqtt``: this many at most.
MAX_MQTT_EXTRA = 16

DeviceId = Annotated[str, StringConstraints(pattern=DEVICE_ID_PATTERN)]
Token = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,31}$")]  # a state word: online, live, ...
Text = Annotated[str, StringConstraints(max_length=500)]                     # free text, e.g. a camera's error
ShortText = Annotated[str, StringConstraints(max_length=200)]
Timestamp = Annotated[str, StringConstraints(
    max_length=40, pattern=r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,9})?(?:Z|[+-]\d\d:\d\d)$")]
ApiUrl = Annotated[str, StringConstraints(max_length=300, pattern=API_URL_PATTERN)]
#: The largest count any payload carries: 2**53 - 1, exact as a JSON number in every reader, as an int64
#: and as a float64. Every count and measure has a range: a reader refuses 1e30 at the schema.
MAX_COUNT = 2**53 - 1


def _measure(lo: float, hi: float):
    """A JSON number in ``[lo, hi]`` that stays an int when sent as one (15, not 15.0); finite (model config)."""
    return Annotated[StrictInt | float, Field(ge=lo, le=hi), WithJsonSchema({"type": "number", "minimum": lo,
                                                                            "maximum": hi})]


NonNegative = _measure(0, 1e12)        # a measure without a narrower range below
FramesPerSecond = _measure(0, 10_000)  # frames per second
Milliseconds = _measure(0, 3_600_000)  # a latency: at most an hour
Seconds = _measure(0, 1e10)            # an uptime: about 300 years
Megabytes = _measure(0, 10_000_000)    # a process's memory: at most 10 TB
Celsius = _measure(-100, 250)          # a CPU temperature
Fraction = Annotated[float, Field(ge=0, le=1)]
Count = Annotated[int, Field(ge=0, le=MAX_COUNT)]


class _Payload(BaseModel):
    """Strict as JSON allows (no ``"15"`` for 15, no ``true`` for 1), finite numbers, no unknown keys.
    Parsing JSON caches the keys only: pydantic-core's default also caches string values in a process-wide
    cache of 16,384 entries, which every received message's timestamps would fill (about 1.2 MB kept)."""
    model_config = ConfigDict(strict=True, allow_inf_nan=False, extra="forbid", frozen=True, cache_strings="keys")


class ModelInfo(_Payload):
    """The model a payload came from (``name`` always; the rest where the sender knows it)."""
    name: ShortText
    sha256: Annotated[str, StringConstraints(max_length=64)] | None = None
    precision: ShortText | None = None
    input_size: Annotated[list[Annotated[int, Field(ge=1, le=100_000)]], Field(min_length=2, max_length=2)] | None = None
    release: Annotated[int, Field(ge=0, le=2**31 - 1)] | None = None  # the fleet release it came in (issue 29)


#: at most this many faults in one status or stats message (one per store: queue, heartbeat, preview, ...)
MAX_FAULTS = 16
InstallationId = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{8}$")]


class Fault(_Payload):
    """A store of the vehicle that cannot write (full or read-only disk, I/O error, slow fsync):
    ``store`` names it (``offline-queue``, ``heartbeat``, ``preview``, ``kept-frames``...),
    ``path`` where it writes, ``error`` why, ``since`` when it began (UTC). What the store keeps
    meanwhile is held in memory within its bound; it resumes by itself when the disk recovers."""
    store: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{0,31}$")]
    path: Text | None = None
    error: ShortText
    since: Timestamp


class Status(_Payload):
    """``roadseg/<id>/status`` (retained). ``state``: online, offline, camera_lost, id_clash; ``reason`` why
    (``lost`` is the Last Will, ``stopped`` a clean stop); ``since``: when this state began;
    ``installation``: the 8 hex digits of the installation publishing and ``started`` when its
    process started (two live installations on one device id are a clash: the later yields);
    ``faults``: stores that cannot write now."""
    state: Token
    ts: Timestamp
    device_id: DeviceId
    model: ModelInfo | None = None
    source: Text | None = None
    target_fps: FramesPerSecond | None = None
    api: ApiUrl | None = None
    reason: ShortText | None = None
    since: Timestamp | None = None
    error: Text | None = None
    installation: InstallationId | None = None
    started: Timestamp | None = None
    faults: Annotated[list[Fault], Field(max_length=MAX_FAULTS)] | None = None


_Categories = create_model("CategoryFractions", __base__=_Payload,
                           __doc__="Fraction of the frame of each of the 8 categories (0..1).",
                           **{c: (Fraction, ...) for c in CATEGORIES})
_ZoneFractions = create_model("ZoneFractions", __base__=_Payload,
                              __doc__="Fractions of a zone that are drivable and obstacle (0..1).",
                              drivable=(Fraction, ...), obstacle=(Fraction, ...))
_Zones = create_model("Zones", __base__=_Payload, __doc__="The zones of :data:`edge_runtime.contract.coverage.ZONES`.",
                      **{z: (_ZoneFractions, ...) for z in ZONES})


class InferenceLatency(_Payload):
    """Mean milliseconds per frame: the interpreter's ``invoke`` and the whole segmentation."""
    inference: Milliseconds
    total: Milliseconds


class Coverage(_Payload):
    """``roadseg/<id>/coverage``: one publish interval's summary."""
    schema_: Literal["roadseg.coverage/1"] = Field(alias="schema")
    device_id: DeviceId
    seq: Count
    ts: Timestamp
    frames: Count
    coverage: _Categories
    zones: _Zones
    fps: FramesPerSecond
    latency_ms: InferenceLatency
    model: ModelInfo


class Fps(_Payload):
    """Frames per second: achieved since start, and the target (``--fps``; 0 = as fast as possible)."""
    achieved: FramesPerSecond
    target: FramesPerSecond


class Camera(_Payload):
    """The camera source's state (opening, live, lost, ended) and how often it was reopened."""
    state: Token
    reconnects: Count


class Percentiles(_Payload):
    """Milliseconds per frame from capture to class map: 50th, 90th and 99th percentile."""
    p50: Milliseconds
    p90: Milliseconds
    p99: Milliseconds


class Memory(_Payload):
    """Resident memory of the runtime process in MB: now and at its peak (None where unknown)."""
    rss_mb: Megabytes | None = None
    peak_rss_mb: Megabytes | None = None


MqttExtra = (bool | Annotated[StrictInt, Field(ge=-MAX_COUNT, le=MAX_COUNT)]
             | Annotated[float, Field(ge=-MAX_COUNT, le=MAX_COUNT)] | ShortText | None)


class MqttCounters(_Payload):
    """The publisher's counters (:attr:`edge_runtime.io.mqtt.MqttPublisher.counts`) and link state.
    Up to :data:`MAX_MQTT_EXTRA` more counters (snake_case names, scalar values) are accepted."""
    model_config = ConfigDict(extra="allow", json_schema_extra=lambda schema, cls: schema.update(
        maxProperties=len(cls.model_fields) + MAX_MQTT_EXTRA, propertyNames={"pattern": r"^[a-z][a-z0-9_]{0,31}$"}))
    __pydantic_extra__: dict[str, MqttExtra] = Field(init=False)

    queued: Count | None = None
    queued_total: Count | None = None
    sent: Count | None = None
    dropped: Count | None = None
    skipped: Count | None = None
    refused: Count | None = None
    oversize: Count | None = None
    requests: Count | None = None
    requests_limited: Count | None = None
    requests_oversize: Count | None = None
    connect_failures: Count | None = None
    connected: bool | None = None
    last_error: ShortText | None = None

    @model_validator(mode="after")
    def _bounded_extra(self):
        extra = self.__pydantic_extra__ or {}
        if len(extra) > MAX_MQTT_EXTRA:
            raise ValueError(f"at most {MAX_MQTT_EXTRA} extra mqtt counters, got {len(extra)}")
        bad = [k for k in extra if not re.fullmatch(r"[a-z][a-z0-9_]{0,31}", k)]
        if bad:
            raise ValueError(f"mqtt counter names must be snake_case, at most 32 characters: {bad[0][:40]!r}")
        return self


class Stats(_Payload):
    """``roadseg/<id>/stats``: the vehicle's health every stats interval."""
    schema_: Literal["roadseg.stats/1"] = Field(alias="schema")
    device_id: DeviceId
    ts: Timestamp
    fps: Fps
    frames: Count
    dropped_frames: Count
    skipped_ticks: Count
    camera: Camera
    camera_reconnects: Count
    latency_ms: Percentiles
    cpu_temp_c: Celsius | None
    memory: Memory
    uptime_s: Seconds
    mqtt: MqttCounters
    model: ModelInfo
    faults: Annotated[list[Fault], Field(max_length=MAX_FAULTS)] | None = None


class SegmentResult(_Payload):
    """``POST /v1/segment`` JSON answer: coverage of one uploaded image."""
    schema_: Literal["roadseg.segment/1"] = Field(alias="schema")
    width: Annotated[int, Field(ge=1, le=100_000)]
    height: Annotated[int, Field(ge=1, le=100_000)]
    coverage: _Categories
    zones: _Zones
    latency_ms: InferenceLatency
    model: ModelInfo


_Percent = create_model("CategoryPercent", __base__=_Payload, __doc__="Coverage of each category in percent.",
                        **{c: (Annotated[float, Field(ge=0, le=100)], ...) for c in CATEGORIES})


class HaState(_Payload):
    """``roadseg/<id>/ha``: the Home Assistant sensors' state, in percent rounded to 0.1."""
    coverage: _Percent
    ts: Timestamp


class HaDevice(_Payload):
    """The Home Assistant device a vehicle's sensors belong to."""
    identifiers: list[ShortText]
    name: ShortText
    model: ShortText


class HaDiscovery(_Payload):
    """Home Assistant MQTT discovery config of one category's coverage sensor."""
    name: ShortText
    unique_id: ShortText
    state_topic: ShortText
    value_template: ShortText
    unit_of_measurement: Literal["%"]
    state_class: Literal["measurement"]
    availability_topic: ShortText
    availability_template: ShortText
    payload_available: Literal["online"]
    payload_not_available: Literal["offline"]
    expire_after: Annotated[int, Field(ge=1, le=10**7)] | None = None  # seconds without a state before it shows unavailable
    device: HaDevice


MODEL_STATE_SCHEMA = "roadseg.model-state/1"
#: the model states a vehicle reports (issue 29), in the order an update goes through them
MODEL_STATES = ("idle", "queued", "downloading", "verifying", "trial", "succeeded", "rejected", "rolled_back")


class ReleaseRef(_Payload):
    """A model release: its ``version`` (None for a model that is no release), name, sha256 and target path."""
    version: Annotated[int, Field(ge=0, le=2**31 - 1)] | None = None
    name: ShortText | None = None
    sha256: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")] | None = None
    target: ShortText | None = None


class ModelState(_Payload):
    """``roadseg/<id>/model`` (retained): the release that runs, the one being tried, the update's
    ``state`` (:data:`MODEL_STATES`) with its ``reason``, bytes downloaded so far of ``total_bytes``."""
    schema_: Literal["roadseg.model-state/1"] = Field(alias="schema")
    device_id: DeviceId
    ts: Timestamp
    state: Literal["idle", "queued", "downloading", "verifying", "trial", "succeeded", "rejected", "rolled_back"]
    running: ReleaseRef
    trying: ReleaseRef | None = None
    reason: Text | None = None
    bytes: Count = 0
    total_bytes: Count | None = None


def model_state(device_id: str, state: str, running: dict, *, trying: dict | None = None, reason: str | None = None,
                bytes: int = 0, total_bytes: int | None = None) -> dict:
    """The model state (:class:`ModelState`); ``running``/``trying`` are :class:`ReleaseRef` fields;
    ``reason`` is cut to 500 characters. Raises :class:`PayloadError`."""
    fields = {"schema": MODEL_STATE_SCHEMA, "device_id": device_id, "ts": now(), "state": state, "running": running,
              "bytes": bytes}
    for key, value in (("trying", trying), ("reason", None if reason is None else reason[:500]),
                       ("total_bytes", total_bytes)):
        if value is not None:
            fields[key] = value
    return _dump(ModelState, fields)


#: topic kind -> the model of its JSON payload (``snapshot`` is a JPEG, not JSON)
class Clash(_Payload):
    """``roadseg/<id>/clash`` (retained; cleared when it ends): ``installation`` found another live
    installation, ``holder``, publishing under the same device id and publishes nothing under it."""
    device_id: DeviceId
    installation: InstallationId
    holder: InstallationId
    ts: Timestamp


def clash(device_id: str, installation: str, holder: str) -> dict:
    """The clash notice (:class:`Clash`) of ``installation``, which yields ``device_id`` to ``holder``."""
    return _dump(Clash, {"device_id": device_id, "installation": installation, "holder": holder, "ts": now()})


MODELS: dict[str, type[_Payload]] = {"status": Status, "coverage": Coverage, "stats": Stats, "ha": HaState}
MODELS["clash"] = Clash
MAX_BYTES["clash"] = 1024
MODELS["model"] = ModelState  # issue 29: the model update state
MAX_BYTES.setdefault("model", 4 * 1024)


class PayloadError(ValueError):
    """A message that is not a valid payload of its kind; ``str()`` is one line naming the first problem."""


def _dump(model: type[_Payload], fields: dict) -> dict:
    """Check ``fields`` against ``model`` and return them as JSON-ready values, same keys as given."""
    try:
        m = model.model_validate(fields, strict=False)  # our own values: NumPy scalars are fine here
    except ValidationError as e:
        raise PayloadError(_first_error(model, e)) from None
    return m.model_dump(mode="json", by_alias=True, exclude_unset=True)


def _first_error(model: type[_Payload], e: ValidationError) -> str:
    err = e.errors(include_url=False, include_input=False)[0]
    where = ".".join(str(p) for p in err["loc"]) or "payload"
    return f"{model.__name__.lower()} {where}: {err['msg']} ({e.error_count()} problem(s))"


def parse(kind: str, payload: bytes) -> _Payload:
    """A received message of topic ``kind`` (a key of :data:`MODELS`) -> its model.

    Size first: more than ``MAX_BYTES[kind]`` bytes is refused unparsed; then the
    JSON (pydantic's parser: depth-limited, so ``[`` x 50,000 is an error, not a
    RecursionError) and the model. Raises :class:`PayloadError` (one line,
    never echoing the payload) or ``KeyError`` for an unknown kind."""
    model = MODELS[kind]
    if len(payload) > MAX_BYTES[kind]:
        raise PayloadError(f"{kind}: {len(payload)} bytes, more than the {MAX_BYTES[kind]} a {kind} may have")
    try:
        return model.model_validate_json(payload)
    except ValidationError as e:
        raise PayloadError(_first_error(model, e)) from None


def now() -> str:
    """The current UTC time as RFC 3339 with milliseconds, e.g. ``2026-11-25T10:00:01.250Z``."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def model_ref(info: dict) -> dict:
    """The short model reference every summary carries: ``{"name", "sha256"}``."""
    return {"name": info["name"], "sha256": info["sha256"]}


def status(state: str, device_id: str, **extra) -> dict:
    """``{"state": "online"|"offline"|"camera_lost", "ts", "device_id", ...}``; ``extra``
    carries the model, source and target FPS given at start, the ``api`` address,
    a ``reason``, ``since`` or ``error`` (fields of :class:`Status`). Raises
    :class:`PayloadError` for a field :class:`Status` does not define or allow."""
    return _dump(Status, {"state": state, "ts": now(), "device_id": device_id, **extra})


def coverage(device_id: str, seq: int, summary: dict, fps: float, model: dict) -> dict:
    """One publish interval: ``summary`` is :meth:`CoverageAggregator.summary`, ``fps`` frames per
    second over the interval, ``model`` the model info (name and sha256 are kept). Raises :class:`PayloadError`."""
    return _dump(Coverage, {
        "schema": COVERAGE_SCHEMA, "device_id": device_id, "seq": seq, "ts": now(),
        "frames": summary["frames"], "coverage": summary["coverage"], "zones": summary["zones"],
        "fps": round(fps, 2), "latency_ms": summary["latency_ms"], "model": model_ref(model)})


def stats(device_id: str, *, achieved_fps: float, target_fps: float, frames: int, dropped_frames: int,
          skipped_ticks: int, camera_reconnects: int, camera_state: str, latency_ms: dict, cpu_temp_c: float | None,
          memory: dict, uptime_s: float, mqtt: dict, model: dict, faults: list[dict] | None = None) -> dict:
    """The vehicle's health (:class:`Stats`): FPS achieved and targeted, frame counts, camera state,
    latency percentiles in ms (``p50``, ``p90``, ``p99``), CPU temperature in °C (None where unknown),
    memory in MB, uptime in s, MQTT counters, ``faults`` (stores that cannot write, :class:`Fault`;
    left out when there are none). Raises :class:`PayloadError`."""
    return _dump(Stats, {
        "schema": STATS_SCHEMA, "device_id": device_id, "ts": now(),
        "fps": {"achieved": round(achieved_fps, 2), "target": target_fps},
        "frames": frames, "dropped_frames": dropped_frames, "skipped_ticks": skipped_ticks,
        "camera": {"state": camera_state, "reconnects": camera_reconnects},
        "camera_reconnects": camera_reconnects, "latency_ms": latency_ms, "cpu_temp_c": cpu_temp_c,
        "memory": memory, "uptime_s": round(uptime_s, 1), "mqtt": mqtt, "model": model,
        **({"faults": faults} if faults else {})})


def segment_result(width: int, height: int, summary: dict, inference_ms: float, total_ms: float,
                   model: dict) -> dict:
    """The device API's answer for one image of ``width`` x ``height`` pixels: coverage, zones,
    latency in ms of the interpreter and of the whole request. Raises :class:`PayloadError`."""
    return _dump(SegmentResult, {
        "schema": SEGMENT_SCHEMA, "width": width, "height": height,
        "coverage": summary["coverage"], "zones": summary["zones"],
        "latency_ms": {"inference": round(inference_ms, 3), "total": round(total_ms, 3)},
        "model": model_ref(model)})


def ha_state(summary: dict) -> dict:
    """The Home Assistant sensors' state: coverage in percent, rounded to 0.1."""
    return _dump(HaState, {"coverage": {c: round(100 * v, 1) for c, v in summary["coverage"].items()},
                           "ts": now()})


#: the status ``state`` -> availability: ``online`` is available, every other state (offline, camera_lost, ...)
#: is not, so no state the vehicle publishes leaves Home Assistant showing stale values as live
HA_AVAILABILITY_TEMPLATE = "{{ 'online' if value_json.state == 'online' else 'offline' }}"


def ha_sensor_config(device_id: str, category: str, state_topic: str, status_topic: str,
                     model_name: str, expire_after: int | None = None) -> tuple[str, dict]:
    """``(unique id, discovery config)`` of the coverage sensor of one category
    (Home Assistant's MQTT discovery format); ``expire_after``: seconds without
    a state after which Home Assistant shows the sensor unavailable. Raises
    ValueError for an unknown category."""
    if category not in CATEGORIES:
        raise ValueError(f"unknown category {category!r}")
    uid = f"roadseg_{device_id}_{category}"
    return uid, _dump(HaDiscovery, {
        "name": f"{category} coverage", "unique_id": uid, "state_topic": state_topic,
        "value_template": f"{{{{ value_json.coverage.{category} }}}}",
        "unit_of_measurement": "%", "state_class": "measurement",
        "availability_topic": status_topic, "availability_template": HA_AVAILABILITY_TEMPLATE,
        "payload_available": "online", "payload_not_available": "offline",
        **({"expire_after": expire_after} if expire_after is not None else {}),
        "device": {"identifiers": [f"roadseg_{device_id}"], "name": f"roadseg {device_id}", "model": model_name},
    })


#: file name in docs/schemas -> model
SCHEMA_FILES: dict[str, type[_Payload]] = {
    "status.json": Status, "coverage.json": Coverage, "stats.json": Stats, "segment.json": SegmentResult,
    "ha-state.json": HaState, "ha-discovery.json": HaDiscovery, "clash.json": Clash, "model-state.json": ModelState}


def json_schemas() -> dict[str, str]:
    """File name -> JSON Schema (draft 2020-12, as pydantic writes it) of each payload, as text."""
    out = {}
    for name, model in SCHEMA_FILES.items():
        schema = {"$schema": "https://json-schema.org/draft/2020-12/schema",
                  "$id": f"https://roadseg.example/schemas/{name}",
                  **model.model_json_schema(by_alias=True, mode="validation")}
        out[name] = json.dumps(schema, indent=2, sort_keys=False) + "\n"
    return out


def write_json_schemas(folder: str | Path) -> list[Path]:
    """Write :func:`json_schemas` into ``folder`` (atomically, file by file); returns the paths."""
    from edge_runtime.atomic import write_text
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in json_schemas().items():
        write_text(folder / name, text)
        paths.append(folder / name)
    return paths


if __name__ == "__main__":  # python -m edge_runtime.contract.payloads docs/schemas
    for p in write_json_schemas(sys.argv[1] if len(sys.argv) > 1 else "docs/schemas"):
        print(p)
