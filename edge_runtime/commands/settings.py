"""``roadseg-run``'s settings: defaults < TOML ``--config`` file <
``ROADSEG_*`` environment variables < command line."""
from __future__ import annotations

import math
import os
import re
import socket
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Callable


@dataclass
class RunSettings:
    model: str = ""
    source: str = "synthetic"
    fps: float = 15.0
    device_id: str = field(default_factory=lambda: socket.gethostname().split(".")[0] or "vehicle")
    mqtt_host: str | None = None
    mqtt_port: int = 1883
    mqtt_protocol: str = "5"
    mqtt_qos: int = 1
    topic_prefix: str | None = None
    max_queued: int = 1000
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    mqtt_password_file: str | None = None
    publish_interval: float = 1.0
    stats_interval: float = 10.0
    log_interval: float = 5.0
    threads: int | None = None
    delegate: str | None = None
    delegate_options: str | None = None     # "key=value;key=value" (TOML/env); --delegate-option repeats
    max_frames: int | None = None
    duration: float | None = None
    realtime: bool = True
    loop: bool = False
    preview: str | None = None
    display: bool = False
    ha_discovery: bool = False
    stop_timeout: float = 5.0
    http: str | None = None
    api_token_file: str | None = None
    max_upload_mb: float = 10.0
    max_pixels: int = 12_000_000
    max_inflight: int = 2
    camera_wait: float = 10.0
    ha_interval: float = 60.0
    heartbeat_file: str | None = None
    snapshot_interval: float = 0.0
    snapshot_max_kb: int = 48


class ConfigError(ValueError):
    pass


def _coerce(name: str, value, typ):
    t = str(typ)
    try:
        if "bool" in t:
            if isinstance(value, bool):
                return value
            return str(value).lower() in ("1", "true", "yes", "on")
        if "int" in t and "float" not in t:
            return int(value)
        if "float" in t:
            return float(value)
        return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"setting {name}: {value!r} is not a valid {t}") from None


def load_settings(cli: dict, config_file: str | None, env: dict | None = None,
                  default_model: Callable[[], str] | None = None) -> RunSettings:
    """Defaults < TOML file < ROADSEG_* environment < command line.
    ``default_model()`` gives the model when none of them names one (the
    shipped model; it raises with one line when there is none)."""
    env = os.environ if env is None else env
    known = {f.name: f.type for f in fields(RunSettings)}
    merged: dict = {}
    if config_file:
        p = Path(config_file)
        if not p.is_file():
            raise ConfigError(f"config file not found: {p}")
        try:
            import tomllib
        except ImportError:  # Python 3.10
            import tomli as tomllib
        try:
            data = tomllib.loads(p.read_text())
        except Exception as e:
            raise ConfigError(f"malformed config file {p}: {e}") from None
        data = {k.replace("-", "_"): v for k, v in data.items()}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ConfigError(f"config file {p}: unknown settings {unknown}")
        merged.update(data)
    for name in known:
        v = env.get(f"ROADSEG_{name.upper()}")
        if v is not None:
            merged[name] = v
    merged.update({k: v for k, v in cli.items() if v is not None and k in known})
    out = RunSettings()
    for k, v in merged.items():
        setattr(out, k, None if v is None else _coerce(k, v, known[k]))
    if not out.model and default_model is not None:
        out.model = str(default_model())
    if not out.model:
        raise ConfigError("--model is required (a .tflite or .onnx with its sidecar .json)")
    check_settings(out)
    return out


def check_settings(s: RunSettings) -> None:
    """Refuse values the loop cannot run with, naming the setting."""
    def finite(name, v, low, inclusive=True):
        if v is None:
            return
        if not math.isfinite(v) or (v < low if inclusive else v <= low):
            raise ConfigError(f"--{name.replace('_', '-')} {v!r} must be a finite number "
                              f"{'>=' if inclusive else '>'} {low:g}")
    finite("fps", s.fps, 0)
    finite("publish_interval", s.publish_interval, 0)
    finite("stats_interval", s.stats_interval, 0, inclusive=False)
    finite("log_interval", s.log_interval, 0, inclusive=False)
    finite("stop_timeout", s.stop_timeout, 0)
    finite("duration", s.duration, 0, inclusive=False)
    finite("camera_wait", s.camera_wait, 0)
    finite("ha_interval", s.ha_interval, 0, inclusive=False)
    finite("snapshot_interval", s.snapshot_interval, 0)
    finite("max_upload_mb", s.max_upload_mb, 0, inclusive=False)
    for name in ("max_queued", "threads", "max_frames", "max_pixels", "max_inflight", "snapshot_max_kb"):
        v = getattr(s, name)
        if v is not None and v < 1:
            raise ConfigError(f"--{name.replace('_', '-')} {v} must be at least 1")
    if s.mqtt_port is not None and not 0 < s.mqtt_port < 65536:
        raise ConfigError(f"--mqtt-port {s.mqtt_port} is not a TCP port")
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", s.device_id or ""):
        raise ConfigError(f"--device-id {s.device_id!r}: use 1 to 64 letters, digits, _ or - (it names MQTT "
                          "topics and Home Assistant entities)")
    for name in ("tls_ca", "tls_cert", "tls_key", "mqtt_password_file", "api_token_file"):
        path = getattr(s, name)
        if path is not None and not Path(path).is_file():
            raise ConfigError(f"--{name.replace('_', '-')}: no such file {path}")
