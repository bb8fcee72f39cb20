"""``docs/RESULTS.md`` and ``docs/img/*.png`` from the from-scratch recipe's
artifacts (run directories, sidecars, benchmark JSON), called by
:mod:`roadseg_lab.recipes.scratch`; every number printed here is read from a
file that a stage wrote. Each ``section_*`` function returns the section's
lines; :func:`write_results` joins them with every ``docs/measurements`` file."""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

from edge_runtime import atomic
from edge_runtime.contract.labels import CATEGORIES
from roadseg_lab.pages import DOCS
from roadseg_lab.tables import f3, per_class_table, table

TEACHERS = ["fpn-efficientnetb0", "segformer-b0"]


def jload(p: Path):
    """The JSON in file ``p``. Raises ``OSError``/``ValueError`` for a missing or malformed file."""
    return json.loads(p.read_text())


def train_minutes(run: Path) -> float:
    """Wall minutes of all epochs (history.csv), whichever invocation ran them."""
    rows = list(csv.DictReader((run / "history.csv").open()))
    return sum(float(r["time_s"]) for r in rows) / 60


@dataclass
class Inputs:
    """What the page is made from: the dataset folder, the recipe's runs and
    calibrated models, the best KD student's run name, the training and
    benchmark sizes (``HxW``), the two benchmark JSON files and the ``docs``
    folder written into."""
    data: str
    runs: Path
    dist: Path
    best: str
    size: str
    bench_size: str
    bench: dict
    precisions: dict
    docs: Path = DOCS


def section_intro(x: Inputs) -> list[str]:
    """The title, where the numbers come from, the machine and the data."""
    m = x.bench["machine"]
    machine = (f"{m['cpu']}, {m['cores']} cores (AVX-512 VNNI: {'yes' if m['avx512_vnni'] else 'no'}), "
               f"{m['os']}, {m['interpreter']}")
    return [
        "# roadseg results", "",
        "Every number on this page was measured by `scripts/reproduce_camvid.sh ../shared/data/camvid` and written "
        "here by `python -m roadseg_lab results-report`; rerun it to regenerate the page. "
        f"Machine: {machine}. Generated {x.bench['machine']['date'][:10]}.", "",
        f"Data: CamVid (SegNet split, 367 train / 101 val, 360x480), mapped to the 8 Cityscapes categories. "
        f"All models trained **from scratch** (no ImageNet or Cityscapes weights: nothing can be downloaded on the "
        f"machine that made this page). Training and evaluation frames are resized to {x.size} (the stretch policy "
        "of `edge_runtime.contract.preprocessing`); predictions are scored at each label's native 360x480 resolution. "
        "mIoU-7 ignores void ground truth (Cityscapes category convention); mIoU-8 scores all 8. "
        "Val is the only split used for model selection and reporting; the CamVid test split was never touched.", ""]


def best_teacher(runs: Path) -> tuple[str, float]:
    """``(run name, val mIoU-8)`` of the best teacher, the wide roadseg-fast included when it ran."""
    scores = [(t, jload(runs / t / "metrics.json")["metrics"]["miou8"]) for t in TEACHERS]
    best = max(scores, key=lambda s: s[1])  # the first of equals, as the page always chose
    wide = runs / "roadseg-fast-w2-teacher"
    if (wide / "metrics.json").is_file() and jload(wide / "metrics.json")["metrics"]["miou8"] > best[1]:
        best = (wide.name, jload(wide / "metrics.json")["metrics"]["miou8"])
    return best


def section_teachers(x: Inputs) -> list[str]:
    """The teachers' table, their per-class IoU and their commands."""
    rows = []
    for t in TEACHERS:
        r, cfg = jload(x.runs / t / "metrics.json"), jload(x.runs / t / "config.json")
        mm = r["metrics"]
        rows.append([t, f"{r['params'] / 1e6:.2f} M", cfg["epochs"], f3(mm["miou7"]), f3(mm["miou8"]),
                     f3(mm["mdice7"]), f3(mm["pixel_accuracy"]), r["timing"]["ms_per_image"],
                     f"{train_minutes(x.runs / t):.0f}"])
    per_class = {t: jload(x.runs / t / "metrics.json")["metrics"]["iou"] for t in TEACHERS}
    return [
        "## Teachers", "",
        *table(["teacher", "params", "epochs", "val mIoU-7", "val mIoU-8", "mDice-7", "pixel acc", "ms/image",
                "train min"], rows), "",
        "Per-class IoU (val, void scored):", "",
        *per_class_table("teacher", CATEGORIES, per_class), "",
        "ms/image is `roadseg-eval`'s timing of the SavedModel on the val split, measured while other stages of "
        "the reproduction ran on the same 2 cores: read it as an order of magnitude.", "",
        "Commands: `roadseg-train --arch fpn-efficientnetb0 --data DATA --size 192x256 --epochs 10 --batch 8 --lr 1e-3` "
        "and `roadseg-train --arch segformer-b0 --data DATA --size 192x256 --epochs 12 --batch 8 --lr 6e-4` "
        "(SegFormer trains on square 192x192 crops and predicts the 192x256 frame by sliding window). "
        "Training curves: `runs/camvid/<teacher>/curves.png`.", ""]


def section_wide_teacher(x: Inputs) -> list[str]:
    """The third teacher (roadseg-fast at width 2), when it ran."""
    wide = x.runs / "roadseg-fast-w2-teacher"
    if not (wide / "metrics.json").is_file():
        return []
    r = jload(wide / "metrics.json")
    mm = r["metrics"]
    return [f"A third teacher, added after the first two turned out weaker than the students: roadseg-fast at "
            f"width 2 ({r['params'] / 1e6:.2f} M params), trained on labels with the students' schedule: val "
            f"mIoU-7 {f3(mm['miou7'])}, mIoU-8 {f3(mm['miou8'])} (`roadseg-distill --student roadseg-fast --width 2 "
            "--no-kd --epochs 30`).", ""]


def macs_cell(meta: dict) -> str:
    """``"1.23 G @ 256x512"``: a student's MACs per frame with the size they
    were counted at (``trainer.export.macs_of``; old runs: 256x512), ``?`` when unknown."""
    from trainer.export import macs_of
    got = macs_of(meta)
    return "?" if got is None else f"{got[0] / 1e9:.2f} G @ {got[1][0]}x{got[1][1]}"


def student_rows(x: Inputs) -> tuple[list[list], dict[str, dict]]:
    """The students' table rows (KD and labels only, with the KD gain in
    mIoU-8 points) and their metrics by run name."""
    rows, metrics = [], {}
    for s in ("roadseg-fast", "lraspp-mobilenetv3-small", "lraspp-mobilenetv3-large"):
        for suffix in ("-kd-wide", "-kd", "-nokd"):
            d = x.runs / f"{s}{suffix}"
            kd = suffix != "-nokd"
            if not (d / "metrics.json").is_file():
                continue
            r = jload(d / "metrics.json")
            meta = jload(d / "export" / "roadseg.json")
            metrics[d.name] = r["metrics"]
            gain = ""
            if kd and (x.runs / f"{s}-nokd" / "metrics.json").is_file():
                base = jload(x.runs / f"{s}-nokd" / "metrics.json")["metrics"]["miou8"]
                gain = f"{100 * (r['metrics']['miou8'] - base):+.1f}"
            label = "yes (wide roadseg-fast teacher)" if d.name.endswith("-kd-wide") else \
                ("yes (FPN + SegFormer)" if kd else "no")
            rows.append([s, label, f"{r['params'] / 1e6:.2f} M", macs_cell(meta),
                         f3(r["metrics"]["miou7"]), f3(r["metrics"]["miou8"]), gain])
    return rows, metrics


def kd_modes_paragraph(x: Inputs) -> list[str]:
    """Online vs cached teachers, from ``kd-modes.json`` when it was measured."""
    km = x.runs / "kd-modes.json"
    if not km.is_file():
        return []
    k = jload(km)
    on, ca = k["online"]["train_seconds"] / 12, k["cached"]["train_seconds"] / 12
    return [f"Online vs cached teachers, measured on 12 student steps of roadseg-fast (batch 8, {x.size}): "
            f"online {on:.2f} s/step, cached {ca:.2f} s/step ({on / ca:.1f}x). Building the cache took "
            f"{k['cache_build_seconds']:.0f} s once for {k['cache_views_of_images']} augmented views; it "
            "pays for itself after about "
            f"{k['cache_build_seconds'] / max(on - ca, 1e-6):.0f} student steps, and every KD student reuses it "
            "(the reproduction trains two). The reproduction therefore uses the cache.", ""]


def section_students(x: Inputs) -> list[str]:
    """Distillation vs labels only: the table, per-class IoU, the command, the cache's cost."""
    rows, metrics = student_rows(x)
    return [
        "## Students: distillation vs labels only", "",
        "Same student, same schedule, same augmented views; the KD runs add the pixel-wise KL term "
        "(T = 2, weight 1) against the teachers' probabilities (FPN + SegFormer averaged per class by each "
        "teacher's val IoU, or the wide roadseg-fast alone), replayed from a teacher cache (4 augmented views of "
        "every training image, float16 at 1/8 resolution).", "",
        *table(["student", "KD", "params", "MACs per frame", "val mIoU-7", "val mIoU-8",
                "KD gain (mIoU-8 points)"], rows), "",
        "Per-class IoU (val):", "",
        *per_class_table("student", CATEGORIES, {n: mm["iou"] for n, mm in metrics.items()}), "",
        "Command: `roadseg-distill --teacher runs/camvid/fpn-efficientnetb0 --teacher runs/camvid/segformer-b0 "
        "--student NAME --data DATA --size 192x256 --epochs 30 --batch 8 --lr 2e-3 --teacher-cache "
        "runs/camvid/teacher-cache --cache-views 4 --temperature 2 --alpha 1.0 --kd-stride 8` (and `--no-kd` for the "
        "baseline). "
        "The reproduction uses the cached mode: on this machine online distillation would run both teachers' "
        "forward passes on every student step, which the teacher cost makes the dominant cost of the run; "
        "the cache computes them once per view (its build time is in the cache's `meta.json`).", "",
        *kd_modes_paragraph(x)]


def section_precisions(x: Inputs) -> list[str]:
    """fp32 / fp16 / dynamic / int8 of the best KD student, and the int8 gate of every student."""
    pb = {Path(r["path"]).name: r for r in x.precisions["results"]}
    rows = []
    for p in ("fp32", "fp16", "dynamic", "int8"):
        f = x.dist / f"{x.best}-{p}-{x.size}.tflite"
        a = jload(f.with_suffix(".json"))["accuracy"]
        b = pb.get(f.name)
        rows.append([p, f"{f.stat().st_size / 1e6:.2f}", f3(a["quantized"]["miou8"]), f"{a['drop_points']:+.2f}",
                     f"{100 * a['pixel_agreement']:.2f}%", b["latency_ms"]["p50"] if b else "-"])
    failed = set(jload(x.runs / "gate-failures.json")) if (x.runs / "gate-failures.json").is_file() else set()
    gates = []
    for f in sorted(x.dist.glob(f"*-int8-{x.size}.tflite")):
        a = jload(f.with_suffix(".json"))["accuracy"]
        gates.append([f.stem, f3(a["float"]["miou8"]), f3(a["quantized"]["miou8"]), f"{a['drop_points']:+.2f}",
                      f"{100 * a['pixel_agreement']:.2f}%",
                      "**refused** (written with --force)" if f.stem in failed else "passed"])
    return [
        f"## fp32 / fp16 / dynamic / int8 for the best KD student ({x.best}, {x.size})", "",
        *table(["precision", "size MB", "val mIoU-8", "drop vs float (points)", "pixel agreement",
                "invoke p50 ms (2 threads)"], rows), "",
        f"Command: `roadseg-calibrate --model runs/camvid/{x.best} --data DATA --out dist/camvid/X.tflite --size "
        f"{x.size} --precision P --samples 200` (diverse selection; the int8 gate at --max-drop 1.0).", "",
        "int8 accuracy gate for every student (val, through the LiteRT interpreter):", "",
        *table(["model", "float mIoU-8", "int8 mIoU-8", "drop (points)", "pixel agreement",
                "gate (1.0 point, 95%)"], gates), ""]


def section_speed(x: Inputs) -> list[str]:
    """Speed at the benchmark size (``roadseg-bench``'s table) and frames at
    the model's size when measured. No speed-vs-accuracy figure: this recipe
    measures speed at ``bench_size`` and accuracy at ``size``, and a figure
    of one against the other would mix the two sizes (``python -m roadseg_lab
    figures fps-vs-miou`` draws both at the same size)."""
    from edge_runtime.eval.bench import format_markdown
    lines = [f"## Speed at {x.bench_size} on this machine", "", format_markdown(x.bench), "",
             "Command: `roadseg-bench --model dist/camvid/<each>-" + x.bench_size + ".tflite ... --threads 1 --threads 2 "
             f"--frames {x.bench['settings']['frames']}`. The {x.bench_size} files are the same trained students "
             "converted at the larger size (they are fully convolutional); their accuracy above is at the training "
             "size. `overhead` is 1 - e2e FPS / invoke FPS: what the pipeline around the interpreter costs (synthetic "
             "480x640 BGR camera frames resized into the input tensor, argmax and coverage at 1/8 resolution, one "
             "JSON summary per frame).", ""]
    isp = x.runs / "bench-isp.json"
    if isp.is_file():
        lines += [f"The same int8 models, 2 threads, with camera frames delivered at the model's {x.bench_size} "
                  "(what the picamera2 and Jetson CSI sources ask the ISP for), so no resize runs in Python:", "",
                  *table(["model", "invoke FPS", "e2e FPS", "overhead"],
                         ([r["model"], f"{r['invoke_fps']:.1f}", f"{r['e2e_fps']:.1f}", f"{100 * r['overhead']:.1f}%"]
                          for r in jload(isp)["results"])), "",
                  "What the overhead is made of (cProfile of `roadseg-bench`, not reproduced by the script): the "
                  "bilinear resize of a 480x640 frame (about 0.15 to 0.3 ms here), the in-place BGR->RGB conversion "
                  "(about 0.02 ms), argmax and coverage at 1/8 resolution and the JSON summary (together under 0.1 "
                  "ms). For a model that runs in 2 to 3 ms, these fixed costs are more than 10% of the frame; for "
                  "slower models they shrink to a few percent.", ""]
    return lines


def goal_rows(x: Inputs, best_teacher: tuple[str, float]) -> list[tuple[str, str, bool]]:
    """``(goal, measured, met)`` for the from-scratch goals: the int8 student
    within 3 points of the best teacher, a KD gain of 2 points, an int8 drop
    of at most 0.5 points, twice the e2e FPS of LR-ASPP MobileNetV3-Large."""
    side = jload((x.dist / f"{x.best}-int8-{x.size}.tflite").with_suffix(".json"))
    q, drop = side["accuracy"]["quantized"]["miou8"], side["accuracy"]["drop_points"]
    t_name, t_miou = best_teacher
    base = f"{jload(x.runs / x.best / 'config.json')['student']}-nokd"
    gain = 100 * (jload(x.runs / x.best / "metrics.json")["metrics"]["miou8"]
                  - jload(x.runs / base / "metrics.json")["metrics"]["miou8"])
    e2e = {(Path(r["path"]).stem, r["threads"]): r["e2e_fps"] for r in x.bench["results"]}
    ours = e2e.get((f"{x.best}-int8-{x.bench_size}", 2))
    ref = e2e.get((f"lraspp-mobilenetv3-large-nokd-int8-{x.bench_size}", 2))
    gap = 100 * (t_miou - q)
    return [
        ("int8 student within 3 mIoU points of the best teacher", f"{x.best} int8 {q:.3f} vs {t_name} {t_miou:.3f}: "
         f"{gap:+.1f} points behind", gap <= 3),
        ("KD gain of at least +2 points", f"{gain:+.1f} points ({x.best} vs {base})", gain >= 2),
        ("int8 drop of at most 0.5 points", f"{drop:+.2f} points", drop <= 0.5),
        (f"int8 student at least 2x the e2e FPS of LR-ASPP MobileNetV3-Large int8 at {x.bench_size}",
         f"{ours} vs {ref} FPS at 2 threads = {ours / ref:.2f}x" if ours and ref else "not measured",
         bool(ours and ref and ours >= 2 * ref)),
    ]


def section_goals(x: Inputs, best_teacher: tuple[str, float]) -> list[str]:
    """The goals table and what was tried for the KD gain."""
    tm = [jload(x.runs / t / "metrics.json")["metrics"]["miou8"] for t in TEACHERS]
    nk = [jload(x.runs / f"{s}-nokd" / "metrics.json")["metrics"]["miou8"]
          for s in ("roadseg-fast", "lraspp-mobilenetv3-small")]
    wm = jload(x.runs / "roadseg-fast-w2-teacher" / "metrics.json")["metrics"]["miou8"]
    kw = jload(x.runs / "roadseg-fast-kd-wide" / "metrics.json")["metrics"]["miou8"]
    return [
        "## Goals (val, 8 categories, from scratch)", "",
        *table(["goal", "measured", "met"], ([g, v, "yes" if ok else "**no**"] for g, v, ok in goal_rows(x, best_teacher))),
        "",
        "What was tried for the KD gain, and why it falls short: distilling from the FPN-EfficientNet-B0 and "
        "SegFormer-B0 teachers lowered both students (table above), because after this budget from scratch "
        f"both teachers are weaker than the students themselves ({tm[0]:.3f} and {tm[1]:.3f} against "
        f"{min(nk):.3f} to {max(nk):.3f} mIoU-8 without KD): KD then teaches their mistakes (human and vehicle "
        "IoU fall the most). A teacher that is better than the student, a roadseg-fast at twice the width "
        f"trained on labels ({wm:.3f}), gives {100 * (kw - nk[0]):+.1f} points, within what one seed can tell apart. "
        "The published +1.5 to +3 point gains come from teachers 5 to 15 "
        "points above their students; here that needs pretrained teachers (ImageNet encoders or a Cityscapes "
        "SegFormer preset) or far longer teacher training, neither possible on this machine. Temperature and "
        "weight were not tuned (T = 2, weight 1, one seed).", ""]


def section_closing(x: Inputs, best_teacher: tuple[str, float]) -> list[str]:
    """The qualitative figure, the comparison with the seed project and the caveats with the time budget."""
    grid(x.data, x.runs / best_teacher[0], x.dist / f"{x.best}-int8-{x.size}.tflite",
         x.docs / "img" / "scratch-qualitative.png")
    runs_all = [d for d in sorted(x.runs.iterdir()) if (d / "history.csv").is_file() and d.parent == x.runs]
    total = sum(train_minutes(d) for d in runs_all)
    return [
        "## Qualitative results", "",
        f"![image | truth | teacher | student int8](img/scratch-qualitative.png)  \nval frames (sequence 0016E5, "
        f"which the training split shares): image | ground truth | {best_teacher[0]} | {x.best} int8.", "",
        "## How these numbers compare with the seed project, and what they do not show", "",
        "The seed project reported mIoU on Cityscapes' 8 categories of about 0.69 (U-Net), 0.81 (FPN-EfficientNet "
        "with augmentation) and 0.77 (SegFormer-B5). The numbers here are lower for known reasons: every model "
        "here starts from random weights (the seed used ImageNet encoders and pretrained SegFormer weights), "
        "CamVid has 367 training images against Cityscapes' 2975, training ran for minutes on 2 CPU cores at "
        f"{x.size} instead of hours on a GPU at 512x1024 or more, and the teachers are the smallest of their "
        "families (EfficientNet-B0, MiT-B0). A transformer from scratch on 367 images is a weak teacher; with "
        "`--pretrained segformer_b5_cityscapes_1024` on a machine that can download it, it would not be.", "",
        "- Speeds are from this x86 machine with AVX-512 VNNI, where dense int8 convolutions are very fast and "
        "depthwise ones comparatively slow. **Estimate, not measured:** a Raspberry Pi 4 (4x Cortex-A72, no "
        "dot-product instructions) typically runs XNNPACK int8 convolutions an order of magnitude slower than "
        "one core here, so expect roughly a tenth of the 2-thread FPS above with 4 threads; a Pi 5 "
        "(Cortex-A76, with dot-product) roughly 2 to 3 times a Pi 4. The balance between dense and depthwise "
        "models also shifts on ARM, so compare them there with `roadseg-bench` before choosing.",
        "- Latencies are per frame at batch 1 on an otherwise idle machine; CPU frequency scaling and thermal "
        "throttling on a vehicle will lower sustained FPS.",
        "- One seed per configuration: differences of a point or two between students are within run-to-run "
        "variation that this page does not measure.",
        f"- Budget: the training stages took {total:.0f} min of wall time on this machine (sum of epoch times in "
        "each run's history.csv), plus "
        f"{jload(x.runs / 'kd-modes.json')['cache_build_seconds'] / 60:.0f} min for the FPN + SegFormer teacher "
        "cache and about 10 min for calibration, benchmarks and this page; some stages ran side by side on "
        "the 2 cores, which slowed each. Against the 150 min budget this is "
        f"{'within' if total + 17 <= 150 else f'about {total + 17 - 150:.0f} min over'}; the sum counts the "
        "slowdown of stages that ran side by side, and FPN_EPOCHS, SEGFORMER_EPOCHS and STUDENT_EPOCHS trim it. "
        "The script is resumable: an interrupted run continues where it stopped."]


def write_results(data: str, runs: str | Path, dist: str | Path, best: str, size: str, bench_size: str,
                  docs: Path = DOCS) -> Path:
    """Write ``docs/RESULTS.md`` (and its figures in ``docs/img``) from the
    recipe's ``runs`` and ``dist`` folders, then every measurement section
    of ``docs/measurements`` (benchmarks run by hand, each with its command
    and date). Returns the page. Raises ``OSError``/``ValueError`` for a
    missing or malformed artifact."""
    runs, dist = Path(runs), Path(dist)
    (docs / "img").mkdir(parents=True, exist_ok=True)
    x = Inputs(data, runs, dist, best, size, bench_size, jload(runs / "bench.json"),
               jload(runs / "bench-precisions.json"), docs)
    teacher = best_teacher(runs)
    lines = [*section_intro(x), *section_teachers(x), *section_wide_teacher(x), *section_students(x),
             *section_precisions(x), *section_speed(x), *section_goals(x, teacher), *section_closing(x, teacher)]
    for extra in sorted((docs / "measurements").glob("*.md")):
        lines += ["", extra.read_text().rstrip()]
    return atomic.write_text(docs / "RESULTS.md", "\n".join(lines) + "\n")


def grid(data: str, teacher_run: Path, student_tflite: Path, out: Path, n: int = 4) -> None:
    """``n`` val frames as a PNG at ``out``: image | truth | teacher (float
    export) | student (int8 through the runtime's interpreter)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.patches import Patch

    from edge_runtime.contract.labels import PALETTE, colorize
    from edge_runtime.contract.preprocessing import resize_mask
    from edge_runtime.eval.datasets import list_samples, load_sample
    from edge_runtime.model.segmenter import DeviceSegmenter
    from trainer.evaluate import savedmodel_segmenter
    fmt, samples = list_samples(data, "val")
    pick = [samples[i] for i in np.linspace(0, len(samples) - 1, n).astype(int)]
    teacher, _ = savedmodel_segmenter(teacher_run / "export")
    student = DeviceSegmenter(student_tflite)
    fig, axes = plt.subplots(n, 4, figsize=(13, 2.5 * n), squeeze=False)
    for axs, s in zip(axes, pick):
        img, lab = load_sample(s, fmt)
        preds = [resize_mask(p, lab.shape[:2]) for p in (teacher(img), student.segment_classes(img))]
        for ax, im, title in zip(axs, [img, colorize(lab), colorize(preds[0]), colorize(preds[1])],
                                 ["image", "truth", "teacher", "student int8"]):
            ax.imshow(im)
            ax.set_title(title, fontsize=8)
            ax.axis("off")
    fig.legend(handles=[Patch(color=PALETTE[i] / 255, label=c) for i, c in enumerate(CATEGORIES)],
               loc="lower center", ncol=8, fontsize=8)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    atomic.save_figure(fig, out, dpi=90)
