import numpy as np
import pytest

from edge_runtime.eval.metrics import ConfusionMatrix, SegmentationMetrics


def _reference(pred, target, ignore=255, n=8):
    """Independent per-class set computation, no confusion matrix."""
    keep = target != ignore
    p, t = pred[keep], target[keep]
    iou8, dice8, iou7 = [], [], []
    for c in range(n):
        inter = np.sum((p == c) & (t == c))
        union = np.sum((p == c) | (t == c))
        s = np.sum(p == c) + np.sum(t == c)
        iou8.append(inter / union if union else np.nan)
        dice8.append(2 * inter / s if s else np.nan)
    nv = t != 0  # void ground truth ignored
    for c in range(1, n):
        inter = np.sum((p[nv] == c) & (t[nv] == c))
        union = np.sum((p[nv] == c) | (t[nv] == c))
        iou7.append(inter / union if union else np.nan)
    acc = np.mean(p == t)
    return np.array(iou8), np.array(dice8), np.array(iou7), acc


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_against_independent_computation(seed):
    rng = np.random.default_rng(seed)
    cm = ConfusionMatrix()
    preds, targets = [], []
    for _ in range(3):  # streaming over several "images"
        t = rng.integers(0, 8, (17, 23)).astype(np.uint8)
        t[rng.random(t.shape) < 0.1] = 255
        p = np.where(rng.random(t.shape) < 0.6, t, rng.integers(0, 8, t.shape)).astype(np.uint8)
        p[p == 255] = 0
        cm.update(p, t)
        preds.append(p)
        targets.append(t)
    m = cm.compute()
    iou8, dice8, iou7, acc = _reference(np.concatenate(preds), np.concatenate(targets))
    np.testing.assert_allclose(m.iou, iou8)
    np.testing.assert_allclose(m.dice, dice8)
    np.testing.assert_allclose(m.iou7, iou7)
    assert m.miou8 == pytest.approx(np.nanmean(iou8))
    assert m.miou7 == pytest.approx(np.nanmean(iou7))
    assert m.pixel_accuracy == pytest.approx(acc)
    tt = np.concatenate(targets)
    freq = np.array([np.mean(tt[tt != 255] == c) for c in range(8)])
    assert m.fw_iou == pytest.approx(np.nansum(freq * iou8))


def test_perfect_and_absent_classes():
    t = np.array([[1, 1, 2, 0]], np.uint8)
    cm = ConfusionMatrix()
    cm.update(t, t)
    m = cm.compute()
    assert m.miou8 == 1.0 and m.miou7 == 1.0
    assert np.isnan(m.iou[7])  # absent from both: undefined, not counted
    d = m.as_dict()
    assert d["iou"]["vehicle"] is None and d["miou7"] == 1.0


def test_void_prediction_counts_as_miss_in_miou7():
    t = np.array([[1, 1, 0, 0]], np.uint8)
    p = np.array([[1, 0, 1, 0]], np.uint8)
    cm = ConfusionMatrix()
    cm.update(p, t)
    m = cm.compute()
    # flat: gt 2 px (non-void), predicted flat on 1 of them; the void-gt pixel predicted flat is ignored
    assert m.iou7[0] == pytest.approx(1 / 2)


def test_shape_mismatch_and_bad_index():
    cm = ConfusionMatrix()
    with pytest.raises(ValueError, match="shape"):
        cm.update(np.zeros((2, 2)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="class index"):
        cm.update(np.full((2, 2), 9), np.zeros((2, 2), np.uint8))


def test_from_confusion_roundtrip():
    cm = ConfusionMatrix()
    cm.update(np.array([1, 2]), np.array([1, 2]))
    other = ConfusionMatrix()
    other.merge(cm)
    assert SegmentationMetrics.from_confusion(other.matrix).miou8 == 1.0
