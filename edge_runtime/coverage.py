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

from edge_runtime.labels import CATEGORIES, NUM_CLASSES

FLAT = CATEGORIES.index("flat")
OBSTACLES = [CATEGORIES.index(c) for c in ("human", "vehicle", "object")]
ZONES = ("road_ahead", "left", "centre", "right")


def _zone_slices(h: int, w: int) -> dict[str, tuple[slice, slice]]:
    t = w // 3
    return {
        "road_ahead": (slice(h - max(1, round(h * 0.4)), h), slice(t, w - t)),
        "left": (slice(0, h), slice(0, t)),
        "centre": (slice(0, h), slice(t, w - t)),
        "right": (slice(0, h), slice(w - t, w)),
    }


def frame_coverage(classes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(fractions [8], zones [4, 2])`` where zones hold (drivable,
    obstacle) fractions for :data:`ZONES` in order."""
    counts = np.bincount(classes.ravel(), minlength=NUM_CLASSES)[:NUM_CLASSES]
    frac = counts / max(classes.size, 1)
    h, w = classes.shape
    zones = np.empty((len(ZONES), 2))
    for i, (ys, xs) in enumerate(_zone_slices(h, w).values()):
        zc = np.bincount(classes[ys, xs].ravel(), minlength=NUM_CLASSES)[:NUM_CLASSES]
        n = max(zc.sum(), 1)
        zones[i] = (zc[FLAT] / n, zc[OBSTACLES].sum() / n)
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
