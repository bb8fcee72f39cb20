"""README's vehicle section, walked in a fresh venv that has ``pip install ".[runtime]"`` only.

Every ``roadseg-*`` command the section names, and every one the install put
on the PATH, either works or prints one line naming the extra to add; none
ends in a traceback. The venv is clean (no system site packages) and pip
reaches PyPI through its usual configuration and cache.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.packaging.venvs import ROOT, source_copy  # runtime_venv: tests/packaging/conftest.py

pytestmark = pytest.mark.integration


def vehicle_section() -> str:
    """README.md from "## Vehicle" to the next second-level heading."""
    text = (ROOT / "README.md").read_text()
    start = text.index("## Vehicle")
    end = text.find("\n## ", start + 1)
    return text[start:end if end > 0 else None]


def code_lines(section: str) -> list[str]:
    """The shell lines of the section's fenced code blocks: comments and ``[--optional parts]``
    removed, lines with an elided ``...`` left out."""
    lines, inside = [], False
    for ln in section.splitlines():
        if ln.startswith("```"):
            inside = not inside
        elif inside and ln.strip() and "..." not in ln:
            lines.append(re.sub(r"\[--[^\]]*\]", "", ln.split("  #")[0]).strip())
    return lines


def _run(venv: Path, argv: list[str], cwd: Path, timeout: float = 180) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{venv / 'bin'}:{os.environ['PATH']}", PYTHONPATH="")
    env.pop("VIRTUAL_ENV", None)
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def works_or_names_its_extra(r: subprocess.CompletedProcess, what: str) -> str:
    """"works" (exit 0) or "extra" (exit 2, exactly one line ``pip install "roadseg[X]"``); never a traceback."""
    assert "Traceback" not in r.stderr, f"{what}: a traceback\n{r.stderr[-2000:]}"
    if r.returncode == 0:
        return "works"
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and 'pip install "roadseg[' in lines[0], \
        f"{what}: exit {r.returncode}, neither works nor names its extra:\n{r.stderr[-2000:]}"
    return "extra"


def _substitute(argv: list[str], model: Path, broker_port: int) -> list[str]:
    """The README's placeholders made real: a model file, the test broker, a faked camera, a bounded run."""
    out, it = [], iter(argv)
    for a in it:
        if a == "--model":
            out += [a, str(model)]
            next(it)
        elif a == "--source":
            out += [a, "synthetic:64x128@30"]
            next(it)
        elif a == "--mqtt-host":  # broker.local
            out += [a, "127.0.0.1", "--mqtt-port", str(broker_port)]
            next(it)
        else:
            out.append(a)
    return out


def test_readme_vehicle_section_in_a_runtime_only_install(runtime_venv, tiny_tflite, broker, tmp_path):
    section = vehicle_section()
    assert 'pip install ".[runtime]"' in section  # the install this venv was made with
    named = set(re.findall(r"\broadseg-[a-z]+\b", section))
    lines = [shlex.split(ln) for ln in code_lines(section) if ln.startswith(("roadseg-", "mosquitto_sub"))]
    sub = None
    if shutil.which("mosquitto_sub"):
        sub = subprocess.Popen(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(broker.port), "-t", "roadseg/+/coverage",
                                "-C", "1", "-W", "120", "-v"], stdout=subprocess.PIPE, text=True)
    outcome = {}
    for argv in lines:
        if argv[0] == "mosquitto_sub":
            continue  # started above, before the vehicle publishes
        argv = _substitute(argv, tiny_tflite, broker.port)
        if argv[0] == "roadseg-run":
            argv += ["--mqtt-protocol", "5" if broker.mqtt5 else "3.1.1", "--max-frames", "10", "--json"]
        elif argv[0] == "roadseg-monitor":
            argv += ["--count", "1", "--duration", "3"]  # it runs: what it prints is the fleet zone's
        elif argv[0] == "roadseg-dashboard":
            argv += ["--http", "127.0.0.1:1"]  # never reached without the extra
        r = _run(runtime_venv, argv, tmp_path)
        outcome[argv[0]] = works_or_names_its_extra(r, " ".join(argv))
    assert outcome.get("roadseg-run") == "works"
    if sub is not None:
        out, _ = sub.communicate(timeout=150)
        topic, payload = out.split(" ", 1)
        assert topic.endswith("/coverage") and json.loads(payload)["schema"] == "roadseg.coverage/1"
    for prog in sorted(named - set(outcome)):  # named in the prose: each run for real
        outcome[prog] = works_or_names_its_extra(_run(runtime_venv, [prog, *real_args(prog, tiny_tflite, broker,
                                                                                       tmp_path)], tmp_path), prog)
    assert outcome.get("roadseg-doctor") == "works" and outcome.get("roadseg-serve") == "extra"
    assert outcome.get("roadseg-dashboard") == "extra"


def labelled(tmp: Path) -> Path:
    """A tiny labelled dataset (synthetic scenes, Cityscapes layout) under ``tmp``, written once."""
    from edge_runtime.eval.synthetic import write_dataset
    folder = tmp / "labelled"
    if not folder.exists():
        write_dataset(folder, "cityscapes", {"val": 2}, 64, 128, seed=3)
    return folder


def real_args(prog: str, model: Path, broker, tmp: Path) -> list[str]:
    """A real invocation of ``prog`` (not --help), bounded in time."""
    mqtt = ["--mqtt-host", "127.0.0.1", "--mqtt-port", str(broker.port)]
    return {
        "roadseg-run": ["--model", str(model), "--source", "synthetic:64x128@30", *mqtt, "--max-frames", "5"],
        "roadseg-doctor": [],
        "roadseg-serve": ["--model", str(model), "--http", "127.0.0.1:1"],
        "roadseg-monitor": [*mqtt, "--count", "1", "--duration", "3"],
        "roadseg-dashboard": [*mqtt, "--http", "127.0.0.1:1"],
        "roadseg-bench": ["--model", str(model), "--frames", "4", "--warmup", "1", "--rounds", "1"],
        "roadseg-data": ["synth", "--out", str(tmp / "synth"), "--train", "1", "--val", "1", "--size", "32x64"],
        "roadseg-train": ["--data", str(tmp), "--out", str(tmp / "run")],
        "roadseg-eval": ["--model", str(model), "--data", str(labelled(tmp)), "--out", str(tmp / "eval")],
        "roadseg-distill": ["--data", str(tmp), "--out", str(tmp / "student")],
        "roadseg-calibrate": ["--model", str(model), "--data", str(tmp), "--out", str(tmp / "dist")],
        "roadseg-release": ["init", "--repo", str(tmp / "release-repo"), "--keys", str(tmp / "release-keys")],
        "roadseg-rollout": ["status", "--state", str(_rollout_file(tmp))],
    }[prog]


def _rollout_file(tmp: Path) -> Path:
    """A rollout that was planned (fleet.rollout's file, as roadseg-rollout start writes it)."""
    import dataclasses
    import json

    from fleet.rollout import Plan, Progress
    path = tmp / "rollout.json"
    plan = Plan(version=1, target="roadseg-default.tflite", repo="https://fleet.example/repo", devices=["car1"],
                canary=["car1"])
    path.write_text(json.dumps({"plan": dataclasses.asdict(plan), "progress": dataclasses.asdict(Progress())}))
    return path


def test_every_command_on_the_path_works_or_names_its_extra(runtime_venv, tiny_tflite, broker, tmp_path):
    progs = sorted(p.name for p in (runtime_venv / "bin").glob("roadseg-*"))
    assert "roadseg-run" in progs and "roadseg-train" in progs
    outcome = {p: works_or_names_its_extra(_run(runtime_venv, [p, *real_args(p, tiny_tflite, broker, tmp_path)],
                                                tmp_path), p) for p in progs}
    assert {p for p, o in outcome.items() if o == "works"} >= {"roadseg-run", "roadseg-bench", "roadseg-doctor",
                                                                "roadseg-data", "roadseg-eval", "roadseg-release",
                                                                "roadseg-rollout"}, outcome
    assert {p for p, o in outcome.items() if o == "extra"} >= {"roadseg-train", "roadseg-distill",
                                                                "roadseg-calibrate", "roadseg-serve",
                                                                "roadseg-dashboard"}, outcome
    r = _run(runtime_venv, ["roadseg-bench", "--model", str(tiny_tflite), "--frames", "2", "--data", str(tmp_path),
                            "--plot", str(tmp_path / "p.png")], tmp_path)
    assert works_or_names_its_extra(r, "roadseg-bench --plot") == "extra" and "roadseg[plot]" in r.stderr
    code = ("import edge_runtime.commands.run, edge_runtime.loop, sys; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')))")
    r = _run(runtime_venv, ["python", "-c", code], tmp_path)
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stderr


def test_eval_scores_a_tflite_in_a_runtime_only_install(runtime_venv, tiny_tflite, tmp_path):
    """Issue 33: `roadseg-eval --model X.tflite --data D` scores a .tflite on a labelled folder with the runtime
    extra alone (no TensorFlow: how a device checks accuracy); a run directory there names the train extra."""
    r = _run(runtime_venv, ["python", "-c", "import tensorflow"], tmp_path)
    assert r.returncode != 0  # the venv really has no TensorFlow
    data = labelled(tmp_path)
    r = _run(runtime_venv, ["roadseg-eval", "--model", str(tiny_tflite), "--data", str(data), "--split", "val",
                            "--out", str(tmp_path / "eval"), "--json"], tmp_path)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr[-2000:]
    report = json.loads(r.stdout.strip().splitlines()[-1])
    assert report["model"]["kind"] == "tflite" and report["split"] == "val"
    assert 0.0 <= report["metrics"]["miou7"] <= 1.0, report["metrics"]
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["metrics"] == report["metrics"]
    (tmp_path / "run" / "export").mkdir(parents=True)
    r = _run(runtime_venv, ["roadseg-eval", "--model", str(tmp_path / "run"), "--data", str(data)], tmp_path)
    assert works_or_names_its_extra(r, "roadseg-eval of a run") == "extra" and "roadseg[train]" in r.stderr


def test_edge_runtime_tests_pass_without_tensorflow(tmp_path):
    """Issue 25: `pytest tests/edge_runtime` passes in a venv with `.[runtime,api]` and pytest only,
    no TensorFlow (the runtime's tests read the checked-in tiny model, never train one)."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    py = str(venv / "bin" / "python")
    src = source_copy(tmp_path)
    r = subprocess.run([py, "-m", "pip", "install", "-q", f"{src}[runtime,api]", "pytest", "pytest-timeout",
                        "requests", "httpx"], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    assert subprocess.run([py, "-c", "import tensorflow"], capture_output=True).returncode != 0
    r = subprocess.run([py, "-m", "pytest", "tests/edge_runtime", "-q", "-p", "no:cacheprovider", "-x"],
                       cwd=ROOT, capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, r.stdout[-3000:]


def test_run_without_model_uses_the_shipped_model_in_a_runtime_only_install(runtime_venv, broker, tmp_path):
    """Issue 21: in a `[runtime]`-only install, `roadseg-run --source VIDEO --no-realtime --max-frames 30`
    without `--model` runs the model shipped inside the package and says so in its start-up line."""
    import cv2

    from edge_runtime.eval.synthetic import synthetic_scene
    video = tmp_path / "street.avi"
    w = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (320, 240))
    for i in range(40):
        w.write(cv2.cvtColor(synthetic_scene(i, 240, 320)[0], cv2.COLOR_RGB2BGR))
    w.release()
    r = _run(runtime_venv, ["roadseg-run", "--source", str(video), "--no-realtime", "--max-frames", "30",
                            "--mqtt-host", "127.0.0.1", "--mqtt-port", str(broker.port), "--json"], tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "roadseg-default.tflite" in r.stderr and str(runtime_venv) in r.stderr  # the package's own copy
    assert json.loads(r.stdout.strip().splitlines()[-1])["frames"] == 30
