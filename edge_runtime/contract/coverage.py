"""Scene coverage summaries from a class map (computed at the model's output
resolution: fractions do not need full-frame pixels).

Per frame: the fraction of pixels of each category (sums to 1 when every
value is a category 0..7), and zones a driver cares about:

* ``road_ahead``: the lower-centre region (bottom 40 % of rows, at least one
  row, of the middle third of columns): its drivable (``flat``) fraction and
  its obstacle fraction (``human``, ``vehicle``, ``object``).
* ``left``, ``centre``, ``right``: vertical thirds (``width // 3`` columns
  each side, the centre takes the remainder), each with its drivable and
  obstacle fractions.

The zones and the 40 % are roadseg's own choice for a forward-facing camera,
not a published standard. Fractions are unitless, in 0..1, and feed the MQTT
``coverage`` payload (:mod:`edge_runtime.contract.payloads`).
:class:`CoverageAggregator` averages frames over a publish interval.
"""
from __future__ import annotations

import numpy as np

from edge_runtime.contract.labels import CATEGORIES, NUM_CLASSES

#: Category index counted as drivable.
FLAT = CATEGORIES.index("flat")
#: Category indices counted as obstacles.
OBSTACLES = [CATEGORIES.index(c) for c in ("human", "vehicle", "object")]
#: Zone names, in the row order of :func:`frame_coverage`'s ``zones``.
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
    """Category fractions and zone summaries of one class map, in one pass.

    Args:
        classes: uint8 [h, w] class map (the segmenter's output at the model's
            resolution); values 8..255 count in no category. A signed array
            must hold no negative value (it would be counted in another zone).

    Returns:
        ``(fractions, zones)``: float64 [8], the share of all ``h * w`` pixels
        per category (all zeros for an empty map); float64 [4, 2], per zone of
        :data:`ZONES` in order, the (drivable, obstacle) share of that zone's
        pixels of a category (zeros for an empty zone).

    Raises:
        ValueError: ``classes`` is not two-dimensional.
    """
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
    """Running mean of per-frame coverage and latency over an interval.

    Call :meth:`add` per frame, :meth:`summary` at the end of a publish
    interval, then :meth:`reset`. Memory grows by two floats per frame until
    :meth:`reset` (the latencies are kept to average at :meth:`summary`).
    ``frames`` counts the frames added since the last reset.
    """

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        """Forget every frame: start a new interval."""
        self.frames = 0
        self._frac = np.zeros(NUM_CLASSES)
        self._zones = np.zeros((len(ZONES), 2))
        self._lat_inf: list[float] = []
        self._lat_tot: list[float] = []

    def add(self, classes: np.ndarray, inference_ms: float = 0.0, total_ms: float = 0.0) -> None:
        """Add one frame.

        Args:
            classes: uint8 [h, w] class map, as for :func:`frame_coverage`.
            inference_ms: the model's run time for this frame, milliseconds.
            total_ms: the whole segmentation of this frame (preprocessing,
                inference, post-processing), milliseconds.

        Raises:
            ValueError: as :func:`frame_coverage`; the aggregator is unchanged.
        """
        frac, zones = frame_coverage(classes)
        self._frac += frac
        self._zones += zones
        self.frames += 1
        self._lat_inf.append(inference_ms)
        self._lat_tot.append(total_ms)

    def summary(self) -> dict:
        """The interval's means, JSON-ready (read by :func:`~edge_runtime.contract.payloads.coverage`).

        Returns:
            ``{"frames": int, "coverage": {category: fraction},
            "zones": {zone: {"drivable": fraction, "obstacle": fraction}},
            "latency_ms": {"inference": ms, "total": ms}}``: fractions are
            means over frames rounded to 6 decimals, latencies arithmetic means
            in milliseconds rounded to 3. With no frame, every value is 0.
        """
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
