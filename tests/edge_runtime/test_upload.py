"""Kept frames go to the workstation (issue 30, item 2): pushed by the vehicle to nginx's WebDAV module and to
an S3-compatible store through presigned URLs (both real servers), within a daily byte budget (a simulated
week), resumed after the server was down, nothing lost or sent twice across restarts. Issue 31: the budget on
the monotonic clock (wall-clock steps and reboots grant nothing), a journal a full card still takes (real tmpfs),
a read-only card as a fault that ends by itself."""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import itertools
import json
import os
import random
import urllib.error
import urllib.request

import numpy as np
import pytest

from edge_runtime.eval.synthetic import synthetic_scene
from edge_runtime.flywheel.journal import (
    BUCKET_S,
    MAX_ENTRIES,
    SLOT_BYTES,
    WINDOW_S,
    JournalFile,
    Spending,
)
from edge_runtime.flywheel.store import FrameStore, KeptRecord
from edge_runtime.flywheel.upload import (
    JOURNAL_SCHEMA,
    PresignedTarget,
    Uploader,
    UploadError,
    WebDavTarget,
)
from roadseg_lab.checks.soak import fill
from tests.edge_runtime.conftest import remount
from tests.support import Nginx

START = dt.datetime(2026, 5, 4, 6, 0, tzinfo=dt.timezone.utc).timestamp()
PASSWORDS = {"car1": "car1-secret-0123456789", "car2": "car2-secret-0123456789"}


class Clock:
    """Seconds that move only when told (the wall clock, or the monotonic one)."""

    def __init__(self, t: float = START):
        self.t = t

    def __call__(self) -> float:
        return self.t


def add_frames(store: FrameStore, n: int, t: float, first: int = 0, device: str = "car1") -> list[str]:
    """``n`` synthetic kept frames (JPEG + record) captured at ``t``; returns the names the store took."""
    import cv2
    names = []
    for i in range(first, first + n):
        frame, _ = synthetic_scene(i, 72, 128)
        jpeg = cv2.imencode(".jpg", frame[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
        when = dt.datetime.fromtimestamp(t + i, dt.timezone.utc)
        name = f"{device}-{when:%Y%m%dT%H%M%S.%f}Z"
        score = float(np.random.default_rng(i).uniform(0.1, 0.9))
        rec = KeptRecord(name=name, device_id=device, captured_utc=when.isoformat(), model={"name": "m", "sha256": None},
                         score=round(score, 4), why={"uncertain": score}, reason="test", size=[72, 128],
                         bytes=len(jpeg), sha256=hashlib.sha256(jpeg).hexdigest())
        try:
            store.add(name, jpeg, rec.to_json(), score)
            names.append(name)
        except OverflowError:
            pass
    return names


@pytest.fixture
def nginx(tmp_path):
    """A real nginx with the WebDAV module, not yet started (the tests start and stop it)."""
    try:
        n = Nginx(tmp_path / "nginx", PASSWORDS)
    except RuntimeError as e:
        pytest.skip(str(e))
    yield n
    n.stop()


def _server_files(nginx: Nginx, device: str = "car1") -> dict[str, bytes]:
    folder = nginx.root / "kept" / device
    return {p.name: p.read_bytes() for p in folder.iterdir()} if folder.is_dir() else {}


def test_upload_resumes_after_the_server_was_down_and_sends_each_frame_once(nginx, tmp_path):
    store = FrameStore(tmp_path / "kept", 2 ** 24)
    names = add_frames(store, 5, START)
    originals = {n: store.read(n) for n in names}
    up = Uploader(store, WebDavTarget(nginx.url, "car1", PASSWORDS["car1"]), 2 ** 24, poll_s=0.05,
                  retry_s=0.05).start()
    try:
        assert up.wait_for(lambda: up.counts["failures"] >= 2, 20)  # the server is down: refused, retried
        assert up.problem is not None and "Connection refused" in up.problem["error"]
        assert len(store) == 5 and up.budget_left() == 2 ** 24  # nothing went out, nothing was charged
        nginx.start()
        assert up.wait_for(lambda: len(store) == 0, 30)
    finally:
        up.stop()
    assert up.problem is None and up.counts["uploaded"] == 5
    on_server = _server_files(nginx)
    for n, (jpeg, record) in originals.items():  # everything arrived, byte for byte, and left the vehicle
        assert on_server[f"{n}.jpg"] == jpeg and on_server[f"{n}.json"] == record
        assert not (tmp_path / "kept" / f"{n}.jpg").exists()
    puts = nginx.requests("PUT")
    assert len(puts) == 10 and len({uri for _, uri in puts}) == 10 and all(s == 201 for s, _ in puts)  # once each
    journal = JournalFile(up.state_file).read()
    assert journal["acked"] == [] and sum(n for _, n in journal["spent"]) == up.counts["bytes_sent"]


def test_a_restart_resumes_within_the_same_day_budget(nginx, tmp_path):
    nginx.start()
    store, mono = FrameStore(tmp_path / "kept", 2 ** 24), Clock(5000.0)
    names = add_frames(store, 6, START)
    budget = sum(store.size_of(n) for n in store.names()[:2]) + 100  # about two frames a day
    target = WebDavTarget(nginx.url, "car1", PASSWORDS["car1"])
    assert Uploader(store, target, budget, monotonic=mono, boot="boot-1").step() == 2
    again = Uploader(FrameStore(tmp_path / "kept", 2 ** 24), target, budget, monotonic=mono,
                     boot="boot-1")  # the process restarted
    assert again.step() == 0 and again.budget_left() < budget  # the day's spending was kept
    mono.t += 86400
    assert again.step() == 2
    assert len(_server_files(nginx)) == 8 and len(again.store) == 2 and set(names) >= set(again.store.names())


def _journal(tmp_path) -> JournalFile:
    return JournalFile(tmp_path / "kept" / ".upload" / "journal")


def test_confirmed_frames_are_deleted_not_sent_again_after_a_power_cut(nginx, tmp_path):
    nginx.start()
    store = FrameStore(tmp_path / "kept", 2 ** 24)
    confirmed, waiting = add_frames(store, 2, START)
    # the power went after the server confirmed `confirmed` and before the vehicle deleted it, and while a
    # 5000-byte frame was on its way (counted before it went)
    _journal(tmp_path).write({"schema": JOURNAL_SCHEMA, "boot": "boot-1", "at": 100.0, "spent": [[90.0, 6000]],
                              "acked": [confirmed]})
    up = Uploader(store, WebDavTarget(nginx.url, "car1", PASSWORDS["car1"]), 100_000, monotonic=Clock(200.0),
                  boot="boot-1")
    assert up.budget_left() == 100_000 - 6000  # the interrupted send counts: it may have gone out
    assert up.step() == 1
    assert [uri for _, uri in nginx.requests("PUT")] == [f"/kept/car1/{waiting}.json", f"/kept/car1/{waiting}.jpg"]
    assert len(store) == 0


def test_the_state_file_of_before_the_journal_is_taken_over(nginx, tmp_path):
    nginx.start()
    store = FrameStore(tmp_path / "kept", 2 ** 24)
    confirmed, waiting = add_frames(store, 2, START)
    state = tmp_path / "kept" / ".upload" / "state.json"
    state.parent.mkdir()
    state.write_text(json.dumps({"schema": "roadseg.upload-state/1", "day": "2026-05-04", "sent_bytes": 1000,
                                 "acked": [confirmed], "inflight": {"name": "gone", "bytes": 5000}}))
    up = Uploader(store, WebDavTarget(nginx.url, "car1", PASSWORDS["car1"]), 100_000, monotonic=Clock())
    assert up.budget_left() == 100_000 - 6000  # its bytes count as sent now, the interrupted send included
    assert up.step() == 1 and len(store) == 0
    assert [uri for _, uri in nginx.requests("PUT")] == [f"/kept/car1/{waiting}.json", f"/kept/car1/{waiting}.jpg"]
    assert not state.exists() and _journal(tmp_path).read()["schema"] == JOURNAL_SCHEMA


def test_an_unreadable_journal_counts_the_budget_as_spent(tmp_path):
    store = FrameStore(tmp_path / "kept", 2 ** 20)
    (tmp_path / "kept" / ".upload").mkdir()
    (tmp_path / "kept" / ".upload" / "journal").write_bytes(b"\xff" * (2 * SLOT_BYTES))  # neither slot whole
    mono = Clock(1000.0)
    up = Uploader(store, WebDavTarget("http://127.0.0.1:9/kept", "car1", "x"), 50_000, monotonic=mono)
    assert up.budget_left() == 0  # unknown spending: nothing more for 24 hours on a metered link
    mono.t += 86400
    assert up.budget_left() == 50_000


def test_a_torn_journal_write_reads_the_one_before(tmp_path):
    journal = JournalFile(tmp_path / "journal")
    journal.write({"n": 1})
    journal.write({"n": 2})  # generation 2: slot 0
    with open(tmp_path / "journal", "r+b") as f:  # the power went in the middle of writing it
        f.seek(20)
        f.write(b"\0\0\0")
    assert JournalFile(tmp_path / "journal").read() == {"n": 1}
    assert (tmp_path / "journal").stat().st_size == 2 * SLOT_BYTES


class Recording:
    """A real target that also notes (monotonic time, bytes) of every PUT it made."""

    def __init__(self, target, clock):
        self.target, self.clock, self.sent = target, clock, []

    def put(self, key, data, content_type):
        self.sent.append((self.clock(), len(data)))
        self.target.put(key, data, content_type)


def test_the_daily_budget_holds_over_a_simulated_week(nginx, tmp_path):
    nginx.start()
    store, mono = FrameStore(tmp_path / "kept", 400_000), Clock(1000.0)
    target = Recording(WebDavTarget(nginx.url, "car1", PASSWORDS["car1"]), mono)
    budget = 40_000  # bytes a day; the vehicle keeps more than that every day
    up = Uploader(store, target, budget, monotonic=mono)
    biggest = 0
    for day in range(7):
        for hour in range(0, 24, 3):  # frames come in and the uploader runs every 3 simulated hours
            add_frames(store, 2, START + mono.t, first=day * 100 + hour)
            biggest = max([biggest] + [store.size_of(n) for n in store.names()])
            up.step()
            mono.t += 3 * 3600
            assert store.bytes_used <= 400_000
    for t0, _ in target.sent:  # any 24 hours (sliding) within the budget
        assert sum(n for t, n in target.sent if t0 <= t < t0 + 86400) <= budget
    for day in range(7):  # and the budget is used
        sent = sum(n for t, n in target.sent if 1000 + day * 86400 <= t < 1000 + (day + 1) * 86400)
        assert budget - 2 * biggest < sent <= budget, (day, sent)
    assert sum(n for _, n in target.sent) == up.counts["bytes_sent"]


def test_wall_clock_steps_grant_no_budget(nginx, tmp_path):
    """issue 31 #13: the wall clock steps back a year and forward again (or the machine boots in 1970 before
    NTP): within one real minute, nothing beyond the budget goes (it used to send 302 kB against 110 kB/day)."""
    nginx.start()
    store = FrameStore(tmp_path / "kept", 2 ** 24)
    add_frames(store, 10, START)
    budget = sum(store.size_of(n) for n in store.names()[:2]) + 100  # two frames
    target = Recording(WebDavTarget(nginx.url, "car1", PASSWORDS["car1"]), Clock())
    wall, mono = Clock(), Clock(5000.0)
    up = Uploader(store, target, budget, clock=wall, monotonic=mono, boot="boot-1")
    assert up.step() == 2
    for step in (-365 * 86400, 365 * 86400, -START, 2 * 86400):  # back a year, forward, 1970, two days on
        wall.t += step
        mono.t += 10  # ten real seconds each
        assert up.step() == 0 and up.budget_left() < budget
    assert sum(n for _, n in target.sent) <= budget
    mono.t += 86400  # a real day later: the budget is free again
    assert up.step() == 2


def test_a_reboot_carries_the_spending_over(nginx, tmp_path):
    """issue 31 #13: after a reboot the boot clock starts again at zero and the time the vehicle was off is
    unknown: what was sent keeps counting for 24 hours of this boot's running time from its age at the last
    write, so no reboot (a Pi that boots in 1970 before NTP, again and again) gets a fresh budget."""
    nginx.start()
    store = FrameStore(tmp_path / "kept", 2 ** 24)
    add_frames(store, 10, START)
    budget = sum(store.size_of(n) for n in store.names()[:2]) + 100
    target = WebDavTarget(nginx.url, "car1", PASSWORDS["car1"])
    before = Uploader(store, target, budget, clock=Clock(0.0), monotonic=Clock(7200.0), boot="boot-1")
    assert before.step() == 2
    for boot in ("boot-2", "boot-3"):  # two reboots, each after a minute of running, the wall clock at 1970
        mono = Clock(60.0)
        up = Uploader(FrameStore(tmp_path / "kept", 2 ** 24), target, budget, clock=Clock(0.0), monotonic=mono,
                      boot=boot)
        assert up.budget_left() < budget and up.step() == 0
    mono.t = 86400 - 1  # not yet 24 hours of running since the frames went
    assert up.budget_left() < budget
    mono.t = 86400 + 1
    assert up.budget_left() == budget and up.step() == 2


def test_a_full_card_still_takes_the_journal_and_sending_frees_it(nginx, small_tmpfs):
    """issue 31 #3: on a card full to the last byte the journal, written in place, still takes every write: the
    frames go and their deletion frees the card; on the first run (no journal file yet) one frame goes
    unrecorded, and its deletion makes the room for the journal."""
    nginx.start()
    store = FrameStore(small_tmpfs / "kept", 2 ** 24, reserve_bytes=0)
    target = WebDavTarget(nginx.url, "car1", PASSWORDS["car1"])
    for first_run in (False, True):
        names = add_frames(store, 6, START, first=10 * first_run)
        (small_tmpfs / "kept" / ".upload" / "journal").unlink(missing_ok=True)
        up = Uploader(store, target, 2 ** 24, monotonic=Clock(100.0), boot="boot-1")
        if not first_run:
            up._save()  # the journal exists from an earlier run
        filler = fill(small_tmpfs)
        assert os.statvfs(small_tmpfs).f_bavail == 0
        assert up.step() == 6, up.problem  # used to send nothing: the state file could not be written
        assert len(store) == 0 and up.disk_fault is None and up.problem is None
        assert set(_server_files(nginx)) >= {f"{n}{ext}" for n in names for ext in (".jpg", ".json")}
        journal = JournalFile(up.state_file).read()
        assert journal["acked"] == [] and sum(n for _, n in journal["spent"]) == up.counts["bytes_sent"]
        filler.unlink()


def test_a_read_only_card_stops_sending_as_a_fault_that_ends_by_itself(nginx, small_tmpfs, caplog):
    """issue 31 #3: a journal the card refuses is a fault (said once, in ``disk_fault``: what the vehicle's
    status shows), nothing goes unrecorded, and the first write that succeeds ends it."""
    nginx.start()
    store = FrameStore(small_tmpfs / "kept", 2 ** 24, reserve_bytes=0)
    names = add_frames(store, 3, START)
    up = Uploader(store, WebDavTarget(nginx.url, "car1", PASSWORDS["car1"]), 2 ** 24, monotonic=Clock(100.0))
    remount(small_tmpfs, "ro")
    try:
        assert up.step() == 0 and up.step() == 0
        fault = up.disk_fault
        assert fault["store"] == "upload-journal" and fault["path"] == str(up.state_file)
        assert "Read-only file system" in fault["error"] and fault["since"].endswith("Z")
        from edge_runtime.contract.payloads import Fault
        Fault.model_validate(fault)
        assert _server_files(nginx) == {} and up.budget_left() == 2 ** 24  # nothing went, nothing was charged
    finally:
        remount(small_tmpfs, "rw")
    assert up.step() == 3 and up.disk_fault is None and len(store) == 0
    assert set(_server_files(nginx)) == {f"{n}{ext}" for n in names for ext in (".jpg", ".json")}
    assert sum(1 for r in caplog.records if "upload-journal: cannot write" in r.getMessage()) == 1


def _put(url: str, user: str, password: str) -> int:
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    req = urllib.request.Request(url, data=b"x", method="PUT", headers={"Authorization": f"Basic {auth}"})
    try:
        return urllib.request.urlopen(req, timeout=10).status
    except urllib.error.HTTPError as e:
        return e.code


def test_each_vehicle_writes_its_own_folder_only(nginx, tmp_path):
    nginx.start()
    assert _put(f"{nginx.url}/car2/x.jpg", "car1", PASSWORDS["car1"]) == 403
    assert _put(f"{nginx.url}/car1/x.jpg", "car1", PASSWORDS["car2"]) == 401
    assert _put(f"{nginx.url}/car1/../car2/x.jpg", "car1", PASSWORDS["car1"]) in (400, 403, 404)
    store = FrameStore(tmp_path / "kept", 2 ** 20)
    add_frames(store, 1, START)
    up = Uploader(store, WebDavTarget(nginx.url, "car1", "wrong-password"), 2 ** 20)
    assert up.step() == 0 and len(store) == 1
    assert "HTTP 401" in up.problem["error"] and "wrong-password" not in json.dumps(up.problem)
    with pytest.raises(ValueError, match="must not hold credentials"):
        WebDavTarget("http://car1:pw@host/kept", "car1", "pw")
    with pytest.raises(UploadError) as e:
        WebDavTarget(nginx.url, "car1", PASSWORDS["car1"]).put("../../etc.jpg", b"x", "image/jpeg")
    assert e.value.sent


# --- S3 through presigned URLs: moto's S3 server as the object store ------------------------

@pytest.fixture
def s3(tmp_path):
    """A real S3-compatible HTTP server (moto's ThreadedMotoServer) with a bucket, and a boto3 client."""
    pytest.importorskip("moto.server")
    boto3 = pytest.importorskip("boto3")
    from moto.server import ThreadedMotoServer

    from edge_runtime.io.broker import free_port
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    client = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    client.create_bucket(Bucket="fleet")
    yield client
    server.stop()


@pytest.fixture
def presign(s3):
    """The workstation's presigning service (fleet.presign) for bucket "fleet", on a free port."""
    from fleet.presign import PresignService
    server = PresignService(s3, "fleet", {"car1": "token-car1-0123456789", "car2": "token-car2-0123456789"}
                            ).serve("127.0.0.1", 0)
    yield f"http://127.0.0.1:{server.server_address[1]}/v1/presign"
    server.shutdown()


def test_s3_presigned_upload_lands_under_the_vehicle_prefix(s3, presign, tmp_path):
    store = FrameStore(tmp_path / "kept", 2 ** 24)
    names = add_frames(store, 3, START)
    originals = {n: store.read(n) for n in names}
    up = Uploader(store, PresignedTarget(presign, "token-car1-0123456789"), 2 ** 24)
    assert up.step() == 3 and len(store) == 0
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket="fleet")["Contents"])
    assert keys == sorted(f"kept/car1/{n}{ext}" for n in names for ext in (".jpg", ".json"))
    for n, (jpeg, record) in originals.items():
        assert s3.get_object(Bucket="fleet", Key=f"kept/car1/{n}.jpg")["Body"].read() == jpeg
        assert s3.get_object(Bucket="fleet", Key=f"kept/car1/{n}.json")["Body"].read() == record


def _post(url: str, body: bytes, token: str | None) -> tuple[int, dict]:
    headers = {"Content-Type": "application/json"} | ({"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=body, headers=headers), timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def test_the_presigning_service_refuses_strangers_bad_keys_and_big_bodies(presign, tmp_path):
    ok = json.dumps({"keys": ["car1-a.jpg"]}).encode()
    assert _post(presign, ok, None)[0] == 401
    assert _post(presign, ok, "token-car1-WRONG")[0] == 401
    status, answer = _post(presign, json.dumps({"keys": ["../car2/a.jpg"]}).encode(), "token-car1-0123456789")
    assert status == 400 and "keys.0" in answer["error"]
    assert _post(presign, json.dumps({"keys": ["a.jpg"] * 17}).encode(), "token-car1-0123456789")[0] == 400
    assert _post(presign, b"{" + b" " * 5000 + b"}", "token-car1-0123456789")[0] == 413
    status, answer = _post(presign, ok, "token-car2-0123456789")
    assert status == 200 and "/kept/car2/car1-a.jpg?" in answer["urls"]["car1-a.jpg"]  # the token decides
    store = FrameStore(tmp_path / "kept", 2 ** 20)
    add_frames(store, 1, START)
    up = Uploader(store, PresignedTarget(presign, "token-car1-WRONG"), 2 ** 20)
    assert up.step() == 0 and "HTTP 401" in up.problem["error"] and "WRONG" not in json.dumps(up.problem)


def test_presign_tokens_file_is_checked_without_echoing_tokens(tmp_path):
    from fleet.presign import load_tokens
    f = tmp_path / "vehicles.txt"
    f.write_text("# vehicle token\ncar1 token-car1-0123456789\ncar2 short\n")
    with pytest.raises(ValueError, match=r"vehicles.txt:3: expected") as e:
        load_tokens(f)
    assert "short" not in str(e.value)
    f.write_text("car1 token-car1-0123456789\n")
    assert load_tokens(f) == {"car1": "token-car1-0123456789"}


# -- issue 31b: the budget's journal -----------------------------------------------------------------------------

class Killed(BaseException):
    """The power cut: nothing in the uploader catches it."""


class DiesMidPut:
    """A target during whose first PUT the power goes; after that a server that takes everything."""

    def __init__(self):
        self.got: dict[str, bytes] = {}
        self.dead = False

    def put(self, key, data, content_type):
        if not self.dead:
            self.dead = True
            raise Killed
        self.got[key] = data


def test_a_power_cut_mid_put_counts_the_frame_and_the_restart_goes_on(tmp_path):
    """issue 31b #1: the journal written right before the PUT, at a boot-clock time with sub-millisecond digits
    (5000.0006: its entry rounded to 5000.001, after the write's own unrounded time), was refused at the restart:
    the whole day's budget counted as spent, nothing sent for 24 hours."""
    store = FrameStore(tmp_path / "kept", 2 ** 24)
    names = add_frames(store, 3, START)
    sizes = {n: store.size_of(n) for n in names}
    budget = 4 * sum(sizes.values())
    first = store.names()[0]
    target, mono = DiesMidPut(), Clock(5000.0006)
    with pytest.raises(Killed):
        Uploader(store, target, budget, monotonic=mono, boot="boot-1").step()
    mono.t = 5000.0009  # the restart, within the same boot
    again = Uploader(FrameStore(tmp_path / "kept", 2 ** 24), target, budget, monotonic=mono, boot="boot-1")
    assert again.budget_left() == budget - sizes[first]  # the frame's bytes count, and nothing more
    assert again.step() == 3 and len(target.got) == 6 and len(again.store) == 0
    assert again.budget_left() == budget - sum(sizes.values()) - sizes[first]


def test_every_journal_the_spending_writes_reads_back():
    """issue 31b #1 as a property: whatever the timings of sends, writes and the restart (sub-millisecond apart
    or not), the document dumped loads back, in the same boot with the same bytes at no older times (but for the
    rounding to milliseconds), and after a reboot too."""
    rng = random.Random(3101)
    for _ in range(1500):
        clock = Clock(rng.choice([rng.uniform(0, 10.0), rng.uniform(0, 1e7)]))
        s = Spending(clock)
        for _ in range(rng.randint(1, 6)):
            clock.t += rng.choice([0.0, rng.uniform(0, 0.002), rng.uniform(0, 3600.0)])
            s.add(rng.randint(1, 10 ** 6))
            clock.t += rng.choice([0.0, rng.uniform(0, 0.002)])
            doc = json.loads(json.dumps(s.dump("boot-1")))
            assert all(t <= doc["at"] for t, _ in doc["spent"])
            clock.t += rng.choice([0.0, rng.uniform(0, 0.002), 10.0])
            same = Spending(clock)
            same.load(doc, "boot-1")  # never refused
            assert same.spent() == s.spent() and len(same.entries) == len(s.entries)
            assert all(b[0] >= a[0] - 0.0005 for a, b in zip(s.entries, same.entries))
            rebooted = Spending(Clock(rng.uniform(0, 100.0)))
            rebooted.load(doc, "boot-2")
            assert rebooted.spent() == s.spent()  # all within 24 hours: all still counted


def _sliding_max(sent: list[tuple[float, int]]) -> int:
    """The most bytes in any 24 hours (the windows ending at a send are the fullest)."""
    return max(sum(n for x, n in sent if t - WINDOW_S < x <= t) for t, _ in sent)


def test_the_budget_is_a_sliding_24_hours_used_to_the_full():
    """issue 31b #6: sends less than 30 minutes apart were one bucket stamped with its last send, however long it
    got, freed only 24 hours after the last: one 100 kB frame every 20 minutes against 5 MB a day sent 146 frames
    in 4 days (of 200) with 24-hour pauses. Buckets now span at most 30 minutes."""
    clock = Clock(1000.0)
    s = Spending(clock)
    budget, frame, sent = 5_000_000, 100_000, []
    while clock.t < 1000.0 + 4 * 86400:
        if s.spent() + frame <= budget:
            s.add(frame)
            sent.append((clock.t, frame))
        clock.t += 1200.0
        assert len(s.entries) <= MAX_ENTRIES
    assert len(sent) >= 0.9 * 4 * budget // frame
    assert _sliding_max(sent) <= budget
    gaps = [b - a for (a, _), (b, _) in itertools.pairwise(sent)]
    assert max(gaps) < 86400 / 2


def test_the_spending_never_counts_bytes_older_nor_much_longer_than_they_are():
    """issue 31b #6: at any time what counts lies between the bytes sent in the last 24 hours (never overspent)
    and those of the last 24 hours and one bucket (never held longer), over irregular sends."""
    rng = random.Random(3106)
    clock = Clock(50.0)
    s = Spending(clock)
    sent: list[tuple[float, int]] = []
    for _ in range(3000):
        clock.t += rng.choice([0.0, 1.0, 60.0, 600.0, 1700.0, 1799.0, 1800.0, 1801.0, 3600.0,
                               rng.uniform(0, 7200.0)])
        if rng.random() < 0.8:
            n = rng.randint(1, 200_000)
            s.add(n)
            sent.append((clock.t, n))
        now = clock.t
        assert sum(n for x, n in sent if now - x < WINDOW_S) <= s.spent()
        assert s.spent() <= sum(n for x, n in sent if now - x < WINDOW_S + BUCKET_S)
        assert len(s.entries) <= MAX_ENTRIES


def test_without_a_boot_id_a_restart_frees_nothing_early():
    """issue 31b #10: without a boot id (no /proc/sys/kernel/random/boot_id) a restart within the same boot was
    read as a reboot: the whole budget spent 10 hours after boot was free again 50340 s after the restart, not
    86340 s. Unknown, it is now taken for the same boot (the youngest reading); a clock behind the write is still a
    reboot."""
    clock = Clock(36000.0)  # 10 hours after boot
    a = Spending(clock)
    a.add(5_000_000)
    doc = a.dump("")
    clock.t += 60  # the process restarts a minute later, the same boot
    for written, now in (("", ""), ("", "boot-1"), ("boot-1", "")):
        b = Spending(clock)
        b.load(dict(doc, boot=written), now)
        assert b.seconds_until(100_000, 5_000_000) == pytest.approx(86400 - 60)
    rebooted = Spending(Clock(30.0))  # the clock behind the write: a reboot, 30 s ago
    rebooted.load(doc, "")
    assert rebooted.seconds_until(100_000, 5_000_000) == pytest.approx(86400 - 30)


def test_a_journal_naming_paths_deletes_nothing_outside_the_store(nginx, tmp_path):
    """``acked`` is read as kept-frame names only: a path in it (a journal edited or corrupted) is dropped, not
    deleted; an ``acked`` that is not a list makes the journal unreadable (the whole budget counted as spent)."""
    nginx.start()
    store = FrameStore(tmp_path / "kept", 2 ** 24)
    [waiting] = add_frames(store, 1, START)
    for victim in ("victim.json", "victim.jpg"):
        (tmp_path / victim).write_text("not the store's")
    _journal(tmp_path).write({"schema": JOURNAL_SCHEMA, "boot": "boot-1", "at": 100.0, "spent": [],
                              "acked": ["../victim", "/etc/passwd", 7, waiting]})
    up = Uploader(store, WebDavTarget(nginx.url, "car1", PASSWORDS["car1"]), 100_000, monotonic=Clock(200.0),
                  boot="boot-1")
    assert up.acked == [waiting]
    up.step()
    assert (tmp_path / "victim.json").is_file() and (tmp_path / "victim.jpg").is_file()
    with pytest.raises(ValueError, match="bad kept-frame name"):
        store.remove("../victim")
    _journal(tmp_path).path.unlink()
    _journal(tmp_path).write({"schema": JOURNAL_SCHEMA, "boot": "boot-1", "at": 100.0, "spent": [],
                              "acked": "../victim"})
    up = Uploader(store, WebDavTarget(nginx.url, "car1", PASSWORDS["car1"]), 100_000, monotonic=Clock(200.0),
                  boot="boot-1")
    assert up.acked == [] and up.budget_left() == 0


class _Hostile:
    """A plain HTTP server on 127.0.0.1 that answers every request with ``status``, ``headers`` and the body
    ``answer(request body)`` (empty without it) and logs ``(method, path, Authorization)``: the server the
    vehicle must not trust."""

    def __init__(self, status: int, headers: dict[str, str] | None = None, answer=None):
        import http.server
        import threading
        seen = self.seen = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def _any(self):
                body = answer(self.rfile.read(int(self.headers.get("Content-Length") or 0))) if answer else b""
                seen.append((self.command, self.path, self.headers.get("Authorization")))
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            do_GET = do_POST = do_PUT = _any

            def log_message(self, *args):
                pass
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_redirect_is_a_failed_try_and_takes_no_credential_elsewhere(tmp_path, status):
    """Neither the presigning service's bearer token nor a frame follows a redirect to another host."""
    elsewhere = _Hostile(201)
    redirecting = _Hostile(status, {"Location": f"{elsewhere.url}/steal"})
    try:
        store = FrameStore(tmp_path / "kept", 2 ** 24)
        add_frames(store, 2, START)
        for target in (PresignedTarget(f"{redirecting.url}/v1/presign", "SECRET-TOKEN"),
                       WebDavTarget(f"{redirecting.url}/kept", "car1", PASSWORDS["car1"])):
            up = Uploader(store, target, 10 ** 6, state_file=tmp_path / f"journal-{type(target).__name__}",
                          monotonic=Clock(10.0))
            assert up.step() == 0 and len(store) == 2
            assert f"HTTP {status}" in up.problem["error"] and "SECRET" not in up.problem["error"]
        assert elsewhere.seen == [] and len(redirecting.seen) == 2
    finally:
        redirecting.close()
        elsewhere.close()


def test_a_frame_the_server_refuses_for_itself_does_not_block_the_others(nginx, tmp_path):
    """nginx refuses a frame over docs/deploy.md's client_max_body_size (413): it stays on the vehicle, is not
    offered again (nor billed again) in this run, and every other frame goes."""
    nginx.start()
    store = FrameStore(tmp_path / "kept", 2 ** 26)
    others = add_frames(store, 3, START)
    big = np.random.default_rng(0).integers(0, 256, 17 * 2 ** 20, np.uint8).tobytes()  # over 16m
    when = dt.datetime.fromtimestamp(START + 100, dt.timezone.utc)
    name = f"car1-{when:%Y%m%dT%H%M%S.%f}Z"
    rec = KeptRecord(name=name, device_id="car1", captured_utc=when.isoformat(), model={"name": "m", "sha256": None},
                     score=0.99, why={"uncertain": 0.99}, reason="test", size=[3000, 4000], bytes=len(big),
                     sha256=hashlib.sha256(big).hexdigest())
    store.add(name, big, rec.to_json(), 0.99)  # the highest score: offered first
    mono = Clock(10.0)
    up = Uploader(store, WebDavTarget(nginx.url, "car1", PASSWORDS["car1"]), 64 * 2 ** 20, monotonic=mono)
    assert up.step() == 3
    assert store.names() == [name]
    assert set(_server_files(nginx)) == {f"{n}.{x}" for n in others for x in ("jpg", "json")} | {f"{name}.json"}
    spent = up.spending.spent()
    for _ in range(3):
        mono.t += 60
        assert up.step() == 0
    assert up.spending.spent() == spent  # not billed again
    assert up.counts["failures"] == 1 and up.counts["uploaded"] == 3  # tried once, not pass after pass


def test_a_refused_presign_or_record_costs_no_frame_bytes_and_shelves_nothing(tmp_path):
    """The budget counts the bytes that may have gone out: a presigning service that refuses (400, 503) sent
    no frame and refused none; a record PUT refused (401 after a password change) spent the record, not the
    JPEG that never went."""
    store = FrameStore(tmp_path / "kept", 2 ** 24)
    add_frames(store, 3, START)
    for status in (400, 503):
        presign = _Hostile(status)
        try:
            up = Uploader(store, PresignedTarget(f"{presign.url}/v1/presign", "TOKEN"), 10 ** 6,
                          state_file=tmp_path / f"journal-{status}", monotonic=Clock(10.0))
            assert up.step() == 0 and up.step() == 0
            assert up.spending.spent() == 0 and len(presign.seen) == 2  # offered again: not shelved
        finally:
            presign.close()
    webdav = _Hostile(401)
    try:
        up = Uploader(store, WebDavTarget(webdav.url, "car1", "old-password"), 10 ** 6,
                      state_file=tmp_path / "journal-401", monotonic=Clock(10.0))
        assert up.step() == 0
        first = store.names()[0]
        record = (tmp_path / "kept" / f"{first}.json").read_bytes()
        assert up.spending.spent() == len(record) and [m for m, _, _ in webdav.seen] == ["PUT"]
    finally:
        webdav.close()


def test_refused_credentials_wait_an_hour_not_seconds_and_a_success_ends_the_wait(tmp_path, caplog):
    """A changed password (WebDAV 401, 403) or a revoked token (the presigning service's 401) cannot mend itself
    before a restart: the next try is auth_retry_s away, said in the problem; a server that is down (503) keeps the
    short retries; a try that then succeeds goes back to polling."""
    store = FrameStore(tmp_path / "kept", 2 ** 24)
    add_frames(store, 2, START)
    refused = []
    down = _Hostile(503)  # first down, then refusing the password: the hour's wait is said in the log all the same
    try:
        up = Uploader(store, WebDavTarget(down.url, "car1", "old-password"), 10 ** 6,
                      state_file=tmp_path / "journal-then", monotonic=Clock(10.0), auth_retry_s=1800.0)
        assert up.step() == 0 and up._next_wait() == 5.0
    finally:
        down.close()
    caplog.clear()
    now_refusing = _Hostile(401)
    try:
        up.target = WebDavTarget(now_refusing.url, "car1", "old-password")
        assert up.step() == 0 and up._next_wait() == 1800.0
        assert any("refused this vehicle's credentials" in r.getMessage() for r in caplog.records)
        up._failed("upload journal: Input/output error")  # what step() reports for a journal the disk refuses
        assert up._next_wait() == 20.0  # the short retries again (the third failure in a row: 5 s doubled twice)
    finally:
        now_refusing.close()
    for status, target in ((401, lambda url: WebDavTarget(url, "car1", "old-password")),
                           (403, lambda url: WebDavTarget(url, "car1", "old-password")),
                           (401, lambda url: PresignedTarget(f"{url}/v1/presign", "REVOKED-TOKEN")),
                           (503, lambda url: WebDavTarget(url, "car1", "old-password"))):
        server = _Hostile(status)
        try:
            up = Uploader(store, target(server.url), 10 ** 6, state_file=tmp_path / f"journal-{status}",
                          monotonic=Clock(10.0), retry_s=5.0, poll_s=30.0, auth_retry_s=1800.0)
            assert up.step() == 0 and len(store) == 2
            if status == 503:
                assert up._next_wait() == 5.0 and "credentials" not in up.problem["error"]
            else:
                assert up._next_wait() == 1800.0, status
                refused.append(up)
                assert f"HTTP {status}" in up.problem["error"] and "refused this vehicle's credentials" in \
                    up.problem["error"] and "TOKEN" not in up.problem["error"]
        finally:
            server.close()
    storage = _Hostile(403)  # a presigned URL the storage refuses (expired): the token was good, a new URL may do
    presigner = _Hostile(200, answer=lambda body: json.dumps(
        {"urls": {k: f"{storage.url}/fleet/car1/{k}?X-Amz-Signature=old" for k in json.loads(body)["keys"]}}).encode())
    try:
        up = Uploader(store, PresignedTarget(f"{presigner.url}/v1/presign", "GOOD-TOKEN"), 10 ** 6,
                      state_file=tmp_path / "journal-expired", monotonic=Clock(10.0), retry_s=5.0,
                      auth_retry_s=1800.0)
        assert up.step() == 0 and len(storage.seen) == 1
        assert up._next_wait() == 5.0 and "credentials" not in up.problem["error"]
    finally:
        storage.close()
        presigner.close()
    good = _Hostile(201)
    try:
        up = refused[0]  # the new password given (a restart would do it too)
        up.target = WebDavTarget(good.url, "car1", "new-password")
        assert up.step() == 2 and up.problem is None and up._next_wait() == 30.0
    finally:
        good.close()
