"""Tables and a per-class figure for the pretrained, sequence-disjoint runs
(written by :mod:`roadseg_lab.recipes.pretrained`; runnable on its own).

    python -m roadseg_lab pretrained-report --runs runs/pretrained --dist dist/pretrained --size 192x256 \
        --best lite0-kd-s0 --teacher runs/pretrained/teacher-fpn-lite2 --bench runs/pretrained/bench.json \
        lite0-nokd-s0 lite0-kd-s0 lite0-nokd-s1 lite0-kd-s1

Writes docs/measurements/05-pretrained.md (appended to docs/RESULTS.md by
the results report) and docs/img/pretrained-per-class.png.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path

from edge_runtime.contract.labels import CATEGORIES, VOID
from roadseg_lab.pages import IMG, MEASUREMENTS, RESULTS, write_section
from roadseg_lab.tables import NOT_AVAILABLE, f3, per_class_table, table

CLASSES7 = [c for i, c in enumerate(CATEGORIES) if i != VOID]
DEFAULT_TITLE = "Pretrained encoders, sequence-disjoint validation (issue 13)"


def na(x) -> str:
    """A fraction with three decimals, ``n/a`` when not measured (this report's mark)."""
    return f3(x, NOT_AVAILABLE)


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``), or what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@dataclass
class Settings:
    """The report's inputs (its command line's flags): student run ``names``
    in ``runs`` with int8 pairs ``NAME-int8-SIZE`` in ``dist``, the ``best``
    one, the teacher's run, the benchmark JSON, the held-out sequence, the
    minutes of the last invocation, notes and where to write. ``date`` and
    ``machine`` default to today and this machine."""
    names: list[str]
    runs: Path
    dist: Path
    size: str
    best: str
    teacher: Path
    bench: str | None = None
    holdout: str = "0006R0"
    minutes: str | None = None
    teacher_note: str = ""
    title: str = DEFAULT_TITLE
    how: str | None = None
    extra: str = ""
    out: Path = MEASUREMENTS / "05-pretrained.md"
    figure: Path = IMG / "pretrained-per-class.png"
    page: Path | None = RESULTS
    date: str = field(default_factory=lambda: dt.date.today().isoformat())
    machine: str = field(default_factory=lambda: f"{cpu_name()} ({os.cpu_count()} cores)")


def load_rows(s: Settings) -> tuple[list[tuple[str, dict, dict | None]], dict[str, dict]]:
    """``(rows, per_class)``: each student's ``(name, metrics.json, int8
    accuracy or None)`` and the per-class IoU-7 of the teacher and of every
    student, float and int8."""
    def int8(name: str) -> dict | None:
        side = s.dist / f"{name}-int8-{s.size}.json"
        return json.loads(side.read_text())["accuracy"] if side.is_file() else None
    teacher = json.loads((s.teacher / "metrics.json").read_text())
    rows, per_class = [], {"teacher (float)": teacher["metrics"]["iou7"]}
    for n in s.names:
        m, q = json.loads((s.runs / n / "metrics.json").read_text()), int8(n)
        rows.append((n, m, q))
        per_class[f"{n} (float)"] = m["metrics"]["iou7"]
        if q:
            per_class[f"{n} (int8)"] = q["quantized_metrics"]["iou7"]
    return rows, per_class


def how_trained(s: Settings, tcfg: dict) -> str:
    """How the teacher was trained: epochs here, or the any-backend run it
    was imported from (its ``train_log.json``), or just "imported"."""
    tlog = Path(tcfg["init_weights"][0]).parent / "train_log.json" if tcfg.get("init_weights") else None
    if tlog and tlog.is_file():
        tl = json.loads(tlog.read_text())
        ta = tl["args"]
        return (f"{len(tl['epochs'])} epochs in {tl['train_seconds'] / 60:.1f} min on {tl['backend']}"
                f"{' (' + s.teacher_note + ')' if s.teacher_note else ''} by `python -m distill.commands.keras_backend "
                f"train --arch {ta['arch']} --size {ta['size'][0]}x{ta['size'][1]} --epochs {ta['epochs']} "
                f"--minutes {ta['minutes']:g} --batch {ta['batch']} --lr {ta['lr']:g}`, imported with `--init-weights`")
    if tcfg.get("init_weights"):
        return "imported (`--init-weights`, trained elsewhere)"
    return f"{tcfg['epochs']} epochs here"


def section_head(s: Settings, tm: dict, teacher: dict, tcfg: dict) -> list[str]:
    """The section's heading, how the runs were made, and the teacher's table."""
    how = s.how or ("by the stages of `python -m roadseg_lab reproduce-pretrained` (`RECIPE=pretrained "
                    "scripts/reproduce_camvid.sh ../shared/data/camvid`; each command is in the run's logs)")
    return [f"## {s.title}", "",
            f"Measured {s.date} on {s.machine} {how}"
            f"{', the last invocation ' + s.minutes + ' min' if s.minutes else ''}. "
            f"Every model trained on the 367 CamVid frames of train + val outside sequence {s.holdout} and is scored "
            f"on all 101 frames of {s.holdout}, a road sequence none of them saw "
            f"(`--train-split except:{s.holdout} --val-split holdout:{s.holdout}`). 8 categories; mIoU-7 leaves void "
            "out (the Cityscapes category convention). Float numbers come from the exported SavedModel at the "
            "frame size; int8 numbers from the .tflite through the LiteRT interpreter (calibration's gate).", "",
            "### Teacher", "",
            *table(["teacher", "size", "params", "trained", "held-out mIoU-7", "mIoU-8", "human", "object"],
                   [[teacher.get("arch"), f"{tcfg['size'][0]}x{tcfg['size'][1]}",
                     f"{teacher.get('params', 0) / 1e6:.1f} M", how_trained(s, tcfg), na(tm["miou7"]),
                     na(tm["miou8"]), na(tm["iou7"]["human"]), na(tm["iou7"]["object"])]])]


def student_table(rows: list[tuple[str, dict, dict | None]]) -> list[str]:
    """Each student: seed, KD or not, float and int8 mIoU-7, the int8 drop,
    pixel agreement, human and object IoU (int8), best epoch."""
    out = []
    for n, m, q in rows:
        int8 = ([na(q["quantized"]["miou7"]), f"{q['drop_points_miou7']:+.2f}", f"{100 * q['pixel_agreement']:.1f}%",
                 na(q["quantized_metrics"]["iou7"]["human"]), na(q["quantized_metrics"]["iou7"]["object"])]
                if q else [NOT_AVAILABLE, "", "", "", ""])
        out.append([n, n.rsplit("-s", 1)[-1], "yes" if "-kd-" in n else "no", na(m["metrics"]["miou7"]), *int8,
                    str(m.get("best_epoch"))])
    return table(["run", "seed", "KD", "float mIoU-7", "int8 mIoU-7", "int8 drop (points, mIoU-7)",
                  "pixel agreement", "human (int8)", "object (int8)", "best epoch"], out)


def kd_gains(rows: list[tuple[str, dict, dict | None]]) -> list[str]:
    """The KD gain of each student family (float and int8 mIoU-7 points),
    over the seeds that have both a KD and a labels-only run."""
    lines = []
    for fam in sorted({n.split("-")[0] for n, _, _ in rows}):
        gains, gains8 = [], []
        for n, m, q in rows:
            if n.startswith(f"{fam}-kd-"):
                base = next((r for r in rows if r[0] == n.replace("-kd-", "-nokd-")), None)
                if base:
                    gains.append(m["metrics"]["miou7"] - base[1]["metrics"]["miou7"])
                    if q and base[2]:
                        gains8.append(q["quantized"]["miou7"] - base[2]["quantized"]["miou7"])
        if gains:
            lines += ["", f"KD gain for {fam} over {len(gains)} seed(s): float mIoU-7 "
                      + ", ".join(f"{100 * g:+.1f}" for g in gains) + f" points (mean {100 * sum(gains) / len(gains):+.1f})"
                      + ("; int8 " + ", ".join(f"{100 * g:+.1f}" for g in gains8)
                         + f" (mean {100 * sum(gains8) / len(gains8):+.1f})" if gains8 else "") + "."]
    return lines


def section_speed(s: Settings) -> tuple[list[str], float | None]:
    """The side-by-side speed table and, per thread count, the best
    student's e2e FPS relative to LR-ASPP MobileNetV3-Large; returns the
    lines and the smallest such ratio (None without a benchmark)."""
    if not (s.bench and Path(s.bench).is_file()):
        return [], None
    b = json.loads(Path(s.bench).read_text())
    lines = ["", f"### Speed at {s.size}, side by side (roadseg-bench, interleaved rounds, 360x480 synthetic frames)", "",
             *table(["model", "threads", "invoke p50 ms", "invoke FPS", "end-to-end FPS"],
                    ([r["model"], r["threads"], f"{r['latency_ms']['p50']:.2f}", f"{r['invoke_fps']:.1f}",
                      f"{r['e2e_fps']:.1f}"] for r in b["results"]))]
    e2e: dict[int, dict] = {}
    for r in b["results"]:
        e2e.setdefault(r["threads"], {})[r["model"]] = r["e2e_fps"]
    speedup = None
    for th, d in sorted(e2e.items()):
        best = next((v for k, v in d.items() if s.best in k), None)
        ref = next((v for k, v in d.items() if "mnv3-large" in k), None)
        if best and ref:
            speedup = best / ref if speedup is None else min(speedup, best / ref)
            lines += ["", f"{th} thread(s): the student runs at {best / ref:.2f}x the end-to-end FPS of LR-ASPP "
                      "MobileNetV3-Large int8 at the same size."]
    lines += ["", "LR-ASPP MobileNetV3-Large was trained for one short epoch only to have a calibrated int8 "
              "model of the real graph: its speed is the point, not its accuracy. These are x86 timings; a Pi's "
              "ARM cores weigh depthwise and dense convolutions differently (see the device notes)."]
    return lines, speedup


def section_goals(rows: list[tuple[str, dict, dict | None]], tm: dict, speedup: float | None) -> list[str]:
    """Issue 13's goals as measured, when any student has an int8 model."""
    ints = [(n, q) for n, _, q in rows if q]
    if not ints:
        return []
    bn, bq = max(ints, key=lambda t: t[1]["quantized"]["miou7"])
    qm = bq["quantized_metrics"]["iou7"]
    names = {r[0]: r for r in rows}
    kd_gains = [m["metrics"]["miou7"] - names[n.replace("-kd-", "-nokd-")][1]["metrics"]["miou7"]
                for n, m, _ in rows if "-kd-" in n and n.replace("-kd-", "-nokd-") in names]
    goal = [("best int8 student mIoU-7 on the held-out sequence", ">= 0.65", f"{bq['quantized']['miou7']:.3f} ({bn})"),
            ("gap to the best teacher", "<= 2 points", f"{100 * (tm['miou7'] - bq['quantized']['miou7']):.1f} points"),
            ("KD gain, same student and schedule", ">= +3 points over 2 seeds",
             ", ".join(f"{100 * g:+.1f}" for g in kd_gains) or NOT_AVAILABLE),
            ("int8 drop (mIoU-7)", "<= 0.5 points", f"{bq['drop_points_miou7']:+.2f} points"),
            ("human / object IoU (int8)", ">= 0.20 / 0.04 (twice 0.10 / 0.02)", f"{qm['human']:.3f} / {qm['object']:.3f}"),
            ("end-to-end FPS vs LR-ASPP MobileNetV3-Large int8", ">= 3x", f"{speedup:.2f}x" if speedup else NOT_AVAILABLE)]
    return ["", "### The issue's goals, as measured", "", *table(["goal", "target", "measured"], goal)]


def caveats(s: Settings) -> list[str]:
    """What the numbers do not show, with the number of paired seeds."""
    seeds = len({n.rsplit("-s", 1)[-1] for n in s.names if "-kd-" in n and n.replace("-kd-", "-nokd-") in s.names})
    seeds = seeds or len({n.rsplit("-s", 1)[-1] for n in s.names})  # seeds with both runs, if any pair
    return ["", "What these numbers do not show: one held-out sequence of 101 frames (about 3 minutes of one drive) "
            "is a small test; best epochs were chosen on it (cosine schedules end near their best, but the float "
            "numbers are slightly optimistic for that reason); "
            + ("one seed says nothing about seed noise." if seeds == 1
               else f"{seeds} seeds bound seed noise only roughly."), ""]


def write_report(s: Settings) -> Path:
    """Write the section (``s.out``, and into ``s.page`` unless None) and
    the per-class figure; returns the section's path. Raises ``OSError``
    or ``ValueError`` for a missing or malformed artifact."""
    teacher = json.loads((s.teacher / "metrics.json").read_text())
    tcfg = json.loads((s.teacher / "config.json").read_text())
    rows, per_class = load_rows(s)
    tm = teacher["metrics"]
    speed, speedup = section_speed(s)
    lines = [*section_head(s, tm, teacher, tcfg), "",
             f"### Students at {s.size}: labels only vs KD from the teacher, same schedule", "", *student_table(rows),
             *kd_gains(rows), "", "Per-class IoU (mIoU-7 convention) on the held-out sequence:", "",
             *per_class_table("model", CLASSES7, per_class, NOT_AVAILABLE), *speed, *section_goals(rows, tm, speedup),
             *(["", s.extra] if s.extra else []), *caveats(s)]
    out = write_section("\n".join(lines), s.out, s.page)
    per_class_figure(per_class, s.holdout, s.figure, s)
    return out


def per_class_figure(per_class: dict[str, dict], holdout: str, figure: Path, s: Settings | None = None) -> None:
    """Per-class IoU-7 of every model (int8 hatched), one panel per class in
    the project's palette (:func:`roadseg_lab.figures.per_class.per_class_bars`),
    as a PNG at ``figure``; ``s`` names the machine and date in its caption."""
    from roadseg_lab.figures.per_class import per_class_bars
    where = f"scored on {s.machine}, {s.date}" if s else "scored on this machine"
    per_class_bars(per_class, f"Per-class IoU on held-out {holdout} (never trained on): KD vs labels only",
                   f"Float: SavedModel, int8: LiteRT interpreter, {where}. Hatched: int8. Not shown: other "
                   "sequences, seed noise beyond these seeds, speed.", Path(figure))
