"""``kd-share.png``: each distillation setting of issue 21 beside its
labels-only twin and its teacher, on the held-out sequence.

Read from the table of ``docs/RESULTS.md`` whose header starts
``setting | seed | labels only | KD | teacher`` (float mIoU-7 on all 101
frames of CamVid 0006R0, never trained on), so the picture and the page
cannot disagree. The share of the teacher's lead recovered is
(KD - labels only) / (teacher - labels only), the issue's definition.
"""
from __future__ import annotations

from pathlib import Path

from roadseg_lab.figures import style
from roadseg_lab.pages import IMG, RESULTS
from roadseg_lab.tables import read_table

HEADER = ["setting", "seed", "labels only", "KD", "teacher"]
#: the table's share column when it has one (computed there from unrounded scores), else the share is computed here
SHARE = "share of the teacher's lead recovered"
TITLE = "Distillation vs labels only, LR-ASPP Lite0 students at 192x256, 20 epochs, 2-core CPU, 2026-11-30"
NOTE = ("Float mIoU-7 of each run's export on all 101 frames of CamVid 0006R0 (held out from training; best epoch picked "
        "on it, for every run alike). Bars: the labels-only twin (same schedule, views and CutMix draws) and the KD run; "
        "the black tick: the teacher as the student sees it (192x256 frames, its test-time views); the label: share of "
        "the teacher's lead recovered, (KD - labels only) / (teacher - labels only). Numbers: docs/RESULTS.md, issue 21. "
        "Not shown: int8, runs beyond two seeds, the literature's schedules (about 1,700 epochs).")


def read_rows(source: Path = RESULTS) -> list[dict]:
    """``[{"setting", "seed", "labels", "kd", "teacher", "share"}]`` (mIoU-7,
    0..1; ``share`` a fraction) from the table of ``source`` whose header
    starts :data:`HEADER`: the share from its :data:`SHARE` column ("+10%")
    when there is one, else (KD - labels only) / (teacher - labels only) of
    the shown scores. Raises ``OSError``/``ValueError`` for a missing file
    or table or a bad number."""
    rows = []
    for r in read_table(Path(source).read_text(), HEADER):
        row = {"setting": r["setting"], "seed": r["seed"], "labels": float(r["labels only"]), "kd": float(r["KD"]),
               "teacher": float(r["teacher"])}
        row["share"] = float(r[SHARE].strip().rstrip("%").strip()) / 100 if r.get(SHARE) else \
            (row["kd"] - row["labels"]) / (row["teacher"] - row["labels"])
        rows.append(row)
    return rows


def render(out_dir: Path = IMG, source: Path = RESULTS) -> Path:
    """Draw :func:`read_rows` as horizontal bar pairs (labels only, KD) per
    setting and seed with the teacher as a tick and the share recovered as a
    label; the x axis spans the scores' range with a margin (not from 0: the
    differences are a few points, and the axis says where it starts). Writes
    ``kd-share.png`` in ``out_dir`` and returns it."""
    rows = read_rows(source)
    plt = style.pyplot()
    fig, ax = plt.subplots(figsize=(12, 1.6 + 0.55 * len(rows)))
    lo = min(min(r["labels"], r["kd"]) for r in rows) - 0.02
    hi = max(r["teacher"] for r in rows) + 0.06
    for i, r in enumerate(rows):
        y = len(rows) - 1 - i
        ax.barh(y + 0.18, r["labels"] - lo, left=lo, height=0.34, color=style.series_colour(3),
                label="labels only" if i == 0 else None)
        ax.barh(y - 0.18, r["kd"] - lo, left=lo, height=0.34, color=style.series_colour(0),
                label="KD" if i == 0 else None)
        ax.plot([r["teacher"]] * 2, [y - 0.4, y + 0.4], color="black", lw=2, label="teacher" if i == 0 else None)
        ax.text(r["teacher"] + 0.003, y, f"{r['share']:+.0%} of the lead", va="center", fontsize=8)
    ax.set_yticks(range(len(rows)), [f"{r['setting']}, seed {r['seed']}" for r in rows][::-1])
    ax.set_xlim(lo, hi)
    ax.set_xlabel(f"held-out mIoU-7 (axis starts at {lo:.2f})")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="lower left", bbox_to_anchor=(0, 1.0), ncol=3, fontsize=8, frameon=False)
    fig.suptitle(TITLE)
    bottom = style.bottom_margin(fig, style.caption(fig, NOTE))
    fig.subplots_adjust(left=0.40, right=0.97, top=1 - 0.8 / fig.get_figheight(), bottom=bottom)
    return style.save(fig, Path(out_dir) / "kd-share.png")
