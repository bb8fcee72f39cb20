import numpy as np
import pytest

from edge_runtime.contract import labels
from edge_runtime.contract.labels import (
    CATEGORIES,
    PALETTE,
    UnknownLabelError,
    map_labels,
)


def test_categories_order():
    assert CATEGORIES == ("void", "flat", "construction", "object", "nature", "sky", "human", "vehicle")


def test_cityscapes_lut_matches_official_table():
    official = pytest.importorskip("cityscapesscripts.helpers.labels").labels  # train extra
    seen = 0
    for lab in official:
        if lab.id < 0:
            continue  # license plate: not present in labelIds images
        assert labels.CITYSCAPES_LUT[lab.id] == lab.categoryId, lab.name
        assert CATEGORIES[lab.categoryId] == lab.category, lab.name
        seen += 1
    # nothing else is mapped
    assert (labels.CITYSCAPES_LUT != labels.IGNORE_INDEX).sum() == seen


def test_generated_file_is_current():
    """The generator renders exactly the checked-in table, and writes it where labels.py reads it."""
    from pathlib import Path

    pytest.importorskip("cityscapesscripts")  # the generator reads the official table (train extra)
    from roadseg_lab import cityscapes_lut as gen
    table = Path(labels.__file__).parent / "_cityscapes_lut.py"
    assert gen.render() == table.read_text()
    assert getattr(gen, "OUT", None) == table.resolve()


def test_camvid_mapping():
    raw = np.arange(12, dtype=np.uint8)[None]
    cats = map_labels(raw, "camvid")
    names = [CATEGORIES[c] for c in cats[0]]
    assert names == ["sky", "construction", "object", "flat", "flat", "nature", "object",
                     "construction", "vehicle", "human", "human", "void"]


def test_unknown_label_names_source():
    raw = np.array([[7, 200]], np.uint8)
    with pytest.raises(UnknownLabelError, match="frame_7.png.*200"):
        map_labels(raw, "cityscapes", source="frame_7.png")
    with pytest.raises(UnknownLabelError, match="12"):
        map_labels(np.array([[12]], np.uint8), "camvid")


def test_palette_distinct_and_colorize():
    assert len({tuple(c) for c in PALETTE}) == 8
    mask = np.array([[0, 7], [255, 3]], np.uint8)
    rgb = labels.colorize(mask)
    assert rgb.shape == (2, 2, 3)
    assert tuple(rgb[0, 1]) == tuple(PALETTE[7])


def test_255_is_the_ignore_label_in_camvid_annotations_and_other_unknowns_are_refused():
    """Pseudo-labels leave the pixels the teacher is unsure of at 255 (IGNORE_INDEX): read as ignored, never as
    an error or a category; any other value outside CamVid's 0..11 is still refused."""
    import numpy as np
    import pytest

    from edge_runtime.contract.labels import IGNORE_INDEX, UnknownLabelError, map_labels
    got = map_labels(np.array([[255, 3], [11, 9]], np.uint8), "camvid")
    assert got.tolist() == [[IGNORE_INDEX, 1], [0, 6]]
    with pytest.raises(UnknownLabelError, match=r"unknown camvid label value\(s\) \[12\]"):
        map_labels(np.array([12, 255], np.uint8), "camvid")
