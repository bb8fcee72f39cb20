"""Settings (edge_runtime/commands/settings.py): command line > environment > TOML > defaults, one
pydantic schema; every wrong type or value is one line naming the key as given, exit 2."""
from __future__ import annotations

import os
import subprocess
import sys
import typing
from pathlib import Path

import pytest

from edge_runtime.commands.settings import ConfigError, RunSettings, load_settings

ROOT = Path(__file__).resolve().parents[2]


def _run_cli(*args, timeout=60, env=None):
    return subprocess.run([sys.executable, "-m", "edge_runtime.commands.run", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, env=dict(os.environ, **(env or {})))


def _kind(name: str):
    """The base type of a RunSettings field (int, float, bool, str), Optional and Annotated unwrapped."""
    t = RunSettings.model_fields[name].annotation
    while typing.get_origin(t) is not None:
        t = next(a for a in typing.get_args(t) if a is not type(None))
        t = typing.get_args(t)[0] if typing.get_origin(t) is typing.Annotated else t
    return t


FIELDS = list(RunSettings.model_fields)
BOOLS = [n for n in FIELDS if _kind(n) is bool]
INTS = [n for n in FIELDS if _kind(n) is int]
FLOATS = [n for n in FIELDS if _kind(n) is float]


def _load(cli=None, env=None, toml=None, tmp_path=None):
    cfg = None
    if toml is not None:
        cfg = tmp_path / "roadseg.toml"
        cfg.write_text(toml)
    return load_settings({"model": "m.tflite", **(cli or {})}, str(cfg) if cfg else None, env=env or {})


@pytest.mark.parametrize("args,env,message", [
    (["--max-queued", "0"], {}, "--max-queued 0 must be at least 1"),
    (["--fps", "nan"], {}, "--fps nan must be a finite number"),
    (["--mqtt-password-file", "/nonexistent/pw"], {}, "--mqtt-password-file '/nonexistent/pw': no such file"),
    (["--device-id", "car/1"], {}, "--device-id 'car/1' must be 1 to 64"),
    (["--topic-prefix", "fleet/+/north"], {}, "--topic-prefix 'fleet/+/north' must not contain the wildcards"),
    ([], {"ROADSEG_TOPIC_PREFIX": "roadseg/#"}, "ROADSEG_TOPIC_PREFIX 'roadseg/#' must not contain the wildcards"),
    ([], {"ROADSEG_MQTT_PORT": "1883.7"}, "ROADSEG_MQTT_PORT '1883.7' must be a whole number"),
    ([], {"ROADSEG_HA_DISCOVERY": "yes please"}, "ROADSEG_HA_DISCOVERY 'yes please' must be true or false"),
])
def test_bad_settings_are_one_line_and_exit_2(tiny_tflite, args, env, message):
    r = _run_cli("--model", str(tiny_tflite), "--source", "synthetic", "--duration", "1", *args, env=env)
    assert r.returncode == 2, r.stderr
    assert message in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_toml_float_port_is_refused_at_start(tiny_tflite, tmp_path):
    cfg = tmp_path / "r.toml"
    cfg.write_text(f'model = "{tiny_tflite}"\nmqtt_port = 1883.7\n')
    r = _run_cli("--config", str(cfg))
    assert r.returncode == 2 and "mqtt_port in r.toml 1883.7 must be a whole number" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("name", BOOLS)
@pytest.mark.parametrize("value", ["yes please", "maybe", "2", "truee", "-1"])
def test_every_boolean_refuses_what_is_not_a_boolean(name, value, tmp_path):
    with pytest.raises(ConfigError, match=rf"^ROADSEG_{name.upper()} '{value}' must be true or false"):
        _load(env={f"ROADSEG_{name.upper()}": value})
    with pytest.raises(ConfigError, match=rf"^{name} in roadseg.toml '{value}' must be true or false"):
        _load(toml=f'{name} = "{value}"\n', tmp_path=tmp_path)


@pytest.mark.parametrize("name", BOOLS)
def test_every_boolean_takes_the_usual_spellings(name):
    for text, value in [("true", True), ("False", False), ("1", True), ("0", False), ("yes", True), ("NO", False),
                        ("on", True), ("off", False)]:
        assert getattr(_load(env={f"ROADSEG_{name.upper()}": text}), name) is value


@pytest.mark.parametrize("name", INTS)
def test_every_whole_number_refuses_fractions_and_booleans(name, tmp_path):
    with pytest.raises(ConfigError, match=rf"^{name} in roadseg.toml 1883.7 must be a whole number"):
        _load(toml=f"{name} = 1883.7\n", tmp_path=tmp_path)
    with pytest.raises(ConfigError, match=rf"^ROADSEG_{name.upper()} '12.5' must be a whole number"):
        _load(env={f"ROADSEG_{name.upper()}": "12.5"})
    with pytest.raises(ConfigError, match=rf"^{name} in roadseg.toml True must be a number, not true/false"):
        _load(toml=f"{name} = true\n", tmp_path=tmp_path)


@pytest.mark.parametrize("name", FLOATS)
@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "fast"])
def test_every_number_is_finite(name, value):
    with pytest.raises(ConfigError, match=rf"^--{name.replace('_', '-')} "):
        _load(cli={name: float(value) if value != "fast" else value})
    with pytest.raises(ConfigError, match=rf"^ROADSEG_{name.upper()} '{value}' must be a (finite )?number"):
        _load(env={f"ROADSEG_{name.upper()}": value})


@pytest.mark.parametrize("prefix,why", [
    ("fleet/+/north", "wildcards"), ("roadseg/#", "wildcards"), ("+", "wildcards"), ("a#b", "wildcards"),
    ("a\x00b", "NUL"), ("a\x07b", "control characters"), ("a/\x85", "control characters"),
    ("a//b", "empty levels"), ("/roadseg", "empty levels"), ("roadseg/", "empty levels"), ("", "empty"),
    ("$SYS/car1", "start with \\$"), ("x" * 1025, "at most 1024 bytes"),
])
def test_topic_prefixes_the_broker_would_refuse_are_refused_at_start(prefix, why):
    with pytest.raises(ConfigError, match=f"^--topic-prefix .*{why}"):
        _load(cli={"topic_prefix": prefix})


def test_accepted_prefixes():
    for prefix in ("fleet/north/car1", "roadseg", "a-b_c/ü/日本"):
        assert _load(cli={"topic_prefix": prefix}).prefix == prefix


@pytest.mark.parametrize("host,why", [("mqtt://broker", "without a scheme"), ("broker:1883", "port"),
                                      ("a b", "host name"), ("user@broker", "host name")])
def test_broker_hosts_are_hosts(host, why):
    with pytest.raises(ConfigError, match=f"^--mqtt-host .*{why}"):
        _load(cli={"mqtt_host": host})
    assert _load(cli={"mqtt_host": "::1"}).mqtt_host == "::1"


def test_tls_files_are_checked_at_start(tmp_path):
    from tests.support import make_ca
    tls = make_ca(tmp_path / "tls")
    not_pem = tmp_path / "x.pem"
    not_pem.write_text("hello\n")
    with pytest.raises(ConfigError, match="^--tls-ca '/nonexistent/ca.pem': no such file"):
        _load(cli={"tls_ca": "/nonexistent/ca.pem"})
    with pytest.raises(ConfigError, match="^--tls-ca .*: is not a PEM CA certificate"):
        _load(cli={"tls_ca": str(not_pem)})
    with pytest.raises(ConfigError, match="--tls-key needs --tls-cert"):
        _load(cli={"tls_ca": str(tls["ca"]), "tls_key": str(tls["key"])})
    with pytest.raises(ConfigError, match="not a PEM certificate and its private key"):
        _load(cli={"tls_ca": str(tls["ca"]), "tls_cert": str(tls["cert"]), "tls_key": str(tls["ca"])})
    encrypted = tmp_path / "enc.key"
    subprocess.run(["openssl", "pkey", "-in", str(tls["key"]), "-out", str(encrypted), "-aes256", "-passout",
                    "pass:secret"], check=True, capture_output=True)
    with pytest.raises(ConfigError, match="encrypted"):
        _load(cli={"tls_cert": str(tls["cert"]), "tls_key": str(encrypted)})
    ok = _load(cli={"tls_ca": str(tls["ca"]), "tls_cert": str(tls["cert"]), "tls_key": str(tls["key"])})
    assert ok.tls_context() is not None


def test_an_explicit_state_dir_must_be_writable(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match="^--state-dir .*: cannot create it"):
        _load(cli={"state_dir": str(blocker / "sub")})
    assert _load(cli={"state_dir": str(tmp_path / "new")}).state_dir == str(tmp_path / "new")


def test_snapshot_must_fit_the_packet_limit():
    with pytest.raises(ConfigError, match="^--snapshot-max-kb 64 must be less than mqtt_max_packet_kb"):
        _load(cli={"snapshot_max_kb": 64, "mqtt_max_packet_kb": 32})


def test_settings_precedence_and_errors(tmp_path):
    cfg = tmp_path / "r.toml"
    cfg.write_text('model = "from-file.tflite"\nfps = 5\ndevice_id = "file"\nmqtt_qos = 0\n')
    s = load_settings({"device_id": "cli"}, str(cfg), env={"ROADSEG_FPS": "7", "ROADSEG_MQTT_PORT": "1999",
                                                          "ROADSEG_MQTT_QOS": ""})
    assert (s.model, s.fps, s.device_id, s.mqtt_port, s.mqtt_qos) == ("from-file.tflite", 7.0, "cli", 1999, 0)
    bad = tmp_path / "bad.toml"
    bad.write_text("model = [unclosed\n")
    with pytest.raises(ConfigError, match="malformed config file"):
        load_settings({}, str(bad), env={})
    unknown = tmp_path / "u.toml"
    unknown.write_text('modle = "x"\n')
    with pytest.raises(ConfigError, match="unknown settings"):
        load_settings({}, str(unknown), env={})


def test_malformed_config(tmp_path):
    bad = tmp_path / "c.toml"
    bad.write_text("fps = = 3")
    r = _run_cli("--config", str(bad))
    assert r.returncode == 2 and "malformed config file" in r.stderr


@pytest.mark.parametrize("fault", ["read-only", "full"])
def test_a_state_dir_that_cannot_be_made_on_a_broken_card_is_a_disk_fault_not_a_setting(small_tmpfs, fault,
                                                                                       tiny_tflite):
    """On a card remounted read-only (or full) a state dir not yet made was "cannot create it", exit 2, and a
    restart loop under systemd; an existing one started. Both start now; the stores say what they cannot write."""
    from edge_runtime.commands.settings import load_settings
    from roadseg_lab.checks.soak import fill
    from tests.edge_runtime.conftest import remount
    filler = None
    if fault == "read-only":
        remount(small_tmpfs, "ro")
    else:
        filler = fill(small_tmpfs)
    try:
        s = load_settings({"model": str(tiny_tflite), "state_dir": str(small_tmpfs / "state" / "car1")}, None,
                          env={})
        assert s.state_dir.endswith("car1")
    finally:
        if filler is not None:
            filler.unlink()
        else:
            remount(small_tmpfs, "rw")
