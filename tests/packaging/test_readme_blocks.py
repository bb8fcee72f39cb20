"""Every fenced ```bash and ```python block of README.md that names a command of the project (``roadseg-*``,
``scripts/*.sh``, ``python -m ...``; every Python block) is run as written (issue 33), in the install its
section names, with the checked-in tiny model, synthetic data and a local broker in place of the README's
placeholders:

* ``DATA`` -> a synthetic labelled folder; ``dist/*.tflite`` -> copies of ``tests/data/tiny-int8.tflite``;
  ``street.jpg`` -> a synthetic street frame; ``broker.local`` -> the test's broker; the device API's
  ``127.0.0.1:8080`` -> a free port; ``[--optional parts]`` and ``# comments`` left out.
* Commands that run until stopped (``roadseg-serve``, ``roadseg-dashboard``, ``roadseg-monitor``) are started as
  written, checked while they run (the API answers the block's own curl and Python lines, the dashboard its
  health URL, the monitor prints a vehicle's summary) and stopped.

Blocks run by another test, or by none, are listed in :data:`ELSEWHERE` with the reason;
:func:`test_every_readme_block_is_run_or_listed` fails for a new block that is neither.
"""
from __future__ import annotations

import ast
import json
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.packaging.venvs import ROOT, venv_env

pytestmark = pytest.mark.integration
DEV = Path(sys.executable).parent.parent  # the workstation's install (.venv: train, runtime, dev extras)


@dataclass(frozen=True)
class Block:
    """One fenced block: the heading it is under, its language, its text and its first line's number."""
    section: str
    lang: str
    text: str
    line: int

    def commands(self) -> list[str]:
        """A bash block's command lines: ``# comments`` and ``[--optional parts]`` removed, continuation
        lines joined."""
        joined = re.sub(r"\\\n\s*", " ", self.text)
        out = []
        for ln in joined.splitlines():
            ln = re.sub(r"\[--[^\]]*\]", "", re.split(r"\s#\s|^#", ln)[0]).strip()
            if ln:
                out.append(re.sub(r"\s+", " ", ln))
        return out


def readme_blocks() -> list[Block]:
    """README.md's fenced bash and python blocks, each with its nearest ``##``/``###`` heading."""
    blocks, section, lang, start, body = [], "", None, 0, []
    for no, ln in enumerate((ROOT / "README.md").read_text().splitlines(), 1):
        if lang is None and re.match(r"#{2,3} ", ln):
            section = ln.lstrip("#").strip()
        elif lang is None and ln.startswith("```"):
            lang, start, body = ln[3:].strip(), no, []
        elif lang is not None and ln.startswith("```"):
            if lang in ("bash", "python"):
                blocks.append(Block(section, lang, "\n".join(body), start))
            lang = None
        elif lang is not None:
            body.append(ln)
    return blocks


PROJECT_COMMAND = re.compile(r"\broadseg-[a-z]+\b|scripts/[\w.-]+\.sh|python3? -m ")

#: sections whose blocks other tests run as written, or that no test can, and why
ELSEWHERE = {
    "Quickstart": "./scripts/demo.sh: tests/test_demo.py runs it as written; ./scripts/test.sh runs this very "
                  "suite (it would run itself)",
    "Workstation: train -> distill -> calibrate": "trainings of 40 to 80 epochs at 256x512 and 512x1024 (GPU hours) "
                  "and ImageNet weights from the internet; scripts/demo.sh runs the same five commands at smoke "
                  "scale (tests/test_demo.py), tests/trainer, tests/distill and tests/calibration each of their flags",
    "Vehicle: install, run, subscribe": "tests/packaging/test_runtime_install.py::"
                  "test_readme_vehicle_section_in_a_runtime_only_install runs it in a [runtime]-only venv",
}
#: sections whose blocks this module runs, and the install each names (None: none named, the workstation's)
RUN_HERE = {"Data": "train,runtime", "Device API": "runtime,api", "The fleet's view": None, "Benchmarking": None}


def _sections() -> list[str]:
    """README.md's second-level sections, each from its heading to the next."""
    return ["## " + s for s in (ROOT / "README.md").read_text().split("\n## ")[1:]]


def _key(section: str) -> str:
    return next((k for k in (*ELSEWHERE, *RUN_HERE) if section.startswith(k)), section)


def _block(section: str, lang: str = "bash") -> Block:
    return next(b for b in readme_blocks() if _key(b.section) == section and b.lang == lang)


def test_every_readme_block_is_run_or_listed():
    project = [b for b in readme_blocks() if b.lang == "python" or PROJECT_COMMAND.search(b.text)]
    assert len(project) >= 7
    unaccounted = [(b.line, b.section) for b in project if _key(b.section) not in ELSEWHERE | RUN_HERE]
    assert not unaccounted, f"README blocks neither run here nor listed in ELSEWHERE: {unaccounted}"
    assert any(b.lang == "python" and _key(b.section) == "Device API" for b in project)


# -- the placeholders, made real ---------------------------------------------------------------------------

def _free_port() -> int:
    from edge_runtime.io.broker import free_port
    return free_port()


@pytest.fixture
def workdir(tmp_path, tiny_tflite):
    """A folder with what the README's lines name: dist/{student,a,b}.tflite (+ sidecars), DATA, street.jpg."""
    import cv2

    from edge_runtime.eval.synthetic import synthetic_scene, write_dataset
    dist = tmp_path / "dist"
    dist.mkdir()
    for name in ("student", "a", "b"):
        shutil.copyfile(tiny_tflite, dist / f"{name}.tflite")
        shutil.copyfile(tiny_tflite.with_suffix(".json"), dist / f"{name}.json")
    write_dataset(tmp_path / "DATA", "cityscapes", {"train": 2, "val": 2}, 64, 128, seed=5)
    cv2.imwrite(str(tmp_path / "street.jpg"), cv2.cvtColor(synthetic_scene(3, 240, 320)[0], cv2.COLOR_RGB2BGR))
    return tmp_path


def _substitute(line: str, data: Path, mqtt_port: int | None = None, api_port: int | None = None) -> str:
    line = re.sub(r"\bDATA\b", str(data), line)
    if mqtt_port is not None:
        line = line.replace("--mqtt-host broker.local", f"--mqtt-host 127.0.0.1 --mqtt-port {mqtt_port}")
        line = line.replace("-h broker.local", f"-h 127.0.0.1 -p {mqtt_port}")
    if api_port is not None:
        line = line.replace("127.0.0.1:8080", f"127.0.0.1:{api_port}")
    return line


def _sh(line: str, venv: Path, cwd: Path, timeout: float = 300, **env) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", line], cwd=cwd, env=venv_env(venv, **env), capture_output=True, text=True,
                          timeout=timeout)


def _start(line: str, venv: Path, cwd: Path, **env) -> subprocess.Popen:
    return subprocess.Popen(["bash", "-c", f"exec {line}"], cwd=cwd, env=venv_env(venv, **env),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _stop(proc: subprocess.Popen) -> str:
    """Terminate ``proc``; its stderr."""
    if proc.poll() is None:
        proc.terminate()
    try:
        _, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    return err


def _wait_listening(port: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    """Block until something accepts on 127.0.0.1:``port`` (or ``proc`` ended: fail with its stderr)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"exited {proc.returncode} before listening: {proc.stderr.read()[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)  # a server's start-up: nothing to wait on but its port
    pytest.fail(f"nothing listens on {port} after {timeout} s")


# -- the sections ------------------------------------------------------------------------------------------

def test_readme_data_block(workdir):
    """## Data, in the workstation's install it names."""
    assert 'pip install ".[train,runtime]"' in next(s for s in _sections() if s.startswith("## Data"))
    for line in _block("Data").commands():
        r = _sh(_substitute(line, workdir / "DATA"), DEV, workdir)
        assert r.returncode == 0 and "Traceback" not in r.stderr, (line, r.stderr[-2000:])
    assert (workdir / "p.png").stat().st_size > 1000 and any((workdir / "scenes").rglob("*.png"))


def test_readme_device_api_blocks_without_and_with_a_token(runtime_api_venv, workdir):
    """### Device API, in the [runtime,api] install it names: roadseg-serve as written, the curl lines and the
    Python example against it, first without a token (issue 33: the example crashed), then with one."""
    lines = _block("Device API").commands()
    assert lines[0] == 'pip install ".[runtime,api]"'  # the install runtime_api_venv was made with
    serve = next(ln for ln in lines if ln.startswith("roadseg-serve"))
    curls = [ln for ln in lines if ln.startswith("curl")]
    skipped = [ln for ln in lines[1:] if ln not in (serve, *curls)]
    assert all("..." in ln for ln in skipped), skipped  # only the elided `roadseg-run ... --http` line
    python = _block("Device API", "python").text
    for token in (None, "s3cret-readme-token"):
        port = _free_port()
        env = {"ROADSEG_API_TOKEN": token} if token else {}
        proc = _start(_substitute(serve, workdir, api_port=port), runtime_api_venv, workdir, **env)
        try:
            _wait_listening(port, proc)
            for line in curls:
                line = _substitute(line, workdir, api_port=port)
                if token:  # the header the README says a token needs
                    line = line.replace("curl ", f"curl -H 'Authorization: Bearer {token}' ", 1)
                r = _sh(f"{line} --fail-with-body -sS", runtime_api_venv, workdir, timeout=120)
                assert r.returncode == 0, (line, r.stdout[-500:], r.stderr[-500:])
                if " -o " not in line:
                    assert "coverage" in json.loads(r.stdout), r.stdout[:500]
            assert (workdir / "overlay.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            (workdir / "client.py").write_text(_substitute(python, workdir, api_port=port))
            r = _sh("python client.py", runtime_api_venv, workdir, timeout=120, **env)
            assert r.returncode == 0, r.stderr[-2000:]
            coverage = ast.literal_eval(r.stdout.strip())  # print() of a dict
            assert abs(sum(coverage.values()) - 1) < 1e-3 and "vehicle" in coverage, r.stdout
        finally:
            err = _stop(proc)
        assert "Traceback" not in err, err[-2000:]


def test_readme_fleet_view_block(workdir, broker, tiny_tflite):
    """### The fleet's view: the dashboard serves, the monitor prints what a vehicle publishes; the snapshot
    line is run by tests/packaging/test_install_pi_docs.py (it needs a vehicle sending snapshots)."""
    lines = _block("The fleet's view").commands()
    assert [ln.split()[0] for ln in lines] == ["roadseg-dashboard", "roadseg-monitor", "mosquitto_sub"]
    http = _free_port()
    dash = _start(_substitute(lines[0], workdir, mqtt_port=broker.port) + f" --http 127.0.0.1:{http}", DEV, workdir)
    mon = _start(_substitute(lines[1], workdir, mqtt_port=broker.port), DEV, workdir)
    run = None
    try:
        _wait_listening(http, dash)
        import urllib.request
        assert urllib.request.urlopen(f"http://127.0.0.1:{http}/_stcore/health", timeout=30).read() == b"ok"
        run = subprocess.Popen([str(DEV / "bin" / "roadseg-run"), "--model", str(tiny_tflite), "--source",
                                "synthetic:64x128@20", "--device-id", "car1", "--mqtt-host", "127.0.0.1",
                                "--mqtt-port", str(broker.port), "--publish-interval", "0.5", "--duration", "60"],
                               cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(50):  # its lines as they come: status first, then a summary
            line = mon.stdout.readline()
            if "car1 coverage #" in line or not line:
                break
        assert "car1 coverage #" in line, (line, mon.poll())
    finally:
        if run is not None:
            _stop(run)
        errs = _stop(mon), _stop(dash)
    assert not any("Traceback" in e for e in errs), errs


def test_readme_benchmark_block(workdir):
    """## Benchmarking, as written (two models, three thread counts, 300 frames, the plot)."""
    (line,) = _block("Benchmarking").commands()
    r = _sh(_substitute(line, workdir / "DATA"), DEV, workdir, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    report = json.loads((workdir / "bench.json").read_text())
    assert report and (workdir / "bench.md").read_text().count("\n") > 3
    assert (workdir / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_commands_parse_as_shell():
    """Each command line of every listed block is one valid shell command (a quoting slip fails here)."""
    for b in readme_blocks():
        if b.lang == "bash":
            for line in b.commands():
                shlex.split(line)
