"""Fresh venvs with one of the project's installs, shared by the packaging tests (built once a session:
each is a few minutes of pip). The venv is clean (no system site packages); pip reaches PyPI through its
usual configuration and cache."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("edge_runtime", "trainer", "distill", "calibration", "fleet", "roadseg_lab")


def source_copy(work: Path) -> Path:
    """The project's packaging files and packages copied under ``work/src`` (an in-tree build
    would write build/ and *.egg-info into the checkout)."""
    src = work / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (ROOT / name).exists():
            shutil.copy(ROOT / name, src / name)
    for pkg in PACKAGES:
        if (ROOT / pkg).is_dir():
            shutil.copytree(ROOT / pkg, src / pkg, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return src


def make_venv(work: Path, extras: str) -> Path:
    """A clean venv in ``work/venv`` with ``pip install "SRC[extras]"`` from a copy of the source tree;
    skips the test when PyPI is not reachable."""
    src = source_copy(work)
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    r = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", f"{src}[{extras}]"],
                       capture_output=True, text=True, timeout=1200)
    if r.returncode != 0:
        if "Could not find a version" in r.stderr or "NewConnectionError" in r.stderr:
            pytest.skip(f"PyPI is not reachable: {r.stderr.strip().splitlines()[-1]}")
        pytest.fail(f"pip install .[{extras}] failed:\n{r.stderr[-3000:]}")
    return venv


def venv_env(venv: Path, **extra: str) -> dict[str, str]:
    """The environment of a shell in ``venv``: its bin first on PATH, nothing of the test's own venv."""
    env = dict(os.environ, PATH=f"{venv / 'bin'}:{os.environ['PATH']}", PYTHONPATH="", **extra)
    env.pop("VIRTUAL_ENV", None)
    return env
