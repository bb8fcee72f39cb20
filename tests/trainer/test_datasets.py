import json

import cv2
import numpy as np
import pytest

from edge_runtime.contract.labels import NUM_CLASSES
from edge_runtime.eval.synthetic import synthetic_scene, write_dataset
from trainer.dataset_stats import category_stats
from trainer.commands.data import main as data_main
from trainer.datasets import DatasetError, detect_format, list_samples, load_sample


def test_synthetic_deterministic_all_categories():
    a_img, a_mask = synthetic_scene(3, 96, 192)
    b_img, b_mask = synthetic_scene(3, 96, 192)
    assert np.array_equal(a_img, b_img) and np.array_equal(a_mask, b_mask)
    assert a_img.shape == (96, 192, 3) and a_img.dtype == np.uint8
    assert set(np.unique(a_mask)) == set(range(NUM_CLASSES))
    c_img, _ = synthetic_scene(4, 96, 192)
    assert not np.array_equal(a_img, c_img)


def test_detect_and_list(synth_cityscapes, synth_camvid):
    assert detect_format(synth_cityscapes) == "cityscapes"
    assert detect_format(synth_camvid) == "camvid"
    fmt, samples = list_samples(synth_cityscapes, "train")
    assert fmt == "cityscapes" and len(samples) == 6
    img, lab = load_sample(samples[0], fmt)
    assert img.shape == (64, 128, 3) and lab.shape == (64, 128) and lab.max() <= 7


def test_readers_agree_on_same_scenes(synth_cityscapes, synth_camvid):
    """The same scenes written in both layouts read back to the same categories."""
    a = category_stats(synth_cityscapes, "val")
    b = category_stats(synth_camvid, "val")
    assert a["pixels"] == b["pixels"] and a["images"] == b["images"] == 3
    assert sum(a["pixels"].values()) == 3 * 64 * 128


def test_cityscapes_test_split_refused(synth_cityscapes):
    with pytest.raises(DatasetError, match="withheld"):
        list_samples(synth_cityscapes, "test", "cityscapes")


def test_missing_folder_and_image_without_label(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        detect_format(tmp_path / "nope")
    root = write_dataset(tmp_path / "d", "camvid", {"train": 2}, 32, 32)
    with pytest.raises(DatasetError, match="missing folder.*val"):
        list_samples(root, "val", "camvid")
    (root / "trainannot" / "synth_00001.png").unlink()
    with pytest.raises(DatasetError, match="synth_00001.png"):
        list_samples(root, "train")


def test_size_mismatch_and_unknown_id_name_file(tmp_path):
    root = write_dataset(tmp_path / "d", "cityscapes", {"train": 2}, 32, 32)
    _, samples = list_samples(root, "train")
    cv2.imwrite(str(samples[0].label), np.zeros((16, 32), np.uint8))
    with pytest.raises(DatasetError, match=samples[0].label.name):
        load_sample(samples[0], "cityscapes")
    cv2.imwrite(str(samples[1].label), np.full((32, 32), 250, np.uint8))
    with pytest.raises(ValueError, match=rf"{samples[1].label.name}.*250"):
        load_sample(samples[1], "cityscapes")


def test_stats_cli_json(synth_camvid, capsys):
    assert data_main(["stats", "--data", str(synth_camvid), "--split", "train", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)  # exactly one JSON object
    assert out["images"] == 6 and out["format"] == "camvid" and out["split"] == "train"
    assert set(out["pixels"]) == {"void", "flat", "construction", "object", "nature", "sky", "human", "vehicle"}
    assert sum(out["pixels"].values()) == 6 * 64 * 128


def test_stats_cli_bad_data(tmp_path, capsys):
    assert data_main(["stats", "--data", str(tmp_path / "missing"), "--split", "val"]) != 0
    assert "not found" in capsys.readouterr().err


def test_preview_png(synth_cityscapes, tmp_path):
    out = tmp_path / "p.png"
    assert data_main(["preview", "--data", str(synth_cityscapes), "--split", "val", "--out", str(out), "--count", "2"]) == 0
    img = cv2.imread(str(out))
    assert img is not None and img.shape[0] > 100


def test_pipeline_train_and_val(synth_cityscapes):
    from trainer.pipeline import DecodedSplit, make_dataset
    _, samples = list_samples(synth_cityscapes, "train")
    split = DecodedSplit(samples, "cityscapes")
    x, y, _ = next(iter(split.views(0, (48, 96), (48, 48), batch=2, seed=3)))
    assert x.shape == (2, 48, 48, 3) and x.dtype.name == "uint8"
    assert y.shape == (2, 48, 48)
    vals = set(np.unique(y.numpy()).tolist())
    assert vals <= set(range(8)) | {255}
    # seeded: the same seed gives the same augmented batch
    x2, _, _ = next(iter(DecodedSplit(samples, "cityscapes").views(0, (48, 96), (48, 48), 2, seed=3)))
    assert np.array_equal(x.numpy(), x2.numpy())
    _, vsamples = list_samples(synth_cityscapes, "val")
    vx, vy = next(iter(make_dataset(vsamples, "cityscapes", (48, 96), batch=3)))
    assert vx.shape == (3, 48, 96, 3) and vy.numpy().max() <= 7


def test_sequence_holdout_splits(tmp_path):
    """holdout:PREFIX / except:PREFIX: a sequence-disjoint split of train + val, no copies of the data."""
    from edge_runtime.eval.datasets import DatasetError
    rng = np.random.default_rng(0)
    names = {"train": ["0001TP_a", "0006R0_a", "0006R0_b"], "val": ["0016E5_a", "0006R0_c"]}
    for split, stems in names.items():
        (tmp_path / split).mkdir()
        (tmp_path / f"{split}annot").mkdir()
        for stem in stems:
            cv2.imwrite(str(tmp_path / split / f"{stem}.png"), rng.integers(0, 255, (8, 8, 3), dtype=np.uint8))
            cv2.imwrite(str(tmp_path / f"{split}annot" / f"{stem}.png"), np.zeros((8, 8), np.uint8))
    _, held = list_samples(tmp_path, "holdout:0006R0")
    _, rest = list_samples(tmp_path, "except:0006R0")
    assert [s.name for s in held] == ["0006R0_a", "0006R0_b", "0006R0_c"]
    assert [s.name for s in rest] == ["0001TP_a", "0016E5_a"]
    with pytest.raises(DatasetError, match="no train or val frame starts with 'XYZ'"):
        list_samples(tmp_path, "holdout:XYZ")
    with pytest.raises(DatasetError, match="use train, val, trainval, holdout:PREFIX or except:PREFIX"):
        list_samples(tmp_path, "seq:0006R0")
    # a slice in time order: the first frames a fleet drove through, the rest to score on
    assert [s.name for s in list_samples(tmp_path, "holdout:0006R0[:2]")[1]] == ["0006R0_a", "0006R0_b"]
    assert [s.name for s in list_samples(tmp_path, "holdout:0006R0[2:]")[1]] == ["0006R0_c"]
    assert [s.name for s in list_samples(tmp_path, "except:0006R0[-1:]")[1]] == ["0016E5_a"]
    with pytest.raises(DatasetError, match="no train or val frame starts with '0006R0'"):
        list_samples(tmp_path, "holdout:0006R0[5:]")


def test_trainval_split_is_every_train_and_val_frame(synth_camvid):
    """`--train-split trainval` (a model to ship) trains on every train and val frame, sorted by name."""
    _, train = list_samples(synth_camvid, "train")
    _, val = list_samples(synth_camvid, "val")
    _, both = list_samples(synth_camvid, "trainval")
    assert [s.name for s in both] == sorted(s.name for s in train + val) and len(both) == len(train) + len(val)
