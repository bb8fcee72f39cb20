"""A power cut at any instant of an update leaves a vehicle that starts on a verified model
(issue 29): a real process runs the update against a real HTTP server and the real loop, and is
killed with SIGKILL at each step; the next start chooses its model from what is on disk."""
from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("tuf.ngclient")

from calibration.release import ReleaseRepo  # noqa: E402
from edge_runtime.update.slots import Slots  # noqa: E402
from tests.edge_runtime.test_update import TINY, ann, make_updater, refused, serve  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]

#: updates release 2 with the real loop on a synthetic camera, and SIGKILLs itself at STEP
DYING = r'''
import os, signal, sys, threading
from pathlib import Path
from edge_runtime.commands.settings import load_settings
from edge_runtime.contract import release as contract
from edge_runtime.io.mqtt import NullPublisher
from edge_runtime.loop import Runner
from edge_runtime.model.segmenter import DeviceSegmenter
from edge_runtime.update.trial import Limits
from edge_runtime.update.updater import UpdateConfig, Updater
state, root, url, step, tiny = sys.argv[1:6]

class Dying(Updater):
    def _checkpoint(self, name):
        if name == step:
            os.kill(os.getpid(), signal.SIGKILL)

s = load_settings({"model": tiny, "source": "synthetic:64x128@200", "fps": 100, "duration": 60}, None, env={})
runner = Runner(s, publisher=NullPublisher())
threading.Thread(target=runner.run, daemon=True).start()
u = Dying(UpdateConfig(Path(state), Path(root), [url], "car1", probation_s=0.5, limits=Limits(min_frames=5)),
          make_segmenter=lambda p: DeviceSegmenter(p, 1), publish_state=lambda p: None, swap=runner.request_swap)
u.boot()
a = contract.parse_announcement(contract.json.dumps(contract.announcement(2, "releases/2/tiny-int8.tflite", url)).encode())
print(u.handle(a), flush=True)
runner.request_stop()
'''

STEPS = ["download-progress", "downloaded", "verified", "pointer-trial", "swapped", "committed", None]


@pytest.mark.parametrize("step", STEPS)
def test_kill_9_at_every_step_then_a_start_on_a_verified_model(step, tmp_path):
    repo = ReleaseRepo.init(tmp_path / "repo", tmp_path / "keys")
    for _ in range(3):
        repo.add(TINY)  # releases 0, 1, 2
    root = repo.trust_root(tmp_path / "trust-root.json")
    server = serve(repo.repo, tmp_path / "www")
    try:
        state = tmp_path / "state"
        u, _ = make_updater(state, root, [server.url])
        u.boot()
        assert u.handle(ann(1, server.url)) == "succeeded"  # release 1 runs, committed in slot a
        script = tmp_path / "dying.py"
        script.write_text(DYING)
        r = subprocess.run([sys.executable, str(script), str(state), str(root), server.url, str(step), str(TINY)],
                           cwd=ROOT, capture_output=True, text=True, timeout=120)
        if step is None:
            assert r.returncode == 0 and r.stdout.strip().endswith("succeeded"), r.stderr[-2000:]
        else:
            assert r.returncode == -signal.SIGKILL, (r.returncode, r.stderr[-2000:])
        u2, states = make_updater(state, root, [server.url])  # the next start
        model = u2.boot()
        slots = Slots(state)
        pointer = slots.pointer()
        assert model is not None and pointer is not None
        rec = slots.verify(pointer["slot"])  # every file matches its record
        assert model == slots.model_path(pointer["slot"], rec) and pointer["state"] == "committed"
        assert rec["sha256"] == repo.releases()[rec["version"]]["sha256"]
        expected = 2 if step in ("committed", None) else 1
        assert rec["version"] == expected, (step, rec)
        if step in ("pointer-trial", "swapped"):  # stopped on trial: rolled back, reported, never tried again
            assert states[0]["state"] == "rolled_back" and states[0]["trying"]["version"] == 2
            assert "probation" in states[0]["reason"]
            assert "refused before" in refused(u2, ann(2, server.url))
        else:
            assert states[0]["state"] == "idle"
    finally:
        server.stop()
