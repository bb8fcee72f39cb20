"""Coverage: per-class fractions, zones."""
import numpy as np
import pytest

from edge_runtime.contract.coverage import ZONES, CoverageAggregator, frame_coverage


def test_coverage_one_pass_matches_zone_slices():
    """frame_coverage counts all zones in one bincount; check it against slicing each zone."""
    rng = np.random.default_rng(0)
    for h, w in ((8, 16), (32, 64), (7, 11), (1, 3)):
        m = rng.integers(0, 8, (h, w)).astype(np.uint8)
        t = w // 3
        boxes = {"road_ahead": m[h - max(1, round(h * 0.4)):, t:w - t], "left": m[:, :t],
                 "centre": m[:, t:w - t], "right": m[:, w - t:]}
        frac, zones = frame_coverage(m)
        np.testing.assert_allclose(frac, np.bincount(m.ravel(), minlength=8) / m.size)
        for z, got in zip(ZONES, zones):
            box = boxes[z]
            n = max(box.size, 1)
            assert got[0] == pytest.approx((box == 1).sum() / n)
            assert got[1] == pytest.approx(np.isin(box, [3, 6, 7]).sum() / n)

def test_coverage_fractions_and_zones():
    m = np.zeros((10, 9), np.uint8)
    m[6:, 3:6] = 1           # road ahead: drivable
    m[:, :3] = 7             # left third: vehicle
    frac, zones = frame_coverage(m)
    assert frac.sum() == pytest.approx(1.0)
    assert frac[7] == pytest.approx(30 / 90) and frac[1] == pytest.approx(12 / 90)
    z = dict(zip(ZONES, zones))
    assert z["road_ahead"][0] == pytest.approx(1.0)
    assert z["left"][1] == pytest.approx(1.0) and z["right"][1] == 0.0
    agg = CoverageAggregator()
    agg.add(m)
    agg.add(np.ones_like(m))
    s = agg.summary()
    assert s["frames"] == 2 and sum(s["coverage"].values()) == pytest.approx(1.0, abs=1e-5)
    assert s["coverage"]["flat"] == pytest.approx((12 / 90 + 1) / 2, abs=1e-6)
