"""Every console script follows the one CLI convention (edge_runtime.commands.cli):
--help and --version work, help text is plain (no reST markup), every flag
the help mentions exists, abbreviations are refused, and the old flag names
still work for one release with a warning."""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import re
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]


def _needs_missing_extra(name: str) -> None:
    """Skip a console script whose extra is not installed here (a [runtime]-only venv has no TensorFlow):
    the launcher's one-line message for that case is tested in test_launch.py."""
    from edge_runtime.commands.launch import COMMANDS
    missing = [p for p in COMMANDS[name].needs if importlib.util.find_spec(p) is None] if name in COMMANDS else []
    if missing:
        pytest.skip(f"{name} needs {missing[0]} ({COMMANDS[name].extra} extra), not installed here")


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
    _needs_missing_extra(name)
    text = _help(SCRIPTS[name], capsys)
    assert text.startswith(f"usage: {name}")
    assert "--version" in text and "exit codes: 0 success, 2 bad usage or input" in text
    assert "``" not in text and not re.search(r":(mod|class|func|data|meth):`", text), "raw reST in help"
    options = set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", text.split("options:")[1]))
    sub = re.search(r"\{([a-z,-]+)\}", text.split("\n\n")[0])  # the usage, wrapped or not; names may hold a -
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


# --- no error message repeats an argument's value (issue 22 item 6) -------------------------------------------

SECRET = "hunter2xyzzy"


def _parsers(name: str, monkeypatch, capsys) -> list:
    """Every parser (and subcommand parser) ``name`` builds, recorded from cli.parser while it prints --help."""
    from edge_runtime.commands import cli
    made = []
    real = cli.parser

    def recording(*args, **kwargs):
        made.append(real(*args, **kwargs))
        return made[-1]
    monkeypatch.setattr(cli, "parser", recording)
    try:
        main = _main(SCRIPTS[name])
    except ImportError as e:  # TensorFlow-backed commands in a [runtime]-only venv
        pytest.skip(f"{name} cannot be imported here: {e}")
    with pytest.raises(SystemExit):
        main(["--help"])
    capsys.readouterr()
    assert made, f"{name} does not build its parser with edge_runtime.commands.cli.parser"
    parsers = []
    for p in made:
        parsers.append((p, []))
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                parsers += [(sub, [cmd]) for cmd, sub in action.choices.items()]
    return parsers


def _refused(p, argv, capsys) -> str:
    with pytest.raises(SystemExit) as e:
        p.parse_args(argv)
    assert e.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_errors_name_the_flag_never_the_value(name, monkeypatch, capsys):
    """Unknown flags (spaced, with '=', a bare value), values of the wrong type, invalid choices and
    explicit values for switches: in every command and subcommand, the error names the flag and hides
    what was typed."""
    _needs_missing_extra(name)
    checked = 0
    for p, prefix in _parsers(name, monkeypatch, capsys):
        for argv in (["--mqtt-password", SECRET], [f"--mqtt-password={SECRET}"], [SECRET],
                     ["--api-token", f"-{SECRET}"]):
            err = _refused(p, prefix + argv, capsys)
            assert SECRET not in err and SECRET[1:] not in err and f"{p.prog}: error: " in err, err
        for action in p._actions:
            if not action.option_strings or action.nargs == 0:
                continue
            flag = action.option_strings[-1]
            if action.type not in (None, str) or action.choices is not None:
                err = _refused(p, prefix + [flag, SECRET], capsys)
                assert SECRET not in err and f"argument {flag}" in err.replace(f"{action.option_strings[0]}/", ""), err
                checked += 1
            err = _refused(p, prefix + [f"{flag}={SECRET}", f"--not-a-flag={SECRET}"], capsys)
            assert SECRET not in err, err
        for action in p._actions:
            if action.option_strings and action.nargs == 0 and action.option_strings[-1].startswith("--") \
                    and action.option_strings[-1] not in ("--help", "--version"):
                err = _refused(p, prefix + [f"{action.option_strings[-1]}={SECRET}"], capsys)
                assert SECRET not in err and "ignored explicit argument" in err, err
                break
    assert checked, f"{name}: no typed or choice flag was tried"


def test_the_issue_case_prints_the_flag_alone(capsys):
    """roadseg-run --model m.tflite --mqtt-password hunter2xyzzy: the journal gets the flag, not the password."""
    with pytest.raises(SystemExit) as e:
        _main(SCRIPTS["roadseg-run"])(["--model", "m.tflite", "--mqtt-password", SECRET])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "unrecognized arguments: --mqtt-password (1 value not shown)" in err
    assert SECRET not in err


def test_redaction_keeps_messages_useful():
    from edge_runtime.commands.cli import describe_unrecognized, redact_values
    assert describe_unrecognized(["--a", "x", "-b", "y=z", "--c=d"]) == "--a -b --c (3 values not shown)"
    assert describe_unrecognized(["--a"]) == "--a"
    msg = "argument --proto: invalid choice: 'x9' (choose from '3.1.1', '5')"
    assert redact_values(msg, ["--proto", "x9"], {"--proto"}) == \
        "argument --proto: invalid choice (value not shown) (choose from '3.1.1', '5')"
    assert redact_values("argument --n: invalid int value: '1.5'", ["--n", "1.5"], {"--n"}) == \
        "argument --n: invalid int value (value not shown)"


@pytest.mark.parametrize("streams", ["stdout", "stdout and stderr"])
def test_a_full_disk_under_stdout_does_not_fail_a_clean_run(tiny_tflite, broker, tmp_path, streams):
    """roadseg-run's last line (its summary) onto a full disk: said on stderr, exit 0 (it was exit 4, or 1 with
    stderr on the same disk). A real 64 KiB tmpfs filled to the last byte."""
    import subprocess
    import sys
    from roadseg_lab.checks.soak import fill
    point = tmp_path / "full"
    point.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(point)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount here ({r.stderr.strip()[:80]}): needs root and mount permission")
    try:
        fill(point)
        with open(point / "out.txt", "w") as out, open(point / "err.txt", "w") as full_err:
            err = full_err if streams == "stdout and stderr" else subprocess.PIPE
            p = subprocess.run([sys.executable, "-m", "edge_runtime.commands.run", "--model", str(tiny_tflite),
                                "--source", "synthetic:64x128@30", "--duration", "1", "--threads", "1",
                                "--mqtt-host", "127.0.0.1", "--mqtt-port", str(broker.port),
                                "--state-dir", str(tmp_path / "state")], cwd=ROOT, stdout=out, stderr=err, text=True, timeout=120)
        assert p.returncode == 0, p.stderr
        if streams == "stdout":
            assert "cannot write the run's summary to stdout (No space left on device)" in p.stderr
    finally:
        subprocess.run(["umount", "-l", str(point)], capture_output=True)
