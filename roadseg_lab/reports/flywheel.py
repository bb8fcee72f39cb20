"""The flywheel's table and figure (issue 30, item 4) from ``scripts/flywheel_camvid.sh``'s runs.

    python -m roadseg_lab flywheel-report --runs runs/flywheel [--markdown OUT.md] [--plot docs/img/flywheel.png]

Reads ``RUNS/scores/<arm>/metrics.json`` (int8, roadseg-eval on the test half
of 0006R0), the teacher's score in float (``RUNS/scores/labellers.json``,
``python -m roadseg_lab teacher-eval``'s rows, whose last is every labeller
together with the test-time views that labelled the kept frames; without it
``RUNS/scores/teacher-lite2/metrics.json``) and ``RUNS/kept/<arm>.keep.json`` (how many
frames each vehicle kept). Rows: the base student, its labels-only fine-tune
(the twin of each arm: same epochs, same seed), and + random / + selected
frames at each N and seed, with mIoU-7, the per-category IoU (void left out)
and the share of the teacher's lead over the twin recovered:
``(arm - twin) / (teacher - twin)``. A second table sums up the seeds: for
each N and way of choosing, the mean gain over the arm's own twin in points,
its sample standard deviation and range, and selected minus random paired
by seed (the same twin, the same fine-tuning seed). With ``--data`` and
``--drive`` (the split the vehicles drove, whose human labels no model
learned from), a third table weighs the teacher's labels of each arm's kept
frames against those human labels (:func:`label_quality`).

    python -m roadseg_lab flywheel-compare --runs 'labeller=runs/flywheel2' --runs 'human labels=runs/oracle' \
        [--markdown OUT.md] [--plot OUT.png]

sets run folders side by side (:func:`compare`): the same kept frames taught
from different labels (or under another schedule), each arm's gain over its
own folder's twin on the seeds every folder ran, so a difference is the
labels', not a seed's. Gains, not scores: under another schedule the twin
differs too (from scratch, the twin is the base), so the arms' mean mIoU-7 is
given beside them.
"""
from __future__ import annotations

import json
import re
import statistics
from pathlib import Path

import pydantic

from roadseg_lab.recipes.flywheel import drive_index
from roadseg_lab.tables import f3, signed, table

CLASSES7 = ("flat", "construction", "object", "nature", "sky", "human", "vehicle")
ARM = re.compile(r"^(selected|random)(\d+)-s(\d+)$")


#: the largest metrics or teacher-eval file read (bytes)
MAX_SCORES_JSON = 1 << 20


class _TeacherRow(pydantic.BaseModel):
    """One row of ``python -m roadseg_lab teacher-eval --out`` (roadseg_lab.checks.teachers.score)."""
    teachers: list[str] = pydantic.Field(min_length=1)
    tta: str
    miou7: float = pydantic.Field(ge=0.0, le=1.0)
    iou7: dict[str, float]


def _teacher(runs: Path) -> dict | None:
    """The teacher's metrics (``miou7``, ``iou7``) and ``label`` for the table: the last row of
    ``scores/labellers.json`` when it exists, else ``scores/teacher-lite2/metrics.json``, else None.
    Raises ValueError for a labellers.json over MAX_SCORES_JSON or not a non-empty list of teacher-eval rows."""
    path = runs / "scores" / "labellers.json"
    if not path.is_file():
        m = _metrics(runs, "teacher-lite2")
        return None if m is None else {**m, "label": "teacher (float)"}
    if path.stat().st_size > MAX_SCORES_JSON:
        raise ValueError(f"{path}: {path.stat().st_size} bytes, more than {MAX_SCORES_JSON}")
    try:
        rows = pydantic.TypeAdapter(list[_TeacherRow]).validate_json(path.read_bytes())
    except pydantic.ValidationError as e:
        raise ValueError(f"{path}: not teacher-eval's rows ({e.error_count()} errors, first: "
                         f"{e.errors()[0]['msg']})") from None
    if not rows:
        raise ValueError(f"{path}: no row")
    last = rows[-1]  # every labeller together, with the views: what labelled the kept frames
    names = " + ".join(Path(t).name for t in last.teachers)
    views = f", {last.tta} views" if last.tta else ""
    return {"miou7": last.miou7, "iou7": last.iou7,
            "label": f"{'teachers' if len(last.teachers) > 1 else 'teacher'} {names} (float{views})"}


class _Scores(pydantic.BaseModel):
    """The part of roadseg-eval's ``metrics.json`` ``metrics`` the report reads."""
    miou7: float = pydantic.Field(ge=0.0, le=1.0)
    iou7: dict[str, float | None]


class _MetricsFile(pydantic.BaseModel):
    metrics: _Scores


def _metrics(runs: Path, name: str) -> dict | None:
    """``RUNS/scores/NAME/metrics.json``'s ``metrics`` (None when there is none). Raises ValueError for a file
    over MAX_SCORES_JSON or not roadseg-eval's."""
    from edge_runtime import atomic
    data = atomic.read_small_file(runs / "scores" / name / "metrics.json", MAX_SCORES_JSON, "metrics",
                                  missing_ok=True)
    if data is None:
        return None
    try:
        return _MetricsFile.model_validate_json(data).metrics.model_dump()
    except pydantic.ValidationError as e:
        raise ValueError(f"{runs / 'scores' / name / 'metrics.json'}: not roadseg-eval's metrics "
                         f"({e.errors()[0]['msg']})") from None


def collect(runs: str | Path) -> dict:
    """``{"teacher": metrics and its "label" (:func:`_teacher`) | None, "base": ..., "twins": {seed: metrics}, "arms": [{"mode", "n", "seed",
    "kept", "metrics"}]}`` from the run folder (missing runs are left out)."""
    runs = Path(runs)
    out = {"teacher": _teacher(runs), "base": _metrics(runs, "base-s0"), "twins": {}, "arms": []}
    for d in sorted((runs / "scores").glob("*")) if (runs / "scores").is_dir() else []:
        if (m := re.fullmatch(r"labels-s(\d+)", d.name)) and (got := _metrics(runs, d.name)):
            out["twins"][int(m.group(1))] = got
        elif (m := ARM.match(d.name)) and (got := _metrics(runs, d.name)):
            keep = runs / "kept" / f"{d.name}.keep.json"
            kept = json.loads(keep.read_text())["kept"] if keep.is_file() else None
            out["arms"].append({"mode": m.group(1), "n": int(m.group(2)), "seed": int(m.group(3)), "kept": kept,
                                "metrics": got})
    out["arms"].sort(key=lambda a: (a["n"], a["seed"], a["mode"] != "random"))
    out["extra_ratio"] = _extra_ratio(runs, [f"{a['mode']}{a['n']}-s{a['seed']}" for a in out["arms"]])
    from edge_runtime import atomic
    kind = atomic.read_small_text(runs / "flywheel.kind", 256, "flywheel.kind", missing_ok=True)  # "labels=... schedule=..."
    out["from_scratch"] = "schedule=scratch" in (kind or "")
    return out


def _extra_ratio(runs: Path, arms: list[str]) -> float | None:
    """The share of each batch the arms drew from the kept frames (``--extra-ratio``, from the first arm's
    ``ft/<arm>/config.json`` that says it), None when none does."""
    for arm in arms:
        path = runs / "ft" / arm / "config.json"
        if path.is_file() and path.stat().st_size <= MAX_SCORES_JSON:
            try:
                ratio = json.loads(path.read_text()).get("extra_ratio")
            except (ValueError, RecursionError):
                continue
            if isinstance(ratio, (int, float)) and 0 < ratio <= 1:
                return float(ratio)
    return None


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
        line(data["teacher"].get("label", "teacher (float)"), "-", "-", "-", data["teacher"], None)
    if data["base"]:
        line("base student (20 epochs)", "-", 0, "-", data["base"], None)
    for seed, twin in sorted(data["twins"].items()):
        line("labels only (the base)" if data.get("from_scratch") else "labels only (+5 epochs)", 0, seed, 0, twin,
             twin)
    for a in data["arms"]:
        line(f"+ {a['mode']}", a["n"], a["seed"], a["kept"], a["metrics"], data["twins"].get(a["seed"]))
    header = ["model", "N", "seed", "kept", "mIoU-7", *CLASSES7, "vs labels only (points)", "teacher's lead recovered"]
    return table(header, rows)


def gains(data: dict) -> dict:
    """``{(n, mode): {seed: gain}}``: each arm's mIoU-7 over its own labels-only twin, in points (arms without
    a twin are left out)."""
    out: dict = {}
    for a in data["arms"]:
        twin = data["twins"].get(a["seed"])
        if twin is not None:
            out.setdefault((a["n"], a["mode"]), {})[a["seed"]] = 100 * (a["metrics"]["miou7"] - twin["miou7"])
    return out


def _spread(values: list[float]) -> tuple[str, str, str]:
    mean = round(statistics.fmean(values), 1) + 0.0  # + 0.0: a mean that rounds to zero reads +0.0, not -0.0
    sd = statistics.stdev(values) if len(values) > 1 else None
    return signed(mean, 1), "-" if sd is None else f"{sd:.1f}", f"{min(values):+.1f} .. {max(values):+.1f}"


def summary(data: dict) -> list[str]:
    """The seeds summed up: one row per N and way of choosing (mean gain over the twin, sd, range, seeds), and
    one per N for selected minus random over the seeds that ran both."""
    g, rows = gains(data), []
    for n in sorted({n for n, _ in g}):
        for mode in ("random", "selected"):
            if by_seed := g.get((n, mode)):
                rows.append([n, f"+ {mode}", len(by_seed), *_spread(list(by_seed.values()))])
        both = sorted(set(g.get((n, "selected"), {})) & set(g.get((n, "random"), {})))
        if both:
            diff = [g[(n, "selected")][s] - g[(n, "random")][s] for s in both]
            rows.append([n, "selected - random (paired by seed)", len(both), *_spread(diff)])
    return table(["N", "arm", "seeds", "mean gain over labels only (points)", "sd", "range"], rows)


#: the largest pseudolabels.json read (the kept frames' records: a few KiB each)
MAX_PSEUDO_JSON = 16 << 20


def label_quality(runs: str | Path, data: str, drive: str) -> list[dict]:
    """The teacher's labels of each arm's kept frames against the human labels of the drive.

    For every ``RUNS/pseudo/<arm>/pseudolabels.json``: the kept frames' pseudo-labels
    (``trainannot/<name>.png``, CamVid class indices, 255 where the teacher was unsure) and the human
    annotations of the same frames of ``drive`` (``edge_runtime.eval.datasets.list_samples``), both mapped to
    the 8 categories (``CAMVID_LUT``) at full size. Pixels whose human label is void are not counted.

    Returns one dict per set of kept frames: ``arms`` (the arms that kept exactly those frames: every seed of a
    selected arm keeps the same ones), ``frames`` (matched to the drive), ``unsure`` (share of counted pixels
    the teacher left unlabelled), ``miou7`` and ``iou7`` (the labelled pixels scored as a prediction, Cityscapes
    category convention, ``edge_runtime.eval.metrics``), ``pixel_accuracy7``, and ``human_share`` (share of
    counted pixels that are human in the human labels: how much of the rarest category the frames hold).

    Raises ValueError for a pseudolabels.json over MAX_PSEUDO_JSON, a pseudo-label that is not a single-channel
    PNG or one of another shape than its annotation; edge_runtime's DatasetError for a bad ``data``/``drive`` or an unreadable annotation.
    """
    import cv2
    import numpy as np

    from edge_runtime.contract.labels import CAMVID_LUT, CATEGORIES, IGNORE_INDEX, VOID
    from edge_runtime.eval.datasets import list_samples, read_label
    from edge_runtime.eval.metrics import ConfusionMatrix
    fmt, samples = list_samples(data, drive)
    names = {s.name: i for i, s in enumerate(samples)}
    human = CATEGORIES.index("human")
    rows = []
    for folder in sorted(Path(runs, "pseudo").glob("*")):
        meta = folder / "pseudolabels.json"
        if not ARM.match(folder.name) or not meta.is_file():
            continue
        if meta.stat().st_size > MAX_PSEUDO_JSON:
            raise ValueError(f"{meta}: {meta.stat().st_size} bytes, more than {MAX_PSEUDO_JSON}")
        matched = {}  # drive index -> pseudo-label PNG
        for frame in json.loads(meta.read_text()).get("frames", []):
            i = drive_index(frame, names)
            png = folder / "trainannot" / f"{frame.get('name')}.png"
            if i is not None and png.is_file():
                matched[i] = png
        if same := next((r for r in rows if r["kept"] == set(matched)), None):
            same["arms"].append(folder.name)  # the same frames as an arm already scored: not read again
            continue
        cm, counted, unsure, humans, frames = ConfusionMatrix(), 0, 0, 0, 0
        for i, png in sorted(matched.items()):
            truth = read_label(samples[i].label, fmt)
            raw = cv2.imread(str(png), cv2.IMREAD_UNCHANGED)
            if raw is None or raw.ndim != 2:
                raise ValueError(f"{png}: not a single-channel PNG of class indices")
            if raw.shape != truth.shape:
                raise ValueError(f"{png}: {raw.shape} pixels, its annotation {truth.shape}")
            counted_px = (truth != VOID) & (truth != IGNORE_INDEX)
            labelled = counted_px & (raw != IGNORE_INDEX)
            counted += int(counted_px.sum())
            unsure += int((counted_px & ~labelled).sum())
            humans += int((counted_px & (truth == human)).sum())
            cm.update(np.where(labelled, CAMVID_LUT[raw], 0), np.where(labelled, truth, IGNORE_INDEX))
            frames += 1
        if frames:
            m = cm.compute().as_dict()
            rows.append({"arms": [folder.name], "kept": set(matched), "frames": frames,
                         "unsure": unsure / counted if counted else None,
                         "miou7": m["miou7"], "iou7": m["iou7"], "pixel_accuracy7": m["pixel_accuracy7"],
                         "human_share": humans / counted if counted else None})
    return rows


def quality_table(rows: list[dict]) -> list[str]:
    """:func:`label_quality`'s rows as a table (shares in %; "-" where nothing was counted)."""
    def pct(x: float | None, digits: int) -> str:
        return "-" if x is None else f"{100 * x:.{digits}f} %"
    return table(["kept frames (arm)", "frames", "left unlabelled (unsure)", "pixel accuracy, labelled",
                  "mIoU-7, labelled", "human IoU", "human pixels in the frames"],
                 ([", ".join(r["arms"]), r["frames"], pct(r["unsure"], 1), f3(r["pixel_accuracy7"]), f3(r["miou7"]),
                   f3(r["iou7"].get("human")), pct(r["human_share"], 2)] for r in rows))


def compare(sources: list[tuple[str, str | Path]]) -> dict:
    """``{(n, mode): {label: {seed: {"gain": points over that folder's twin, "miou7": the arm's}}}}`` for
    ``sources`` (``(label, runs folder)``), on the seeds every source ran at that N and mode; an arm some source
    lacks is left out. Raises ValueError for fewer than two sources, a label given twice or holding ``|`` or a
    line break (it goes into a Markdown table), a folder without ``scores/``, a bad metrics file."""
    labels = [label for label, _ in sources]
    if len(sources) < 2 or len(set(labels)) != len(labels):
        raise ValueError(f"--runs: two or more folders, each with its own label (got {labels})")
    if bad := [label for label in labels if "|" in label or "\n" in label or "\r" in label]:
        raise ValueError(f"--runs: a label with '|' or a line break: {bad[0][:40]!r}")
    if bad := [str(runs) for _, runs in sources if not (Path(runs) / "scores").is_dir()]:
        raise ValueError(f"--runs: {bad[0]}: not a run folder (no scores/)")
    per = {}
    for label, runs in sources:
        data = collect(runs)
        scores = {(a["n"], a["mode"], a["seed"]): a["metrics"]["miou7"] for a in data["arms"]}
        per[label] = {key: {s: {"gain": g, "miou7": scores[(*key, s)]} for s, g in by_seed.items()}
                      for key, by_seed in gains(data).items()}
    out = {}
    for key in sorted(set.intersection(*(set(g) for g in per.values()))):
        seeds = sorted(set.intersection(*(set(g[key]) for g in per.values())))
        if seeds:
            out[key] = {label: {s: per[label][key][s] for s in seeds} for label in labels}
    return out


def compare_table(cmp: dict) -> list[str]:
    """:func:`compare` as one row per N, way of choosing and source: seeds, the arms' mean mIoU-7, mean gain
    over the twins, sd, range, and the gain minus the first source's, paired by seed (mean and sd of the
    differences)."""
    rows = []
    for (n, mode), by_label in cmp.items():
        first = next(iter(by_label.values()))
        for label, by_seed in by_label.items():
            gains_ = [v["gain"] for v in by_seed.values()]
            mean, sd, spread = _spread(gains_)
            paired = "-"
            if by_seed is not first:
                d_mean, d_sd, _ = _spread([by_seed[s]["gain"] - first[s]["gain"] for s in by_seed])
                paired = d_mean if d_sd == "-" else f"{d_mean} (sd {d_sd})"
            rows.append([n, f"+ {mode}", label, len(by_seed),
                         f3(statistics.fmean(v["miou7"] for v in by_seed.values())), mean, sd, spread, paired])
    return table(["N", "arm", "labels from", "seeds", "mIoU-7 (mean)", "gain over labels only (points)", "sd",
                  "range", "minus the first, paired by seed"], rows)


def compare_plot(cmp: dict, path: str | Path, note: str = "") -> Path:
    """:func:`compare` drawn: one group per N and way of choosing, one column per source (a point per seed, a
    bar for the mean), each seed's points joined across sources; zero (the twin) and the goal (+3) as lines.
    ``note`` ends the caption (what the sources are)."""
    from edge_runtime import atomic
    from roadseg_lab.figures.style import bottom_margin, caption, pyplot, series_colour
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(10.0, 4.8))
    labels = list(next(iter(cmp.values())).keys()) if cmp else []
    width = 0.7 / max(len(labels), 1)
    values = [0.0, 3.0]
    for gi, (key, by_label) in enumerate(cmp.items()):
        xs_of = {label: gi + (li - (len(labels) - 1) / 2) * width for li, label in enumerate(labels)}
        for seed in next(iter(by_label.values())):
            ax.plot([xs_of[lb] for lb in labels], [by_label[lb][seed]["gain"] for lb in labels], color="0.75",
                    lw=0.8, zorder=1)
        for li, label in enumerate(labels):
            ys = [v["gain"] for v in by_label[label].values()]
            ax.plot([xs_of[label]] * len(ys), ys, "o", ms=6, color=series_colour(li), alpha=0.85, zorder=2,
                    label=f"{label}, per seed" if gi == 0 else None)
            mean = statistics.fmean(ys)
            ax.plot([xs_of[label] - width / 3, xs_of[label] + width / 3], [mean, mean], color=series_colour(li),
                    lw=3, zorder=3, label=f"{label}, mean" if gi == 0 else None)
            values += ys
    ax.axhline(0.0, color="0.35", linestyle="--", label="labels only (twin)")
    ax.axhline(3.0, color="0.35", linestyle=":", label="goal (+3 points)")
    ax.set_ylim(min(values) - 1, max(values) + 1)
    ax.set_xlim(-0.6, len(cmp) - 0.4)
    ax.set_xticks(range(len(cmp)), [f"N = {n}, {mode}" for n, mode in cmp])
    ax.set_ylabel("mIoU-7 over labels only, int8 (points)")
    ax.set_title("The same kept frames, taught by different sources: gain on a road the student never saw")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    lines = caption(fig, "Each point: one seed's student trained with the kept frames minus its own folder's "
                         "labels-only twin (same seed, same schedule), int8 on the 51 frames of 0006R0 no vehicle kept; grey lines "
                         f"join a seed across sources. {note}".strip())
    fig.subplots_adjust(right=0.68, bottom=bottom_margin(fig, lines))
    with atomic.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
    return Path(path)


def plot(data: dict, path: str | Path) -> Path:
    """Each arm's gain over its own labels-only twin, in points of mIoU-7, at each N: one point per seed
    (random beside selected) and a bar for the mean over the seeds; zero (no gain), the issue's goal (+3) and
    the teacher's mean lead over the twins as lines. Gains, not scores: every seed has its own twin."""
    from edge_runtime import atomic
    from roadseg_lab.figures.style import bottom_margin, caption, pyplot, series_colour
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(9.0, 4.8))
    g = gains(data)
    groups = sorted({n for n, _ in g})
    values = [0.0, 3.0]
    for gi, n in enumerate(groups):
        for mode, dx in (("random", -0.15), ("selected", 0.15)):
            by_seed = g.get((n, mode), {})
            if not by_seed:
                continue
            colour = series_colour(0 if mode == "random" else 1)
            first = gi == next(i for i, m in enumerate(groups) if g.get((m, mode)))
            ys = [by_seed[s] for s in sorted(by_seed)]
            xs = [gi + dx + 0.03 * (k - (len(ys) - 1) / 2) for k in range(len(ys))]
            ax.plot(xs, ys, "o" if mode == "selected" else "s", ms=7, color=colour, alpha=0.8,
                    label=f"+ {mode}, per seed" if first else None)
            mean = statistics.fmean(ys)
            ax.plot([gi + dx - 0.1, gi + dx + 0.1], [mean, mean], color=colour, lw=3,
                    label=f"+ {mode}, mean" if first else None)
            values += ys
    ax.axhline(0.0, color="0.35", linestyle="--", label="labels only (twin)")
    ax.axhline(3.0, color="0.35", linestyle=":", label="goal (+3 points)")
    if data["teacher"] and data["twins"]:
        lead = statistics.fmean(100 * (data["teacher"]["miou7"] - t["miou7"]) for t in data["twins"].values())
        values.append(lead)
        ax.axhline(lead, color=series_colour(2), label="teacher's lead (mean)")
    ax.set_ylim(min(values) - 1, max(values) + 1)
    ax.set_xlim(-0.6, len(groups) - 0.4)
    ax.set_xticks(range(len(groups)), [f"N = {n} frames kept" for n in groups])
    ax.set_ylabel("mIoU-7 over labels only, int8 (points)")
    ax.set_title("Kept frames labelled by the teacher: the student on a road it never saw")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    from fractions import Fraction
    ratio = data.get("extra_ratio")
    share_text = f", {Fraction(ratio).limit_denominator(16)} of each batch" if ratio else ""
    labeller = (data["teacher"] or {}).get("label", "teacher")
    lines = caption(fig, "Lite0 stride-4 student fine-tuned 5 epochs from one base on CamVid labels + the kept "
                         f"frames (pseudo-labels of the {labeller.split(' (')[0]}, unsure pixels ignored"
                         f"{share_text}), minus the same fine-tune on labels only with the same seed; int8 on the "
                         "51 frames of 0006R0 no vehicle kept.")
    fig.subplots_adjust(right=0.76, bottom=bottom_margin(fig, lines))
    with atomic.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
    return Path(path)


def report(runs: str, markdown_out: str | None = None, plot_out: str | None = None, data_dir: str | None = None,
           drive: str | None = None) -> str:
    """Collect, write the Markdown (and the figure); returns the Markdown text. With ``data_dir`` and
    ``drive``, the kept frames' pseudo-labels are weighed against the drive's human labels too."""
    from edge_runtime import atomic
    data = collect(runs)
    text = "\n".join(markdown(data)) + "\n\n" + "\n".join(summary(data)) + "\n"
    if data_dir and drive:
        text += "\n" + "\n".join(quality_table(label_quality(runs, data_dir, drive))) + "\n"
    if markdown_out:
        atomic.write_text(markdown_out, text)
    if plot_out and gains(data):
        plot(data, plot_out)
    return text
