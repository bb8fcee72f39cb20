"""``gpu-students-kd.png``: what knowledge distillation gained over labels
alone while the students trained on the GPU, epoch by epoch.

Read from the "KD minus labels only" table of
``docs/measurements/06-gpu-students.md`` (held-out mIoU-7 points at the
epochs where both runs of a pair were evaluated). The per-epoch training
logs themselves did not outlive that session, so the figure draws the
differences the page reports, not the two curves.
"""
from __future__ import annotations

from pathlib import Path

from roadseg_lab.figures import style
from roadseg_lab.pages import IMG, MEASUREMENTS
from roadseg_lab.tables import read_table

SOURCE = MEASUREMENTS / "06-gpu-students.md"
STUDENTS = {"lite0": "LR-ASPP on EfficientNet-Lite0 (ImageNet encoder)", "fast2": "roadseg-fast, width 2 (from scratch)"}
TITLE = ("KD minus labels only while training at 352x480 on one NVIDIA H200 (JAX, Keras 3, float32), 2026-11-26")
NOTE = ("Each point: held-out mIoU-7 of the KD run minus that of its labels-only partner (same student, seed and "
        "schedule, both running side by side on the GPU), in points, from the trainer's own float evaluation of all "
        "101 frames of CamVid 0006R0 (never trained on); the teacher is FPN-EfficientNet-Lite2 at 0.672. Numbers: "
        "06-gpu-students.md (docs/RESULTS.md). Not shown: the absolute scores (the table there), epochs where only one "
        "run of a pair was evaluated, int8 models, more than two seeds.")


def read_gains(source: Path = SOURCE) -> dict[tuple[str, str], dict[int, float]]:
    """``{(student, seed): {epoch: KD minus labels only, points}}`` from the
    table of ``source`` whose header starts ``student | seed | epoch 25``;
    empty cells (an epoch one run did not reach) are left out. Raises
    ``OSError``/``ValueError`` for a missing file, table or a bad number."""
    gains = {}
    for r in read_table(Path(source).read_text(), ["student", "seed", "epoch 25"]):
        epochs = {int(k.split()[1]): float(v) for k, v in r.items() if k.startswith("epoch ") and v}
        gains[(r["student"], r["seed"])] = epochs
    return gains


def render(out_dir: Path = IMG, source: Path = SOURCE) -> Path:
    """Draw :func:`read_gains` as one panel per student (x: epoch, y: points,
    a zero line: no difference), seeds in palette colours, the legend outside
    the axes; writes ``gpu-students-kd.png`` in ``out_dir`` and returns it."""
    gains = read_gains(source)
    plt = style.pyplot()
    fig, axes = plt.subplots(1, len(STUDENTS), figsize=(11, 4.2), sharey=True)
    for ax, (student, title) in zip(axes, STUDENTS.items()):
        ax.axhline(0, color="black", lw=0.8)
        for (s, seed), epochs in sorted(gains.items()):
            if s == student:
                e = sorted(epochs)
                ax.plot(e, [epochs[k] for k in e], "-o", ms=4, color=style.series_colour(int(seed)),
                        label=f"seed {seed}")
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.set_xlim(0, 150)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("KD minus labels only,\nheld-out mIoU-7 (points; > 0: KD ahead)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center right", title="KD vs labels only,\nsame seed", fontsize=8)
    fig.suptitle(TITLE, x=0.45)
    bottom = style.bottom_margin(fig, style.caption(fig, NOTE))
    fig.subplots_adjust(left=0.09, right=0.84, top=0.86, bottom=bottom, wspace=0.08)
    return style.save(fig, Path(out_dir) / "gpu-students-kd.png")
