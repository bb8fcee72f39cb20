"""``roadseg-run``'s settings: defaults < TOML ``--config`` file <
``ROADSEG_*`` environment variables < command line.

One schema (:class:`RunSettings`, a pydantic model extending the MQTT
settings of :class:`edge_runtime.io.mqtt_settings.MqttSettings`): every key has one
type and range, whatever its source. A wrong value is a :class:`ConfigError`
of one line naming the key as the user wrote it (``--mqtt-port``,
``ROADSEG_MQTT_PORT`` or ``mqtt_port in roadseg.toml``), the value and what
is wrong: booleans are true/false, 1/0, yes/no or on/off (not ``"yes
please"``), whole numbers are whole (``mqtt_port = 1883.7`` is refused),
numbers are finite. An empty environment variable counts as unset.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Callable, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from edge_runtime.io.identity import default_device_id
from edge_runtime.io.mqtt_settings import (DeviceId, ExistingFile, MqttSettings, NonNegative, Positive, PositiveInt,
                                           default_state_dir)




class RunSettings(MqttSettings):
    """Every ``roadseg-run`` setting (the MQTT ones come from MqttSettings).
    Times in seconds, rates in frames per second, sizes as named (``_kb``
    KiB, ``_mb`` MiB). ``state_dir`` defaults to
    :func:`edge_runtime.io.mqtt_settings.default_state_dir`. Raises pydantic.ValidationError
    (:func:`load_settings` turns it into ConfigError)."""
    model: str = ""
    source: str = "synthetic"
    fps: NonNegative = 15.0
    device_id: DeviceId = Field(default_factory=default_device_id, validate_default=True)
    state_dir: str | None = Field(default_factory=default_state_dir)
    publish_interval: NonNegative = 1.0
    stats_interval: Positive = 10.0
    log_interval: Positive = 5.0
    threads: PositiveInt | None = None
    size: str | None = None                 # "HEIGHTxWIDTH": the input size of a model whose input is dynamic
    delegate: str | None = None
    delegate_options: str | None = None     # "key=value;key=value" (TOML/env); --delegate-option repeats
    max_frames: PositiveInt | None = None
    duration: Positive | None = None
    realtime: bool = True
    loop: bool = False
    preview: str | None = None
    overlay_filter: Literal["linear", "point"] = "linear"
    display: bool = False
    ha_discovery: bool = False
    stop_timeout: NonNegative = 5.0
    http: str | None = None
    api_token_file: ExistingFile | None = None
    max_upload_mb: Positive = 10.0
    max_pixels: PositiveInt = 12_000_000
    max_inflight: PositiveInt = 2
    camera_wait: NonNegative = 10.0
    ha_interval: Positive = 60.0
    heartbeat_file: str | None = None
    capture_timeout: Positive = 5.0
    snapshot_interval: NonNegative = 0.0
    snapshot_max_kb: PositiveInt = 48
    snapshot_min_interval: NonNegative = 10.0
    keep_frames: str | None = None          # folder of kept frames (edge_runtime.flywheel); None: off
    keep_max_mb: Positive = 256.0
    keep_per_hour: PositiveInt = 30
    upload_url: str | None = None           # WebDAV base URL (PUT <url>/<device-id>/<file>)
    upload_presign: str | None = None       # presigning service URL (fleet.presign), for S3
    upload_token_file: ExistingFile | None = None
    upload_mb_per_day: Positive = 50.0
    update_repo: str | None = None          # release repository base URL(s), comma-separated (issue 29); None: off
    trust_root: ExistingFile | None = None  # the TUF root metadata the vehicle was installed with
    probation: Positive = 60.0              # seconds a new model runs on probation before it is committed
    probation_agreement: Annotated[float, Field(ge=0, le=1)] = 0.6  # share of pixels agreeing with the previous
    update_max_mb: Positive = 64.0          # the most one release may download, in MiB
    update_timeout: Positive = 300.0        # seconds any one release file may take to download

    @field_validator("size")
    @classmethod
    def _size(cls, v: str | None) -> str | None:
        if v is not None:
            from edge_runtime.contract.preprocessing import parse_size
            parse_size(v)  # ValueError names the text
        return v

    def input_size(self) -> tuple[int, int] | None:
        """``size`` as (height, width) pixels, or None (the model's or its sidecar's size)."""
        from edge_runtime.contract.preprocessing import parse_size
        return parse_size(self.size) if self.size else None

    @model_validator(mode="after")
    def _upload_target(self) -> "RunSettings":
        if self.upload_url and self.upload_presign:
            raise ValueError("give --upload-url (WebDAV) or --upload-presign (S3), not both")
        if (self.upload_url or self.upload_presign) and not self.keep_frames:
            raise ValueError("uploads send kept frames: give --keep-frames DIR too")
        return self

    @field_validator("snapshot_max_kb")
    @classmethod
    def _snapshot_fits(cls, v: int, info) -> int:
        packet = info.data.get("mqtt_max_packet_kb")
        if packet is not None and v >= packet:
            raise ValueError(f"must be less than mqtt_max_packet_kb ({packet}): a snapshot must fit in a packet "
                             f"the broker accepts (raise --mqtt-max-packet-kb if yours accepts more)")
        return v


class ConfigError(ValueError):
    """A setting that cannot be used; ``str()`` is one line naming it (exit 2)."""


def load_settings(cli: dict, config_file: str | None, env: dict | None = None,
                  default_model: Callable[[], str] | None = None) -> RunSettings:
    """Defaults < TOML file < ROADSEG_* environment (``env``, default
    os.environ) < command line (``cli``: setting name -> value, None when not
    given). ``default_model()`` gives the model when none of them names one
    (the shipped model; it raises with one line when there is none). Raises
    ConfigError: one line naming the key, its source and what is wrong."""
    env = os.environ if env is None else env
    known = set(RunSettings.model_fields)
    merged: dict = {}
    where: dict[str, str] = {}
    if config_file:
        for k, v in _read_toml(config_file, known).items():
            merged[k], where[k] = v, f"{k} in {Path(config_file).name}"
    for name in known:
        v = env.get(f"ROADSEG_{name.upper()}")
        if v:  # an empty variable (KEY= in an EnvironmentFile) is unset
            merged[name], where[name] = v, f"ROADSEG_{name.upper()}"
    for k, v in cli.items():
        if v is not None and k in known:
            merged[k], where[k] = v, f"--{k.replace('_', '-')}"
    if not merged.get("model") and default_model is not None:
        merged["model"] = str(default_model())
    if not merged.get("model"):
        raise ConfigError("--model is required (a .tflite or .onnx with its sidecar .json)")
    try:
        settings = RunSettings.model_validate(merged)
    except ValidationError as e:
        raise ConfigError(describe(e, merged, where)) from None
    if "state_dir" in where:
        _check_writable(settings.state_dir, where["state_dir"])
    return settings


#: the most a ``--config`` file may hold (a roadseg.toml is a few hundred bytes)
MAX_CONFIG_BYTES = 256 * 1024


def _read_toml(config_file: str, known: set[str]) -> dict:
    """The settings of a TOML ``--config`` file, keys with ``_`` for ``-``. Raises ConfigError (one line
    naming the file) when it is missing, not a regular file, over :data:`MAX_CONFIG_BYTES` (checked before
    a byte is read), not UTF-8, malformed, or names a setting that does not exist."""
    from edge_runtime.atomic import read_small_text
    p = Path(config_file)
    try:
        text = read_small_text(p, MAX_CONFIG_BYTES, "config file", missing_ok=True)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    if text is None:
        raise ConfigError(f"config file not found: {p}")
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib
    try:
        data = tomllib.loads(text)
    except Exception as e:
        raise ConfigError(f"malformed config file {p}: {e}") from None
    data = {k.replace("-", "_"): v for k, v in data.items()}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"config file {p}: unknown settings {unknown}")
    return data


#: pydantic error type -> how the error reads after "<key> <value>"
_REASONS = {
    "greater_than_equal": "must be at least {ge}", "greater_than": "must be more than {gt}",
    "less_than_equal": "must be at most {le}", "less_than": "must be less than {lt}",
    "finite_number": "must be a finite number", "int_from_float": "must be a whole number",
    "int_parsing": "must be a whole number", "int_type": "must be a whole number",
    "float_parsing": "must be a number", "float_type": "must be a number",
    "bool_parsing": "must be true or false (or 1/0, yes/no, on/off)", "bool_type": "must be true or false",
    "string_type": "must be text", "literal_error": "must be one of {expected}",
}


def describe(e: ValidationError, values: dict, where: dict[str, str]) -> str:
    """The first error of ``e`` as one line: ``<key as given> <value> <what is wrong>``.
    Values are shown with repr(), at most 60 characters (settings hold no secrets)."""
    err = e.errors(include_url=False)[0]
    key = str(err["loc"][0]) if err["loc"] else ""
    ctx = {k: (f"{v:g}" if isinstance(v, float) else v) for k, v in (err.get("ctx") or {}).items()}
    if err["type"] in _REASONS:
        reason = _REASONS[err["type"]].format(**ctx)
    else:
        reason = str(err["msg"]).removeprefix("Value error, ")
    if not key:
        return reason
    value = values.get(key, err.get("input"))
    shown = (repr(value) if isinstance(value, str) else str(value))[:60]
    name = where.get(key, key)
    return f"{name} {shown} {reason}" if reason.startswith("must") else f"{name} {shown}: {reason}"


def _check_writable(state_dir: str | None, name: str) -> None:
    if state_dir is None:
        return
    import errno
    path = Path(state_dir)
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as e:
        if e.errno in (errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EIO):
            return  # a disk fault, not a setting: the vehicle starts, keeps state in memory and says so
        raise ConfigError(f"{name} {state_dir!r}: cannot create it ({e.strerror})") from None
    if not os.access(path, os.W_OK | os.X_OK):
        if _read_only_fs(path):  # a disk fault, not a setting: the vehicle starts, keeps state in memory, says so
            return
        raise ConfigError(f"{name} {state_dir!r}: not writable by this user")


def _read_only_fs(path: Path) -> bool:
    """True when ``path`` is on a file system mounted read-only (e.g. an SD card the kernel
    remounted after I/O errors)."""
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False
