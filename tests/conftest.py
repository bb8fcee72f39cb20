"""Shared fixtures: synthetic datasets on disk, tiny sizes."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@pytest.fixture(scope="session")
def synth_cityscapes(tmp_path_factory) -> Path:
    from edge_runtime.synthetic import write_dataset
    return write_dataset(tmp_path_factory.mktemp("cs"), "cityscapes", {"train": 6, "val": 3}, 64, 128, seed=1)


@pytest.fixture(scope="session")
def synth_camvid(tmp_path_factory) -> Path:
    from edge_runtime.synthetic import write_dataset
    return write_dataset(tmp_path_factory.mktemp("cv"), "camvid", {"train": 6, "val": 3}, 64, 128, seed=1)
