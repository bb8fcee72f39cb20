"""Synthetic artifacts for the lab's reports: the files a recipe, a GPU run,
the benchmark and the soak write, with made-up but consistent numbers
(``numpy`` random, seeded), tiny and fast to write."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

CATS = ["void", "flat", "construction", "object", "nature", "sky", "human", "vehicle"]
CATS7 = CATS[1:]


def _dump(path: Path, obj) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))
    return path


def _ious(rng, classes) -> dict:
    return {c: round(float(rng.uniform(0.05, 0.95)), 4) for c in classes}


def metrics(rng, params: float = 2.5e6, best_epoch: int = 7) -> dict:
    """A run's ``metrics.json``."""
    iou, iou7 = _ious(rng, CATS), _ious(rng, CATS7)
    return {"metrics": {"miou7": float(np.mean(list(iou7.values()))), "miou8": float(np.mean(list(iou.values()))),
                        "mdice7": round(float(rng.uniform(0.3, 0.9)), 4),
                        "pixel_accuracy": round(float(rng.uniform(0.7, 0.95)), 4), "iou": iou, "iou7": iou7},
            "params": params, "timing": {"ms_per_image": round(float(rng.uniform(5, 50)), 2)},
            "best_epoch": best_epoch, "arch": "fpn-efficientnet-lite2"}


def accuracy(rng) -> dict:
    """The ``accuracy`` block of a calibration sidecar."""
    fl, q = rng.uniform(0.4, 0.7, 2)
    return {"float": {"miou7": float(fl), "miou8": float(fl - 0.05)}, "quantized": {"miou7": float(q), "miou8": float(q - 0.05)},
            "drop_points": float(100 * (fl - q)), "drop_points_miou7": float(100 * (fl - q)),
            "pixel_agreement": float(rng.uniform(0.9, 0.999)), "quantized_metrics": {"iou7": _ious(rng, CATS7)}}


def bench(rng, models: list[str], frames: int = 150) -> dict:
    """``roadseg-bench --out`` JSON for ``models`` at 1 and 2 threads."""
    results = [{"model": m, "path": f"/x/{m}.tflite", "threads": t, "latency_ms": {"p50": float(rng.uniform(1, 9))},
                "invoke_fps": float(rng.uniform(50, 400)), "e2e_fps": float(rng.uniform(40, 300)),
                "overhead": float(rng.uniform(0.01, 0.2))} for m in models for t in (1, 2)]
    return {"machine": {"cpu": "Test CPU", "cores": 2, "avx512_vnni": True, "os": "Linux", "interpreter": "litert 1.0",
                        "date": "2026-11-30 10:00:00", "machine": "x86_64"},
            "settings": {"frames": frames}, "results": results}


def pretrained_artifacts(root: Path) -> dict:
    """runs/, dist/, a teacher imported from an any-backend run, bench.json;
    returns the report's arguments."""
    rng = np.random.default_rng(1)
    runs, dist, size = root / "runs", root / "dist", "192x256"
    names = ["lite0-nokd-s0", "lite0-kd-s0", "lite0-nokd-s1", "lite0-kd-s1", "fast-nokd-s0", "fast-kd-s0"]
    for i, n in enumerate(names):
        _dump(runs / n / "metrics.json", metrics(rng, best_epoch=i + 3))
        if n != "fast-kd-s0":  # one run without an int8 model
            _dump(dist / f"{n}-int8-{size}.json", {"accuracy": accuracy(rng)})
    gpu = root / "gpu-teacher"
    _dump(gpu / "train_log.json", {"epochs": [{"epoch": e} for e in range(1, 249)], "train_seconds": 258.0,
                                   "backend": "jax", "args": {"arch": "fpn-efficientnet-lite2", "size": [352, 480],
                                                             "epochs": 1000, "minutes": 4.4, "batch": 16, "lr": 1e-3}})
    teacher = runs / "teacher-fpn-lite2"
    _dump(teacher / "metrics.json", metrics(rng, params=5.8e6))
    _dump(teacher / "config.json", {"size": [352, 480], "epochs": 0, "init_weights": [str(gpu / "weights-0.npz")]})
    _dump(runs / "bench.json", bench(rng, [f"lite0-kd-s0-int8-{size}", f"fast-nokd-s0-int8-{size}",
                                           "lraspp-mnv3-large-speedref-int8-192x256"]))
    return {"names": names, "runs": runs, "dist": dist, "size": size, "best": "lite0-kd-s0", "teacher": teacher,
            "bench": str(runs / "bench.json"), "minutes": "42", "teacher_note": "one test GPU"}


def gpu_students_artifacts(root: Path) -> dict:
    """gpu_students.sh's logs and train logs (one run stopped early), the
    imported runs, their sidecars, bench.json; returns the report's arguments."""
    rng = np.random.default_rng(2)
    kd, runs, dist, size = root / "kd", root / "runs", root / "dist", "352x480"
    kd.mkdir(parents=True)
    for cfg in ("lite0", "fast2"):
        for mode in ("kd", "nokd"):
            for seed in ("0", "1"):
                n = f"{cfg}-{mode}-s{seed}"
                last = 100 if n != "fast2-kd-s1" else 75
                rows = [{"epoch": e, "holdout_miou7": float(rng.uniform(0.4, 0.7))} for e in range(25, last + 1, 25)]
                (kd / f"{n}.log").write_text("warming up\n" + "\n".join(json.dumps(r) for r in rows) + "\n")
                if n == "fast2-kd-s1":
                    continue  # stopped by the time limit: no weights came back
                _dump(kd / n / "train_log.json", {"epochs": [{"epoch": e} for e in range(1, last + 1)]})
                _dump(runs / n / "metrics.json", metrics(rng))
                _dump(dist / f"{n}-int8-{size}.json", {"accuracy": accuracy(rng)})
    teacher = root / "teacher"
    _dump(teacher / "metrics.json", metrics(rng))
    _dump(root / "bench.json", bench(rng, [f"lite0-kd-s0-int8-{size}", f"fast2-nokd-s1-int8-{size}",
                                           f"lraspp-mnv3-large-speedref-int8-{size}"], frames=300))
    return {"kd": kd, "runs": runs, "dist": dist, "teacher": teacher, "bench": str(root / "bench.json"),
            "size": size, "gpu": "one test GPU", "date": "2026-11-30", "extra": "A paragraph of reading."}


def soak_report(rng, minutes: float, lost: int, arena: str | None) -> dict:
    """A ``soak --out`` JSON."""
    samples = [(t, round(150 + 0.01 * t + float(rng.normal(0, 0.3)), 2)) for t in range(0, int(minutes * 60), 10)]
    return {"minutes": minutes, "frames": int(minutes * 60 * 10), "fps_achieved": 10.0,
            "api": {"calls": 840, "errors": 0}, "api_every_s": 5.0, "http_client": "shared",
            "malloc_arena_max": arena, "summaries": {"published": 2100, "received": 2100 - lost, "lost": lost},
            "broker_outages": 11, "broker_recovery_s": [1.2, 0.8, None], "camera_outages": 13,
            "camera_recovery_s": [0.4, 0.6], "watchdog": {"misses": 0, "max_gap_s": 1.01},
            "rss_mb": {"start": 150.1, "after_warmup": 151.2, "end": 151.9},
            "rss_growth_mb_per_hour_after_warmup": 0.27, "rss_growth_mb_per_hour_last_half": 0.1,
            "memory_breakdown": [[60, {"heap": 20.5, "threads": 14}], [1800, {"heap": 20.7, "threads": 14}]],
            "rss_samples": samples,
            "verdict": {"rss_growth_below_1_mb_per_hour": True, "no_summary_lost": lost == 0}}


def _history(run: Path, rng, epochs: int = 3) -> None:
    run.mkdir(parents=True, exist_ok=True)
    rows = ["epoch,loss,val_miou8,val_miou7,val_pixel_accuracy,lr,time_s,train_time_s"]
    rows += [f"{e},0.5,0.4,0.45,0.8,0.001,{float(rng.uniform(30, 90)):.2f},20.0" for e in range(1, epochs + 1)]
    (run / "history.csv").write_text("\n".join(rows) + "\n")


def results_artifacts(root: Path, size: str = "192x256", bench_size: str = "256x512") -> dict:
    """Everything the from-scratch recipe leaves in runs/ and dist/ (models
    are a few bytes: only their size is read); returns the report's arguments."""
    rng = np.random.default_rng(3)
    runs, dist = root / "runs", root / "dist"
    for t in ("fpn-efficientnetb0", "segformer-b0", "roadseg-fast-w2-teacher"):
        _dump(runs / t / "metrics.json", metrics(rng, params=float(rng.uniform(1e6, 9e6))))
        _dump(runs / t / "config.json", {"epochs": 10})
        _history(runs / t, rng)
    students = ["roadseg-fast-kd", "roadseg-fast-nokd", "roadseg-fast-kd-wide", "lraspp-mobilenetv3-small-kd",
                "lraspp-mobilenetv3-small-nokd", "lraspp-mobilenetv3-large-nokd"]
    for n in students:
        _dump(runs / n / "metrics.json", metrics(rng, params=float(rng.uniform(1e5, 2e6))))
        _dump(runs / n / "export" / "roadseg.json", {"macs_256x512": int(rng.integers(1e8, 9e8))})
        _dump(runs / n / "config.json", {"student": n.split("-kd")[0].split("-nokd")[0], "epochs": 30})
        _history(runs / n, rng)
        for prec, s in [("int8", size), ("int8", bench_size)] + ([(p, size) for p in ("fp32", "fp16", "dynamic")]
                                                                 if n == "roadseg-fast-kd" else []):
            f = dist / f"{n}-{prec}-{s}.tflite"
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_bytes(b"\0" * int(rng.integers(1e5, 3e6)))
            _dump(f.with_suffix(".json"), {"accuracy": accuracy(rng)})
    models = [f"{n}-int8-{bench_size}" for n in students]
    _dump(runs / "bench.json", bench(rng, models, frames=100))
    b = json.loads((runs / "bench.json").read_text())
    for r in b["results"]:
        r["path"] = str(dist / f"{r['model']}.tflite")
    _dump(runs / "bench.json", b)
    _dump(runs / "bench-precisions.json", {"results": [
        {"path": str(dist / f"roadseg-fast-kd-{p}-{size}.tflite"), "latency_ms": {"p50": float(rng.uniform(1, 9))}}
        for p in ("fp32", "fp16", "int8")]})
    _dump(runs / "bench-isp.json", bench(rng, models[:3]))
    _dump(runs / "kd-modes.json", {"online": {"train_seconds": 60.0}, "cached": {"train_seconds": 18.0},
                                   "cache_build_seconds": 420.0, "cache_views_of_images": 1468})
    _dump(runs / "gate-failures.json", [f"lraspp-mobilenetv3-small-kd-int8-{size}"])
    return {"data": str(root / "camvid"), "runs": runs, "dist": dist, "best": "roadseg-fast-kd", "size": size,
            "bench_size": bench_size}


def soak_runs(root: Path) -> list[str]:
    """Two soak JSON files as ``LABEL=PATH`` items (one label holding ``=``)."""
    rng = np.random.default_rng(4)
    a = _dump(root / "a.json", soak_report(rng, 35.0, 0, None))
    b = _dump(root / "b.json", soak_report(rng, 90.0, 5, "2"))
    return [f"shared client={a}", f"arena=2, 90 min={b}"]
