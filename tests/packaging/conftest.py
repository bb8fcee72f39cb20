"""The installs the packaging tests run in, each built once a session (tests/packaging/venvs.py)."""
from __future__ import annotations

import pytest

from tests.packaging.venvs import make_venv


@pytest.fixture(scope="session")
def runtime_venv(tmp_path_factory):
    """A clean venv with the source tree's ``[runtime]`` extra and nothing else (the vehicle's install)."""
    return make_venv(tmp_path_factory.mktemp("rt"), "runtime")


@pytest.fixture(scope="session")
def runtime_api_venv(tmp_path_factory):
    """A clean venv with ``[runtime,api]`` (README's device API section)."""
    return make_venv(tmp_path_factory.mktemp("rtapi"), "runtime,api")
