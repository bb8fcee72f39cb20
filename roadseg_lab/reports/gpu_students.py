"""Report the students trained on a GPU by scripts/gpu_students.sh: held-out
mIoU-7 during training (KD vs labels only at equal epochs, as a table and a
figure), the imported runs' float and int8 scores, speed side by side, and the
issue's goals as measured.

    python -m roadseg_lab gpu-students-report --kd runs/gpu-kd/kd --runs runs/g352 --dist dist/g352 \
        --bench runs/g352/bench.json --teacher runs/c13/teacher-lite2 --size 352x480 --gpu "one NVIDIA H200"

Writes docs/measurements/06-gpu-students.md (put into docs/RESULTS.md as its
own section) and docs/img/gpu-students-kd.png. Every number is read from a
file a stage wrote: the trainer's stdout logs (one JSON line per epoch) and
train_log.json, the imported runs' metrics.json, the calibration sidecars and
roadseg-bench's JSON.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from roadseg_lab.pages import IMG, MEASUREMENTS, RESULTS, write_section
from roadseg_lab.tables import NOT_AVAILABLE, f3, per_class_table, table

CONFIGS = {"lite0": "LR-ASPP on EfficientNet-Lite0 (ImageNet encoder)", "fast2": "roadseg-fast, width 2 (from scratch)"}
SEEDS = ("0", "1")


def na(x) -> str:
    """A fraction with three decimals, ``n/a`` when not measured (this report's mark)."""
    return f3(x, NOT_AVAILABLE)


def evals(log: Path) -> dict[int, dict]:
    """Epoch -> the row of every held-out evaluation in a trainer's stdout log."""
    rows = {}
    if not log.is_file():
        return rows
    for line in log.read_text().splitlines():
        if line.startswith("{") and "holdout_miou7" in line:
            r = json.loads(line)
            rows[r["epoch"]] = r
    return rows


@dataclass
class Settings:
    """The report's inputs (its command line's flags): ``kd``, the folder of
    ``NAME.log`` and ``NAME/train_log.json`` from gpu_students.sh; ``rerun``
    a second such folder or None; the imported ``runs``, calibrated ``dist``,
    the benchmark JSON, the teacher's run; the size, GPU and date named in
    the text; notes; where to write (``page`` None: not into RESULTS.md)."""
    kd: Path
    runs: Path
    dist: Path
    teacher: Path
    rerun: Path | None = None
    bench: str | None = None
    size: str = "352x480"
    gpu: str = "a GPU"
    date: str = "2026-11-26"
    bench_note: str = ""
    extra: str = ""
    out: Path = MEASUREMENTS / "06-gpu-students.md"
    figure: Path = IMG / "gpu-students-kd.png"
    page: Path | None = RESULTS


def intro(s: Settings, teacher: dict) -> list[str]:
    """The section's heading, how the students were trained and imported, the teacher's scores."""
    return ["## Students trained on a GPU at 352x480: KD vs labels only, int8, speed (issue 13)", "",
            f"Measured {s.date}. Training: `scripts/gpu_students.sh` on {s.gpu} (JAX, Keras 3, float32): eight "
            "processes side by side on the one GPU, each with the same time budget (4.4 minutes after compiling), "
            f"so a student's KD and labels-only runs had the same schedule; {s.size} crops of the 367 frames outside "
            "sequence 0006R0, batch 16, AdamW 1e-3 with a 5% warm-up and a cosine, the augmentation of "
            "`roadseg-train`. KD: the frozen FPN-EfficientNet-Lite2 teacher below on each batch, KL at T = 2 with "
            "weight 1 at the student's 1/8 grid plus cross-entropy. Held-out scores during training are the "
            "trainer's own (all 101 frames of 0006R0, float, JAX). The finished weights came back (kernels in "
            "float16) and were imported as runs (`roadseg-distill --epochs 0 --init-weights ...`), calibrated to "
            f"int8 at {s.size} (`roadseg-calibrate --samples 200`, the held-out gate) and evaluated through the "
            "LiteRT interpreter on this 2-core machine.", "",
            f"Teacher (float, held-out): mIoU-7 {teacher['miou7']:.3f}, human {teacher['iou7']['human']:.3f}, "
            f"object {teacher['iou7']['object']:.3f}."]


def run_rows(s: Settings, names: list[str], curves: dict) -> tuple[list[list], dict, dict]:
    """One row per run (its training, the imported float and int8 scores);
    returns the rows, each run's int8 mIoU-7 (None without weights) and the
    per-class IoU-7 ``(float, int8)`` of the runs that came back."""
    rows, finals, per_class = [], {}, {}
    for n in names:
        cfg, kd = n.split("-")[0], "-kd-" in n
        tl = s.kd / n / "train_log.json"
        log = json.loads(tl.read_text()) if tl.is_file() else None
        ep = max(curves[n]) if curves[n] else None
        m, side = s.runs / n / "metrics.json", s.dist / f"{n}-int8-{s.size}.json"
        fm = json.loads(m.read_text())["metrics"] if m.is_file() and log else None
        q = json.loads(side.read_text())["accuracy"] if side.is_file() and log else None
        done = log is not None and log["epochs"][-1]["epoch"] == ep
        finals[n] = q["quantized"]["miou7"] if q else None
        ran = str(log["epochs"][-1]["epoch"]) if done else f"stopped after {ep} (time limit), no weights"
        trained = f"{na(curves[n][ep]['holdout_miou7']) if ep else NOT_AVAILABLE} (epoch {ep})"
        scores = ([na(fm["miou7"]) if fm else NOT_AVAILABLE, na(q["quantized"]["miou7"]),
                   f"{q['drop_points_miou7']:+.2f}", f"{100 * q['pixel_agreement']:.1f}%",
                   na(q["quantized_metrics"]["iou7"]["human"]), na(q["quantized_metrics"]["iou7"]["object"])]
                  if q else [NOT_AVAILABLE, NOT_AVAILABLE, "", "", "", ""])
        rows.append([n, cfg, "yes" if kd else "no", ran, trained, *scores])
        if q:
            per_class[n] = (fm["iou7"] if fm else None, q["quantized_metrics"]["iou7"])
    return rows, finals, per_class


def kd_vs_labels(s: Settings, names: list[str], curves: dict) -> list[str]:
    """KD minus labels only (held-out mIoU-7 points) at every epoch where
    both runs of a configuration and seed were evaluated, and the held-out
    evaluations of a rerun of the stopped runs."""
    rows = []
    for cfg in CONFIGS:
        for seed in SEEDS:
            k, b = curves.get(f"{cfg}-kd-s{seed}", {}), curves.get(f"{cfg}-nokd-s{seed}", {})
            common = sorted(set(k) & set(b))
            if common:
                rows.append((cfg, seed, {e: 100 * (k[e]["holdout_miou7"] - b[e]["holdout_miou7"]) for e in common}))
    epochs = sorted({e for _, _, d in rows for e in d})
    lines = ["", "KD minus labels only, held-out mIoU-7 in points, at the epochs where both were evaluated "
             "(same seed, same schedule, running side by side):", "",
             *table(["student", "seed", *(f"epoch {e}" for e in epochs)],
                    ([cfg, seed, *(f"{d[e]:+.1f}" if e in d else "" for e in epochs)] for cfg, seed, d in rows))]
    if s.rerun:
        stopped = [n for n in names if not (s.kd / n / "train_log.json").is_file()]
        rr = {n: evals(s.rerun / f"{n}.log") for n in stopped if (s.rerun / f"{n}.log").is_file()}
        if rr:
            lines += ["", "A rerun of the stopped KD runs with an epoch-based schedule (150 epochs, two processes) "
                      "was stopped by the device time too; its held-out evaluations: " + "; ".join(
                          f"{n}: " + ", ".join(f"{r['holdout_miou7']:.3f} at {e}" for e, r in sorted(c.items()))
                          for n, c in rr.items()) + "."]
    return lines


def curves_figure(s: Settings, curves: dict, teacher: dict) -> list[str]:
    """Held-out mIoU-7 during training, KD vs labels only, one panel per
    configuration, as a PNG at ``s.figure``; returns the line that shows it."""
    from edge_runtime import atomic
    from roadseg_lab.figures import style
    plt = style.pyplot()
    fig, axes = plt.subplots(1, len(CONFIGS), figsize=(11, 4), sharey=True)
    for ax, cfg in zip(axes, CONFIGS):
        for n, c in curves.items():
            if n.startswith(cfg + "-") and c:
                e = sorted(c)
                ax.plot(e, [c[i]["holdout_miou7"] for i in e], "-o" if "-kd-" in n else "--s", ms=4,
                        color=style.series_colour(int("-kd-" in n)), alpha=0.6 if n.endswith("s1") else 1.0,
                        label=f"{'KD' if '-kd-' in n else 'labels only'}, seed {n[-1]}")
        ax.axhline(teacher["miou7"], color=style.class_colour("void"), lw=1, ls=":", label="teacher")
        ax.set_title(CONFIGS[cfg], fontsize=10)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("held-out mIoU-7 (0006R0, float)")
    axes[0].set_ylim(0, 1)
    fig.legend(*axes[0].get_legend_handles_labels(), fontsize=8, loc="center right")
    fig.suptitle(f"Students at {s.size} on {s.gpu}: KD from the FPN-EfficientNet-Lite2 teacher vs labels only")
    fig.tight_layout(rect=(0, 0, 0.85, 1))
    atomic.save_figure(fig, s.figure)
    return ["", f"![held-out mIoU-7 during training](img/{Path(s.figure).name})"]


def speed(s: Settings) -> tuple[list[str], dict[str, list[str]]]:
    """The speed table and each student's e2e FPS relative to LR-ASPP
    MobileNetV3-Large at the same thread count (``"1.93x (2 threads)"`` by
    configuration)."""
    lines, e2e = [], {}
    if s.bench and Path(s.bench).is_file():
        b = json.loads(Path(s.bench).read_text())
        m = b["machine"]
        lines += ["", f"Speed at {s.size} on this machine (`roadseg-bench`, interleaved rounds, 360x480 synthetic "
                  f"frames; {m.get('cpu', '')}, {m.get('cores')} cores, AVX-512 VNNI "
                  f"{'yes' if m.get('avx512_vnni') else 'no'}, {b.get('settings', {}).get('frames', '?')} frames per "
                  f"model and thread count{s.bench_note}):", "",
                  *table(["model", "threads", "invoke p50 ms", "invoke FPS", "end-to-end FPS"],
                         ([r["model"], r["threads"], f"{r['latency_ms']['p50']:.2f}", f"{r['invoke_fps']:.1f}",
                           f"{r['e2e_fps']:.1f}"] for r in b["results"]))]
        e2e = {(r["model"], r["threads"]): r["e2e_fps"] for r in b["results"]}
    ref = {t: v for (m, t), v in e2e.items() if m.startswith("lraspp-mnv3-large")}
    ratios: dict[str, list[str]] = {}
    for (m, t), v in sorted(e2e.items()):
        if not m.startswith("lraspp-mnv3-large") and t in ref:
            ratios.setdefault(m.split("-")[0], []).append(f"{v / ref[t]:.2f}x ({t} thread{'s' if t > 1 else ''})")
    if ratios:
        lines += ["", "End-to-end FPS relative to LR-ASPP MobileNetV3-Large int8 at the same size: " + "; ".join(
            f"{k} {', '.join(v)}" for k, v in ratios.items()) + ". (LR-ASPP MobileNetV3-Large was trained for one "
            "short epoch only, to have a calibrated int8 graph: its speed is the point, not its accuracy.)"]
    return lines, ratios


def goals(s: Settings, finals: dict, teacher: dict, ratios: dict) -> list[str]:
    """Issue 13's goals for the best int8 student, when any came back."""
    best = max((n for n in finals if finals[n] is not None), key=lambda n: finals[n], default=None)
    if not best:
        return []
    bq = json.loads((s.dist / f"{best}-int8-{s.size}.json").read_text())["accuracy"]
    kd_final = [f"{cfg} seed {seed}: {100 * (finals[f'{cfg}-kd-s{seed}'] - finals[f'{cfg}-nokd-s{seed}']):+.1f}"
                for cfg in CONFIGS for seed in SEEDS
                if finals.get(f"{cfg}-kd-s{seed}") is not None and finals.get(f"{cfg}-nokd-s{seed}") is not None]
    qm = bq["quantized_metrics"]["iou7"]
    return ["", "The issue's goals, as measured here (best int8 student: " + best + "):", "",
            *table(["goal", "target", "measured"], [
                ["best int8 student mIoU-7 on the held-out sequence", ">= 0.65", f"{bq['quantized']['miou7']:.3f}"],
                ["gap to the best teacher", "<= 2 points",
                 f"{100 * (teacher['miou7'] - bq['quantized']['miou7']):.1f} points"],
                ["KD gain, same student and schedule", ">= +3 points over 2 seeds", "int8, finished runs: "
                 + ("; ".join(kd_final) or NOT_AVAILABLE) + "; lite0 at equal epochs: see the table above"],
                ["int8 drop (mIoU-7)", "<= 0.5 points", f"{bq['drop_points_miou7']:+.2f} points"],
                ["human / object IoU (int8)", ">= 0.20 / 0.04", f"{qm['human']:.3f} / {qm['object']:.3f}"],
                ["end-to-end FPS vs LR-ASPP MobileNetV3-Large int8", ">= 3x",
                 "; ".join(f"{k} {', '.join(v)}" for k, v in ratios.items()) or NOT_AVAILABLE]])]


CAVEATS = ("What these numbers do not show: one held-out sequence of 101 frames; the training-time evaluations "
           "are on that same sequence (they choose nothing here: every run keeps its last weights, but they are "
           "what the KD comparison is read from); two seeds; eight processes shared one GPU and 16 CPU cores, so "
           "the epochs reached within the budget differ a little between runs; x86 timings, not a Pi's.")


def write_report(s: Settings) -> str:
    """Write the section (``s.out``, and into ``s.page`` unless None) and the
    figure; returns the section's text. Raises ``OSError``/``ValueError``
    for a missing or malformed artifact."""
    teacher = json.loads((s.teacher / "metrics.json").read_text())["metrics"]
    names = sorted(f.stem for f in s.kd.glob("*.log"))
    curves = {n: evals(s.kd / f"{n}.log") for n in names}
    rows, finals, per_class = run_rows(s, names, curves)
    classes = list(teacher["iou7"])
    ious = {"teacher (float)": teacher["iou7"]}
    for n, (fl, q8) in per_class.items():
        ious.update({f"{n} ({label})": v for label, v in (("float", fl), ("int8", q8)) if v})
    speed_lines, ratios = speed(s)
    lines = [*intro(s, teacher), "",
             *table(["run", "student", "KD", "epochs", "held-out mIoU-7 in training", "imported float mIoU-7",
                     "int8 mIoU-7", "int8 drop (points)", "pixel agreement", "human (int8)", "object (int8)"], rows),
             "", "Per-class IoU on the held-out sequence (mIoU-7 convention), the teacher and every student whose "
             "weights came back:", "", *per_class_table("model", classes, ious, NOT_AVAILABLE),
             *kd_vs_labels(s, names, curves), *curves_figure(s, curves, teacher), *speed_lines,
             *goals(s, finals, teacher, ratios), *(["", s.extra] if s.extra else []), "", CAVEATS]
    text = "\n".join(lines) + "\n"
    write_section(text, s.out, s.page)
    return text
