"""What can be tested of the containers without a Docker engine: they lint
clean, and the commands and files they use exist."""
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
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
