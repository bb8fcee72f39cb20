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
