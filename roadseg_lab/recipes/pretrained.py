"""Reproduce the pretrained, sequence-disjoint CamVid results (issue 13).

    scripts/reproduce_camvid.sh /path/to/camvid                 # RECIPE=pretrained, the default
    TEACHER_WEIGHTS=out/ scripts/reproduce_camvid.sh /path/to/camvid   # a teacher trained on a GPU

Every model trains on the 367 frames of train + val outside sequence 0006R0
and is scored on all 101 frames of 0006R0, a road sequence it never saw
(``--train-split except:0006R0 --val-split holdout:0006R0``). CamVid's val
split is part of that training set here, so val numbers are not reported for
these models: see the from-scratch tables (RECIPE=scratch) for val.

Stages (each skipped when its outputs exist; training resumes from its
last checkpoint):

 1. teacher    FPN on ImageNet EfficientNet-Lite2. With TEACHER_WEIGHTS (the
               folder ``python -m distill.commands.keras_backend train`` wrote
               on a GPU machine) it is imported with ``roadseg-train --epochs 0
               --init-weights``; otherwise trained here at TEACHER_SIZE for
               TEACHER_EPOCHS (the CPU budget: far below what a GPU does). TEACHER_NOTE
               names the machine that trained an imported teacher, for the report.
 2. students   LR-ASPP on ImageNet EfficientNet-Lite0, labels only and with KD
               from the teacher, for each seed in SEEDS (same schedule both ways);
               FAST=1 adds roadseg-fast (seed 0) both ways. With STUDENT_WEIGHTS
               (the folder ``scripts/gpu_students.sh`` wrote on a GPU machine)
               every student in it is imported instead (``roadseg-distill
               --epochs 0 --init-weights``; SIZE must be the size they trained
               at), and the report is the gpu-students-report
               (docs/measurements/06-gpu-students.md); STUDENT_NOTE names the GPU.
 3. int8       every student calibrated to int8 at SIZE, scored on 0006R0 through
               the LiteRT interpreter by calibration's gate.
 4. speed      the best int8 student next to LR-ASPP MobileNetV3-Large int8 at the
               same SIZE (trained one short epoch: its speed, not its accuracy, is
               the point), end to end, 1 and 2 threads, interleaved.
 5. report     docs/measurements/05-pretrained.md and docs/img/pretrained-per-class.png.

Budget at the defaults on a 2-core x86 CPU without TEACHER_WEIGHTS: about
150 minutes (teacher 8 epochs at 192x256 about 35, four students about 20
each plus two teacher caches about 6 each, int8 and speed about 10).
"""
from __future__ import annotations

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
TEACHER_SIZE = E("TEACHER_SIZE", "192x256")
TEACHER_EPOCHS = E("TEACHER_EPOCHS", "8")
TEACHER_WEIGHTS = E("TEACHER_WEIGHTS")
STUDENT_WEIGHTS = E("STUDENT_WEIGHTS")
STUDENT_EPOCHS = E("STUDENT_EPOCHS", "20")
SEEDS = [int(s) for s in E("SEEDS", "0,1").split(",")]
FAST = E("FAST", "0") == "1"
HOLDOUT = E("HOLDOUT", "0006R0")
BENCH_FRAMES = E("BENCH_FRAMES", "150")
RUNS = Path(E("RUNS", str(ROOT / "runs" / "pretrained")))
DIST = Path(E("DIST", str(ROOT / "dist" / "pretrained")))
SPLIT = ["--train-split", f"except:{HOLDOUT}", "--val-split", f"holdout:{HOLDOUT}"]
STUDENT = "lraspp-efficientnet-lite0"


def init_weight_args(folder: Path, train_log: dict) -> list[str]:
    """``--init-weights`` for every part the any-backend trainer wrote into ``folder``."""
    return repeat("--init-weights", [folder / f for f in train_log["weight_files"]])


def teacher(data: str, logs: Path) -> Path:
    """Stage 1: the teacher run, imported from TEACHER_WEIGHTS or trained here."""
    out = RUNS / "teacher-fpn-lite2"
    if stage_done(out):
        return out
    if TEACHER_WEIGHTS:
        tl = json.loads((Path(TEACHER_WEIGHTS) / "train_log.json").read_text())
        parts = init_weight_args(Path(TEACHER_WEIGHTS), tl)
        run([str(BIN / "roadseg-train"), "--arch", tl["arch"], "--data", data, "--size", "x".join(map(str, tl["size"])),
             "--epochs", "0", *parts, *SPLIT, "--out", str(out)], logs / "teacher.log")
    else:
        run([str(BIN / "roadseg-train"), "--arch", "fpn-efficientnet-lite2", "--encoder-weights", "imagenet",
             "--data", data, "--size", TEACHER_SIZE, "--epochs", TEACHER_EPOCHS, "--batch", "8", "--lr", "1e-3",
             "--seed", "0", *SPLIT, "--out", str(out), *resume_flag(out)], logs / "teacher.log")
    return out


def students(data: str, t: Path, logs: Path) -> list[str]:
    """Stage 2: each student with and without KD from ``t``; returns their names."""
    jobs = [(STUDENT, s, kd) for s in SEEDS for kd in (False, True)]
    if FAST:
        jobs += [("roadseg-fast", 0, False), ("roadseg-fast", 0, True)]
    names = []
    for arch, seed, kd in jobs:
        name = f"{'lite0' if arch == STUDENT else 'fast'}-{'kd' if kd else 'nokd'}-s{seed}"
        names.append(name)
        out = RUNS / name
        if stage_done(out):
            continue
        enc = ["--encoder-weights", "imagenet"] if arch == STUDENT else []
        kd_args = ["--teacher", str(t), "--teacher-cache", str(RUNS / f"cache-{arch}-s{seed}"), "--cache-views", "4",
                   "--temperature", "2", "--alpha", "1.0", "--kd-stride", "8"] if kd else ["--no-kd"]
        run([str(BIN / "roadseg-distill"), "--student", arch, *enc, "--data", data, "--size", SIZE,
             "--epochs", STUDENT_EPOCHS, "--batch", "8", "--lr", "2e-3", "--seed", str(seed), *SPLIT, *kd_args,
             "--out", str(out), *resume_flag(out)], logs / f"{name}.log")
    return names


def imported_students(data: str, logs: Path) -> list[str]:
    """Every student that ``scripts/gpu_students.sh`` left in STUDENT_WEIGHTS
    with weights (a run stopped by a time limit keeps its last evaluated
    ones), imported as a run directory of the same name. Raises
    ``SystemExit`` for a student trained at another SIZE or an empty folder."""
    names = []
    for tl_path in sorted(Path(STUDENT_WEIGHTS).glob("*/train_log.json")):
        tl, name = json.loads(tl_path.read_text()), tl_path.parent.name
        size = "x".join(map(str, tl["size"]))
        if size != SIZE:
            raise SystemExit(f"{tl_path.parent} trained at {size}: run with SIZE={size}")
        names.append(name)
        out = RUNS / name
        if stage_done(out):
            continue
        width = ["--width", str(tl["args"]["width"])] if tl["arch"] == "roadseg-fast" else []
        run([str(BIN / "roadseg-distill"), "--student", tl["arch"], *width, "--no-kd", "--epochs", "0",
             "--size", SIZE, "--data", data, *init_weight_args(tl_path.parent, tl), *SPLIT, "--out", str(out)],
            logs / f"{name}.log")
    if not names:
        raise SystemExit(f"STUDENT_WEIGHTS={STUDENT_WEIGHTS} holds no NAME/train_log.json")
    return names


def calibrate(data: str, name: str, logs: Path, gate: bool = True) -> Path:
    """Stage 3 for one run: its int8 model at SIZE (gated unless ``gate`` is false)."""
    out = DIST / f"{name}-int8-{SIZE}.tflite"
    if not (out.is_file() and out.with_suffix(".json").is_file()):
        run([str(BIN / "roadseg-calibrate"), "--model", str(RUNS / name), "--data", data, "--out", str(out),
             "--size", SIZE, "--precision", "int8", "--samples", "200", *SPLIT,
             *([] if gate else ["--force", "--max-drop", "100", "--min-agreement", "0"])],
            logs / f"calibrate-{name}.log", ok_codes=(0, 3))
    return out


def speed(data: str, ints: dict[str, Path], names: list[str], logs: Path) -> tuple[str, Path]:
    """Stage 4: the best int8 student of each architecture beside the
    MobileNetV3-Large reference; returns ``(best student, bench JSON)``."""
    ref = RUNS / "lraspp-mnv3-large-speedref"
    if not stage_done(ref):
        run([str(BIN / "roadseg-distill"), "--student", "lraspp-mobilenetv3-large", "--no-kd", "--data", data,
             "--size", SIZE, "--epochs", "1", "--steps-per-epoch", "10", "--batch", "8", *SPLIT, "--out", str(ref)],
            logs / "speedref.log")
    ref_tfl = calibrate(data, ref.name, logs, gate=False)

    def score(n):
        return json.loads(ints[n].with_suffix(".json").read_text())["accuracy"]["quantized"]["miou7"]
    done = sorted((n for n in names if ints[n].is_file()), key=score, reverse=True)
    per_arch: dict[str, str] = {}
    for n in done:
        per_arch.setdefault(n.split("-")[0], n)
    bench = RUNS / "bench.json"
    if not bench.is_file():
        run([str(BIN / "roadseg-bench"), *repeat("--model", [ints[n] for n in per_arch.values()]), "--model",
             str(ref_tfl), "--threads", "1", "--threads", "2", "--frames", BENCH_FRAMES, "--warmup", "20",
             "--frame-size", "360x480", "--out", str(bench)], logs / "bench.log")
    return done[0], bench


def main(data: str) -> None:
    """Run every stage on the CamVid folder ``data``, then the report."""
    t_start = time.time()
    logs = RUNS / "logs"
    t = teacher(data, logs)
    names = imported_students(data, logs) if STUDENT_WEIGHTS else students(data, t, logs)
    ints = {n: calibrate(data, n, logs) for n in names}
    best, bench = speed(data, ints, names, logs)
    if STUDENT_WEIGHTS:
        report = ["gpu-students-report", "--kd", STUDENT_WEIGHTS, "--runs", str(RUNS), "--dist", str(DIST),
                  "--bench", str(bench), "--teacher", str(t), "--size", SIZE, "--gpu", E("STUDENT_NOTE", "a GPU"),
                  "--date", time.strftime("%Y-%m-%d")]
    else:
        report = ["pretrained-report", "--runs", str(RUNS), "--dist", str(DIST), "--size", SIZE, "--best", best,
                  "--teacher", str(t), "--bench", str(bench), "--holdout", HOLDOUT,
                  "--minutes", f"{(time.time() - t_start) / 60:.0f}", "--teacher-note", E("TEACHER_NOTE", ""), *names]
    subprocess.run([sys.executable, "-m", "roadseg_lab", *report], check=True, cwd=ROOT)
    log(f"all stages done in {(time.time() - t_start) / 60:.1f} min (this invocation)")
