"""The workstation's half of the flywheel (issue 30, item 3): the teacher labels kept frames into a CamVid-layout
dataset with a contact sheet, and roadseg-distill trains on it beside the labelled frames (--extra-data)."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from distill.pseudolabel import CATEGORY_TO_CAMVID, find_frames
from edge_runtime.contract.labels import CAMVID_TO_CATEGORY, NUM_CLASSES
from edge_runtime.eval.synthetic import synthetic_scene


def _kept(folder, i: int, size=(96, 192), device: str = "car1", jpeg: bytes | None = None):
    """A kept frame as a vehicle pushes it: JPEG + its record."""
    import cv2

    from edge_runtime.flywheel.store import KeptRecord
    folder.mkdir(parents=True, exist_ok=True)
    frame, _ = synthetic_scene(i, *size)
    jpeg = cv2.imencode(".jpg", frame[..., ::-1])[1].tobytes() if jpeg is None else jpeg
    name = f"{device}-2026050{i % 9 + 1}T080000.000000Z"
    (folder / f"{name}.jpg").write_bytes(jpeg)
    rec = KeptRecord(name=name, device_id=device, captured_utc="2026-05-04T08:00:00+00:00",
                     model={"name": "m", "sha256": None}, score=0.5, why={"uncertain": 0.5}, reason="t",
                     size=list(size), bytes=len(jpeg), sha256=hashlib.sha256(jpeg).hexdigest())
    (folder / f"{name}.json").write_bytes(rec.to_json())
    return name


def test_categories_written_as_camvid_classes_read_back_as_themselves():
    assert [CAMVID_TO_CATEGORY[CATEGORY_TO_CAMVID[c]] for c in range(NUM_CLASSES)] == list(range(NUM_CLASSES))


def test_frames_are_checked_before_they_are_used(tmp_path):
    good = _kept(tmp_path / "car1", 1)
    bad = _kept(tmp_path / "car1", 2)
    (tmp_path / "car1" / f"{bad}.jpg").write_bytes(b"\xff\xd8 not the JPEG the record names")
    big = _kept(tmp_path / "car2", 3)
    (tmp_path / "car2" / f"{big}.json").write_text(json.dumps({"schema": "roadseg.kept/1", "pad": "x" * 20000}))
    import cv2
    cv2.imwrite(str(tmp_path / "plain.png"), synthetic_scene(4, 64, 128)[0])
    frames, skipped = find_frames(tmp_path)
    assert [f["name"] for f in frames] == [good, "plain"]
    assert frames[0]["record"]["device_id"] == "car1" and frames[1]["record"] is None
    assert any("sha256 differs" in s for s in skipped) and any("over the 16384" in s for s in skipped)
    with pytest.raises(FileNotFoundError, match="--frames"):
        find_frames(tmp_path / "missing")


def test_a_vehicle_cannot_pass_its_frames_off_as_another_vehicles(tmp_path):
    """A frame in a vehicle's folder (the one the server lets only that vehicle write) names that vehicle:
    car7 cannot push frames recorded as car8's, nor shadow car8's own frame of the same name."""
    import shutil
    real = _kept(tmp_path / "car8", 1, device="car8")
    forged = _kept(tmp_path / "forge", 1, device="car8")
    (tmp_path / "car7").mkdir()
    for ext in ("jpg", "json"):
        shutil.move(tmp_path / "forge" / f"{forged}.{ext}", tmp_path / "car7" / f"{forged}.{ext}")
    (tmp_path / "car7" / "car8").mkdir()  # a folder of car8's inside car7's
    for ext in ("jpg", "json"):
        shutil.copy(tmp_path / "car7" / f"{forged}.{ext}", tmp_path / "car7" / "car8" / f"{forged}.{ext}")
    shutil.copy(tmp_path / "car7" / f"{forged}.jpg", tmp_path / "car7" / "car8-anything.jpg")  # no record
    frames, skipped = find_frames(tmp_path)
    assert [(f["name"], f["image"].parent.name) for f in frames] == [(real, "car8")]
    assert sum("a frame of car8 in the folder of car7" in s for s in skipped) == 2
    assert any("car8-anything.jpg: no record, in the folder of car7" in s for s in skipped)


def _bomb(side: int = 20000) -> bytes:
    """A 600-byte JPEG whose header says ``side`` x ``side`` pixels (20000: 1.2 GB decoded)."""
    import struct

    import cv2
    small = cv2.imencode(".jpg", np.full((8, 8, 3), 128, np.uint8))[1].tobytes()
    i = small.index(b"\xff\xc0")  # SOF0: marker, length (2), precision (1), height (2), width (2)
    return small[:i + 5] + struct.pack(">HH", side, side) + small[i + 9:]


def test_a_frame_is_read_once_and_bounded_before_it_is_decoded(tmp_path):
    """read_frame: the bytes checked are the bytes decoded; the header's pixel count and the record's size are
    checked before decoding; what does not decode is named."""
    from distill.pseudolabel import read_frame
    ok = _kept(tmp_path / "car1", 1)
    bomb = _kept(tmp_path / "car1", 2, size=(72, 128), jpeg=_bomb())
    other = _kept(tmp_path / "car1", 3, size=(50, 50),
                  jpeg=(tmp_path / "car1" / f"{ok}.jpg").read_bytes())  # a 96x192 JPEG its record says is 50x50
    junk = _kept(tmp_path / "car1", 4, jpeg=b"\xff\xd8\xff\xe0 this is no JPEG at all")
    big = _kept(tmp_path / "car1", 5, jpeg=_bomb(5000), size=(5000, 5000))  # under Pillow's bound, over ours
    frames = {f["name"]: f for f in find_frames(tmp_path)[0]}
    assert set(frames) == {ok, bomb, other, junk, big}  # each matches its record's sha256: only decoding tells
    data, image = read_frame(frames[ok])
    assert image.shape == (96, 192, 3) and data == (tmp_path / "car1" / f"{ok}.jpg").read_bytes()
    for name, why in ((bomb, "over the 16777216 pixels"), (other, "96x192 pixels, its record says 50x50"),
                      (junk, "not an image"), (big, "5000x5000 pixels, over the 16777216")):
        with pytest.raises(ValueError, match=why):
            read_frame(frames[name])
    (tmp_path / "car1" / f"{ok}.jpg").write_bytes(data[:-10])  # changed after the folder was searched
    with pytest.raises(ValueError, match="changed since"):
        read_frame(frames[ok])


def test_frames_that_fail_are_skipped_the_rest_labelled_and_a_rerun_replaces_the_dataset(tiny_student_run, tmp_path):
    """One bad frame does not stop the labelling; the dataset appears whole or not at all, a rerun leaves no
    pair of the run before, and a folder that is not a pseudo-label dataset is never replaced."""
    from distill.commands.pseudolabel import main
    kept = tmp_path / "kept"
    good = [_kept(kept / "car1", i) for i in (1, 2)]
    bad = _kept(kept / "car1", 3, jpeg=_bomb(), size=(72, 128))
    out = tmp_path / "pseudo"
    args = ["--teacher", str(tiny_student_run), "--frames", str(kept), "--out", str(out), "--tta", ""]
    assert main(args) == 0
    manifest = json.loads((out / "pseudolabels.json").read_text())
    assert [f["name"] for f in manifest["frames"]] == good and bad in manifest["skipped"][0]
    assert sorted(p.stem for p in (out / "train").iterdir()) == good
    for ext in ("jpg", "json"):
        (kept / "car1" / f"{good[0]}.{ext}").unlink()
    assert main(args) == 0
    assert sorted(p.stem for p in (out / "train").iterdir()) == good[1:]
    assert sorted(p.stem for p in (out / "trainannot").iterdir()) == good[1:]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    assert main(args[:-4] + ["--out", str(mine), "--tta", ""]) == 2
    assert (mine / "notes.txt").read_text() == "keep me"
    for inside in (kept / "pseudo", tmp_path):  # the dataset in the frames, or the frames in the dataset
        assert main(args[:-4] + ["--out", str(inside), "--tta", ""]) == 2
    assert sorted(p.stem for p in (out / "train").iterdir()) == good[1:]
    left = tmp_path / f".pseudo.{2 ** 22 + 7}.tmp"  # a killed run's work folder (no such process)
    (left / "train").mkdir(parents=True)
    assert main(args) == 0 and not left.exists()


def test_the_teacher_labels_kept_frames_into_a_camvid_dataset(tiny_student_run, tmp_path):
    from distill.commands.pseudolabel import main
    from edge_runtime.eval.datasets import list_samples, load_sample
    names = [_kept(tmp_path / "kept" / "car1", i) for i in range(3)]
    out = tmp_path / "pseudo"
    assert main(["--teacher", str(tiny_student_run), "--frames", str(tmp_path / "kept"), "--out", str(out),
                 "--tta", "flip,0.75", "--min-confidence", "0.6"]) == 0
    fmt, samples = list_samples(out, "train")
    assert fmt == "camvid" and [s.name for s in samples] == sorted(names)
    image, labels = load_sample(samples[0], fmt)  # the reader the trainer uses takes it as it is
    assert image.shape == (96, 192, 3) and labels.shape == (96, 192)  # the frame's own size
    assert (out / "train" / f"{names[0]}.jpg").read_bytes() == (tmp_path / "kept" / "car1" /
                                                                f"{names[0]}.jpg").read_bytes()  # not re-encoded
    manifest = json.loads((out / "pseudolabels.json").read_text())
    assert manifest["min_confidence"] == 0.6 and manifest["teachers"][0]["flip"] is True
    assert manifest["teachers"][0]["scales"] == [0.75]
    entry = manifest["frames"][0]
    assert entry["record"]["device_id"] == "car1" and 0 <= entry["low_confidence_share"] <= 1
    assert 0 <= entry["void_share"] <= 1 - entry["low_confidence_share"]  # unsure pixels are ignored, not void
    assert (labels == 255).mean() == pytest.approx(entry["low_confidence_share"], abs=0.02)  # IGNORE_INDEX as read
    import cv2
    sheet = cv2.imread(str(out / "contact-sheet.png"))
    assert sheet.shape[1] == 3 * 256 and sheet.shape[0] > 3 * 128  # three columns, a header and three rows


def test_a_higher_confidence_bar_leaves_more_pixels_ignored(tiny_student_run):
    import trainer  # noqa: F401
    from distill.distill import Teachers
    from distill.pseudolabel import label_frame
    teachers = Teachers([str(tiny_student_run)], "mean", "")
    frame, _ = synthetic_scene(5, 64, 128)
    low, conf = label_frame(teachers, frame, 0.0)
    high, _ = label_frame(teachers, frame, 0.99)
    assert conf.shape == (64, 128) and np.all((conf > 0) & (conf <= 1 + 1e-6))
    assert (high == 255).mean() >= (low == 255).mean() and (high == 255).mean() > 0.5  # 255: IGNORE_INDEX
    assert (low == 255).mean() == 0  # a bar of 0 leaves every pixel labelled


def test_mix_extra_draws_the_set_share_of_frames():
    import tensorflow as tf

    import trainer  # noqa: F401
    from distill.distill import mix_extra

    def batches(value, n):  # (images, labels, indices) batches of 2, labels tell the source apart
        lab = tf.fill([n, 2, 2], tf.constant(value, tf.uint8))
        return tf.data.Dataset.from_tensor_slices((tf.zeros([n, 2, 2, 3], tf.uint8), lab,
                                                   tf.range(n, dtype=tf.int64))).batch(2)
    mixed = mix_extra(batches(1, 6), batches(9, 3), 0.25, 4)
    sources = [b[1][:, 0, 0].numpy().tolist() for b in mixed.take(5)]
    assert all(len(s) == 4 for s in sources)
    assert sum(s.count(9) for s in sources) == 5  # exactly a quarter of 20 frames, both streams repeating


def test_extra_data_is_checked_before_a_run_starts(tmp_path):
    from distill.distill import DistillConfig, check_config
    base = {"student": "roadseg-fast", "data": "-", "out": "-", "size": (64, 128), "no_kd": True}
    with pytest.raises(ValueError, match="--extra-ratio"):
        check_config(DistillConfig(**base, extra_data=str(tmp_path), extra_ratio=1.0))
    with pytest.raises(FileNotFoundError, match="--extra-data"):
        check_config(DistillConfig(**base, extra_data=str(tmp_path / "none")))
