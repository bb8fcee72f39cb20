"""Model updates on a disk that refuses (issue 31): a state dir on a read-only card, a release
left on trial on a card the kernel remounted read-only, an I/O error reading the committed model,
a download onto a card that is nearly full or fills during it. The vehicle starts on the model it
has, never calls the disk's fault the release's, says it once (``Updater.disk_fault``), and takes
the update up again by itself when the disk recovers. Real file systems (a small tmpfs remounted
read-only, a loop-mounted ext4 switched read-only by ext4's own error path), a real HTTP server,
python-tuf's client and the real LiteRT interpreter."""
from __future__ import annotations

import errno
import json
import logging
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

pytest.importorskip("tuf.ngclient")

from edge_runtime.update import slots as slots_module
from edge_runtime.update.slots import Slots
from edge_runtime.update.updater import DiskError, UpdateConfig, UpdateError, Updater
from roadseg_lab.checks.soak import (
    fill,  # the soak's own: a card filled to the last byte
)
from tests.edge_runtime.conftest import _mount, io_error_remounts_read_only, remount
from tests.edge_runtime.test_update import TINY, ann, fleet, make_updater, serve, server  # noqa: F401 (fixtures)

ROOT = Path(__file__).resolve().parents[2]
FAULT_LINE = "model updates: cannot write"


# -- real file systems: tests/edge_runtime/conftest.py (small_tmpfs, ext4_image_card) -------------------
_io_error_remounts_read_only = io_error_remounts_read_only


def _card_repaired(point: Path, image: Path) -> None:
    """The card after an fsck: ext4 refuses ``remount,rw`` once it took an error, so unmount, repair
    and mount it again at the same place (what a reboot with fsck does)."""
    subprocess.run(["umount", str(point)], check=True, capture_output=True)
    subprocess.run(["e2fsck", "-fy", str(image)], capture_output=True, check=False)  # exit 1: errors corrected
    _mount(["-o", "loop,errors=remount-ro", str(image), str(point)])


def _free(folder: Path) -> int:
    st = os.statvfs(folder)
    return st.f_bfree * st.f_frsize


def _fault_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if FAULT_LINE in r.getMessage()]


def _no_traceback(caplog) -> None:
    assert not [r for r in caplog.records if r.exc_info or "unexpected error" in r.getMessage()]


def _watch(u: Updater) -> tuple[list[dict], threading.Event]:
    """The model states ``u`` reports, and an event set at each one that ends an attempt: succeeded,
    rejected, rolled back, or waiting for the disk."""
    states: list[dict] = []
    settled = threading.Event()

    def publish(p: dict) -> None:
        states.append(p)
        if p["state"] in ("succeeded", "rejected", "rolled_back") or "waiting for the disk" in (p.get("reason") or ""):
            settled.set()
    u.publish_state = publish
    return states, settled


def _slot_files(state: Path) -> list[Path]:
    return [p for s in ("a", "b") for p in (state / "models" / s).glob("*")] if (state / "models").exists() else []


# -- case 4: a read-only state dir at start -------------------------------------------------------------
def test_a_read_only_state_dir_starts_updates_wait_and_resume_when_it_takes_writes(fleet, server, small_tmpfs,
                                                                                    caplog):
    caplog.set_level(logging.INFO, logger="roadseg.update")
    _, root = fleet
    state = small_tmpfs / "state"
    state.mkdir()
    remount(small_tmpfs, "ro")
    u, _ = make_updater(state, root, [server.url], disk_check_s=0.05)  # before the fix: EROFS from Slots' mkdir
    states, settled = _watch(u)
    assert u.boot() is None  # the install's model
    fault = u.disk_fault
    assert fault is not None and fault["store"] == "model-update", fault
    assert fault["path"].startswith(str(state)) and fault["error"] == "Read-only file system (EROFS)", fault
    assert fault["since"].endswith("Z")
    with pytest.raises(DiskError) as e:  # a release announced meanwhile waits: not refused, not bad
        u.handle(ann(1, server.url))
    assert "Read-only file system" in str(e.value) and e.value.transient
    assert u._remembered["refused"] == {} and not (state / "update.json").exists()
    assert [s["state"] for s in states] == ["idle"]
    u.start()  # announced on the updater's thread: it waits for the disk, then takes it up by itself
    try:
        u.on_announcement("fleet", _announcement(1, server.url))
        assert settled.wait(60)
        assert states[-1]["state"] == "queued" and "EROFS" in states[-1]["reason"], states[-1]
        settled.clear()
        remount(small_tmpfs, "rw")
        assert settled.wait(60)
        assert states[-1]["state"] == "succeeded", states[-1]
    finally:
        u.stop()
    assert u.disk_fault is None and u.running["version"] == 1
    assert Slots(state).pointer()["state"] == "committed"
    assert len(_fault_lines(caplog)) == 1  # said once
    _no_traceback(caplog)


def test_a_card_that_turns_read_only_before_the_download_is_a_disk_fault_not_a_bad_release(fleet, server,
                                                                                           small_tmpfs, caplog):
    """The folders exist; the card goes read-only before the announcement: TUF's metadata cannot be
    kept (root_history, timestamp.json): a named disk fault, not "internal error", and nothing refused."""
    _, root = fleet
    state = small_tmpfs / "state"
    u, _ = make_updater(state, root, [server.url])
    u.boot()
    assert u.disk_fault is None
    remount(small_tmpfs, "ro")
    with pytest.raises(DiskError) as e:
        u.handle(ann(1, server.url))
    msg = str(e.value)
    assert "\n" not in msg and "Read-only file system (EROFS)" in msg and str(state) in msg, msg
    assert "internal error" not in msg and u._remembered["refused"] == {}
    assert u.disk_fault["store"] == "model-update" and "EROFS" in u.disk_fault["error"]
    _no_traceback(caplog)
    remount(small_tmpfs, "rw")
    assert u.check_disk()
    assert u.handle(ann(1, server.url)) == "succeeded"


# -- case 5: a release left on trial, on a card the kernel remounted read-only ----------------------------
def _committed_then_on_trial(state: Path, repo, root: Path, url: str) -> None:
    """Release 1 committed in slot a, release 2 in slot b, the pointer left on trial of 2 (a power cut
    during probation): ``{"slot": "b", "previous": "a", "state": "trial", "version": 2}``."""
    repo.add(TINY)  # release 2
    u, _ = make_updater(state, root, [url])
    u.boot()
    assert u.handle(ann(1, url)) == "succeeded" and u.handle(ann(2, url)) == "succeeded"
    Slots(state).set_pointer("b", "a", "trial")


def test_a_trial_left_on_a_read_only_card_rolls_back_in_memory_and_is_recorded_when_the_card_allows(
        fleet, server, ext4_image_card, caplog):
    caplog.set_level(logging.INFO, logger="roadseg.update")
    repo, root = fleet
    point, image = ext4_image_card
    state = point / "state"
    _committed_then_on_trial(state, repo, root, server.url)
    _io_error_remounts_read_only(point)
    u, states = make_updater(state, root, [server.url])
    model = u.boot()  # before the fix: EROFS from Slots.boot's durable_write
    assert model == state / "models" / "a" / "tiny-int8.tflite" and u.running["version"] == 1  # the previous
    assert states[0]["state"] == "rolled_back" and states[0]["trying"]["version"] == 2
    assert u.slots.pointer() == {"slot": "a", "previous": None, "state": "committed", "version": 1}  # in memory
    on_disk = json.loads((state / "models" / "current.json").read_text())
    assert on_disk["state"] == "trial" and on_disk["slot"] == "b"  # the card took nothing
    fault = u.disk_fault
    assert fault["store"] == "model-update" and fault["path"] == str(state / "models" / "current.json")
    assert "not recorded" in fault["error"] and "EROFS" in fault["error"], fault
    assert len(_fault_lines(caplog)) == 1
    with pytest.raises(UpdateError, match="refused before"):  # the rollback's refusal, kept in memory
        u.handle(ann(2, server.url))
    assert not u.check_disk()  # still read-only: nothing tried, nothing said again
    assert len(_fault_lines(caplog)) == 1
    _card_repaired(point, image)
    assert u.check_disk() and u.disk_fault is None
    assert json.loads((state / "models" / "current.json").read_text())["state"] == "committed"
    assert "2" in json.loads((state / "update.json").read_text())["refused"]
    u2, states2 = make_updater(state, root, [server.url])  # the next start: nothing left to undo
    assert u2.boot() == model and states2[0]["state"] == "idle" and u2.disk_fault is None
    _no_traceback(caplog)


def test_roadseg_run_starts_on_a_read_only_card_with_a_release_left_on_trial(fleet, server, ext4_image_card, broker):
    """The vehicle, as systemd starts it, with --update-repo on a card remounted read-only by the kernel
    and a release left on trial: it runs on the previous release and says so, in the log and in its
    retained status (before: exit 4)."""
    from tests.support import Subscriber
    repo, root = fleet
    point, _ = ext4_image_card
    state = point / "state"
    _committed_then_on_trial(state, repo, root, server.url)
    _io_error_remounts_read_only(point)
    sub = Subscriber(broker.port, "roadseg/car1/status", client_id="upd-ro-sub")
    try:
        r = subprocess.run([sys.executable, "-m", "edge_runtime.commands.run", "--model", str(TINY), "--source",
                            "synthetic:64x128@30", "--fps", "20", "--duration", "3", "--device-id", "car1",
                            "--mqtt-host", "127.0.0.1", "--mqtt-port", str(broker.port), "--state-dir", str(state),
                            "--update-repo", server.url,
                            "--trust-root", str(root)], cwd=ROOT, capture_output=True, text=True, timeout=120,
                           check=False)
        assert sub.wait_for(lambda m: isinstance(m[1], dict) and "model-update" in
                            [f["store"] for f in m[1].get("faults") or []], timeout=10), sub.messages[-3:]
    finally:
        sub.close()
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stderr.count(FAULT_LINE) == 1 and "not recorded" in r.stderr, r.stderr[-3000:]
    assert "release 2 was on trial" in r.stderr and "Traceback" not in r.stderr


# -- case 6: an I/O error reading the committed release ---------------------------------------------------
def test_an_io_error_reading_the_committed_model_falls_back_naming_the_file(fleet, server, tmp_path, monkeypatch,
                                                                             caplog):
    """The card's sector under slot b's model reads back EIO: treated as a hash mismatch: slot a
    (the previous release), then the install's model; the log names the file and the error."""
    caplog.set_level(logging.INFO, logger="roadseg.update")
    repo, root = fleet
    state = tmp_path / "state"
    _committed_then_on_trial(state, repo, root, server.url)
    Slots(state).set_pointer("b", "a", "committed")  # release 2 committed, 1 the previous
    bad: set[Path] = {state / "models" / "b" / "tiny-int8.tflite"}
    real = slots_module.sha256_file

    def eio(path):
        if Path(path) in bad:
            raise OSError(errno.EIO, os.strerror(errno.EIO), str(path))
        return real(path)
    monkeypatch.setattr(slots_module, "sha256_file", eio)
    u, _ = make_updater(state, root, [server.url])
    assert u.boot() == state / "models" / "a" / "tiny-int8.tflite"  # before the fix: OSError EIO, exit 4
    assert u.running["version"] == 1 and u.slots.pointer()["slot"] == "a"
    note = [r.getMessage() for r in caplog.records if r.getMessage().startswith("model at start")][-1]
    assert f"cannot read {state / 'models' / 'b' / 'tiny-int8.tflite'}: Input/output error (EIO)" in note, note
    bad.add(state / "models" / "a" / "tiny-int8.tflite")  # and then slot a's too
    u2, _ = make_updater(state, root, [server.url])
    assert u2.boot() is None and u2.running is None  # the install's model
    assert Slots(state).pointer() is None and u2.disk_fault is None


# -- case 7: a download onto a card that is nearly full, or fills during it -------------------------------
def test_a_release_that_does_not_fit_waits_for_room_and_is_taken_up_when_there_is(fleet, server, small_tmpfs,
                                                                                  caplog):
    """300 KB free, a release of ~290 KB plus the reserve: the download does not start, the state says
    it waits for the disk (not rejected), nothing is written to the slots, the fault is said once; the
    card gets room back: the updater's thread takes the release up by itself."""
    caplog.set_level(logging.INFO, logger="roadseg.update")
    _, root = fleet
    state = small_tmpfs / "state"
    u, _ = make_updater(state, root, [server.url], disk_check_s=0.05)
    states, done = _watch(u)
    u.boot()
    filler = fill(small_tmpfs)
    os.truncate(filler, os.path.getsize(filler) - 300_000)
    free_before = _free(small_tmpfs)
    u.start()
    try:
        u.on_announcement("fleet", _announcement(1, server.url))
        assert done.wait(60)
        last = states[-1]
        assert last["state"] == "queued" and "no room for release 1" in last["reason"], last  # not rejected
        fault = u.disk_fault
        assert fault["store"] == "model-update" and fault["path"] == str(state / "models")
        assert "reserve" in fault["error"] and "free" in fault["error"], fault
        assert _slot_files(state) == [] and u._remembered["refused"] == {}
        assert free_before - _free(small_tmpfs) < 64 * 1024  # TUF's metadata only: no partial release
        done.clear()
        os.unlink(filler)  # room again: taken up by itself
        assert done.wait(60)
        assert states[-1]["state"] == "succeeded", states[-1]
        assert u.disk_fault is None and u.running["version"] == 1
    finally:
        u.stop()
    assert len(_fault_lines(caplog)) == 1
    _no_traceback(caplog)


def _announcement(version: int, url: str) -> bytes:
    from edge_runtime.contract import release as contract
    return json.dumps(contract.announcement(version, f"releases/{version}/tiny-int8.tflite", url)).encode()


class _FillsTheCard(Updater):
    """The card fills while the release downloads (another writer): at the first chunk received."""
    card: Path
    filler: Path | None = None

    def _checkpoint(self, step: str) -> None:
        if step == "download-progress" and self.filler is None:
            self.filler = fill(self.card)


def test_a_card_that_fills_during_the_download_gets_its_room_back_and_the_release_is_not_refused(
        fleet, server, small_tmpfs, caplog):
    """ENOSPC while the model is written into the slot: one line naming the file and the error (no
    traceback, no "internal error"), the partial slot removed (the room comes back), the release not
    remembered as refused; with room again it installs."""
    _, root = fleet
    state = small_tmpfs / "state"
    from edge_runtime.model.segmenter import DeviceSegmenter
    u = _FillsTheCard(UpdateConfig(state, root, [server.url], "car1"),
                      make_segmenter=lambda p: DeviceSegmenter(p, 1), publish_state=lambda p: None)
    u.card = small_tmpfs
    u.boot()
    with pytest.raises(DiskError) as e:
        u.handle(ann(1, server.url))
    msg = str(e.value)
    assert "No space left on device (ENOSPC)" in msg and str(state / "models") in msg and "\n" not in msg, msg
    assert u.disk_fault["store"] == "model-update" and "ENOSPC" in u.disk_fault["error"]
    assert _slot_files(state) == []  # no truncated golden.npz or model left behind
    assert u._remembered["refused"] == {} and not (state / "update.json").exists()
    _no_traceback(caplog)
    room_after = _free(small_tmpfs)
    os.unlink(u.filler)
    assert _free(small_tmpfs) > room_after + 1_000_000
    assert u.check_disk() and u.disk_fault is None
    assert u.handle(ann(1, server.url)) == "succeeded"
