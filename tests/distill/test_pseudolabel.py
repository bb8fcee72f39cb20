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


def _kept(folder, i: int, size=(96, 192)):
    """A kept frame as a vehicle pushes it: JPEG + its record."""
    import cv2

    from edge_runtime.flywheel.store import KeptRecord
    folder.mkdir(parents=True, exist_ok=True)
    frame, _ = synthetic_scene(i, *size)
    jpeg = cv2.imencode(".jpg", frame[..., ::-1])[1].tobytes()
    name = f"car1-2026050{i % 9 + 1}T080000.000000Z"
    (folder / f"{name}.jpg").write_bytes(jpeg)
    rec = KeptRecord(name=name, device_id="car1", captured_utc="2026-05-04T08:00:00+00:00",
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
    assert any("sha256 differs" in s for s in skipped) and any("record over" in s for s in skipped)
    with pytest.raises(FileNotFoundError, match="--frames"):
        find_frames(tmp_path / "missing")


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
