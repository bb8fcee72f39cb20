"""Per-class IoU on the held-out sequence as small multiples: one panel per
category, drawn in that category's palette colour, the models down the
shared y axis (so no legend covers a bar), int8 hatched beside its float.

The numbers are read from the per-class table of a measurement section
(``docs/measurements/*.md``, the source of those sections of
``docs/RESULTS.md``): the figure shows what the page says, nothing else.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edge_runtime.contract.labels import CATEGORIES, VOID
from roadseg_lab.figures import style
from roadseg_lab.pages import IMG, MEASUREMENTS
from roadseg_lab.tables import read_table

#: the 7 scored categories of the mIoU-7 convention (void ignored), in CATEGORIES order
CLASSES7 = tuple(c for i, c in enumerate(CATEGORIES) if i != VOID)
TEACHER = ("FPN-EfficientNet-Lite2 teacher: 352x480, trained on one NVIDIA H200 (JAX), imported and scored as a "
           "SavedModel on AMD EPYC (2 cores).")


@dataclass(frozen=True)
class PerClassFigure:
    """One per-class figure: the measurement section it reads (``source``,
    its table whose header starts ``model | flat``), the PNG it writes, its
    title and the caption line naming the students' hardware."""

    source: Path
    png: str
    title: str
    students: str


FIGURES = {
    "pretrained-per-class": PerClassFigure(
        MEASUREMENTS / "05-pretrained.md", "pretrained-per-class.png",
        "Per-class IoU on CamVid 0006R0 (101 frames, never trained on): Lite0 students at 192x256, KD vs labels only",
        "Students: LR-ASPP on EfficientNet-Lite0 (ImageNet encoder), 192x256, trained on AMD EPYC (2 cores); float: "
        "SavedModel, int8: LiteRT interpreter, both on that CPU; measured 2026-11-26."),
    "fast1-kd-per-class": PerClassFigure(
        MEASUREMENTS / "08-fast1-kd.md", "fast1-kd-per-class.png",
        "Per-class IoU on CamVid 0006R0 (101 frames, never trained on): roadseg-fast w1 at 352x480, KD vs labels only",
        "Students: roadseg-fast width 1 (no pretrained encoder), 352x480, trained on AMD EPYC (2 cores); float: "
        "SavedModel, int8: LiteRT interpreter, both on that CPU; measured 2026-11-26."),
}


def read_per_class(source: Path) -> dict[str, dict[str, float]]:
    """``{model: {class: IoU}}`` from the table of ``source`` whose header
    starts ``model | flat``, in the table's order. Raises ``OSError`` for an
    unreadable file, ``ValueError`` when the table is missing or a cell of
    :data:`CLASSES7` is not a number."""
    rows = read_table(Path(source).read_text(), ["model", "flat"])
    try:
        return {r["model"]: {c: float(r[c]) for c in CLASSES7} for r in rows}
    except (KeyError, ValueError) as e:
        raise ValueError(f"{source}: a per-class cell is missing or not a number ({e})") from None


def per_class_bars(per_class: dict[str, dict[str, float | None]], title: str, note: str, out: Path) -> Path:
    """Draw ``per_class`` ({model: {class: IoU 0..1 or None}}, models top to
    bottom in dict order; a name holding ``int8`` is hatched) as one panel
    per class of :data:`CLASSES7`, x from 0 to 1, with ``title`` above and
    ``note`` (what was measured, on what) below; a PNG at ``out``. A missing
    IoU is drawn as no bar and marked "n/a". Returns ``out``."""
    plt = style.pyplot()
    models = list(per_class)
    fig, axes = plt.subplots(1, len(CLASSES7), figsize=(12, 1.6 + 0.28 * len(models)), sharey=True)
    ys = list(range(len(models)))[::-1]
    for ax, cls in zip(axes, CLASSES7):
        colour = style.class_colour(cls)
        for y, m in zip(ys, models):
            v = per_class[m].get(cls)
            if v is None:
                ax.text(0.02, y, "n/a", va="center", fontsize=7)
                continue
            ax.barh(y, v, 0.8, color=colour, edgecolor="black", linewidth=0.4,
                    hatch="////" if "int8" in m else None)
            ax.text(v + 0.02, y, f"{v:.2f}", va="center", fontsize=6.5)
        ax.set_xlim(0, 1.25)  # room for the value after a bar near 1
        ax.set_xticks([0, 0.5, 1.0], ["0", "0.5", "1"])
        ax.set_title(cls, color="black", fontsize=9)
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(ys, models, fontsize=8)
    fig.suptitle(title)
    bottom = style.bottom_margin(fig, style.caption(fig, note))
    axes[len(axes) // 2].set_xlabel("IoU of the class (0..1; mIoU-7 convention: void ground truth ignored)")
    fig.subplots_adjust(left=0.15, right=0.99, top=1 - 0.55 / fig.get_figheight(), bottom=bottom, wspace=0.1)
    return style.save(fig, out)


def render(name: str, out_dir: Path = IMG) -> Path:
    """Render the figure ``name`` of :data:`FIGURES` into ``out_dir``;
    returns the PNG. Raises ``KeyError`` for an unknown name and what
    :func:`read_per_class` raises."""
    f = FIGURES[name]
    note = (f"{f.students}\n{TEACHER} Hatched: int8. Numbers: {f.source.name} (docs/RESULTS.md). Not shown: other "
            "sequences, seed noise beyond these seeds, speed.")
    return per_class_bars(read_per_class(f.source), f.title, note, Path(out_dir) / f.png)
