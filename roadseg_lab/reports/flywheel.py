"""The flywheel's table and figure (issue 30, item 4) from ``scripts/flywheel_camvid.sh``'s runs.

    python -m roadseg_lab flywheel-report --runs runs/flywheel [--markdown OUT.md] [--plot docs/img/flywheel.png]

Reads ``RUNS/scores/<arm>/metrics.json`` (int8, roadseg-eval on the test half
of 0006R0; the teacher's in float) and ``RUNS/kept/<arm>.keep.json`` (how many
frames each vehicle kept). Rows: the base student, its labels-only fine-tune
(the twin of each arm: same epochs, same seed), and + random / + selected
frames at each N and seed, with mIoU-7, the per-category IoU (void left out)
and the share of the teacher's lead over the twin recovered:
``(arm - twin) / (teacher - twin)``.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from roadseg_lab.tables import f3, signed, table

CLASSES7 = ("flat", "construction", "object", "nature", "sky", "human", "vehicle")
ARM = re.compile(r"^(selected|random)(\d+)-s(\d+)$")


def _metrics(runs: Path, name: str) -> dict | None:
    path = runs / "scores" / name / "metrics.json"
    if not path.is_file() or path.stat().st_size > 1 << 20:
        return None
    return json.loads(path.read_text())["metrics"]


def collect(runs: str | Path) -> dict:
    """``{"teacher": metrics | None, "base": ..., "twins": {seed: metrics}, "arms": [{"mode", "n", "seed",
    "kept", "metrics"}]}`` from the run folder (missing runs are left out)."""
    runs = Path(runs)
    out = {"teacher": _metrics(runs, "teacher-lite2"), "base": _metrics(runs, "base-s0"), "twins": {}, "arms": []}
    for d in sorted((runs / "scores").glob("*")) if (runs / "scores").is_dir() else []:
        if (m := re.fullmatch(r"labels-s(\d+)", d.name)) and (got := _metrics(runs, d.name)):
            out["twins"][int(m.group(1))] = got
        elif (m := ARM.match(d.name)) and (got := _metrics(runs, d.name)):
            keep = runs / "kept" / f"{d.name}.keep.json"
            kept = json.loads(keep.read_text())["kept"] if keep.is_file() else None
            out["arms"].append({"mode": m.group(1), "n": int(m.group(2)), "seed": int(m.group(3)), "kept": kept,
                                "metrics": got})
    out["arms"].sort(key=lambda a: (a["n"], a["seed"], a["mode"] != "random"))
    return out


def share(arm: float, twin: float, teacher: float | None) -> float | None:
    """The share of the teacher's lead over the twin that ``arm`` recovered (None without a lead)."""
    if teacher is None or teacher <= twin:
        return None
    return (arm - twin) / (teacher - twin)


def markdown(data: dict) -> list[str]:
    """The table's lines."""
    teacher = data["teacher"]["miou7"] if data["teacher"] else None
    rows = []

    def line(label, n, seed, kept, m, twin):
        iou = m["iou7"]
        gain = signed(100 * (m["miou7"] - twin["miou7"]), 1) if twin is not None else "-"
        rec = share(m["miou7"], twin["miou7"], teacher) if twin is not None else None
        rows.append([label, n, seed, kept if kept is not None else "-", f3(m["miou7"]),
                     *(f3(iou.get(c)) for c in CLASSES7), gain, "-" if rec is None else f"{100 * rec:+.0f} %"])
    if data["teacher"]:
        line("teacher (float)", "-", "-", "-", data["teacher"], None)
    if data["base"]:
        line("base student (20 epochs)", "-", 0, "-", data["base"], None)
    for seed, twin in sorted(data["twins"].items()):
        line("labels only (+5 epochs)", 0, seed, 0, twin, twin)
    for a in data["arms"]:
        line(f"+ {a['mode']}", a["n"], a["seed"], a["kept"], a["metrics"], data["twins"].get(a["seed"]))
    header = ["model", "N", "seed", "kept", "mIoU-7", *CLASSES7, "vs labels only (points)", "teacher's lead recovered"]
    return table(header, rows)


def plot(data: dict, path: str | Path) -> Path:
    """mIoU-7 per arm at each N as points (random beside selected, one point per seed, labelled), the
    labels-only twins and the teacher as lines. Points, not bars: the axis does not start at 0."""
    from edge_runtime import atomic
    from roadseg_lab.figures.style import bottom_margin, caption, pyplot, series_colour
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8.5, 4.8))
    groups = sorted({a["n"] for a in data["arms"]})
    values, seen = [], set()
    for gi, n in enumerate(groups):
        for a in (a for a in data["arms"] if a["n"] == n):
            v = 100 * a["metrics"]["miou7"]
            values.append(v)
            x = gi + (-0.12 if a["mode"] == "random" else 0.12) + 0.05 * a["seed"]
            label = f"+ {a['mode']} frames" if a["mode"] not in seen else None
            seen.add(a["mode"])
            ax.plot([x], [v], "o" if a["mode"] == "selected" else "s", ms=9, label=label,
                    color=series_colour(0 if a["mode"] == "random" else 1))
            ax.annotate(f"seed {a['seed']}", (x, v), textcoords="offset points", xytext=(8, -3), fontsize=8)
    for seed, twin in sorted(data["twins"].items()):
        values.append(100 * twin["miou7"])
        ax.axhline(100 * twin["miou7"], color="0.35", linestyle="--" if seed == 0 else ":",
                   label=f"labels only, seed {seed}")
    if data["teacher"]:
        values.append(100 * data["teacher"]["miou7"])
        ax.axhline(100 * data["teacher"]["miou7"], color=series_colour(2), label="teacher (float)")
    if values:
        ax.set_ylim(max(0.0, min(values) - 2), max(values) + 1.5)
    ax.set_xlim(-0.6, len(groups) - 0.4)
    ax.set_xticks(range(len(groups)), [f"N = {n} frames kept" for n in groups])
    ax.set_ylabel("mIoU-7, int8 (%)")
    ax.set_title("Kept frames labelled by the teacher: the student on a road it never saw")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    lines = caption(fig, "Lite0 stride-4 student fine-tuned 5 epochs from one base on CamVid labels + the kept "
                         "frames (teacher pseudo-labels, unsure pixels ignored, 1/8 of each batch) or on labels "
                         "only; int8 on the 51 frames of 0006R0 no vehicle kept. The y axis does not start at 0.")
    fig.subplots_adjust(right=0.74, bottom=bottom_margin(fig, lines))
    with atomic.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
    return Path(path)


def report(runs: str, markdown_out: str | None = None, plot_out: str | None = None) -> str:
    """Collect, write the Markdown (and the figure); returns the Markdown text."""
    from edge_runtime import atomic
    data = collect(runs)
    text = "\n".join(markdown(data)) + "\n"
    if markdown_out:
        atomic.write_text(markdown_out, text)
    if plot_out and data["arms"]:
        plot(data, plot_out)
    return text
