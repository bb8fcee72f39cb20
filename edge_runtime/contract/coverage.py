"""Scene coverage summaries from a class map (computed at the model's output
resolution: fractions do not need full-frame pixels).

Per frame: the fraction of pixels of each category (sums to 1), and zones a
driver cares about:

* ``road_ahead``: the lower-centre region (bottom 40 % of rows, middle third
  of columns): its drivable (``flat``) fraction and its obstacle fraction
  (``human``, ``vehicle``, ``object``).
* ``left``, ``centre``, ``right``: vertical thirds, each with its drivable
  and obstacle fractions.

:class:`CoverageAggregator` averages frames over a publish interval.
"""
from __future__ import annotations

import numpy as np

from edge_runtime.contract.labels import CATEGORIES, NUM_CLASSES

FLAT = CATEGORIES.index("flat")
OBSTACLES = [CATEGORIES.index(c) for c in ("human", "vehicle", "object")]
ZONES = ("road_ahead", "left", "centre", "right")


# Zones are unions of four disjoint regions: left third, centre third above the
# road-ahead box, the road-ahead box (bottom 40 % of the centre third), right third.
_ZONE_REGIONS = np.array([[0, 0, 1, 0],    # road_ahead
                          [1, 0, 0, 0],    # left
                          [0, 1, 1, 0],    # centre
                          [0, 0, 0, 1]])   # right
_region_cache: dict[tuple[int, int], np.ndarray] = {}
_BINS = NUM_CLASSES + 1  # the last bin takes values outside the taxonomy, which count for nothing


def _region_offsets(h: int, w: int) -> np.ndarray:
    """``region * (NUM_CLASSES + 1)`` per pixel (uint8 [h,w]), cached per shape."""
    got = _region_cache.get((h, w))
    if got is None:
        t = w // 3
        r = np.zeros((h, w), np.uint8)
        r[:, t:w - t] = 1
        r[h - max(1, round(h * 0.4)):, t:w - t] = 2
        r[:, w - t:] = 3
        got = _region_cache[(h, w)] = r * _BINS
        if len(_region_cache) > 8:  # bounded: frame shapes are few
            _region_cache.pop(next(iter(_region_cache)))
    return got


def frame_coverage(classes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(fractions [8], zones [4, 2])`` where zones hold (drivable,
    obstacle) fractions for :data:`ZONES` in order. One pass over the map."""
    h, w = classes.shape
    offsets = _region_offsets(h, w)
    idx = np.minimum(classes, NUM_CLASSES)  # uint8: at most 3 * 9 + 8 after the offset
    idx += offsets
    counts = np.bincount(idx.ravel(), minlength=4 * _BINS).reshape(4, _BINS)[:, :NUM_CLASSES]
    frac = counts.sum(0) / max(classes.size, 1)
    zc = _ZONE_REGIONS @ counts                                  # [zone, class]
    n = np.maximum(zc.sum(1), 1)
    zones = np.stack([zc[:, FLAT] / n, zc[:, OBSTACLES].sum(1) / n], axis=1)
    return frac, zones


class CoverageAggregator:
    """Running mean of per-frame coverage over an interval."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.frames = 0
        self._frac = np.zeros(NUM_CLASSES)
        self._zones = np.zeros((len(ZONES), 2))
        self._lat_inf: list[float] = []
        self._lat_tot: list[float] = []

    def add(self, classes: np.ndarray, inference_ms: float = 0.0, total_ms: float = 0.0) -> None:
        frac, zones = frame_coverage(classes)
        self._frac += frac
        self._zones += zones
        self.frames += 1
        self._lat_inf.append(inference_ms)
        self._lat_tot.append(total_ms)

    def summary(self) -> dict:
        n = max(self.frames, 1)
        frac = self._frac / n
        zones = self._zones / n
        return {
            "frames": self.frames,
            "coverage": {c: round(float(v), 6) for c, v in zip(CATEGORIES, frac)},
            "zones": {z: {"drivable": round(float(d), 6), "obstacle": round(float(o), 6)}
                      for z, (d, o) in zip(ZONES, zones)},
            "latency_ms": {"inference": round(float(np.mean(self._lat_inf)), 3) if self._lat_inf else 0.0,
                           "total": round(float(np.mean(self._lat_tot)), 3) if self._lat_tot else 0.0},
        }
