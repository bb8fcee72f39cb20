"""The flywheel's lab commands (issue 30, item 4): a vehicle keeps N frames of a drive by its own score or at
random (the real KeepFrames/FrameStore with a simulated clock, the real LiteRT model), and the report's table,
share of the teacher's lead and figure."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from roadseg_lab.cli import main
from roadseg_lab.reports import flywheel as report


def test_a_vehicle_keeps_n_frames_by_its_score_or_at_random(tiny_tflite, synth_camvid, tmp_path, capsys):
    for mode in ("selected", "random"):
        out = tmp_path / mode
        assert main(["flywheel-keep", "--model", str(tiny_tflite), "--data", str(synth_camvid), "--split", "train",
                     "--n", "3", "--mode", mode, "--seed", "1", "--out", str(out)]) == 0
        got = json.loads((tmp_path / f"{mode}.keep.json").read_text())
        jpegs = sorted(out.glob("*.jpg"))
        assert 1 <= got["kept"] <= 3 and len(jpegs) == got["kept"], got
        assert all(p.read_bytes()[:2] == b"\xff\xd8" for p in jpegs)  # full-size JPEGs, as the store keeps them
        if mode == "selected":  # the vehicle's own records: why, when, the model's sha256, the score
            records = [json.loads(p.with_suffix(".json").read_text()) for p in jpegs]
            assert all(r["model"]["sha256"] and 0 <= r["score"] <= 1 for r in records)
            assert got["counts"]["seen"] == 6
    assert main(["flywheel-keep", "--model", str(tiny_tflite), "--data", str(synth_camvid), "--split", "train",
                 "--n", "7", "--mode", "random", "--out", str(tmp_path / "x")]) == 2
    assert "between 1 and the 6 frames" in capsys.readouterr().err


def _metrics(folder: Path, miou: float, human: float) -> None:
    iou7 = {c: miou for c in report.CLASSES7} | {"human": human}
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps({"metrics": {"miou7": miou, "iou7": iou7}}))


def test_the_report_gives_each_arm_beside_its_twin_with_the_share_recovered(tmp_path):
    runs = tmp_path / "runs"
    _metrics(runs / "scores" / "teacher-lite2", 0.70, 0.5)
    _metrics(runs / "scores" / "base-s0", 0.60, 0.3)
    _metrics(runs / "scores" / "labels-s0", 0.62, 0.3)
    _metrics(runs / "scores" / "selected25-s0", 0.66, 0.4)
    _metrics(runs / "scores" / "random25-s0", 0.64, 0.3)
    (runs / "kept").mkdir()
    (runs / "kept" / "selected25-s0.keep.json").write_text(json.dumps({"kept": 24}))
    assert report.collect(runs)["extra_ratio"] is None  # no fine-tune config: the caption says no share
    (runs / "ft" / "selected25-s0").mkdir(parents=True)
    (runs / "ft" / "selected25-s0" / "config.json").write_text(json.dumps({"extra_ratio": 0.5}))
    assert report.collect(runs)["extra_ratio"] == 0.5
    text = report.report(str(runs), str(tmp_path / "t.md"), str(tmp_path / "f.png"))
    rows = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("|")}
    assert "+50 %" in rows["+ selected"] and "+4.0" in rows["+ selected"] and "| 24 |" in rows["+ selected"]
    assert "+25 %" in rows["+ random"] and "+2.0" in rows["+ random"]
    assert report.share(0.62, 0.62, 0.60) is None  # no lead, no share
    assert (tmp_path / "f.png").stat().st_size > 1000


def test_the_teachers_lead_is_that_of_every_labeller_together_when_teacher_eval_scored_them(tmp_path):
    """scores/labellers.json (teacher-eval's rows) wins over the Lite2 teacher's metrics: its last row, every
    labeller with the views that labelled the frames, is the lead; a file that is not teacher-eval's rows is named."""
    runs = tmp_path / "runs"
    _metrics(runs / "scores" / "teacher-lite2", 0.70, 0.5)
    _metrics(runs / "scores" / "labels-s0", 0.62, 0.3)
    _metrics(runs / "scores" / "selected25-s0", 0.66, 0.4)
    iou = {c: 0.7 for c in report.CLASSES7}
    rows = [{"teachers": ["runs/a"], "tta": "", "miou7": 0.70, "iou7": iou},
            {"teachers": ["runs/a", "runs/twin"], "tta": "flip", "miou7": 0.72, "iou7": iou | {"human": 0.45}}]
    (runs / "scores" / "labellers.json").write_text(json.dumps(rows))
    text = report.report(str(runs))
    table = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("|")}
    assert "| 0.720 |" in table["teachers a + twin (float, flip views)"] and "| 0.450 |" in table[
        "teachers a + twin (float, flip views)"]
    assert "+40 %" in table["+ selected"]  # (0.66 - 0.62) / (0.72 - 0.62), not / (0.70 - 0.62)
    for bad, why in (([], "no row"), ([{"teachers": [], "tta": "", "miou7": 0.7, "iou7": {}}], "not teacher-eval"),
                     ([{"teachers": ["a"], "tta": "", "miou7": 7.0, "iou7": {}}], "not teacher-eval")):
        (runs / "scores" / "labellers.json").write_text(json.dumps(bad))
        with pytest.raises(ValueError, match=why):
            report.report(str(runs))
    (runs / "scores" / "labellers.json").write_bytes(b"[" + b" " * report.MAX_SCORES_JSON + b"]")
    with pytest.raises(ValueError, match="more than"):
        report.report(str(runs))


def test_the_summary_gives_each_way_of_choosing_over_the_seeds_and_selected_minus_random_paired(tmp_path):
    runs = tmp_path / "runs"
    _metrics(runs / "scores" / "teacher-lite2", 0.70, 0.5)
    for seed, twin, selected, rand in ((0, 0.60, 0.63, 0.61), (1, 0.62, 0.64, 0.60), (2, 0.61, 0.62, 0.62)):
        _metrics(runs / "scores" / f"labels-s{seed}", twin, 0.3)
        _metrics(runs / "scores" / f"selected25-s{seed}", selected, 0.3)
        _metrics(runs / "scores" / f"random25-s{seed}", rand, 0.3)
    _metrics(runs / "scores" / "selected10-s3", 0.65, 0.3)  # no twin for seed 3: not summed up
    text = report.report(str(runs), None, str(tmp_path / "f.png"))
    rows = {tuple(c.strip() for c in line.split("|")[1:3]): [c.strip() for c in line.split("|")[3:-1]]
            for line in text.split("\n\n")[1].splitlines()[2:]}
    # gains +3, +2, +1 (mean +2.0, sd 1.0); random +1, -2, +1 (mean +0.0); selected - random +2, +4, +0
    assert rows[("25", "+ selected")] == ["3", "+2.0", "1.0", "+1.0 .. +3.0"]
    assert rows[("25", "+ random")] == ["3", "+0.0", "1.7", "-2.0 .. +1.0"]
    assert rows[("25", "selected - random (paired by seed)")] == ["3", "+2.0", "2.0", "+0.0 .. +4.0"]
    assert not any(n == "10" for n, _ in rows)
    assert report._spread([-0.02, 0.01])[0] == "+0.0"  # no negative zero
    assert (tmp_path / "f.png").stat().st_size > 1000


def _pseudo_arm(runs: Path, arm: str, frames: list[tuple[str, dict | None, "object"]]) -> None:
    import cv2
    folder = runs / "pseudo" / arm
    (folder / "trainannot").mkdir(parents=True)
    for name, _, png in frames:
        cv2.imwrite(str(folder / "trainannot" / f"{name}.png"), png)
    (folder / "pseudolabels.json").write_text(json.dumps(
        {"frames": [{"name": name, "record": record} for name, record, _ in frames]}))


def test_the_kept_frames_pseudo_labels_are_weighed_against_the_drives_human_labels(synth_camvid, tmp_path):
    """Random arms keep the sample's name, selected ones a name from the drive's clock (found by captured_utc);
    the teacher's unsure pixels are counted apart, void is not counted, seeds that kept the same frames share a row."""
    import cv2
    import numpy as np
    from datetime import datetime, timezone
    from edge_runtime.contract.labels import CAMVID_LUT, VOID
    from edge_runtime.eval.datasets import list_samples
    from roadseg_lab.recipes.flywheel import DRIVE_START
    _, samples = list_samples(synth_camvid, "train")
    truth = [cv2.imread(str(s.label), cv2.IMREAD_UNCHANGED) for s in samples]
    runs = tmp_path / "runs"
    unsure0 = truth[0].copy()
    unsure0[: unsure0.shape[0] // 2] = 255  # the teacher unsure of the top half of frame 0
    _pseudo_arm(runs, "random2-s0", [(samples[0].name, None, unsure0), (samples[2].name, None, truth[2])])
    wrong = np.where(truth[1] == 11, 11, 0).astype(np.uint8)  # every non-void pixel called sky (CamVid 0)
    for seed in (0, 1):
        _pseudo_arm(runs, f"selected2-s{seed}", [
            (f"fleet-sim-{i}", {"captured_utc": datetime.fromtimestamp(DRIVE_START + i, timezone.utc).isoformat()}, png)
            for i, png in ((1, wrong), (3, truth[3]))])
    rows = {r["arms"][0]: r for r in report.label_quality(tmp_path / "runs", str(synth_camvid), "train")}
    counted = [int((CAMVID_LUT[t] != VOID).sum()) for t in truth]
    top = int((CAMVID_LUT[truth[0][: truth[0].shape[0] // 2]] != VOID).sum())
    r = rows["random2-s0"]
    assert r["frames"] == 2 and r["arms"] == ["random2-s0"]
    assert abs(r["unsure"] - top / (counted[0] + counted[2])) < 1e-9 and r["pixel_accuracy7"] == 1.0
    s = rows["selected2-s0"]
    assert s["arms"] == ["selected2-s0", "selected2-s1"] and s["frames"] == 2 and s["unsure"] == 0
    sky = int((CAMVID_LUT[truth[1]] == 5).sum())  # category 5 is sky
    assert abs(s["pixel_accuracy7"] - (sky + counted[3]) / (counted[1] + counted[3])) < 1e-6
    text = report.report(str(runs), None, None, str(synth_camvid), "train")
    assert "| selected2-s0, selected2-s1 | 2 | 0.0 % |" in text


def test_kept_frames_whose_human_labels_are_all_void_give_a_row_without_shares(synth_camvid, tmp_path):
    """Nothing counted (every human label void): no share to give, "-" in the table, not a ZeroDivisionError."""
    import shutil

    import cv2
    import numpy as np
    from edge_runtime.eval.datasets import list_samples
    data = tmp_path / "camvid"
    shutil.copytree(synth_camvid, data)
    _, samples = list_samples(str(data), "train")
    void = np.full(cv2.imread(str(samples[0].label), cv2.IMREAD_UNCHANGED).shape, 11, np.uint8)  # 11: Unlabelled
    cv2.imwrite(str(samples[0].label), void)
    runs = tmp_path / "runs"
    _pseudo_arm(runs, "random1-s0", [(samples[0].name, None, np.zeros_like(void))])
    [row] = report.label_quality(runs, str(data), "train")
    assert row["frames"] == 1 and row["unsure"] is None and row["human_share"] is None and row["miou7"] is None
    assert "| random1-s0 | 1 | - | - | - | - | - |" in report.report(str(runs), None, None, str(data), "train")


def test_the_report_wants_data_and_drive_together(tmp_path, capsys):
    assert main(["flywheel-report", "--runs", str(tmp_path), "--data", str(tmp_path)]) == 2
    assert "--data and --drive go together" in capsys.readouterr().err


def test_the_oracle_gives_the_kept_frames_their_human_labels_in_the_pseudo_labels_layout(
        tiny_tflite, synth_camvid, synth_cityscapes, tmp_path, capsys):
    """Both ways of keeping (a random arm by the sample's name, a selected arm by its record's time on the drive's
    clock): each kept JPEG beside the very annotation of its drive frame, a dataset --extra-data reads and the
    report weighs as perfect; an existing --out, a frame of another drive and a Cityscapes layout are refused."""
    from edge_runtime.eval.datasets import list_samples
    _, samples = list_samples(synth_camvid, "train")
    for mode in ("selected", "random"):
        kept = tmp_path / "runs" / "kept" / f"{mode}3-s0"
        assert main(["flywheel-keep", "--model", str(tiny_tflite), "--data", str(synth_camvid), "--split", "train",
                     "--n", "3", "--mode", mode, "--out", str(kept)]) == 0
        out = tmp_path / "runs" / "pseudo" / f"{mode}3-s0"
        assert main(["flywheel-oracle", "--kept", str(kept), "--data", str(synth_camvid), "--split", "train",
                     "--out", str(out)]) == 0
        doc = json.loads((out / "pseudolabels.json").read_text())
        assert doc["labeller"] == "human" and len(doc["frames"]) == len(list(kept.glob("*.jpg")))
        by_name = {s.name: s for s in samples}
        for f in doc["frames"]:
            assert (out / "train" / f"{f['name']}.jpg").read_bytes() == (kept / f"{f['name']}.jpg").read_bytes()
            assert (out / "trainannot" / f"{f['name']}.png").read_bytes() == by_name[f["drive_frame"]].label.read_bytes()
        if mode == "selected":  # placed by the clock: frame i was captured i seconds into the drive
            assert all(f["name"].startswith("fleet-sim-") for f in doc["frames"])
        assert len(list_samples(str(out), "train")[1]) == len(doc["frames"])
        assert not list(out.parent.glob(".*.tmp"))
    for row in report.label_quality(tmp_path / "runs", str(synth_camvid), "train"):
        assert row["pixel_accuracy7"] == 1.0 and row["unsure"] == 0
    assert main(["flywheel-oracle", "--kept", str(kept), "--data", str(synth_camvid), "--split", "train",
                 "--out", str(out)]) == 2
    assert "exists" in capsys.readouterr().err
    (kept / "elsewhere_f00001.jpg").write_bytes((kept / f"{doc['frames'][0]['name']}.jpg").read_bytes())
    assert main(["flywheel-oracle", "--kept", str(kept), "--data", str(synth_camvid), "--split", "train",
                 "--out", str(tmp_path / "o2")]) == 2
    assert "elsewhere_f00001.jpg: not a frame of train" in capsys.readouterr().err
    assert not (tmp_path / "o2").exists() and not list(tmp_path.glob(".o2.*"))
    assert main(["flywheel-oracle", "--kept", str(kept), "--data", str(synth_cityscapes), "--split", "train",
                 "--out", str(tmp_path / "o3")]) == 2
    assert "CamVid annotations only" in capsys.readouterr().err
    # a selected frame is placed by its second on the drive's clock, which another split also has: its image decides
    selected = tmp_path / "runs" / "kept" / "selected3-s0"
    early = tmp_path / "early"
    early.mkdir()
    for jpg in sorted(selected.glob("*.jpg")):
        if jpg.stem.endswith(("T080000.000000Z", "T080001.000000Z", "T080002.000000Z")):  # within val's 3 frames
            for suffix in (".jpg", ".json"):
                (early / f"{jpg.stem}{suffix}").write_bytes(jpg.with_suffix(suffix).read_bytes())
    assert list(early.glob("*.jpg"))
    assert main(["flywheel-oracle", "--kept", str(early), "--data", str(synth_camvid), "--split", "val",
                 "--out", str(tmp_path / "o4")]) == 2
    assert "not the image of synth_" in capsys.readouterr().err and not (tmp_path / "o4").exists()


def test_compare_sets_sources_side_by_side_on_the_seeds_they_all_ran(tmp_path, capsys):
    """Gains over each folder's own twin, only arms and seeds every folder has, the paired difference from the
    first source; the figure is written; one folder, a label twice or a bad LABEL=DIR is refused."""
    a, b = tmp_path / "a", tmp_path / "b"
    for runs, arm_scores in ((a, {0: 0.63, 1: 0.62, 2: 0.64}), (b, {0: 0.64, 1: 0.65})):
        for seed, score in arm_scores.items():
            _metrics(runs / "scores" / f"labels-s{seed}", 0.60, 0.3)
            _metrics(runs / "scores" / f"random25-s{seed}", score, 0.3)
    _metrics(a / "scores" / "selected25-s0", 0.61, 0.3)  # b has no selected arm: left out
    assert main(["flywheel-compare", "--runs", f"labeller={a}", "--runs", f"human={b}",
                 "--plot", str(tmp_path / "c.png")]) == 0
    rows = [[c.strip() for c in line.split("|")[1:-1]] for line in capsys.readouterr().out.splitlines()[2:]]
    # seeds 0 and 1 only: labeller +3, +2 (mean +2.5); human +4, +5 (mean +4.5), +2.0 over the labeller paired
    assert rows == [["25", "+ random", "labeller", "2", "0.625", "+2.5", "0.7", "+2.0 .. +3.0", "-"],
                    ["25", "+ random", "human", "2", "0.645", "+4.5", "0.7", "+4.0 .. +5.0", "+2.0 (sd 1.4)"]]
    assert (tmp_path / "c.png").stat().st_size > 1000
    for bad, why in (([f"x={a}"], "two or more"), ([f"x={a}", f"x={b}"], "two or more"),
                     ([str(a), f"y={b}"], "LABEL=DIR"), ([f"x|y={a}", f"y={b}"], "a label with '|'"),
                     ([f"x={a}", f"y={tmp_path / 'typo'}"], "typo: not a run folder")):
        assert main(["flywheel-compare", *[x for r in bad for x in ("--runs", r)]]) == 2
        assert why in capsys.readouterr().err
    (a / "scores" / "random25-s2" / "metrics.json").write_text(json.dumps({"miou7": 0.6}))  # not roadseg-eval's
    assert main(["flywheel-compare", "--runs", f"x={a}", "--runs", f"y={b}"]) == 2
    assert "random25-s2/metrics.json: not roadseg-eval's metrics" in capsys.readouterr().err
