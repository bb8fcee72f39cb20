"""``qualitative.png``: frames of a held-out sequence, their ground truth and
an int8 model's prediction through the LiteRT interpreter
(:class:`edge_runtime.model.segmenter.DeviceSegmenter`, as on the vehicle),
each prediction titled with its own frame's mIoU-7.

The model is an argument: the held-out *twin* of the shipped model (same
recipe, sequence 0006R0 never trained on), so the frames are ones the model
has not seen; the shipped model itself trained on every frame.
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np

from roadseg_lab.figures import style
from roadseg_lab.pages import IMG

HOLDOUT = "0006R0"


def pick(samples: list, k: int) -> list:
    """``k`` frames spread evenly over ``samples`` (the first, the last and
    equal steps between; all of them when there are at most ``k``).
    Raises ``ValueError`` when ``samples`` is empty or ``k`` < 1."""
    if not samples or k < 1:
        raise ValueError(f"no frames to pick from ({len(samples)} frames, {k} wanted)")
    idx = sorted(set(np.linspace(0, len(samples) - 1, min(k, len(samples))).round().astype(int).tolist()))
    return [samples[i] for i in idx]


def predict(model: Path, samples: list, fmt: str, threads: int = 1) -> list[tuple[str, np.ndarray, np.ndarray,
                                                                                 np.ndarray, float]]:
    """``(name, image RGB [H,W,3], truth [H,W], prediction [H,W], mIoU-7)``
    per sample: ``model`` through :class:`DeviceSegmenter` with ``threads``
    interpreter threads, the prediction resized to the label's resolution
    (nearest) as :func:`edge_runtime.eval.evaluation.evaluate_segmenters`
    scores it. Raises what the segmenter and the dataset readers raise."""
    from edge_runtime.eval.evaluation import evaluate_segmenter
    from edge_runtime.model.segmenter import DeviceSegmenter
    seg = DeviceSegmenter(model, threads=threads)
    out = []
    for s in samples:
        cm, _, kept = evaluate_segmenter(seg.segment_classes, [s], fmt, keep=1, progress_every=0)
        name, img, lab, pred = kept[0]
        out.append((name, img, lab, pred, cm.compute().miou7))
    return out


def render(model: Path, data: Path, out_dir: Path = IMG, frames: int = 4, split: str = f"holdout:{HOLDOUT}",
           threads: int = 1) -> Path:
    """Draw ``frames`` frames of ``split`` of the dataset at ``data`` as rows
    of image | ground truth | prediction of ``model`` (an int8 .tflite with
    its sidecar), with the palette's legend, the CPU and the date; writes
    ``qualitative.png`` in ``out_dir`` and returns it. Raises ``ValueError``
    for an empty split and what :func:`predict` raises."""
    from edge_runtime.contract.labels import CATEGORIES, PALETTE, colorize
    from edge_runtime.eval.bench import machine_info
    from edge_runtime.eval.datasets import list_samples
    fmt, samples = list_samples(data, split)
    rows = predict(Path(model), pick(samples, frames), fmt, threads)
    plt = style.pyplot()
    from matplotlib.patches import Patch
    top_in, row_in, foot_in = 0.45, 2.45, 1.05  # title; one row (a 4:3 frame 2.95 in wide + its title); legend + caption
    fig, axes = plt.subplots(len(rows), 3, figsize=(9, top_in + row_in * len(rows) + foot_in), squeeze=False)
    for ax_row, (name, img, lab, pred, miou7) in zip(axes, rows):
        for ax, pic, title in zip(ax_row, (img, colorize(lab), colorize(pred)),
                                  (name, "ground truth", f"int8 prediction (this frame: mIoU-7 {miou7:.2f})")):
            ax.imshow(pic, interpolation="nearest")
            ax.set_title(title, fontsize=8, pad=3)
            ax.set_axis_off()
    h = fig.get_figheight()
    fig.legend(handles=[Patch(facecolor=PALETTE[i] / 255, edgecolor="black", linewidth=0.4, label=c)
                        for i, c in enumerate(CATEGORIES)], loc="upper center", ncol=len(CATEGORIES),
               fontsize=8, frameon=False, bbox_to_anchor=(0.5, foot_in / h))
    m = machine_info()
    shown = f"{Path(model).parent.name}/{Path(model).name}"
    fig.suptitle(f"CamVid {split.split(':')[-1]}, held out ({shown} never trained on it): image | "
                 "ground truth | int8 prediction", fontsize=10, y=1 - 0.12 / h)
    style.caption(fig, f"{shown} ({_input(model)}) through the LiteRT interpreter ({m['interpreter']}) on "
                  f"{m['cpu']} ({m['cores']} cores), {dt.date.today().isoformat()}; {len(rows)} of {len(samples)} "
                  "frames, evenly spread. Not shown: the shipped model itself (it trained on these frames; its twin, same "
                  "recipe, did not), the other frames, other roads, night, rain, other cameras.",
                  width=150)
    fig.subplots_adjust(left=0.01, right=0.99, top=1 - top_in / h, bottom=(foot_in - 0.05) / h, hspace=0.12,
                        wspace=0.03)
    return style.save(fig, Path(out_dir) / "qualitative.png", dpi=90)


def _input(model: Path) -> str:
    """``"HxW"`` of the model's input, from its sidecar (``?`` when it has none)."""
    import json
    try:
        i = json.loads(Path(model).with_suffix(".json").read_text())["input"]
        return f"{i['height']}x{i['width']} input"
    except (OSError, ValueError, KeyError, TypeError):
        return "input size unknown"
