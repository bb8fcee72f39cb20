"""Issue 30's first "Done when", end to end on tiny models: a vehicle (roadseg-run) on a video keeps frames,
pushes them to nginx through its daily budget (resuming after the server was down), the workstation's teacher
labels them and roadseg-distill trains a new student with them."""
from __future__ import annotations

import datetime as dt
import json

import pytest

from edge_runtime.eval.synthetic import synthetic_scene
from tests.support import Nginx

PASSWORD = "car7-secret-0123456789"


def _video(path, frames: int = 36, fps: int = 12, size=(96, 192)):
    """A tiny street video: distinct synthetic scenes, MJPG in an .avi (OpenCV writes it without extra codecs)."""
    import cv2
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (size[1], size[0]))
    for i in range(frames):
        w.write(synthetic_scene(i // 3, *size)[0][..., ::-1])  # a scene every 3 frames: motion, not a slide show
    w.release()
    return path


@pytest.mark.integration  # ~1 minute: a tiny teacher is trained, then a student
def test_kept_frames_come_back_as_a_new_student(tiny_student_run, tiny_tflite, synth_cityscapes, tmp_path):
    from edge_runtime.commands.run import Vehicle, build_parser, cli_settings
    from edge_runtime.commands.settings import load_settings
    from edge_runtime.flywheel.store import FrameStore
    from edge_runtime.flywheel.upload import Uploader, WebDavTarget
    from edge_runtime.io.mqtt import NullPublisher
    try:
        nginx = Nginx(tmp_path / "nginx", {"car7": PASSWORD})
    except RuntimeError as e:
        pytest.skip(str(e))
    token = tmp_path / "upload-token"
    token.write_text(PASSWORD + "\n")
    kept = tmp_path / "kept"

    # 1. the vehicle plays the video in real time (3 s), keeping its best frame of every 0.5 s window and
    #    pushing to a workstation whose server is down: nothing is lost, everything waits on the vehicle
    args = build_parser().parse_args([
        "--model", str(tiny_tflite), "--source", str(_video(tmp_path / "drive.avi")), "--device-id", "car7",
        "--keep-frames", str(kept), "--keep-per-hour", "7200", "--keep-max-mb", "4", "--upload-url", nginx.url,
        "--upload-token-file", str(token), "--upload-mb-per-day", "1"])
    Vehicle(load_settings(cli_settings(args), None, env={}), publisher=NullPublisher()).run()
    store = FrameStore(kept, 4 * 2 ** 20)
    assert len(store) >= 3, store.names()
    assert nginx.requests("PUT") == []

    # 2. the server is up; after a restart the vehicle pushes within its budget: about two frames a day
    nginx.start()
    try:
        day = [dt.datetime(2026, 5, 4, 9, 0, tzinfo=dt.timezone.utc).timestamp()]
        sizes = sorted(store.size_of(n) for n in store.names())
        up = Uploader(store, WebDavTarget(nginx.url, "car7", PASSWORD), sizes[-1] + sizes[-2], clock=lambda: day[0],
                      monotonic=lambda: day[0])
        first = up.step()
        assert 1 <= first <= 2 and len(store) > 0  # the budget stopped it
        days = 1
        while len(store):
            day[0] += 86400
            assert up.step() >= 1
            days += 1
        assert days >= 2
    finally:
        nginx.stop()
    pushed = nginx.root / "kept" / "car7"
    puts = [uri for status, uri in nginx.requests("PUT") if status == 201]
    assert len(puts) == len(set(puts)) == len(list(pushed.iterdir()))  # each file once

    # 3. the workstation's teacher labels them (flip views), a contact sheet to check them by eye
    from distill.commands.pseudolabel import main as pseudolabel
    assert pseudolabel(["--teacher", str(tiny_student_run), "--frames", str(nginx.root / "kept"), "--out",
                        str(tmp_path / "pseudo")]) == 0
    manifest = json.loads((tmp_path / "pseudo" / "pseudolabels.json").read_text())
    assert len(manifest["frames"]) == len(puts) // 2 and manifest["frames"][0]["record"]["device_id"] == "car7"
    assert (tmp_path / "pseudo" / "contact-sheet.png").stat().st_size > 0

    # 4. roadseg-distill trains on the labelled frames plus the pseudo-labelled ones; a new student comes out
    from distill.commands.distill import main as distill
    out = tmp_path / "runs" / "next-student"
    assert distill(["--student", "roadseg-fast", "--data", str(synth_cityscapes), "--out", str(out), "--size",
                    "64x128", "--epochs", "1", "--steps-per-epoch", "3", "--batch", "2", "--no-kd", "--width", "0.5",
                    "--extra-data", str(tmp_path / "pseudo"), "--extra-ratio", "0.5"]) == 0
    meta = json.loads((out / "export" / "roadseg.json").read_text())
    assert meta["extra_data"] == {"path": str(tmp_path / "pseudo"), "frames": len(puts) // 2, "ratio": 0.5}
    assert (out / "export" / "saved_model.pb").is_file() and (out / "metrics.json").is_file()
