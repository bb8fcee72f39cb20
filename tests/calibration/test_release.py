"""roadseg-release (issue 29): the TUF repository on the workstation, through its command line."""
from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("tuf.api.metadata")
pytest.importorskip("cryptography")

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "tests" / "data" / "tiny-int8.tflite"


def release(*args):
    return subprocess.run([sys.executable, "-m", "calibration.commands.release", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_init_add_list_versions_grow_and_keys_stay_out_of_the_repository(tmp_path):
    repo, keys, offline = tmp_path / "repo", tmp_path / "keys", tmp_path / "usb"
    r = release("init", "--repo", repo, "--keys", keys, "--root-keys", offline, "--root-count", 3,
                "--root-threshold", 2, "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["roles"]["root"]["threshold"] == 2
    assert sorted(p.name for p in offline.iterdir()) == ["root-1.pem", "root-2.pem", "root-3.pem"]
    assert sorted(p.name for p in keys.iterdir()) == ["snapshot.pem", "targets.pem", "timestamp.pem"]
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in [*keys.iterdir(), *offline.iterdir()])
    assert not list(repo.rglob("*.pem"))
    r = release("add", "--repo", repo, "--keys", keys, TINY, "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["version"] == 0, r.stderr
    r = release("add", "--repo", repo, "--keys", keys, TINY, "--version", 0)
    assert r.returncode == 2 and "versions only grow" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = release("add", "--repo", repo, "--keys", keys, TINY, "--score", "int8_miou7=0.5", "--json")
    assert json.loads(r.stdout)["version"] == 1
    from calibration.release import ReleaseRepo
    rels = ReleaseRepo(repo, keys).releases()
    info = rels[1]["info"]
    assert info["scores"] == {"int8_miou7": "0.5"} and info["min_runtime"] == "0.1.0"
    assert info["input"]["height"] == 64 and info["golden"] == "releases/1/golden.npz"
    from edge_runtime.contract.release import read_golden
    golden = next((repo / "targets" / "releases" / "1").glob("*.golden.npz")).read_bytes()
    frames, classes = read_golden(golden)
    assert frames.shape == (3, 64, 128, 3) and classes.shape == (3, 8, 16)
    # a key folder inside the repository is refused, in one line, before anything is written
    r = release("add", "--repo", repo, "--keys", repo / "keys", TINY)
    assert r.returncode == 2 and "inside the repository" in r.stderr
    # rotate-key needs the threshold of the offline root keys
    r = release("rotate-key", "--repo", repo, "--keys", keys)
    assert r.returncode == 2 and "threshold is 2" in r.stderr
    r = release("rotate-key", "--repo", repo, "--keys", keys, "--root-keys", offline, "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["root_version"] == 2, r.stderr
    assert (repo / "metadata" / "2.root.json").is_file() and list((keys / "retired").glob("targets-*.pem"))
    r = release("list", "--repo", repo)
    assert r.returncode == 0 and "release 1: releases/1/tiny-int8.tflite" in r.stdout


def test_a_model_without_sidecar_or_a_missing_repository_is_one_line(tmp_path):
    r = release("add", "--repo", tmp_path / "nope", "--keys", tmp_path / "k", TINY)
    assert r.returncode == 2 and "run init" in r.stderr and "Traceback" not in r.stderr
    release("init", "--repo", tmp_path / "repo", "--keys", tmp_path / "k")
    lone = tmp_path / "lone.tflite"
    lone.write_bytes(TINY.read_bytes())
    r = release("add", "--repo", tmp_path / "repo", "--keys", tmp_path / "k", lone)
    assert r.returncode == 2 and "no sidecar" in r.stderr


@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "huge", "folder", "missing"])
def test_a_key_that_is_not_a_small_regular_file_is_refused_in_one_line_without_a_read(tmp_path, kind):
    """A FIFO with no writer, a link to /dev/zero or a huge file costs neither a wait nor memory."""
    from calibration.release import MAX_KEY_BYTES, ReleaseRepoError, load_signer
    from tests.support import not_a_small_regular_file
    key = tmp_path / "targets.pem"
    not_a_small_regular_file(key, kind, MAX_KEY_BYTES)
    with pytest.raises(ReleaseRepoError) as e:
        load_signer(key)
    text = str(e.value)
    assert "\n" not in text and str(key) in text and text.startswith("cannot read key")
