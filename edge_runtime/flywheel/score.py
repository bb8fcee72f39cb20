"""How much a frame would teach the next model, from the scores the loop
already has (the segmenter's raw output of that frame): cheap enough to run
on every frame (``roadseg-bench --keep-score`` measures it).

Four signals, each a share in 0..1, computed at the model's output
resolution (e.g. 72x96 for the shipped model; margin and entropy on a grid
of at most :data:`MAX_PIXELS` pixels of it):

* ``uncertain``: pixels whose top-two probability margin is below
  :data:`MARGIN` (the margin sampling of active learning: Scheffer et al.,
  2001; Settles, 2009);
* ``entropy``: the mean per-pixel entropy of the class distribution,
  divided by log(C) (Shannon entropy sampling);
* ``flicker``: pixels whose category changed since the previous frame
  (the model disagreeing with itself over consecutive frames, as temporal
  consistency checks of video segmentation do);
* ``rare``: pixels of the rare categories (object, human), a share scaled so
  that :data:`RARE_FULL` of the frame counts fully.

The score is their weighted sum (:data:`WEIGHTS`, summing to 1). Models that
output a class map give no probabilities: only flicker and rare count.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

#: top-two probability margin below which a pixel counts as uncertain
MARGIN = 0.2
#: pixels the margin and entropy are computed on at most: a larger output is read on a regular grid of every
#: 2nd (3rd...) pixel, which estimates a share within a fraction of a percent at a quarter (a ninth...) of the cost
MAX_PIXELS = 2048
#: the rare categories (indices of edge_runtime.contract.labels.CATEGORIES): object, human
RARE = (3, 6)
#: share of the frame of rare categories that counts as fully rare
RARE_FULL = 0.05
#: weight of each signal in the score (they sum to 1)
WEIGHTS = {"uncertain": 0.45, "entropy": 0.25, "flicker": 0.15, "rare": 0.15}
_RARE_LUT = np.isin(np.arange(256), RARE)


@dataclass(frozen=True)
class TeachScore:
    """One frame's score (0..1, higher: more to teach) and its signals, each a share in 0..1."""
    score: float
    uncertain: float
    entropy: float
    flicker: float
    rare: float

    def why(self) -> dict[str, float]:
        """The signals as ``{name: share}``, rounded to 4 decimals (the kept frame's record)."""
        return {k: round(v, 4) for k, v in asdict(self).items() if k != "score"}


def _top_two(q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The largest and second largest of each column of ``q`` [C, n] (C >= 2), ties kept (two equal
    maxima give first == second): a running pair, 3 elementwise operations per row."""
    first, second = np.maximum(q[0], q[1]), np.minimum(q[0], q[1])
    for row in q[2:]:
        np.maximum(second, np.minimum(first, row), out=second)
        np.maximum(first, row, out=first)
    return first, second


class TeachScorer:
    """Scores frames one after the other (it keeps the previous class map for
    ``flicker``). ``output_kind``: logits, probabilities or class_map (the
    segmenter's); ``scale``/``zero``: the output's quantization (scale 0: a
    float output)."""

    def __init__(self, output_kind: str, scale: float = 0.0, zero: int = 0):
        self.kind, self.scale, self.zero = output_kind, float(scale or 0.0), int(zero or 0)
        self._previous: np.ndarray | None = None

    @classmethod
    def for_segmenter(cls, seg) -> TeachScorer:
        """A scorer for a DeviceSegmenter's output (its kind and quantization)."""
        return cls(seg.output_kind, seg.output_scale, seg.output_zero)

    def _margin_entropy(self, raw: np.ndarray) -> tuple[float, float]:
        """(share of pixels with a top-two probability margin below MARGIN, mean entropy / log C) of a
        raw [h, w, C] output. Channels first ([C, n]): reductions over C are then C-1 elementwise
        operations on long rows, several times faster than NumPy's reductions over a short last axis."""
        c = raw.shape[-1]
        step = max(1, math.ceil(math.sqrt(raw.shape[0] * raw.shape[1] / MAX_PIXELS)))
        q = np.ascontiguousarray(raw[::step, ::step]).reshape(-1, c).T  # [C, n] view
        first, second = _top_two(q)  # on the raw values: dequantization keeps the order (scale > 0)
        x = q.astype(np.float32, order="C")  # [C, n], contiguous
        top2 = np.stack([second, first]).astype(np.float32)
        if self.scale:
            x -= self.zero
            x *= self.scale
            top2 -= self.zero
            top2 *= self.scale
        if self.kind == "logits":  # p_i = exp(x_i - max) / Z
            x -= top2[1]
            e = np.exp(x)
            z = e.sum(axis=0)
            margin = (1.0 - np.exp(top2[0] - top2[1])) / z
            entropy = np.log(z) - (e * x).sum(axis=0) / z
        else:  # probabilities (dequantized ones need not sum to 1 exactly)
            z = np.maximum(x.sum(axis=0), 1e-12)
            margin = (top2[1] - top2[0]) / z
            p = x / z
            entropy = -(p * np.log(np.maximum(p, 1e-12))).sum(axis=0)
        return float(np.mean(margin < MARGIN)), float(np.mean(entropy)) / math.log(c)

    def __call__(self, raw: np.ndarray | None, classes: np.ndarray) -> TeachScore:
        """The score of one frame: ``raw`` the segmenter's ``last_output``
        ([h, w, C] scores in the output dtype, or None/a class map), ``classes``
        its uint8 [h, w] category map. Raises ValueError when ``classes`` is
        not 2-D."""
        if classes.ndim != 2:
            raise ValueError(f"classes must be [h, w], got shape {classes.shape}")
        uncertain = entropy = 0.0
        if raw is not None and self.kind in ("logits", "probabilities") and raw.ndim == 3 and raw.shape[-1] > 1:
            uncertain, entropy = self._margin_entropy(raw)
        flicker = 0.0
        if self._previous is not None and self._previous.shape == classes.shape:
            flicker = float(np.mean(self._previous != classes))
        self._previous = classes.copy()
        rare_share = float(_RARE_LUT[classes].mean())
        rare = min(1.0, rare_share / RARE_FULL)
        signals = {"uncertain": uncertain, "entropy": min(1.0, max(0.0, entropy)), "flicker": flicker, "rare": rare}
        score = sum(WEIGHTS[k] * v for k, v in signals.items())
        return TeachScore(score=score, **signals)
