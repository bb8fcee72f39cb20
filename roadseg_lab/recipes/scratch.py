"""Reproduce roadseg's from-scratch CamVid results and regenerate docs/RESULTS.md.

    RECIPE=scratch scripts/reproduce_camvid.sh /path/to/camvid   # or: python -m roadseg_lab reproduce-scratch DATA

Stages (each skipped when its outputs exist, resumed when a checkpoint does, so
an interrupted run continues where it stopped):

 1. teachers   fpn-efficientnetb0 and segformer-b0 from scratch at SIZE
 2. students   roadseg-fast and lraspp-mobilenetv3-small, with and without KD
               (cached teachers), and lraspp-mobilenetv3-large without KD
               (the published real-time reference)
 3. calibrate  int8 (+ fp32/fp16/dynamic for the best student) with the gate
 4. bench      every deployable model at BENCH_SIZE, 1 and 2 threads
 5. report     docs/RESULTS.md, docs/img/*.png

Budget at the defaults on a 2-core x86 CPU: about 2 hours (see RESULTS.md).
On a GPU, raise the sizes and epochs with the environment variables below
(SIZE, BENCH_SIZE, FPN_EPOCHS, SEGFORMER_EPOCHS, STUDENT_EPOCHS, CACHE_VIEWS,
BENCH_FRAMES, RUNS, DIST, KD_T, KD_ALPHA, MAX_DROP, CAL_SAMPLES).
"""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from roadseg_lab.pages import ROOT
from roadseg_lab.recipes.stages import BIN, log, repeat, resume_flag, run, stage_done

E = os.environ.get
SIZE = E("SIZE", "192x256")
BENCH_SIZE = E("BENCH_SIZE", "256x512")
TEACHER_EPOCHS = {"fpn-efficientnetb0": int(E("FPN_EPOCHS", "10")), "segformer-b0": int(E("SEGFORMER_EPOCHS", "12"))}
TEACHER_LR = {"fpn-efficientnetb0": "1e-3", "segformer-b0": "6e-4"}
STUDENT_EPOCHS = int(E("STUDENT_EPOCHS", "30"))
CACHE_VIEWS = int(E("CACHE_VIEWS", "4"))
BENCH_FRAMES = int(E("BENCH_FRAMES", "100"))
RUNS = Path(E("RUNS", str(ROOT / "runs" / "camvid")))
DIST = Path(E("DIST", str(ROOT / "dist" / "camvid")))
STUDENTS = [("roadseg-fast", True), ("roadseg-fast", False), ("lraspp-mobilenetv3-small", True),
            ("lraspp-mobilenetv3-small", False), ("lraspp-mobilenetv3-large", False)]
TEACHERS = list(TEACHER_EPOCHS)
WIDE, KD_WIDE = RUNS / "roadseg-fast-w2-teacher", RUNS / "roadseg-fast-kd-wide"


def student_name(student: str, kd: bool) -> str:
    """The run directory name of a student: ``NAME-kd`` or ``NAME-nokd``."""
    return f"{student}-{'kd' if kd else 'nokd'}"


def distill_cmd(data: str, student: str, out: Path, *extra: str) -> list[str]:
    """``roadseg-distill`` for ``student`` at the recipe's size, epochs and seed."""
    return [str(BIN / "roadseg-distill"), "--student", student, "--data", data, "--size", SIZE,
            "--epochs", str(STUDENT_EPOCHS), "--batch", "8", "--lr", "2e-3", "--seed", "0", "--out", str(out),
            *extra, *resume_flag(out)]


def kd_args(teachers: list[Path], cache: Path) -> list[str]:
    """KD from ``teachers`` through a teacher cache, at the recipe's T, weight and grid (1/8, the
    student's own output: what the published table ran before ``--kd-stride`` existed)."""
    return [*repeat("--teacher", teachers), "--teacher-cache", str(cache), "--cache-views", str(CACHE_VIEWS),
            "--temperature", E("KD_T", "2"), "--alpha", E("KD_ALPHA", "1.0"), "--kd-stride", E("KD_STRIDE", "8")]


def train_models(data: str, logs: Path) -> None:
    """Stages 1 and 2: the teachers, the students with and without KD, and
    the wide roadseg-fast teacher with its KD student. The from-scratch
    teachers end up weaker than the students (see RESULTS.md), and KD from a
    weaker teacher can only pull a student down; a wider copy of the student,
    trained on labels for the same epochs, is a teacher that is stronger
    where it matters here."""
    for arch in TEACHERS:
        out = RUNS / arch
        if stage_done(out):
            log(f"teacher {arch}: done, skipping")
            continue
        run([str(BIN / "roadseg-train"), "--arch", arch, "--data", data, "--size", SIZE,
             "--epochs", str(TEACHER_EPOCHS[arch]), "--batch", "8", "--lr", TEACHER_LR[arch], "--seed", "0",
             "--out", str(out), *resume_flag(out)], logs / f"{arch}.log")
    for student, kd in STUDENTS:
        out = RUNS / student_name(student, kd)
        if stage_done(out):
            log(f"student {out.name}: done, skipping")
            continue
        extra = kd_args([RUNS / t for t in TEACHERS], RUNS / "teacher-cache") if kd else ["--no-kd"]
        run(distill_cmd(data, student, out, *extra), logs / f"{out.name}.log")
    if not stage_done(WIDE):
        run(distill_cmd(data, "roadseg-fast", WIDE, "--width", "2", "--no-kd"), logs / f"{WIDE.name}.log")
    if not stage_done(KD_WIDE):
        run(distill_cmd(data, "roadseg-fast", KD_WIDE, *kd_args([WIDE], RUNS / "teacher-cache-wide")),
            logs / f"{KD_WIDE.name}.log")


def time_kd_modes(data: str, logs: Path) -> None:
    """``kd-modes.json``: online vs cached teachers on the same 12 student
    steps (history.csv's train_time_s), and what building the cache cost."""
    modes_json = RUNS / "kd-modes.json"
    if modes_json.is_file():
        return
    modes = {}
    for mode in ("online", "cached"):
        out = RUNS / "kd-modes" / mode
        extra = ["--teacher-cache", str(RUNS / "teacher-cache"), "--cache-views", str(CACHE_VIEWS)] \
            if mode == "cached" else []
        run([str(BIN / "roadseg-distill"), "--student", "roadseg-fast", "--data", data, "--size", SIZE,
             "--epochs", "1", "--steps-per-epoch", "12", "--batch", "8", "--seed", "0", "--kd-stride", "8", "--out", str(out),
             *repeat("--teacher", [RUNS / t for t in TEACHERS]), *extra], logs / f"kd-mode-{mode}.log")
        row = list(csv.DictReader((out / "history.csv").open()))[-1]
        modes[mode] = {"steps": 12, "train_seconds": float(row["train_time_s"])}
    cache_meta = json.loads((RUNS / "teacher-cache" / "meta.json").read_text())
    modes["cache_build_seconds"] = cache_meta.get("seconds")
    modes["cache_views_of_images"] = cache_meta["key"]["images"] * cache_meta["key"]["views"]
    modes_json.write_text(json.dumps(modes, indent=2))


def calibration_jobs(best: str) -> list[tuple[str, str, str]]:
    """``(run, precision, size)`` to calibrate: int8 of every student at SIZE
    (the best one also in fp32, fp16 and dynamic), and the KD students and
    the MobileNetV3-Large reference at BENCH_SIZE for speed."""
    jobs = []
    for s, kd in STUDENTS + [("roadseg-fast", "wide")]:
        n = KD_WIDE.name if kd == "wide" else student_name(s, kd)
        jobs.append((n, "int8", SIZE))
        if n == best:
            jobs += [(n, p, SIZE) for p in ("fp32", "fp16", "dynamic")]
        if kd or s == "lraspp-mobilenetv3-large":
            jobs += [(n, "int8", BENCH_SIZE), (n, "fp32", BENCH_SIZE)] if kd else [(n, "int8", BENCH_SIZE)]
    return jobs


def calibrate_all(data: str, best: str, logs: Path) -> None:
    """Stage 3. int8 at SIZE is gated; fp16/fp32/dynamic are recorded for
    comparison and the BENCH_SIZE files are for speed. A model the gate
    refuses is recorded in ``gate-failures.json`` and written anyway
    (``--force``) so the page can show by how much."""
    gate_file = RUNS / "gate-failures.json"
    for n, prec, size in calibration_jobs(best):
        out = DIST / f"{n}-{prec}-{size}.tflite"
        if out.is_file() and out.with_suffix(".json").is_file():
            continue
        gate = ["--max-drop", "100", "--min-agreement", "0", "--min-miou", "0", "--force"] \
            if (size != SIZE or prec != "int8") else ["--max-drop", E("MAX_DROP", "1.0")]
        cmd = [str(BIN / "roadseg-calibrate"), "--model", str(RUNS / n), "--data", data, "--out", str(out),
               "--size", size, "--precision", prec, "--samples", E("CAL_SAMPLES", "200")]
        if run(cmd + gate, logs / f"calibrate-{out.stem}.log", ok_codes=(0, 3)) == 3:
            failures = json.loads(gate_file.read_text()) if gate_file.is_file() else []
            gate_file.write_text(json.dumps(sorted(set(failures) | {out.stem})))
            run(cmd + gate + ["--force"], logs / f"calibrate-{out.stem}.log")


def bench_all(best: str, logs: Path) -> None:
    """Stage 4: every BENCH_SIZE model at 1 and 2 threads; the int8 ones with
    frames delivered at the model's size (as picamera2 and the Jetson CSI
    pipeline ask the ISP for); the best student's four precisions."""
    bench_models = sorted(str(p) for p in DIST.glob(f"*-{BENCH_SIZE}.tflite"))
    common = ["--frames", str(BENCH_FRAMES), "--warmup", "10"]
    runs = [("bench.json", bench_models, ["--threads", "1", "--threads", "2"]),
            ("bench-isp.json", [m for m in bench_models if "-int8-" in m],
             ["--threads", "2", "--frame-size", BENCH_SIZE]),
            ("bench-precisions.json", [str(DIST / f"{best}-{p}-{SIZE}.tflite") for p in ("fp32", "fp16", "dynamic",
                                                                                          "int8")], ["--threads", "2"])]
    for name, models, flags in runs:
        out = RUNS / name
        if not out.is_file():
            run([str(BIN / "roadseg-bench"), *repeat("--model", models), *flags, *common, "--out", str(out)],
                logs / f"{Path(name).stem}.log")


def main(data: str) -> None:
    """Run every stage on the CamVid folder ``data``, then the report."""
    t_start = time.time()
    logs = RUNS / "logs"
    train_models(data, logs)
    time_kd_modes(data, logs)
    kd_runs = [student_name(s, kd) for s, kd in STUDENTS if kd] + [KD_WIDE.name]
    best = max(kd_runs, key=lambda n: json.loads((RUNS / n / "metrics.json").read_text())["metrics"]["miou8"])
    calibrate_all(data, best, logs)
    bench_all(best, logs)
    log("writing docs/RESULTS.md")
    subprocess.run([sys.executable, "-m", "roadseg_lab", "results-report", data, str(RUNS), str(DIST), best, SIZE,
                    BENCH_SIZE, f"{(time.time() - t_start) / 60:.0f}"], check=True, cwd=ROOT)
    log(f"all stages done in {(time.time() - t_start) / 60:.1f} min (this invocation)")
