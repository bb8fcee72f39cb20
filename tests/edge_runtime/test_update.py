"""Model updates on the vehicle (issue 29): a release made by roadseg-release, served by a real
HTTP server (nginx where installed; a stdlib server in a subprocess for the misbehaving ones),
fetched and verified by python-tuf's client, checked with the real LiteRT interpreter, swapped
into a real run loop. Each hostile case is refused with its reason and leaves the running model."""
from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tuf.ngclient")
pytest.importorskip("cryptography")

from calibration.release import ReleaseRepo  # noqa: E402
from edge_runtime.contract import release as contract  # noqa: E402
from edge_runtime.update.trial import Limits  # noqa: E402
from edge_runtime.update.updater import UpdateConfig, Updater, UpdateError  # noqa: E402

DATA = Path(__file__).resolve().parents[1] / "data"
TINY = DATA / "tiny-int8.tflite"


# -- servers ----------------------------------------------------------------------------------------
def _free_port() -> int:
    from edge_runtime.io.broker import free_port
    return free_port()


def _wait_listening(port: int, proc: subprocess.Popen, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)  # a bounded wait for a port to open (no event to wait on)
    raise RuntimeError("server did not listen")


class Nginx:
    """nginx from apt serving ``root`` on a free loopback port (``url``); with ``log``, each response's
    body bytes and path go to ``work/access.log`` (:meth:`bytes_sent`)."""

    def __init__(self, root: Path, work: Path, log: bool = False):
        self.port, self.work = _free_port(), work
        work.mkdir(parents=True, exist_ok=True)
        temps = " ".join(f"{k}_temp_path {work / k};" for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        access = (f"log_format sent '$body_bytes_sent $uri'; access_log {work}/access.log sent;" if log
                  else "access_log off;")
        (work / "nginx.conf").write_text(textwrap.dedent(f"""\
            daemon off; worker_processes 1; user root; pid {work}/nginx.pid; error_log {work}/error.log;
            events {{ worker_connections 64; }}
            http {{ {access} {temps}
              types {{ application/json json; application/octet-stream tflite npz; }}
              server {{ listen 127.0.0.1:{self.port}; root {root}; location / {{ try_files $uri =404; }} }} }}
            """))
        self.proc = subprocess.Popen([shutil.which("nginx") or "/usr/sbin/nginx", "-c", str(work / "nginx.conf"),
                                      "-e", str(work / "error.log")], stderr=subprocess.DEVNULL)
        _wait_listening(self.port, self.proc)
        self.url = f"http://127.0.0.1:{self.port}/"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)

    def bytes_sent(self) -> list[tuple[int, str]]:
        """``(body bytes, path)`` of every response so far (with ``log``)."""
        path = self.work / "access.log"
        rows = [line.split(" ", 1) for line in path.read_text().splitlines()] if path.exists() else []
        return [(int(n), p) for n, p in rows]


#: a static server whose target files misbehave: MODE extra (more bytes than signed), truncate
#: (closes half way), other (same length, other bytes), stall (1000 bytes, then nothing)
BAD_SERVER = r'''
import http.server, os, sys, time
root, port, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
class H(http.server.SimpleHTTPRequestHandler):
    def __init__(self, *a, **k):
        super().__init__(*a, directory=root, **k)
    def log_message(self, *a):
        pass
    def do_GET(self):
        path = self.translate_path(self.path)
        if "/targets/" not in self.path or not os.path.isfile(path):
            return super().do_GET()
        data = open(path, "rb").read()
        size = len(data)
        if mode == "extra":
            data += b"\0" * 200000
            size = len(data)
        elif mode == "other":
            data = bytes(len(data))
        self.send_response(200)
        self.send_header("Content-Length", str(size))
        self.end_headers()
        if mode == "stall":
            self.wfile.write(data[:1000]); self.wfile.flush(); time.sleep(120); return
        if mode == "truncate":
            self.wfile.write(data[: len(data) // 2]); self.wfile.flush(); return
        self.wfile.write(data)
http.server.ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
'''


class BadServer:
    def __init__(self, root: Path, mode: str, work: Path):
        self.port = _free_port()
        work.mkdir(parents=True, exist_ok=True)
        script = work / "bad_server.py"
        script.write_text(BAD_SERVER)
        self.proc = subprocess.Popen([sys.executable, str(script), str(root), str(self.port), mode])
        _wait_listening(self.port, self.proc)
        self.url = f"http://127.0.0.1:{self.port}/"

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(10)


def serve(root: Path, work: Path, mode: str = "normal"):
    """nginx for a well-behaved server where installed, else the stdlib one."""
    if mode == "normal" and (shutil.which("nginx") or Path("/usr/sbin/nginx").exists()):
        return Nginx(root, work)
    return BadServer(root, mode, work)


# -- fixtures ---------------------------------------------------------------------------------------
@pytest.fixture
def fleet(tmp_path):
    """A repository with release 0 and 1 (both the tiny model), its keys outside it, a trust root."""
    repo = ReleaseRepo.init(tmp_path / "repo", tmp_path / "keys")
    repo.add(TINY)
    repo.add(TINY)
    return repo, repo.trust_root(tmp_path / "trust-root.json")


@pytest.fixture
def server(fleet, tmp_path):
    s = serve(fleet[0].repo, tmp_path / "www")
    yield s
    s.stop()


def make_updater(state: Path, trust_root: Path, repos: list[str], **kw) -> tuple[Updater, list[dict]]:
    from edge_runtime.model.segmenter import DeviceSegmenter
    states: list[dict] = []
    u = Updater(UpdateConfig(state, trust_root, repos, "car1", **kw), make_segmenter=lambda p: DeviceSegmenter(p, 1),
                publish_state=states.append)
    return u, states


def ann(version: int, repo_url: str, target: str | None = None) -> contract.Announcement:
    target = target or f"releases/{version}/tiny-int8.tflite"
    return contract.parse_announcement(json.dumps(contract.announcement(version, target, repo_url)).encode())


def refused(u: Updater, a: contract.Announcement) -> str:
    with pytest.raises(UpdateError) as e:
        u.handle(a)
    assert u.boot() is None or u.slots.pointer() is not None  # whatever ran before still runs
    return str(e.value)


# -- the path that works ----------------------------------------------------------------------------
def test_a_release_is_fetched_verified_checked_and_committed(fleet, server, tmp_path):
    repo, root = fleet
    u, states = make_updater(tmp_path / "state", root, [server.url])
    assert u.boot() is None  # the install's model: release 0
    assert u.handle(ann(1, server.url)) == "succeeded"
    assert [s["state"] for s in states] == ["idle", "queued", "downloading", "verifying", "succeeded"]
    verifying = states[3]
    assert verifying["bytes"] == verifying["total_bytes"] > TINY.stat().st_size  # model + sidecar + golden
    model = u.boot()
    assert model is not None and model.name == "tiny-int8.tflite" and u.running["version"] == 1
    assert u.slots.verify(u.slots.pointer()["slot"])["sha256"] == repo.releases()[1]["sha256"]
    # the trusted metadata is kept in the state folder (rollback and freeze protection over restarts)
    assert {p.name for p in (tmp_path / "state" / "tuf").iterdir()} >= {"root.json", "timestamp.json",
                                                                          "snapshot.json", "targets.json"}


def test_a_swap_between_frames_and_probation_with_the_real_loop(fleet, server, tmp_path):
    """A real Runner on a synthetic camera: the release is swapped in between two frames, passes
    probation, and the loop never stopped."""
    from edge_runtime.commands.settings import load_settings
    from edge_runtime.io.mqtt import NullPublisher
    from edge_runtime.loop import Runner
    from edge_runtime.model.segmenter import DeviceSegmenter
    repo, root = fleet
    s = load_settings({"model": str(TINY), "source": "synthetic:64x128@200", "fps": 100, "duration": 60}, None, env={})
    runner = Runner(s, publisher=NullPublisher())
    loop = threading.Thread(target=runner.run, daemon=True)
    loop.start()
    states: list[dict] = []
    u = Updater(UpdateConfig(tmp_path / "state", root, [server.url], "car1", probation_s=1.0,
                             limits=Limits(min_frames=10, sample_every=2)),
                make_segmenter=lambda p: DeviceSegmenter(p, 1), publish_state=states.append,
                swap=runner.request_swap, fps_fn=lambda: runner.achieved)
    u.boot()
    try:
        frames_before = runner.frames
        assert u.handle(ann(1, server.url)) == "succeeded"
        assert [x["state"] for x in states][-2:] == ["trial", "succeeded"]
        assert "probation passed" in states[-1]["reason"]
        assert isinstance(runner.seg, DeviceSegmenter) and runner.seg.path.parent.parent.name == "models"
        assert runner.frames > frames_before + 10 and loop.is_alive()
    finally:
        runner.request_stop()
        loop.join(10)


# -- hostile and faulty cases ------------------------------------------------------------------------
def _resign(repo: ReleaseRepo, targets, signer) -> None:
    """Publish ``targets`` signed by ``signer`` (None: unsigned) with a correct snapshot and timestamp."""
    import datetime as dt
    targets.signed.version += 1
    targets.signatures.clear()
    if signer is not None:
        targets.sign(signer)
    repo._write(targets, f"{targets.signed.version}.targets")
    _, snap, _ = repo.current()
    snap.signed.version += 1
    snap.signed.meta["targets.json"] = repo._metafile(targets)
    repo._sign(snap, "snapshot")
    repo._write(snap, f"{snap.signed.version}.snapshot")
    repo._publish_timestamp(repo._load("timestamp"), snap, dt.timedelta(hours=1))


@pytest.mark.parametrize("how", ["unsigned", "unknown key"])
def test_targets_not_signed_by_the_fleets_key_are_refused(how, fleet, server, tmp_path):
    from securesystemslib.signer import CryptoSigner
    repo, root = fleet
    _, _, targets = repo.current()
    _resign(repo, targets, None if how == "unsigned" else CryptoSigner.generate_ed25519())
    u, _ = make_updater(tmp_path / "state", root, [server.url])
    u.boot()
    reason = refused(u, ann(1, server.url))
    assert "signed repository refused it" in reason and "targets" in reason.lower()


def test_an_older_release_is_refused(fleet, server, tmp_path):
    repo, root = fleet
    repo.add(TINY)  # release 2
    u, _ = make_updater(tmp_path / "state", root, [server.url])
    u.boot()
    assert u.handle(ann(2, server.url)) == "succeeded"
    assert "older than the running release 2" in refused(u, ann(1, server.url))
    assert u.running["version"] == 2


def test_metadata_rolled_back_by_the_server_is_refused(fleet, tmp_path):
    """The vehicle saw timestamp N; a server (or mirror) then serves an older repository state."""
    repo, root = fleet
    old = tmp_path / "old-repo"
    shutil.copytree(repo.repo, old)
    repo.add(TINY)  # release 2: newer metadata
    new_server, old_server = serve(repo.repo, tmp_path / "w1"), serve(old, tmp_path / "w2")
    try:
        u, _ = make_updater(tmp_path / "state", root, [new_server.url, old_server.url])
        u.boot()
        assert u.handle(ann(2, new_server.url)) == "succeeded"
        u2, _ = make_updater(tmp_path / "state", root, [old_server.url])  # a restart: metadata from disk
        u2.boot()
        u2.running = None  # even with no release running, the metadata must not go back
        reason = refused(u2, ann(1, old_server.url))
        assert "signed repository refused it" in reason and "version" in reason.lower()
    finally:
        new_server.stop()
        old_server.stop()


def test_expired_metadata_is_refused(fleet, server, tmp_path):
    import datetime as dt
    repo, root = fleet
    repo.timestamp(dt.timedelta(minutes=-5))  # the operator stopped re-signing: a freeze
    u, _ = make_updater(tmp_path / "state", root, [server.url])
    u.boot()
    reason = refused(u, ann(1, server.url))
    assert "Expired" in reason and "retrying" not in reason  # the state adds the retry; the reason names it


@pytest.mark.parametrize("target,expect", [
    ("releases/9/tiny-int8.tflite", "is not a target of the signed repository"),
    ("releases/1/golden.npz", "no 'roadseg' block"),
])
def test_an_announcement_naming_something_else_is_refused(target, expect, fleet, server, tmp_path):
    u, _ = make_updater(tmp_path / "state", fleet[1], [server.url])
    u.boot()
    assert expect in refused(u, ann(1, server.url, target))


def test_an_announcement_that_breaks_the_schema_or_names_another_repository(fleet, server, tmp_path):
    for bad in (b"x" * 5000, b'{"schema": "roadseg.release/1", "version": 1, "target": "../../etc/passwd", '
                              b'"repo": "http://127.0.0.1/"}', b"[" * 1000):
        with pytest.raises(contract.ReleaseError):
            contract.parse_announcement(bad)
    u, _ = make_updater(tmp_path / "state", fleet[1], [server.url])
    u.boot()
    assert "not configured with" in refused(u, ann(1, "http://evil.example/"))


@pytest.mark.parametrize("mode,expect", [
    ("other", "LengthOrHashMismatch"),      # a plain-HTTP mirror serving other bytes
    ("extra", "DownloadLengthMismatch"),    # endless data: more bytes than signed
    ("truncate", "download failed"),        # closed half way
    ("stall", "SlowRetrievalError: no data for more than 1 s"),  # sends 1000 bytes, then nothing
])
def test_a_misbehaving_server_is_refused_within_bounds(mode, expect, fleet, tmp_path):
    bad = serve(fleet[0].repo, tmp_path / "www", mode)
    try:
        u, states = make_updater(tmp_path / "state", fleet[1], [bad.url], socket_timeout_s=1.0, timeout_s=5.0)
        u.boot()
        t0 = time.monotonic()
        assert expect in refused(u, ann(1, bad.url))
        assert time.monotonic() - t0 < 20
        assert u.slots.pointer() is None and u.boot() is None  # nothing half-installed runs
    finally:
        bad.stop()


def _add_raw(repo: ReleaseRepo, version: int, model: bytes, sidecar: dict, golden: bytes, name="tiny-int8",
             input_hw=(64, 128)) -> None:
    """A correctly signed release the workstation's own checks would have refused."""
    prefix = f"releases/{version}"
    files = {f"{prefix}/{name}.tflite": model, f"{prefix}/{name}.json": json.dumps(sidecar).encode(),
             f"{prefix}/golden.npz": golden}
    info = contract.release_info(version=version, name=name, sidecar=f"{prefix}/{name}.json",
                                 golden=f"{prefix}/golden.npz",
                                 input={"height": input_hw[0], "width": input_hw[1], "dtype": "uint8",
                                        "channel_order": "rgb"},
                                 scores={}, min_runtime="0.1.0", golden_agreement=0.97, created="2026-01-01")
    repo._add_files(files, f"{prefix}/{name}.tflite", info)


def _golden(frames_hw=(64, 128), classes_hw=(8, 16), value=1) -> bytes:
    frames = np.full((3, *frames_hw, 3), 100, np.uint8)
    return contract.golden_bytes(frames, np.full((3, *classes_hw), value, np.uint8))


def test_a_signed_but_broken_model_is_refused_at_the_check(fleet, server, tmp_path):
    import hashlib
    repo, root = fleet
    tiny_side = json.loads(TINY.with_suffix(".json").read_text())
    # 2: 21 classes (PASCAL VOC ArgMax) without a class mapping
    voc = (DATA / "odd" / "argmax21.tflite").read_bytes()
    side21 = {k: v for k, v in tiny_side.items() if k not in ("output", "accuracy")}
    side21.update(sha256=hashlib.sha256(voc).hexdigest(), output={"kind": "class_map"},
                  input={"height": 32, "width": 32, "dtype": "uint8", "channel_order": "rgb",
                         "resize_policy": "stretch"})
    _add_raw(repo, 2, voc, side21, _golden((32, 32), (32, 32)), name="voc21", input_hw=(32, 32))
    # 3: a sidecar whose input size is not the model's
    wrong = dict(tiny_side, input=dict(tiny_side["input"], height=32, width=32))
    _add_raw(repo, 3, TINY.read_bytes(), wrong, _golden((32, 32)), input_hw=(32, 32))
    # 4: golden class maps the model does not reproduce here
    _add_raw(repo, 4, TINY.read_bytes(), tiny_side, _golden(value=6))
    u, states = make_updater(tmp_path / "state", root, [server.url])
    u.boot()
    r2 = refused(u, ann(2, server.url, "releases/2/voc21.tflite"))
    assert "refused at load" in r2 and "21 classes" in r2
    r3 = refused(u, ann(3, server.url))
    assert "refused at load" in r3 and "32x32" in r3
    r4 = refused(u, ann(4, server.url))
    assert "golden frames" in r4 and "less than the 97.0%" in r4
    assert u.slots.pointer() is None  # the install's model still runs
    # a refused release is remembered: not downloaded again
    assert "refused before" in refused(u, ann(4, server.url))


UPDATE_MODELS = DATA / "update"  # made by tests/data/make_update_models.py


def _on_probation(model: Path, release_model: Path, fleet, server, tmp_path) -> tuple[str, list[dict], object]:
    """A real Runner on a synthetic camera running ``model`` (the install's), and ``release_model``
    added by the workstation's own ``add`` (golden frames its own class maps: it passes the check)
    and announced; returns the outcome, the states reported and the segmenter running after."""
    from edge_runtime.commands.settings import load_settings
    from edge_runtime.io.mqtt import NullPublisher
    from edge_runtime.loop import Runner
    from edge_runtime.model.segmenter import DeviceSegmenter
    repo, root = fleet
    rel = repo.add(release_model)
    s = load_settings({"model": str(model), "source": "synthetic:64x128@200", "fps": 100, "duration": 60}, None,
                      env={})
    runner = Runner(s, publisher=NullPublisher())
    loop = threading.Thread(target=runner.run, daemon=True)
    loop.start()
    states: list[dict] = []
    u = Updater(UpdateConfig(tmp_path / "state", root, [server.url], "car1", probation_s=1.0,
                             limits=Limits(min_frames=20, sample_every=2)),
                make_segmenter=lambda p: DeviceSegmenter(p, 1), publish_state=states.append,
                swap=runner.request_swap, fps_fn=lambda: runner.achieved)
    u.boot()
    try:
        outcome = u.handle(ann(rel["version"], server.url, rel["target"]))
        frames = runner.frames
        assert loop.is_alive()
        deadline = time.monotonic() + 10
        while runner.frames < frames + 5 and time.monotonic() < deadline:  # the loop goes on after the swap back
            time.sleep(0.05)
        assert runner.frames >= frames + 5
        return outcome, states, runner.seg
    finally:
        runner.request_stop()
        loop.join(10)


def test_a_signed_model_that_says_flat_everywhere_is_rolled_back_in_probation(fleet, server, tmp_path):
    """It passes every check (its golden frames are its own), and agrees with the running model on
    most pixels of a street (flat is the majority class); its class maps collapsed: rolled back."""
    outcome, states, seg = _on_probation(TINY, UPDATE_MODELS / "flat.tflite", fleet, server, tmp_path)
    assert outcome == "rolled_back"
    assert [x["state"] for x in states][-3:] == ["verifying", "trial", "rolled_back"]
    last = states[-1]
    assert "class maps collapsed" in last["reason"] and "flat" in last["reason"], last
    assert last["trying"]["name"] == "flat" and "version" not in last["running"]  # the install's model again
    assert seg.path == TINY
    u, _ = make_updater(tmp_path / "state", fleet[1], [server.url])
    u.boot()
    assert u.slots.pointer() is None  # nothing of it runs at the next start either
    assert "refused before" in refused(u, ann(2, server.url, "releases/2/flat.tflite"))


def test_a_signed_model_five_times_slower_is_rolled_back_in_probation(fleet, server, tmp_path):
    """The same class maps as the running model, at more than five times its time per frame."""
    outcome, states, seg = _on_probation(UPDATE_MODELS / "steady.tflite", UPDATE_MODELS / "slow.tflite", fleet,
                                         server, tmp_path)
    assert outcome == "rolled_back"
    last = states[-1]
    assert last["state"] == "rolled_back" and "x slower than the previous model" in last["reason"], last
    ratio = float(last["reason"].split("x slower")[0].rsplit(" ", 1)[-1])
    assert ratio > 3.0
    assert seg.path == UPDATE_MODELS / "steady.tflite"


def test_the_vehicle_follows_a_rotated_targets_key(fleet, server, tmp_path):
    """rotate-key: a new root (signed by the offline root key) lists the new targets key; a vehicle
    installed with the old trust root walks to it, and targets signed by the retired key are refused."""
    repo, root = fleet
    u, _ = make_updater(tmp_path / "state", root, [server.url])
    u.boot()
    assert u.handle(ann(1, server.url)) == "succeeded"
    repo.rotate_key("targets")
    repo.add(TINY)  # release 2, signed by the new key
    u2, _ = make_updater(tmp_path / "state", root, [server.url])  # same trust root given at install
    u2.boot()
    assert u2.handle(ann(2, server.url)) == "succeeded"
    assert (tmp_path / "state" / "tuf" / "root_history" / "2.root.json").is_file()
    retired = next((tmp_path / "keys" / "retired").glob("targets-*.pem"))
    from calibration.release import load_signer
    _, _, targets = repo.current()
    _resign(repo, targets, load_signer(retired))
    u3, _ = make_updater(tmp_path / "state", root, [server.url])
    u3.boot()
    u3.running = None
    assert "signed repository refused it" in refused(u3, ann(2, server.url))


def test_announcements_arrive_on_the_paho_thread_and_are_handled_on_the_updaters(fleet, server, tmp_path):
    """on_announcement only parses and stores; the device's override wins over the fleet's; a
    forged (unparsable) announcement is ignored; the work happens on the updater's thread."""
    u, states = make_updater(tmp_path / "state", fleet[1], [server.url])
    u.boot()
    done = threading.Event()
    u.publish_state = lambda p: (states.append(p), done.set() if p["state"] in ("succeeded", "rejected") else None)
    try:
        u.on_announcement("fleet", json.dumps(contract.announcement(1, "releases/1/tiny-int8.tflite",
                                                                    "http://evil.example/")).encode())
        u.on_announcement("device", b"{not json")  # forged: ignored, the fleet's stays
        assert u.effective().repo == "http://evil.example/"
        u.on_announcement("device", json.dumps(contract.announcement(1, "releases/1/tiny-int8.tflite",
                                                                     server.url)).encode())
        u.start()
        assert done.wait(30)
        assert states[-1]["state"] == "succeeded", states[-1]
    finally:
        u.stop()


def test_roadseg_run_takes_an_announced_release_over_mqtt_without_a_restart(fleet, server, broker, tmp_path):
    """roadseg-run with --update-repo/--trust-root and a real mosquitto: a forged announcement is
    ignored, the operator's is taken; the model state is retained on roadseg/<id>/model; the loop
    swaps between two frames (no gap longer than two frame periods) and keeps its MQTT session."""
    import paho.mqtt.client as mqtt

    from edge_runtime.commands.run import Vehicle
    from edge_runtime.commands.settings import load_settings
    from tests.support import Subscriber
    repo, root = fleet
    fps = 20
    s = load_settings({"model": str(TINY), "source": "synthetic:64x128@30", "fps": fps, "device_id": "car1",
                       "mqtt_host": "127.0.0.1", "mqtt_port": broker.port, "publish_interval": 0,
                       "mqtt_protocol": "5" if broker.mqtt5 else "3.1.1", "duration": 60,
                       "state_dir": str(tmp_path / "state"), "update_repo": server.url, "trust_root": str(root),
                       "probation": 1.0, "http": f"127.0.0.1:{_free_port()}", "stats_interval": 1}, None, env={})
    sub = Subscriber(broker.port, "roadseg/car1/#", client_id="upd-sub")
    vehicle = Vehicle(s)
    t = threading.Thread(target=vehicle.run, daemon=True)
    t.start()
    op = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="operator", protocol=mqtt.MQTTv311)
    op.connect("127.0.0.1", broker.port)
    op.loop_start()
    try:
        assert vehicle.ready.wait(30)
        assert sub.wait_for(lambda m: m[0] == "roadseg/car1/model" and m[1]["state"] == "idle", 20)
        op.publish("roadseg/fleet/release", b"\x00" * 3000, qos=1, retain=True).wait_for_publish(5)  # forged
        op.publish("roadseg/car1/release", json.dumps(contract.announcement(
            1, "releases/1/tiny-int8.tflite", server.url)).encode(), qos=1, retain=True).wait_for_publish(5)
        assert sub.wait_for(lambda m: m[0] == "roadseg/car1/model" and m[1]["state"] in ("succeeded", "rejected",
                                                                                        "rolled_back"), 60)
        states = [m[1] for m in sub.of("/model")]
        assert states[-1]["state"] == "succeeded", states[-1]
        assert [x["state"] for x in states][-4:] == ["downloading", "verifying", "trial", "succeeded"]
        assert states[-1]["running"]["version"] == 1
        times = sub.arrival_times("/coverage")  # one summary per frame (publish interval 0)
        gaps = np.diff(times)
        assert len(times) > 15 and gaps.max() < 2 * (1 / fps) + 0.25, gaps.max()  # broker latency allowance
        assert vehicle.runner.seg.path.parent.parent == tmp_path / "state" / "models"
        assert t.is_alive()
        # the release is named where the vehicle says what runs: its stats and its device API's /v1/stats
        assert sub.wait_for(lambda m: m[0] == "roadseg/car1/stats" and m[1]["model"].get("release") == 1, 20)
        import httpx
        body = httpx.get(f"{vehicle.api_url}/v1/stats", timeout=10).json()
        assert body["model"]["release"] == 1 and body["live"]["model"]["release"] == 1, body["model"]
    finally:
        op.loop_stop()
        op.disconnect()
        vehicle.request_stop()
        t.join(20)
        sub.close()


def test_doctor_shows_the_trust_root_the_running_release_and_the_slots(fleet, server, tmp_path):
    from edge_runtime.update.compose import doctor_report
    repo, root = fleet
    rep = doctor_report(str(root), str(tmp_path / "state"))
    assert rep["trust_root"]["version"] == 1 and set(rep["trust_root"]["keys"]) == {"root", "targets", "snapshot",
                                                                                    "timestamp"}
    assert "release 0" in rep["running"]["release"]
    u, _ = make_updater(tmp_path / "state", root, [server.url])
    u.boot()
    u.handle(ann(1, server.url))
    rep = doctor_report(str(root), str(tmp_path / "state"))
    assert rep["running"]["version"] == 1 and rep["slots"]["pointer"]["state"] == "committed"
    bad = tmp_path / "bad-root.json"
    bad.write_text("{}")
    assert "not TUF root metadata" in doctor_report(str(bad), None)["trust_root"]["error"]


@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "huge", "missing"])
def test_a_trust_root_that_is_not_a_small_regular_file_is_refused_in_one_line(tmp_path, kind):
    from edge_runtime.update.updater import MAX_TRUST_ROOT_BYTES, read_trust_root
    from tests.support import not_a_small_regular_file
    root = tmp_path / "root.json"
    not_a_small_regular_file(root, kind, MAX_TRUST_ROOT_BYTES)
    with pytest.raises(ValueError) as e:
        read_trust_root(root)
    assert "\n" not in str(e.value) and str(e.value).startswith(f"cannot read trust root {root}")


@pytest.mark.parametrize("fps,patience", [(None, 130.0), (10.0, 130.0), (0.05, 800.0), (0.02, 2000.0)])
def test_probation_waits_for_its_frames_as_long_as_the_frame_rate_needs(fps, patience):
    """20 frames in at most 60 + 130 s: below about 0.1 FPS every release rolled back as "not enough to judge"
    (adversary, low --fps); the patience is twice the time the frames take at the loop's rate."""
    from edge_runtime.update.updater import probation_patience_s
    assert probation_patience_s(60.0, 20, fps) == pytest.approx(patience)
