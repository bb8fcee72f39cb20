"""The entry points: fast --help, a flag's help for every flag, one line naming the extra that is missing."""
from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from edge_runtime.commands import launch

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]


def _py(code: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.parametrize("entry", ["run", "bench"])
def test_help_imports_neither_cv2_nor_numpy(entry):
    """--help answers before the system libraries load: the parser's module and the launcher stay light."""
    r = _py("import sys\nfrom edge_runtime.commands import launch\n"
            f"try:\n    launch.{entry}(['--help'])\nexcept SystemExit as e:\n    rc = e.code\n"
            "print('HEAVY', sorted(m for m in ('cv2', 'numpy') if m in sys.modules))\nsys.exit(rc)")
    assert r.returncode == 0, r.stderr
    assert f"usage: roadseg-{entry}" in r.stdout and "HEAVY []" in r.stdout, r.stdout[-300:]
    r = _py(f"import sys, edge_runtime.commands.{entry}; print(sorted(m for m in ('cv2', 'numpy') if m in sys.modules))")
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stdout + r.stderr


def _parsers():
    from edge_runtime.commands import bench, doctor, run
    out = {"roadseg-run": run.build_parser(), "roadseg-bench": bench.build_parser(),
           "roadseg-doctor": doctor.build_parser()}
    try:
        from edge_runtime.commands import serve
        out["roadseg-serve"] = serve.build_parser()
    except ImportError:  # not moved here yet
        pass
    return out


def test_every_flag_has_help_and_no_empty_metavar():
    for prog, p in _parsers().items():
        silent = [a.option_strings or a.dest for a in p._actions if not a.help]
        assert not silent, f"{prog}: flags without help: {silent}"
        text = p.format_help()
        assert "[]" not in text, f"{prog}: an empty metavar in --help"


def test_model_is_optional_and_says_so():
    for prog, p in _parsers().items():
        model = next(a for a in p._actions if "--model" in a.option_strings)
        if prog != "roadseg-doctor":  # doctor's --model only adds a check
            assert not model.required and "default: the shipped model" in model.help, prog


def test_every_console_script_goes_through_the_launcher():
    import importlib.util
    for prog, target in SCRIPTS.items():
        module, func = target.split(":")
        assert module == "edge_runtime.commands.launch" and callable(getattr(launch, func)), prog
        assert prog in launch.COMMANDS, prog
        assert importlib.util.find_spec(launch.COMMANDS[prog].module), f"{prog}: no module {launch.COMMANDS[prog]}"
    assert set(launch.COMMANDS) == set(SCRIPTS)


NEED_EXTRA = [prog for prog, cmd in launch.COMMANDS.items() if cmd.extra != "runtime"]


@pytest.mark.parametrize("prog", NEED_EXTRA)
def test_a_command_without_its_extra_is_one_line_naming_it(prog, tmp_path):
    """As in a [runtime]-only install: the extra's packages are absent (None in sys.modules
    makes both find_spec and import fail, as for an uninstalled package). A real
    invocation, not --help, so the absence is met where it matters."""
    extra = launch.COMMANDS[prog].extra
    hidden = [p for p, e in launch.EXTRA_OF.items() if e == extra]
    func = SCRIPTS[prog].split(":")[1]
    r = _py("import sys\n"
            f"for name in {hidden!r}: sys.modules[name] = None\n"
            f"from edge_runtime.commands import launch; sys.exit(launch.{func}(sys.argv[1:]))",
            "--model", str(tmp_path / "x.tflite"), "--data", str(tmp_path), "--out", str(tmp_path / "o"))
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    assert f'pip install "roadseg[{extra}]"' in lines[0] and "Traceback" not in r.stderr


def test_a_package_missing_inside_main_names_its_extra():
    """A lazy import deep in a command (not in its ``needs``) is caught by the launcher too."""
    r = _py("import sys, types\n"
            "from edge_runtime.commands import launch\n"
            "def main(argv):\n"
            "    import streamlit  # noqa: F401\n"
            "    return 0\n"
            "sys.modules['fake_cmd'] = types.SimpleNamespace(main=main)\n"
            "launch.COMMANDS['roadseg-x'] = launch.Command('fake_cmd', 'runtime')\n"
            "sys.modules['streamlit'] = None\n"
            "sys.exit(launch.launch('roadseg-x', []))")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert 'pip install "roadseg[dashboard]"' in r.stderr and "Traceback" not in r.stderr


def test_a_lazy_import_inside_a_command_body_names_its_extra(capsys):
    """cli.run's one line for a missing package says which extra brings it."""
    from edge_runtime.commands import cli

    def body():
        raise ModuleNotFoundError("No module named 'matplotlib'", name="matplotlib")
    assert cli.run("roadseg-x", body) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.endswith('pip install "roadseg[plot]"'), err
