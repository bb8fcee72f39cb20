"""Settings: command line, TOML, environment; bad values are one line and exit 2."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from edge_runtime.commands.settings import ConfigError, load_settings

ROOT = Path(__file__).resolve().parents[2]

def _run_cli(*args, timeout=60, env=None):
    import os
    return subprocess.run([sys.executable, "-m", "edge_runtime.commands.run", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, env=dict(os.environ, **(env or {})))

@pytest.mark.parametrize("args,message", [
    (["--max-queued", "0"], "--max-queued 0 must be at least 1"),
    (["--max-queued", "-5"], "--max-queued -5 must be at least 1"),
    (["--fps", "nan"], "--fps nan must be a finite number"),
    (["--fps", "inf"], "--fps inf must be a finite number"),
    (["--threads", "-3"], "--threads -3 must be at least 1"),
    (["--mqtt-password-file", "/nonexistent/pw"], "--mqtt-password-file: no such file"),
    (["--tls-ca", "/nonexistent/ca.pem"], "--tls-ca: no such file"),
    (["--device-id", "car/1"], "--device-id 'car/1'"),
])
def test_bad_settings_are_one_line_and_exit_2(tiny_tflite, args, message):
    r = _run_cli("--model", str(tiny_tflite), "--source", "synthetic", *args)
    assert r.returncode == 2, r.stderr
    assert message in r.stderr and "Traceback" not in r.stderr and "FATAL" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr

def test_settings_precedence_and_errors(tmp_path):
    cfg = tmp_path / "r.toml"
    cfg.write_text('model = "from-file.tflite"\nfps = 5\ndevice_id = "file"\n')
    s = load_settings({"device_id": "cli"}, str(cfg), env={"ROADSEG_FPS": "7", "ROADSEG_MQTT_PORT": "1999"})
    assert (s.model, s.fps, s.device_id, s.mqtt_port) == ("from-file.tflite", 7.0, "cli", 1999)
    bad = tmp_path / "bad.toml"
    bad.write_text("model = [unclosed\n")
    with pytest.raises(ConfigError, match="malformed config file"):
        load_settings({}, str(bad), env={})
    unknown = tmp_path / "u.toml"
    unknown.write_text('modle = "x"\n')
    with pytest.raises(ConfigError, match="unknown settings"):
        load_settings({}, str(unknown), env={})
    with pytest.raises(ConfigError, match="not a valid"):
        load_settings({"model": "m"}, None, env={"ROADSEG_FPS": "fast"})

def _run_cli(*args, timeout=60):
    return subprocess.run([sys.executable, "-m", "edge_runtime.commands.run", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)

def test_malformed_config(tmp_path):
    bad = tmp_path / "c.toml"
    bad.write_text("fps = = 3")
    r = _run_cli("--config", str(bad))
    assert r.returncode == 2 and "malformed config file" in r.stderr
