"""The pictures of ``docs/img``, each rendered from measured numbers or
models by ``python -m roadseg_lab figures NAME`` (model paths are arguments,
so a newer model re-renders the same picture):

* ``pretrained-per-class``, ``fast1-kd-per-class``: per-class IoU bars from
  the measurement sections' tables (:mod:`.per_class`)
* ``gpu-students-kd``: KD minus labels only during GPU training (:mod:`.kd_gain`)
* ``kd-share``: each distillation setting of issue 21 beside its labels-only
  twin and its teacher (:mod:`.kd_share`)
* ``qualitative``: held-out frames, ground truth and an int8 model's
  prediction through the LiteRT interpreter (:mod:`.qualitative`)
* ``fps-vs-miou``: held-out accuracy against end-to-end FPS at the same input
  size, measured here (:mod:`.speed`)
* ``soak-rss``: the soak runs' resident memory (:mod:`.soak_rss`)

``dashboard.png`` is the fleet dashboard in a real headless Chromium, taken
by its browser test (``ROADSEG_SCREENSHOT_DIR=docs/img python -m pytest
tests/fleet/test_dashboard_browser.py -k shows_the_fleet``), with staged
vehicles. Every figure uses :data:`edge_runtime.contract.labels.PALETTE`
(:mod:`.style`) and states what it measured, on what hardware and when.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from roadseg_lab.pages import IMG

#: every figure ``python -m roadseg_lab figures`` renders, in the order it renders them
NAMES = ("pretrained-per-class", "fast1-kd-per-class", "gpu-students-kd", "kd-share", "soak-rss", "qualitative",
         "fps-vs-miou")


@dataclass
class Settings:
    """What the figures that need models read: ``twin`` (an int8 .tflite
    never trained on ``data``'s held-out sequence) for ``qualitative``;
    ``models`` (label -> int8 .tflite with a held-out accuracy block) for
    ``fps-vs-miou``, measured unless ``bench`` names a ``roadseg-bench --out``
    report of them (``bench_out`` keeps a new one); ``note`` says what else
    ran during the measurement."""

    out_dir: Path = IMG
    data: Path | None = None
    twin: Path | None = None
    frames: int = 4
    models: dict[str, Path] = field(default_factory=dict)
    bench: Path | None = None
    bench_out: Path | None = None
    bench_frames: int = 150
    rounds: int = 5
    threads: int = 2
    note: str = ""


def render(name: str, s: Settings) -> Path:
    """Render figure ``name`` (one of :data:`NAMES`) into ``s.out_dir``;
    returns the PNG. Raises ``ValueError`` for an unknown name or a missing
    setting the figure needs, and what the figure's module raises."""
    from roadseg_lab.figures import kd_gain, kd_share, per_class, qualitative, soak_rss, speed
    if name in per_class.FIGURES:
        return per_class.render(name, s.out_dir)
    if name == "gpu-students-kd":
        return kd_gain.render(s.out_dir)
    if name == "kd-share":
        return kd_share.render(s.out_dir)
    if name == "soak-rss":
        return soak_rss.render(s.out_dir)
    if name == "qualitative":
        if not (s.twin and s.data):
            raise ValueError("qualitative needs --twin MODEL.tflite and --data CAMVID_DIR")
        return qualitative.render(s.twin, s.data, s.out_dir, frames=s.frames)
    if name == "fps-vs-miou":
        if not s.models:
            raise ValueError("fps-vs-miou needs --model LABEL=MODEL.tflite (repeat for each model)")
        bench = json.loads(Path(s.bench).read_text()) if s.bench else speed.measure(
            list(s.models.values()), s.threads, s.bench_frames, s.rounds)
        if s.bench_out:
            from edge_runtime import atomic
            atomic.write_text(s.bench_out, json.dumps(bench, indent=1) + "\n")
        return speed.render(s.models, bench, s.out_dir, s.note)
    raise ValueError(f"unknown figure {name!r} (one of {', '.join(NAMES)})")
