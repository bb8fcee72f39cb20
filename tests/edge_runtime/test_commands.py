"""Every console script follows the one CLI convention (edge_runtime.commands.cli):
--help and --version work, help text is plain (no reST markup), every flag
the help mentions exists, abbreviations are refused, and the old flag names
still work for one release with a warning."""
from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]


def _main(entry: str):
    mod, func = entry.split(":")
    return getattr(importlib.import_module(mod), func)


def _help(entry: str, capsys, argv=("--help",)) -> str:
    with pytest.raises(SystemExit) as e:
        _main(entry)(list(argv))
    assert e.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_help_follows_the_convention(name, capsys):
    text = _help(SCRIPTS[name], capsys)
    assert text.startswith(f"usage: {name}")
    assert "--version" in text and "exit codes: 0 success, 2 bad usage or input" in text
    assert "``" not in text and not re.search(r":(mod|class|func|data|meth):`", text), "raw reST in help"
    options = set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", text.split("options:")[1]))
    sub = re.search(r"\{([a-z,]+)\}", text.splitlines()[0])
    for cmd in (sub.group(1).split(",") if sub else []):  # subcommands: their options count too
        sub_text = _help(SCRIPTS[name], capsys, [cmd, "--help"])
        options |= set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", sub_text.split("options:")[1]))
    for flag in set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", text)):
        assert flag in options, f"{name} --help mentions {flag}, which it does not accept"
    version = _help(SCRIPTS[name], capsys, ["--version"])
    assert version.startswith(name) and re.search(r"\d+\.\d+", version)


@pytest.mark.parametrize("name,argv", [
    ("roadseg-run", ["--mqtt-password", "hunter2", "--model", "x.tflite"]),
    ("roadseg-serve", ["--model", "x.tflite", "--api-token", "hunter2"]),
    ("roadseg-bench", ["--model", "x.tflite", "--thr", "2"]),
])
def test_abbreviations_are_refused_and_secrets_not_echoed(name, argv, capsys):
    with pytest.raises(SystemExit) as e:
        _main(SCRIPTS[name])(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "unrecognized arguments" in err or "unrecognized" in err
    assert "password file" not in err and "token file" not in err


def test_old_flag_names_warn_but_work(tmp_path, capsys):
    from edge_runtime.commands.serve import main as serve_main
    from fleet.monitor import main as monitor_main
    # --token-file (now --api-token-file): the missing model is reported, after the deprecation warning
    assert serve_main(["--model", str(tmp_path / "none.tflite"), "--token-file", str(tmp_path / "t")]) == 2
    err = capsys.readouterr().err
    assert "--token-file is deprecated" in err and "use --api-token-file" in err and "model not found" in err
    # --host/--port (now --mqtt-host/--mqtt-port): an unreachable broker is a runtime failure (4)
    rc = monitor_main(["--host", "127.0.0.1", "--port", "1", "--connect-timeout", "0.2", "--duration", "0.1"])
    err = capsys.readouterr().err
    assert rc == 4 and "--host is deprecated" in err and "--port is deprecated" in err and "127.0.0.1:1" in err
