"""Does a verified release work on this vehicle? Two answers:

* :func:`check_release`, before it runs: the runtime's load-time contract
  checks (edge_runtime.model.checks, through DeviceSegmenter) and the golden
  frames, whose class maps must equal the ones the workstation recorded on at
  least the release's share of pixels.
* :class:`TrialSegmenter`, while it runs on probation: the run loop calls it
  as it calls a DeviceSegmenter; it segments with the new model, counts its
  errors (a frame that fails is segmented by the previous model instead: the
  loop never stops for a model on trial), its latency, and on one frame in
  ``sample_every`` also runs the previous model to measure how many pixels
  the two agree on and their IoU class by class (a model that collapses to
  the majority class, e.g. "flat" everywhere, still agrees on most pixels of a
  street; its mean IoU with the previous model over the classes that model
  shows is what falls). :meth:`TrialSegmenter.failure` says why it fails.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_runtime.contract.preprocessing import resize_mask


class CheckFailed(ValueError):
    """The release does not work here; ``str()`` is the reason (one line)."""


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Share of pixels (0..1) where class maps ``a`` and ``b`` (uint8 [h, w]) agree, ``b``
    resized (nearest) to ``a``'s size when they differ."""
    if a.shape != b.shape:
        b = resize_mask(b, a.shape[:2])
    return float(np.mean(a == b)) if a.size else 1.0


def check_release(model: Path, golden: tuple[np.ndarray, np.ndarray], min_share: float,
                  make_segmenter: Callable[[Path], object], expect_input: tuple[int, int] | None = None):
    """Load ``model`` with ``make_segmenter`` (the runtime's contract checks run there) and
    segment the golden ``frames`` (uint8 [N,H,W,3] RGB): each class map must equal the
    recorded one on at least ``min_share`` (0..1) of its pixels. ``expect_input``: the
    release's declared input (height, width), which the loaded model must take. Returns
    the segmenter, ready to run. Raises CheckFailed with the reason."""
    try:
        seg = make_segmenter(model)
    except Exception as e:  # ModelError, SidecarError, ValueError: all mean "refused at load"
        raise CheckFailed(f"refused at load: {e}") from None
    if expect_input is not None and tuple(seg.input_size) != tuple(expect_input):
        raise CheckFailed(f"the model takes {seg.input_size[0]}x{seg.input_size[1]}, its release declares "
                          f"{expect_input[0]}x{expect_input[1]}")
    frames, classes = golden
    worst = 1.0
    for i, (frame, want) in enumerate(zip(frames, classes)):
        try:
            got = seg.segment(frame, "rgb")
        except Exception as e:
            raise CheckFailed(f"golden frame {i}: {type(e).__name__}: {e}") from None
        worst = min(worst, agreement(want, got))
    if worst < min_share:
        raise CheckFailed(f"golden frames: the class maps here equal the workstation's on {worst:.1%} of pixels, "
                          f"less than the {min_share:.1%} the release requires")
    return seg


@dataclass(frozen=True)
class Limits:
    """What probation tolerates: ``max_errors`` frames that raised; ``min_agreement`` (0..1)
    mean share of pixels agreeing with the previous model on sampled frames;
    ``max_slowdown``: the new model's median time per frame over the previous one's;
    ``min_fps_share``: achieved FPS over what the previous model achieved (0: not checked);
    ``sample_every``: frames between two comparisons with the previous model;
    ``min_frames``: frames needed before a verdict; ``min_class_iou`` (0..1): mean IoU
    with the previous model's class maps over the classes that cover at least
    ``class_floor`` of its sampled pixels (a model that says one class everywhere
    scores that class's share divided by the number of classes shown)."""
    max_errors: int = 0
    min_agreement: float = 0.6
    min_class_iou: float = 0.3
    class_floor: float = 0.01
    max_slowdown: float = 3.0
    min_fps_share: float = 0.8
    sample_every: int = 10
    min_frames: int = 20


class TrialSegmenter:
    """``new`` on probation in place of ``old`` (both DeviceSegmenter-like). Everything
    not overridden is ``new``'s (describe, input_size, timing...). Thread-safe reads of
    the counters (:meth:`snapshot`, :meth:`verdict`) from the updater's thread."""

    def __init__(self, new, old, limits: Limits = Limits()):
        self.new, self.old, self.limits = new, old, limits
        self._lock = threading.Lock()
        self.frames = self.errors = 0
        self.first_error = ""
        self.agreements: list[float] = []
        # per class, over the sampled frames: pixels both models give it, either gives it, the previous gives it
        self.inter = np.zeros(256, np.int64)
        self.union = np.zeros(256, np.int64)
        self.old_pixels = np.zeros(256, np.int64)
        self.new_ms: list[float] = []
        self.old_ms: list[float] = []
        self.started = self.last_frame = None

    def set_previous(self, old) -> None:
        """The model it replaced (the swap's ``on_done`` gives it, before the first frame)."""
        self.old = old

    def __getattr__(self, name):  # the loop reads timing, describe(), input_size ... of the model that runs
        return getattr(self.new, name)

    def segment(self, frame: np.ndarray, frame_order: str = "rgb") -> np.ndarray:
        """The new model's class map of ``frame``; the previous model's when the new one raises."""
        t0 = time.perf_counter()
        if self.started is None:
            self.started = time.monotonic()
        try:
            classes = self.new.segment(frame, frame_order)
        except Exception as e:  # a model on trial never stops the loop
            with self._lock:
                self.errors += 1
                self.frames += 1
                self.first_error = self.first_error or f"{type(e).__name__}: {e}"[:200]
            if self.old is None:
                raise
            return self.old.segment(frame, frame_order)
        new_ms = (time.perf_counter() - t0) * 1e3
        sample = self.old is not None and self.frames % max(1, self.limits.sample_every) == 0
        agree = old_ms = None
        if sample:
            t1 = time.perf_counter()
            try:
                ref = self.old.segment(frame, frame_order)
                old_ms = (time.perf_counter() - t1) * 1e3
                agree = agreement(ref, classes)
                got = classes if classes.shape == ref.shape else resize_mask(classes, ref.shape[:2])
                ref_n = np.bincount(ref.ravel(), minlength=256)[:256]
                got_n = np.bincount(got.ravel(), minlength=256)[:256]
                both = np.bincount(ref[ref == got].ravel(), minlength=256)[:256]
            except Exception:  # the previous model failing is not the new one's fault
                agree = None
        with self._lock:
            self.frames += 1
            self.last_frame = time.monotonic()
            self.new_ms.append(new_ms)
            if agree is not None:
                self.agreements.append(agree)
                self.old_ms.append(old_ms)
                self.inter += both
                self.union += ref_n + got_n - both
                self.old_pixels += ref_n
            if len(self.new_ms) > 4096:
                del self.new_ms[:2048]
        return classes

    def class_iou(self) -> tuple[float | None, dict[int, float]]:
        """Mean IoU with the previous model over the classes covering at least
        ``limits.class_floor`` of its sampled pixels, and each such class's IoU
        (class id -> 0..1); ``(None, {})`` before any sample."""
        with self._lock:
            total = int(self.old_pixels.sum())
            if not total:
                return None, {}
            shown = np.flatnonzero(self.old_pixels >= self.limits.class_floor * total)
            ious = {int(c): float(self.inter[c] / self.union[c]) for c in shown}
        return float(np.mean(list(ious.values()))), ious

    def snapshot(self) -> dict:
        """The counters now: frames, errors, mean agreement, mean class IoU with the previous
        model, median ms of each model, FPS."""
        class_iou = self.class_iou()[0]
        with self._lock:
            elapsed = max((self.last_frame or 0.0) - (self.started or 0.0), 1e-9)
            return {"frames": self.frames, "errors": self.errors, "first_error": self.first_error,
                    "agreement": float(np.mean(self.agreements)) if self.agreements else None,
                    "class_iou": class_iou,
                    "new_ms": float(np.median(self.new_ms)) if self.new_ms else None,
                    "old_ms": float(np.median(self.old_ms)) if self.old_ms else None,
                    "fps": self.frames / elapsed if self.frames > 1 else 0.0}

    def failure(self, previous_fps: float | None = None) -> str | None:
        """The reason to roll back now (errors, agreement, slowdown, FPS), or None."""
        s, lim = self.snapshot(), self.limits
        if s["errors"] > lim.max_errors:
            return f"{s['errors']} frame(s) failed on the new model: {s['first_error']}"
        if s["frames"] < lim.min_frames:
            return None
        if s["agreement"] is not None and s["agreement"] < lim.min_agreement:
            return (f"agrees with the previous model on {s['agreement']:.1%} of pixels, less than "
                    f"{lim.min_agreement:.0%}")
        if s["class_iou"] is not None and s["class_iou"] < lim.min_class_iou:
            from edge_runtime.contract.labels import CATEGORIES
            _, ious = self.class_iou()
            each = ", ".join(f"{CATEGORIES[c] if c < len(CATEGORIES) else c} {v:.0%}" for c, v in ious.items())
            return (f"class maps collapsed: mean IoU with the previous model {s['class_iou']:.1%} ({each}), less "
                    f"than {lim.min_class_iou:.0%} (pixel agreement {s['agreement']:.1%})")
        if s["new_ms"] and s["old_ms"] and s["new_ms"] > lim.max_slowdown * s["old_ms"]:
            return (f"{s['new_ms'] / s['old_ms']:.1f}x slower than the previous model ({s['new_ms']:.2f} ms vs "
                    f"{s['old_ms']:.2f} ms per frame), more than {lim.max_slowdown:g}x")
        if previous_fps and lim.min_fps_share and s["fps"] < lim.min_fps_share * previous_fps:
            return (f"{s['fps']:.1f} FPS, less than {lim.min_fps_share:.0%} of the {previous_fps:.1f} FPS the "
                    "previous model achieved")
        return None
