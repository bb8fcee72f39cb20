"""What can be tested of the containers without a Docker engine: they lint
clean, and the commands and files they use exist."""
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILES = sorted((ROOT / "docker").glob("*.Dockerfile"))


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_lints_and_refers_to_real_things(path):
    text = path.read_text()
    hadolint = shutil.which("hadolint") or str(Path(__import__("sys").executable).parent / "hadolint")
    if Path(hadolint).exists():
        r = subprocess.run([hadolint, str(path)], capture_output=True, text=True)
        assert r.returncode == 0, r.stdout + r.stderr
    for src in re.findall(r"^COPY (\S+)", text, re.M):
        assert (ROOT / src).exists(), src
    assert re.search(r"^USER \d+", text, re.M), "runs as a non-root user"
    entry = re.search(r'^ENTRYPOINT \["([^"]+)"\]', text, re.M).group(1)
    scripts = (ROOT / "pyproject.toml").read_text()
    assert f"{entry} = " in scripts, f"{entry} is not a console script"
    extras = re.search(r'pip install "\.\[([^\]]+)\]"', text).group(1).split(",")
    for e in extras:
        assert re.search(rf"^{e} = \[", scripts, re.M), f"extra {e} missing"
    if "runtime" in path.name:
        assert "train" not in extras  # the vehicle image never carries TensorFlow


def test_runtime_image_serves_what_it_exposes_and_checks_the_loop():
    text = (ROOT / "docker" / "runtime.Dockerfile").read_text()
    port = re.search(r"^EXPOSE (\d+)", text, re.M).group(1)
    assert f"ROADSEG_HTTP=0.0.0.0:{port}" in text  # the API binds where the image says it listens
    beat = re.search(r"ROADSEG_HEARTBEAT_FILE=(\S+)", text).group(1)
    assert "heartbeat_age" in text and f"'{beat}'" in text  # the health check reads the loop's heartbeat
    train = (ROOT / "docker" / "train.Dockerfile").read_text()
    assert '--user "$(id -u):$(id -g)"' in train and "HOME=/tmp" in train


def test_runtime_image_takes_a_trust_root_and_keeps_its_state_in_a_volume(tmp_path):
    """Issue 29: ``--build-arg TRUST_ROOT=path`` bakes the fleet's TUF root into the image and roadseg-run finds
    it through ROADSEG_TRUST_ROOT; without it the variable is empty, which roadseg-run reads as unset. The slots,
    the trusted metadata and the offline queue live in the state dir, a volume the non-root user owns."""
    pytest.importorskip("tuf.api.metadata")
    text = (ROOT / "docker" / "runtime.Dockerfile").read_text()
    assert re.search(r'^ARG TRUST_ROOT=""$', text, re.M)
    baked = re.search(r"ROADSEG_TRUST_ROOT=\$\{TRUST_ROOT:\+(\S+)\}", text).group(1)
    assert f'install -m 0644 "/context/$TRUST_ROOT" {baked}' in text and "--mount=type=bind,target=/context" in text
    state = re.search(r"ROADSEG_STATE_DIR=(\S+)", text).group(1)
    assert re.search(rf"^VOLUME {state}$", text, re.M) and f"install -d -o 10001 -g 10001 -m 0700 {state}" in text
    from calibration.release import ReleaseRepo
    from edge_runtime.commands.settings import load_settings
    from edge_runtime.update.compose import config_from
    tiny = ROOT / "tests" / "data" / "tiny-int8.tflite"
    image = {"ROADSEG_STATE_DIR": str(tmp_path / "state"), "ROADSEG_TRUST_ROOT": ""}  # built without TRUST_ROOT
    assert load_settings({"model": str(tiny)}, None, env=image).trust_root is None
    root = ReleaseRepo.init(tmp_path / "repo", tmp_path / "keys").trust_root(tmp_path / "trust-root.json")
    s = load_settings({"model": str(tiny)}, None, env=dict(image, ROADSEG_TRUST_ROOT=str(root),
                                                           ROADSEG_UPDATE_REPO="https://releases.example/fleet/"))
    c = config_from(s)
    assert c.trust_root == root and c.state_dir == tmp_path / "state" and c.repos == ["https://releases.example/fleet/"]


def test_heartbeat_file_follows_the_running_loop(tiny_tflite, tmp_path):
    import threading
    import time

    from edge_runtime.io.device import heartbeat_age
    from edge_runtime.io.mqtt import NullPublisher
    from edge_runtime.commands.settings import load_settings
    from edge_runtime.loop import Runner
    beat = tmp_path / "beat"
    assert heartbeat_age(str(beat)) == float("inf")
    s = load_settings({"model": str(tiny_tflite), "source": "synthetic:64x128@30", "fps": 20, "device_id": "hb",
                       "duration": 4.0}, None, env={"ROADSEG_HEARTBEAT_FILE": str(beat)})
    runner = Runner(s, publisher=NullPublisher())
    t = threading.Thread(target=runner.run)
    t.start()
    time.sleep(2.5)
    assert heartbeat_age(str(beat)) < 1.5
    t.join(timeout=30)
    time.sleep(1.6)
    assert heartbeat_age(str(beat)) > 1.5  # the loop stopped: the age grows
