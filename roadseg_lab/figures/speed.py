"""``fps_vs_miou.png``: held-out accuracy against end-to-end speed, both of
the same int8 file at the same input size.

Accuracy is the model's own sidecar ``accuracy`` block (int8 mIoU-7 on a
``holdout:`` split, written by ``roadseg-calibrate`` through the LiteRT
interpreter); speed is :func:`edge_runtime.eval.bench.benchmark` (what
``roadseg-bench --json`` prints: models interleaved in rounds) on the
machine that renders the figure, whose CPU the figure names.
"""
from __future__ import annotations

import json
from pathlib import Path

from roadseg_lab.figures import style
from roadseg_lab.pages import IMG


def heldout_accuracy(model: Path) -> tuple[float, str, int]:
    """``(int8 mIoU-7, split, images)`` from the sidecar beside ``model``
    (``X.tflite`` -> ``X.json``). Raises ``OSError`` for a missing sidecar and
    ``ValueError`` when its ``accuracy`` block is not on a ``holdout:`` split
    (a score on frames the model trained on would flatter it)."""
    side = Path(model).with_suffix(".json")
    acc = json.loads(side.read_text()).get("accuracy") or {}
    split = str(acc.get("split", ""))
    if not split.startswith("holdout:") or "quantized" not in acc:
        raise ValueError(f"{side}: no held-out int8 accuracy (accuracy.split is {split or 'missing'!r}); "
                         "use the held-out twin, not a model trained on every frame")
    return float(acc["quantized"]["miou7"]), split, int(acc.get("images", 0))


def measure(models: list[Path], threads: int = 2, frames: int = 60, rounds: int = 3,
            frame_size: tuple[int, int] = (360, 480)) -> dict:
    """``roadseg-bench``'s report of ``models`` at ``threads`` interpreter
    threads: ``frames`` measured frames each, interleaved in ``rounds``,
    synthetic camera frames of ``frame_size`` (CamVid's 360x480). Raises what
    :func:`edge_runtime.eval.bench.benchmark` raises."""
    from edge_runtime.eval.bench import benchmark
    return benchmark([str(m) for m in models], [threads], frames=frames, warmup=10, rounds=rounds,
                     frame_size=frame_size)


def points(labelled: dict[str, Path], bench: dict) -> list[dict]:
    """One point per ``labelled`` model (label -> .tflite): its held-out
    accuracy and its e2e FPS in ``bench`` (matched by path). Raises
    ``ValueError`` for a model the report does not hold, or one that holds
    it at several thread counts, and what :func:`heldout_accuracy` raises."""
    out = []
    for label, model in labelled.items():
        rows = [r for r in bench["results"] if Path(r["path"]).resolve() == Path(model).resolve()]
        if len(rows) != 1:
            raise ValueError(f"{model}: the benchmark report has {len(rows)} results for it (want one thread count)")
        miou7, split, images = heldout_accuracy(model)
        out.append({"label": label, "miou7": miou7, "split": split, "images": images, "fps": rows[0]["e2e_fps"],
                    "input": rows[0]["input"], "threads": rows[0]["threads"]})
    return out


def render(labelled: dict[str, Path], bench: dict, out_dir: Path = IMG, note: str = "") -> Path:
    """Draw :func:`points` (x: e2e FPS from 0, y: held-out mIoU-7 from 0 to
    1), each model in a palette colour with its label, input size and both
    numbers in the legend; the CPU, threads and date from ``bench``'s machine
    block in the title; ``note`` (what else ran) in the caption. Writes
    ``fps_vs_miou.png`` in ``out_dir`` and returns it."""
    pts = points(labelled, bench)
    m, st = bench["machine"], bench["settings"]
    plt = style.pyplot()
    fig, ax = plt.subplots(figsize=(8.5, 4.6))
    for i, p in enumerate(pts):
        ax.scatter(p["fps"], p["miou7"], s=70, color=style.series_colour(i), edgecolor="black", linewidth=0.5,
                   zorder=3, label=f"{p['label']}\n{p['input']}: mIoU-7 {p['miou7']:.3f}, {p['fps']:.1f} FPS")
    ax.set_xlim(0, max(p["fps"] for p in pts) * 1.25)
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.set_xlabel(f"end-to-end FPS, int8, {pts[0]['threads']} threads (roadseg-bench; higher is faster)")
    ax.set_ylabel(f"held-out mIoU-7, int8 (CamVid {pts[0]['split'].split(':')[1]})")
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1), fontsize=8, frameon=False, labelspacing=1.2)
    vnni = ", AVX-512 VNNI" if m.get("avx512_vnni") else ""
    ax.set_title(f"Accuracy and speed of the same int8 files at their own input size\n{m['cpu']} ({m['cores']} cores"
                 f"{vnni}, {m['interpreter']}), {m['date'][:10]}")
    text = (f"y: mIoU-7 (void ignored) on the {pts[0]['images']} frames of the held-out sequence, from each model's "
            f"sidecar (roadseg-calibrate, LiteRT). x: end-to-end FPS of roadseg-bench on synthetic "
            f"{st['frame_size'][0]}x{st['frame_size'][1]} frames (resize, invoke, argmax, coverage), {st['frames']} "
            f"frames per model in {st['rounds']} interleaved rounds{'; ' + note if note else ''}. Not shown: the spread "
            "of FPS, a Raspberry Pi's or a Jetson's speed (run roadseg-bench there), other roads.")
    bottom = style.bottom_margin(fig, style.caption(fig, text), extra_in=0.45)
    fig.subplots_adjust(left=0.09, right=0.6, top=0.86, bottom=bottom)
    return style.save(fig, Path(out_dir) / "fps_vs_miou.png")
