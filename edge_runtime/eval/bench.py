"""Measure a model where it runs: invoke latency and end-to-end FPS of
the vehicle's pipeline, side by side, TensorFlow-free (``roadseg-bench``,
edge_runtime/commands/bench.py, is the command).

For each model and thread count: invoke latency p50/p90/p99/mean and
invoke-only FPS; end-to-end FPS of the pipeline the vehicle runs (source
decode, preprocess, invoke, postprocess, coverage, and a summary serialized for
a null publisher every ``publish_interval`` seconds as roadseg-run does; 0
makes one per frame, the worst case); CPU utilisation; resident memory; and the
pipeline overhead ``1 - e2e FPS / invoke FPS``. Models are measured
interleaved in rounds (A B A B ...) so machine drift hits all alike.
"""
from __future__ import annotations

import datetime as dt
import logging
import os
import platform
import resource
import time
from pathlib import Path

import numpy as np

from edge_runtime.atomic import save_figure

log = logging.getLogger("roadseg.bench")


def machine_info() -> dict:
    from edge_runtime.model.interpreter import interpreter_api
    cpu = platform.processor() or ""
    flags = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
            if line.startswith(("flags", "Features")) and not flags:
                flags = line.split(":", 1)[1]
    except OSError:
        pass
    _, _, backend, version = interpreter_api()
    return {"cpu": cpu or platform.machine(), "machine": platform.machine(), "cores": os.cpu_count(),
            "avx512_vnni": "avx512_vnni" in flags, "arm_dotprod": "asimddp" in flags,
            "os": platform.platform(), "python": platform.python_version(),
            "interpreter": f"{backend} {version}",
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}


class FrameFeed:
    """Frames for the end-to-end loop: decoded from a video file on every
    read (decode cost included), or synthetic camera frames (BGR, like OpenCV
    and picamera2 ``RGB888`` deliver) at ``frame_size``."""

    def __init__(self, source: str, frame_size: tuple[int, int]):
        import cv2
        self.source = source
        if source == "synthetic":
            from edge_runtime.eval.synthetic import synthetic_scene
            self.frames = [cv2.cvtColor(synthetic_scene(i, *frame_size)[0], cv2.COLOR_RGB2BGR) for i in range(8)]
            self.i = 0
        else:
            from edge_runtime.io.sources import open_source
            self.src = open_source(source, realtime=False, loop=True)

    def read(self):
        if self.source == "synthetic":
            f = self.frames[self.i % len(self.frames)]
            self.i += 1
            return f, "bgr"
        return self.src.read()


class Bench:
    def __init__(self, path: str, threads: int):
        from edge_runtime.model.segmenter import DeviceSegmenter
        self.path = Path(path)
        self.threads = threads
        self.seg = DeviceSegmenter(path, threads=threads)
        self.invoke_ms: list[float] = []
        self.e2e_s = 0.0
        self.e2e_frames = 0
        self.cpu_s = 0.0
        from edge_runtime.io.device import memory_mb
        self.rss_mb = memory_mb()["rss_mb"]
        d = self.seg.describe()
        self.model = {"name": d["name"], "sha256": d["sha256"]}
        from edge_runtime.contract.coverage import CoverageAggregator
        self.agg = CoverageAggregator()
        self.last_summary = 0.0

    def label(self) -> str:
        return f"{self.path.stem}@{self.threads}t"


def _run_invoke(b: Bench, n: int) -> None:
    for _ in range(n):
        b.invoke_ms.append(b.seg.invoke_only())


def _run_e2e(b: Bench, feed: FrameFeed, n: int, publish_interval: float = 1.0) -> None:
    """The vehicle's loop: a summary serialized for a null publisher every
    ``publish_interval`` seconds (0: every frame)."""
    from edge_runtime.contract import payloads
    from edge_runtime.io.publisher import NullPublisher
    agg, pub = b.agg, NullPublisher()
    c0 = time.process_time()
    t0 = time.perf_counter()
    for _ in range(n):
        frame, order = feed.read()
        classes = b.seg.segment(frame, order)
        agg.add(classes, b.seg.timing.invoke_ms, b.seg.timing.total_ms)
        now = time.perf_counter()
        if now - b.last_summary >= publish_interval:
            pub.publish("coverage", payloads.coverage("bench", b.e2e_frames, agg.summary(), 0.0, b.model))
            agg.reset()
            b.last_summary = now
    b.e2e_s += time.perf_counter() - t0
    b.cpu_s += time.process_time() - c0
    b.e2e_frames += n


def benchmark(models: list[str], threads: list[int], frames: int = 300, warmup: int = 20, rounds: int = 5,
              source: str = "synthetic", frame_size: tuple[int, int] = (480, 640), data: str | None = None,
              split: str = "val", publish_interval: float = 1.0) -> dict:
    feed = FrameFeed(source, frame_size)
    benches = [Bench(m, t) for m in models for t in threads]
    for b in benches:  # warm-up: first invokes allocate and pack weights
        _run_e2e(b, feed, warmup, publish_interval)
        b.e2e_s = b.cpu_s = 0.0
        b.e2e_frames = 0
    per_round = max(1, frames // rounds)
    for r in range(rounds):
        for b in benches:  # interleaved: drift hits every model alike
            _run_invoke(b, per_round)
            _run_e2e(b, feed, per_round, publish_interval)
        log.info("round %d/%d done", r + 1, rounds)
    accuracy: dict[str, dict] = {}
    if data:
        from edge_runtime.eval.datasets import list_samples
        from edge_runtime.eval.evaluation import evaluate_segmenter
        fmt, samples = list_samples(data, split)
        for m in models:
            b = next(x for x in benches if str(x.path) == str(Path(m)))
            cm, _, _ = evaluate_segmenter(b.seg.segment_classes, samples, fmt, keep=0, progress_every=0)
            accuracy[m] = cm.compute().as_dict()
    results = []
    for b in benches:
        lat = np.array(b.invoke_ms)
        invoke_fps = 1000.0 / lat.mean()
        e2e_fps = b.e2e_frames / b.e2e_s
        d = b.seg.describe()
        acc = accuracy.get(str(b.path)) or next((v for k, v in accuracy.items() if Path(k) == b.path), None)
        results.append({
            "model": b.path.stem, "path": str(b.path), "threads": b.threads, "backend": d["interpreter"],
            "size_mb": round(b.path.stat().st_size / 1e6, 3), "precision": d["precision"],
            "input": f"{d['input_size'][0]}x{d['input_size'][1]}", "output_kind": d["output_kind"],
            "frames": len(lat),
            "latency_ms": {"p50": round(float(np.percentile(lat, 50)), 3), "p90": round(float(np.percentile(lat, 90)), 3),
                           "p99": round(float(np.percentile(lat, 99)), 3), "mean": round(float(lat.mean()), 3),
                           "min": round(float(lat.min()), 3)},
            "invoke_fps": round(float(invoke_fps), 2), "e2e_fps": round(float(e2e_fps), 2),
            "overhead": round(float(1 - e2e_fps / invoke_fps), 4),
            "cpu_utilisation": round(b.cpu_s / b.e2e_s, 3),
            "rss_mb_after_load": round(b.rss_mb, 1) if b.rss_mb else None,
            "miou8": acc["miou8"] if acc else None, "miou7": acc["miou7"] if acc else None,
        })
    return {"schema": "roadseg.bench/1", "machine": machine_info(),
            "settings": {"frames": frames, "warmup": warmup, "rounds": rounds, "source": source,
                         "publish_interval": publish_interval,
                         "frame_size": list(frame_size), "data": data, "split": split if data else None},
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "results": results}


COLUMNS = ("model", "backend", "precision", "threads", "size MB", "mIoU-8", "p50 ms", "p99 ms", "FPS", "e2e FPS", "overhead")


def _rows(report: dict) -> list[list[str]]:
    rows = []
    for r in report["results"]:
        rows.append([r["model"], r["backend"].split(" (")[0], r["precision"], str(r["threads"]), f"{r['size_mb']:.2f}",
                     "-" if r["miou8"] is None else f"{r['miou8']:.3f}", f"{r['latency_ms']['p50']:.2f}",
                     f"{r['latency_ms']['p99']:.2f}", f"{r['invoke_fps']:.1f}", f"{r['e2e_fps']:.1f}",
                     f"{100 * r['overhead']:.1f}%"])
    return rows


def format_table(report: dict) -> str:
    rows = [list(COLUMNS)] + _rows(report)
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    line = lambda r: " | ".join(c.ljust(w) for c, w in zip(r, widths))
    m = report["machine"]
    out = [line(rows[0]), "-+-".join("-" * w for w in widths)] + [line(r) for r in rows[1:]]
    out.append(f"{m['cpu']}, {m['cores']} cores, {m['os']}, {m['interpreter']}, {m['date']}")
    return "\n".join(out)


def format_markdown(report: dict) -> str:
    m = report["machine"]
    s = report["settings"]
    out = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    out += ["| " + " | ".join(r) + " |" for r in _rows(report)]
    out.append("")
    out.append(f"Machine: {m['cpu']}, {m['cores']} cores, AVX-512 VNNI {'yes' if m['avx512_vnni'] else 'no'}, "
               f"{m['os']}, {m['interpreter']}; {m['date']}. {s['frames']} frames per model after {s['warmup']} "
               f"warm-up, interleaved in {s['rounds']} rounds; e2e from {s['source']} frames of "
               f"{s['frame_size'][0]}x{s['frame_size'][1]}, a summary every "
               f"{s.get('publish_interval', 0):g} s{' (every frame)' if not s.get('publish_interval') else ''}.")
    return "\n".join(out)


def plot_pareto(report: dict, out: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    pts = [r for r in report["results"] if r["miou8"] is not None]
    if not pts:
        raise ValueError("--plot needs accuracy: give --data")
    markers = {1: "o", 2: "s", 4: "^"}
    for r in pts:
        ax.scatter(r["e2e_fps"], r["miou8"], marker=markers.get(r["threads"], "D"), s=50)
        ax.annotate(f"{r['model']} ({r['threads']}t)", (r["e2e_fps"], r["miou8"]), fontsize=7,
                    xytext=(4, 3), textcoords="offset points")
    # Pareto front: no other point is both faster and more accurate
    front = sorted((r for r in pts if not any(o["e2e_fps"] >= r["e2e_fps"] and o["miou8"] > r["miou8"] or
                                             o["e2e_fps"] > r["e2e_fps"] and o["miou8"] >= r["miou8"] for o in pts)),
                   key=lambda r: r["e2e_fps"])
    ax.plot([r["e2e_fps"] for r in front], [r["miou8"] for r in front], "k--", lw=0.8, label="Pareto front")
    ax.set(xlabel="end-to-end FPS (higher is better)", ylabel="val mIoU-8", title="speed vs accuracy")
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, out, dpi=110)
