"""Tables and a per-class figure for the pretrained, sequence-disjoint runs
(written by scripts/reproduce_pretrained.py; runnable on its own).

    python scripts/pretrained_report.py --runs runs/pretrained --dist dist/pretrained --size 192x256 \
        --best lite0-kd-s0 --teacher runs/pretrained/teacher-fpn-lite2 --bench runs/pretrained/bench.json \
        lite0-nokd-s0 lite0-kd-s0 lite0-nokd-s1 lite0-kd-s1

Writes docs/measurements/05-pretrained.md (appended to docs/RESULTS.md by
results_report.py) and docs/img/pretrained-per-class.png.
"""
from __future__ import annotations

import argparse
import os
import datetime as dt
import json
import platform
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edge_runtime import atomic  # noqa: E402
from results_report import upsert_section  # noqa: E402
from edge_runtime.contract.labels import CATEGORIES, VOID  # noqa: E402

CLASSES7 = [c for i, c in enumerate(CATEGORIES) if i != VOID]


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def f3(x) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("names", nargs="+")
    p.add_argument("--runs", required=True)
    p.add_argument("--dist", required=True)
    p.add_argument("--size", required=True)
    p.add_argument("--best", required=True)
    p.add_argument("--teacher", required=True)
    p.add_argument("--bench")
    p.add_argument("--holdout", default="0006R0")
    p.add_argument("--minutes")
    p.add_argument("--teacher-note", default="", help="where the imported teacher was trained (machine)")
    p.add_argument("--title", default="Pretrained encoders, sequence-disjoint validation (issue 13)",
                   help="the section's heading (a new heading makes a new section of RESULTS.md)")
    p.add_argument("--how", help="what made these runs, replacing the sentence about reproduce_pretrained.py")
    p.add_argument("--extra", default="", help="a paragraph of reading, placed before the caveats")
    p.add_argument("--out", default=str(ROOT / "docs" / "measurements" / "05-pretrained.md"))
    p.add_argument("--figure", default=str(ROOT / "docs" / "img" / "pretrained-per-class.png"))
    a = p.parse_args()
    runs, dist = Path(a.runs), Path(a.dist)

    def metrics(run: Path) -> dict:
        return json.loads((run / "metrics.json").read_text())

    def int8(name: str) -> dict | None:
        side = dist / f"{name}-int8-{a.size}.json"
        return json.loads(side.read_text())["accuracy"] if side.is_file() else None

    teacher = metrics(Path(a.teacher))
    tcfg = json.loads((Path(a.teacher) / "config.json").read_text())
    rows, per_class = [], {}
    per_class["teacher (float)"] = teacher["metrics"]["iou7"]
    for n in a.names:
        m = metrics(runs / n)
        q = int8(n)
        rows.append((n, m, q))
        per_class[f"{n} (float)"] = m["metrics"]["iou7"]
        if q:
            per_class[f"{n} (int8)"] = q["quantized_metrics"]["iou7"]

    date = dt.date.today().isoformat()
    how = a.how or ("by the stages of `scripts/reproduce_pretrained.py` (`RECIPE=pretrained "
                    "scripts/reproduce_camvid.sh ../shared/data/camvid`; each command is in the run's logs)")
    L = [f"## {a.title}", "",
         f"Measured {date} on {cpu_name()} ({os.cpu_count()} cores) {how}"
         f"{', the last invocation ' + a.minutes + ' min' if a.minutes else ''}. "
         f"Every model trained on the 367 CamVid frames of train + val outside sequence {a.holdout} and is scored "
         f"on all 101 frames of {a.holdout}, a road sequence none of them saw "
         f"(`--train-split except:{a.holdout} --val-split holdout:{a.holdout}`). 8 categories; mIoU-7 leaves void "
         "out (the Cityscapes category convention). Float numbers come from the exported SavedModel at the "
         "frame size; int8 numbers from the .tflite through the LiteRT interpreter (calibration's gate).", "",
         "### Teacher", "",
         "| teacher | size | params | trained | held-out mIoU-7 | mIoU-8 | human | object |",
         "|---|---|---|---|---|---|---|---|"]
    tm = teacher["metrics"]
    trained = f"{tcfg['epochs']} epochs here"
    tlog = Path(tcfg["init_weights"][0]).parent / "train_log.json" if tcfg.get("init_weights") else None
    if tlog and tlog.is_file():
        tl = json.loads(tlog.read_text())
        ta = tl["args"]
        trained = (f"{len(tl['epochs'])} epochs in {tl['train_seconds'] / 60:.1f} min on {tl['backend']}"
                   f"{' (' + a.teacher_note + ')' if a.teacher_note else ''} by `scripts/teacher_keras_backend.py train "
                   f"--arch {ta['arch']} --size {ta['size'][0]}x{ta['size'][1]} --epochs {ta['epochs']} "
                   f"--minutes {ta['minutes']:g} --batch {ta['batch']} --lr {ta['lr']:g}`, imported with `--init-weights`")
    elif tcfg.get("init_weights"):
        trained = "imported (`--init-weights`, trained elsewhere)"
    L.append(f"| {teacher.get('arch')} | {tcfg['size'][0]}x{tcfg['size'][1]} | {teacher.get('params', 0) / 1e6:.1f} M "
             f"| {trained} | {f3(tm['miou7'])} | {f3(tm['miou8'])} | {f3(tm['iou7']['human'])} "
             f"| {f3(tm['iou7']['object'])} |")
    L += ["", f"### Students at {a.size}: labels only vs KD from the teacher, same schedule", "",
          "| run | seed | KD | float mIoU-7 | int8 mIoU-7 | int8 drop (points, mIoU-7) | pixel agreement | human (int8) "
          "| object (int8) | best epoch |",
          "|---|---|---|---|---|---|---|---|---|---|"]
    for n, m, q in rows:
        seed = n.rsplit("-s", 1)[-1]
        mm = m["metrics"]
        int8 = ([f3(q["quantized"]["miou7"]), f"{q['drop_points_miou7']:+.2f}", f"{100 * q['pixel_agreement']:.1f}%",
                 f3(q["quantized_metrics"]["iou7"]["human"]), f3(q["quantized_metrics"]["iou7"]["object"])]
                if q else ["n/a", "", "", "", ""])
        L.append("| " + " | ".join([n, seed, "yes" if "-kd-" in n else "no", f3(mm["miou7"]), *int8,
                                    str(m.get("best_epoch"))]) + " |")
    # KD gain per student family, averaged over the seeds that have both
    fams = sorted({n.split("-")[0] for n, _, _ in rows})
    for fam in fams:
        gains, gains8 = [], []
        for n, m, q in rows:
            if n.startswith(f"{fam}-kd-"):
                base = next((r for r in rows if r[0] == n.replace("-kd-", "-nokd-")), None)
                if base:
                    gains.append(m["metrics"]["miou7"] - base[1]["metrics"]["miou7"])
                    if q and base[2]:
                        gains8.append(q["quantized"]["miou7"] - base[2]["quantized"]["miou7"])
        if gains:
            L.append("")
            L.append(f"KD gain for {fam} over {len(gains)} seed(s): float mIoU-7 "
                     + ", ".join(f"{100 * g:+.1f}" for g in gains) + f" points (mean {100 * sum(gains) / len(gains):+.1f})"
                     + (f"; int8 " + ", ".join(f"{100 * g:+.1f}" for g in gains8)
                        + f" (mean {100 * sum(gains8) / len(gains8):+.1f})" if gains8 else "") + ".")
    L += ["", "Per-class IoU (mIoU-7 convention) on the held-out sequence:", "",
          "| model | " + " | ".join(CLASSES7) + " |", "|---|" + "---|" * len(CLASSES7)]
    for k, v in per_class.items():
        L.append(f"| {k} | " + " | ".join(f3(v.get(c)) for c in CLASSES7) + " |")

    speedup = None
    if a.bench and Path(a.bench).is_file():
        b = json.loads(Path(a.bench).read_text())
        L += ["", f"### Speed at {a.size}, side by side (roadseg-bench, interleaved rounds, 360x480 synthetic frames)",
              "", "| model | threads | invoke p50 ms | invoke FPS | end-to-end FPS |", "|---|---|---|---|---|"]
        e2e = {}
        for r in b["results"]:
            L.append(f"| {r['model']} | {r['threads']} | {r['latency_ms']['p50']:.2f} | {r['invoke_fps']:.1f} "
                     f"| {r['e2e_fps']:.1f} |")
            e2e.setdefault(r["threads"], {})[r["model"]] = r["e2e_fps"]
        for th, d in sorted(e2e.items()):
            best = next((v for k, v in d.items() if a.best in k), None)
            ref = next((v for k, v in d.items() if "mnv3-large" in k), None)
            if best and ref:
                speedup = best / ref if speedup is None else min(speedup, best / ref)
                L.append("")
                L.append(f"{th} thread(s): the student runs at {best / ref:.2f}x the end-to-end FPS of LR-ASPP "
                         "MobileNetV3-Large int8 at the same size.")
        L += ["", "LR-ASPP MobileNetV3-Large was trained for one short epoch only to have a calibrated int8 "
              "model of the real graph: its speed is the point, not its accuracy. These are x86 timings; a Pi's "
              "ARM cores weigh depthwise and dense convolutions differently (see the device notes)."]
    # the goals, measured (issue 13)
    ints = [(n, q) for n, _, q in rows if q]
    if ints:
        bn, bq = max(ints, key=lambda t: t[1]["quantized"]["miou7"])
        qm = bq["quantized_metrics"]["iou7"]
        kd_gains = [m["metrics"]["miou7"] - next(r for r in rows if r[0] == n.replace("-kd-", "-nokd-"))[1]["metrics"]["miou7"]
                    for n, m, _ in rows if "-kd-" in n and any(r[0] == n.replace("-kd-", "-nokd-") for r in rows)]
        goal = [("best int8 student mIoU-7 on the held-out sequence", ">= 0.65", f"{bq['quantized']['miou7']:.3f} ({bn})"),
                ("gap to the best teacher", "<= 2 points", f"{100 * (tm['miou7'] - bq['quantized']['miou7']):.1f} points"),
                ("KD gain, same student and schedule", ">= +3 points over 2 seeds",
                 ", ".join(f"{100 * g:+.1f}" for g in kd_gains) or "n/a"),
                ("int8 drop (mIoU-7)", "<= 0.5 points", f"{bq['drop_points_miou7']:+.2f} points"),
                ("human / object IoU (int8)", ">= 0.20 / 0.04 (twice 0.10 / 0.02)", f"{qm['human']:.3f} / {qm['object']:.3f}"),
                ("end-to-end FPS vs LR-ASPP MobileNetV3-Large int8", ">= 3x", f"{speedup:.2f}x" if speedup else "n/a")]
        L += ["", "### The issue's goals, as measured", "", "| goal | target | measured |", "|---|---|---|"]
        L += [f"| {g} | {t} | {m} |" for g, t, m in goal]
    seeds = len({n.rsplit("-s", 1)[-1] for n in a.names if "-kd-" in n and n.replace("-kd-", "-nokd-") in a.names})
    seeds = seeds or len({n.rsplit("-s", 1)[-1] for n in a.names})  # seeds with both runs, if any pair
    if a.extra:
        L += ["", a.extra]
    L += ["", "What these numbers do not show: one held-out sequence of 101 frames (about 3 minutes of one drive) "
          "is a small test; best epochs were chosen on it (cosine schedules end near their best, but the float "
          "numbers are slightly optimistic for that reason); "
          + ("one seed says nothing about seed noise." if seeds == 1
             else f"{seeds} seeds bound seed noise only roughly."), ""]
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_text(out, "\n".join(L))
    upsert_section("\n".join(L))

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    keys = list(per_class)
    fig, ax = plt.subplots(figsize=(10, 4.2))
    w = 0.8 / len(keys)
    cmap = plt.get_cmap("tab10")
    for i, k in enumerate(keys):
        vals = [per_class[k].get(c) or 0 for c in CLASSES7]
        ax.bar(np.arange(len(CLASSES7)) + i * w, vals, w, label=k, color=cmap(i % 10),
               hatch="//" if "int8" in k else None, edgecolor="black", linewidth=0.3)
    ax.set_xticks(np.arange(len(CLASSES7)) + 0.4 - w / 2, CLASSES7)
    ax.set_ylabel(f"IoU on held-out {a.holdout}")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7, ncol=2)
    ax.set_title("Per-class IoU on a road sequence never trained on")
    fig.tight_layout()
    atomic.save_figure(fig, Path(a.figure), dpi=110)
    print(f"wrote {out} and {a.figure}")


if __name__ == "__main__":
    main()
