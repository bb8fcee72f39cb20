"""Measure a model where it runs: invoke latency and end-to-end FPS of
the vehicle's pipeline, side by side, TensorFlow-free (``roadseg-bench``,
edge_runtime/commands/bench.py, is the command).

For each model and thread count: invoke latency p50/p90/p99/mean and
invoke-only FPS; end-to-end FPS of the pipeline the vehicle runs (source
decode, preprocess, invoke, postprocess, coverage, and a summary serialized for
a null publisher every ``publish_interval`` seconds as roadseg-run does; 0
makes one per frame, the worst case); CPU utilisation; resident memory; and the
pipeline overhead ``1 - e2e FPS / invoke FPS``. Models are measured
interleaved in rounds (A B A B ...) so machine drift hits all alike. With
``keep_score`` the e2e loop also scores every frame for the data flywheel
(:class:`edge_runtime.flywheel.score.TeachScorer`, as ``roadseg-run
--keep-frames`` does) and reports its cost per frame and its share of the
frame time.
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
    """What the numbers were measured on: CPU model, cores, ISA features that
    int8 kernels use (AVX-512 VNNI, Arm dot product), OS, Python, the
    interpreter and its version, and the UTC date."""
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
    """Frames for the end-to-end loop: decoded from a video file or image
    folder on every read (decode cost included; restarted at the end), or
    synthetic camera frames (BGR, like OpenCV and picamera2 ``RGB888``
    deliver) at ``frame_size`` (H, W). ``frame_size`` is then what the source
    really delivers: a file's own size, read from its first frame. Raises
    sources.SourceError for a source that names nothing, ValueError for a
    file without a frame."""

    def __init__(self, source: str, frame_size: tuple[int, int]):
        import cv2
        self.source = source
        if source == "synthetic":
            from edge_runtime.eval.synthetic import synthetic_scene
            self.frames = [cv2.cvtColor(synthetic_scene(i, *frame_size)[0], cv2.COLOR_RGB2BGR) for i in range(8)]
            self.i = 0
            self.frame_size = tuple(frame_size)
        else:
            from edge_runtime.io.sources import open_source
            self.src = open_source(source, realtime=False, loop=True)
            first = self.src.read()
            if first is None:
                raise ValueError(f"--source {source}: no frame could be read")
            self.frame_size = tuple(first[0].shape[:2])

    def read(self) -> tuple[np.ndarray, str]:
        """The next frame, uint8 [H,W,3], and its channel order ("bgr"/"rgb")."""
        if self.source == "synthetic":
            f = self.frames[self.i % len(self.frames)]
            self.i += 1
            return f, "bgr"
        return self.src.read()

    def prepare_for(self, seg) -> None:
        """Let a file source's reader thread preprocess frames for ``seg`` (as roadseg-run's loop does);
        synthetic frames are in memory, prepared by the loop itself."""
        if self.source != "synthetic":
            self.src.prepare = seg.prepare

    @property
    def prepared(self) -> np.ndarray | None:
        """The reader's preprocessed input of the frame :meth:`read` returned last (None: none made)."""
        return getattr(getattr(self, "src", None), "prepared", None)


class Bench:
    """One model at one thread count, and what was measured on it: invoke
    latencies (ms), end-to-end seconds, frames and CPU seconds, per round."""

    def __init__(self, path: str, threads: int, size: tuple[int, int] | None = None, keep_score: bool = False):
        from edge_runtime.contract.coverage import CoverageAggregator
        from edge_runtime.io.device import memory_mb
        from edge_runtime.model.segmenter import DeviceSegmenter
        self.path = Path(path)
        self.threads = threads
        self.seg = DeviceSegmenter(path, threads=threads, size=size)
        self.invoke_ms: list[float] = []
        self.e2e_s = 0.0
        self.e2e_frames = 0
        self.cpu_s = 0.0
        self.round_overheads: list[float] = []  # 1 - e2e FPS / invoke FPS, one per round
        self.rss_mb = memory_mb()["rss_mb"]
        d = self.seg.describe()
        self.model = {"name": d["name"], "sha256": d["sha256"]}
        self.agg = CoverageAggregator()
        self.last_summary = 0.0
        self.scorer = None
        if keep_score:
            from edge_runtime.flywheel.score import TeachScorer
            self.scorer = TeachScorer.for_segmenter(self.seg)
        self.score_ms: list[float] = []  # the flywheel's score per e2e frame (ms), with keep_score

    def label(self) -> str:
        """``NAME@Nt``: the model's file stem and thread count."""
        return f"{self.path.stem}@{self.threads}t"

    def reset(self) -> None:
        """Forget what was measured (after the warm-up)."""
        self.invoke_ms.clear()
        self.round_overheads.clear()
        self.score_ms.clear()
        self.e2e_s = self.cpu_s = 0.0
        self.e2e_frames = 0


def _run_invoke(b: Bench, n: int) -> float:
    """``n`` invokes of the model alone; returns their mean in ms."""
    times = [b.seg.invoke_only() for _ in range(n)]
    b.invoke_ms.extend(times)
    return float(np.mean(times))


def _run_e2e(b: Bench, feed: FrameFeed, n: int, publish_interval: float = 1.0) -> float:
    """The vehicle's loop for ``n`` frames: a summary serialized for a null
    publisher every ``publish_interval`` seconds (0: every frame); returns the
    seconds it took."""
    from edge_runtime.contract import payloads
    from edge_runtime.io.mqtt import NullPublisher
    agg, pub = b.agg, NullPublisher()
    feed.prepare_for(b.seg)
    c0 = time.process_time()
    t0 = time.perf_counter()
    for _ in range(n):
        frame, order = feed.read()
        classes = b.seg.segment(frame, order, prepared=feed.prepared)
        agg.add(classes, b.seg.timing.invoke_ms, b.seg.timing.total_ms)
        if b.scorer is not None:  # the vehicle with --keep-frames scores every frame on the loop's thread
            t = time.perf_counter()
            b.scorer(b.seg.last_output, classes)
            b.score_ms.append((time.perf_counter() - t) * 1e3)
        now = time.perf_counter()
        if now - b.last_summary >= publish_interval:
            pub.publish("coverage", payloads.coverage("bench", b.e2e_frames, agg.summary(), 0.0, b.model))
            agg.reset()
            b.last_summary = now
    took = time.perf_counter() - t0
    b.e2e_s += took
    b.cpu_s += time.process_time() - c0
    b.e2e_frames += n
    return took


def _log_start(benches: list[Bench], feed: FrameFeed, frames: int, warmup: int, rounds: int) -> None:
    """The start-up line per model: what runs, on what, from what."""
    h, w = feed.frame_size
    for b in benches:
        d = b.seg.describe()
        log.info("measuring %s (%s, input %dx%d, %s, %d threads) on %s frames of %dx%d: %d frames in %d rounds "
                 "after %d warm-up", b.path, d["precision"], *d["input_size"], d["interpreter"], b.threads,
                 feed.source, h, w, frames, rounds, warmup)


def _accuracy(benches: list[Bench], models: list[str], data: str, split: str) -> dict[str, dict]:
    """Per model path: the metrics of its first Bench on ``data``'s ``split``."""
    from edge_runtime.eval.datasets import list_samples
    from edge_runtime.eval.evaluation import evaluate_segmenter
    fmt, samples = list_samples(data, split)
    out = {}
    for m in models:
        b = next(x for x in benches if x.path == Path(m))
        cm, _, _ = evaluate_segmenter(b.seg.segment_classes, samples, fmt, keep=0, progress_every=0)
        out[str(Path(m))] = cm.compute().as_dict()
    return out


def _result(b: Bench, acc: dict | None) -> dict:
    """One row of the report (see :func:`benchmark`)."""
    lat = np.array(b.invoke_ms)
    invoke_fps = 1000.0 / lat.mean()
    e2e_fps = b.e2e_frames / b.e2e_s
    d = b.seg.describe()
    noise = float(np.std(b.round_overheads, ddof=1)) if len(b.round_overheads) > 1 else None
    return {
        "model": b.path.stem, "path": str(b.path), "threads": b.threads, "backend": d["interpreter"],
        "size_mb": round(b.path.stat().st_size / 1e6, 3), "precision": d["precision"],
        "input": f"{d['input_size'][0]}x{d['input_size'][1]}", "output_kind": d["output_kind"],
        "frames": len(lat),
        "latency_ms": {q: round(float(np.percentile(lat, int(q[1:]))), 3) for q in ("p50", "p90", "p99")}
        | {"mean": round(float(lat.mean()), 3), "min": round(float(lat.min()), 3)},
        "invoke_fps": round(float(invoke_fps), 2), "e2e_fps": round(float(e2e_fps), 2),
        "overhead": round(float(1 - e2e_fps / invoke_fps), 4),
        "overhead_sd": None if noise is None else round(noise, 4), "rounds": len(b.round_overheads),
        "cpu_utilisation": round(b.cpu_s / b.e2e_s, 3),
        "rss_mb_after_load": round(b.rss_mb, 1) if b.rss_mb else None,
        "miou8": acc["miou8"] if acc else None, "miou7": acc["miou7"] if acc else None,
        "score_ms": round(float(np.mean(b.score_ms)), 4) if b.score_ms else None,
        "score_share": round(float(np.mean(b.score_ms)) / (1e3 * b.e2e_s / b.e2e_frames), 4) if b.score_ms else None,
    }


def benchmark(models: list[str], threads: list[int], frames: int = 300, warmup: int = 20, rounds: int = 5,
              source: str = "synthetic", frame_size: tuple[int, int] = (480, 640), data: str | None = None,
              split: str = "val", publish_interval: float = 1.0, size: tuple[int, int] | None = None,
              keep_score: bool = False) -> dict:
    """Measure every model at every thread count, interleaved in ``rounds``
    rounds of ``frames // rounds`` invokes and end-to-end frames each, after
    ``warmup`` end-to-end frames; accuracy on ``data`` when given.

    Returns ``{"schema": "roadseg.bench/1", "machine", "settings", "peak_rss_mb",
    "results": [...]}``; each result has latency percentiles (ms), invoke and
    end-to-end FPS, ``overhead`` = 1 - e2e FPS / invoke FPS over all frames and
    ``overhead_sd``, the sample standard deviation of the per-round overheads
    (the measurement's noise; None with one round), CPU utilisation (CPU
    seconds / wall seconds; >1 with threads), RSS (MB), mIoU, and with
    ``keep_score`` ``score_ms`` (the flywheel's score, mean ms per frame,
    inside the e2e loop) and ``score_share`` (its share of the e2e frame
    time; None without). ``settings`` holds the frame size the source really
    delivered. Raises what the
    segmenter raises for a bad model (ModelError, FileNotFoundError)."""
    feed = FrameFeed(source, frame_size)
    benches = [Bench(m, t, size, keep_score) for m in models for t in threads]
    _log_start(benches, feed, frames, warmup, rounds)
    for b in benches:  # warm-up: first invokes allocate and pack weights
        _run_e2e(b, feed, warmup, publish_interval)
        b.reset()
    per_round = max(1, frames // rounds)
    for r in range(rounds):
        for b in benches:  # interleaved: drift hits every model alike
            invoke_ms = _run_invoke(b, per_round)
            e2e_s = _run_e2e(b, feed, per_round, publish_interval)
            b.round_overheads.append(1 - (per_round / e2e_s) / (1000.0 / invoke_ms))
        log.info("round %d/%d done", r + 1, rounds)
    accuracy = _accuracy(benches, models, data, split) if data else {}
    return {"schema": "roadseg.bench/1", "machine": machine_info(),
            "settings": {"frames": frames, "warmup": warmup, "rounds": rounds, "source": source,
                         "publish_interval": publish_interval, "keep_score": keep_score,
                         "frame_size": list(feed.frame_size), "data": data, "split": split if data else None},
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "results": [_result(b, accuracy.get(str(b.path))) for b in benches]}


COLUMNS = ("model", "backend", "precision", "threads", "size MB", "mIoU-8", "p50 ms", "p99 ms", "FPS", "e2e FPS",
           "overhead")


def format_overhead(r: dict) -> str:
    """``"-0.8% ± 2.1"``: the overhead in percent with its round-to-round
    standard deviation in percentage points (none shown from one round)."""
    text = f"{100 * r['overhead']:.1f}%"
    return text if r.get("overhead_sd") is None else f"{text} ± {100 * r['overhead_sd']:.1f}"


#: the columns added when the flywheel's score was measured (``keep_score``)
SCORE_COLUMNS = ("score ms", "score %")


def _columns(report: dict) -> tuple[str, ...]:
    scored = any(r.get("score_ms") is not None for r in report["results"])
    return COLUMNS + (SCORE_COLUMNS if scored else ())


def _rows(report: dict) -> list[list[str]]:
    rows = []
    scored = len(_columns(report)) > len(COLUMNS)
    for r in report["results"]:
        rows.append([r["model"], r["backend"].split(" (")[0], r["precision"], str(r["threads"]), f"{r['size_mb']:.2f}",
                     "-" if r["miou8"] is None else f"{r['miou8']:.3f}", f"{r['latency_ms']['p50']:.2f}",
                     f"{r['latency_ms']['p99']:.2f}", f"{r['invoke_fps']:.1f}", f"{r['e2e_fps']:.1f}",
                     format_overhead(r)])
        if scored:
            rows[-1] += ["-", "-"] if r.get("score_ms") is None else [f"{r['score_ms']:.3f}",
                                                                     f"{100 * r['score_share']:.1f}%"]
    return rows


def format_table(report: dict) -> str:
    """The report as an aligned text table with the machine on the last line."""
    columns = _columns(report)
    rows = [list(columns)] + _rows(report)
    widths = [max(len(r[i]) for r in rows) for i in range(len(columns))]
    line = lambda r: " | ".join(c.ljust(w) for c, w in zip(r, widths))
    m = report["machine"]
    s = report["settings"]
    out = [line(rows[0]), "-+-".join("-" * w for w in widths)] + [line(r) for r in rows[1:]]
    out.append(f"{m['cpu']}, {m['cores']} cores, {m['os']}, {m['interpreter']}, {m['date']}; e2e from {s['source']} "
               f"frames of {s['frame_size'][0]}x{s['frame_size'][1]}; overhead ± its standard deviation over "
               f"{s['rounds']} rounds")
    return "\n".join(out)


def format_markdown(report: dict) -> str:
    """The report as a Markdown table and a paragraph saying how it was measured."""
    m = report["machine"]
    s = report["settings"]
    columns = _columns(report)
    out = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    out += ["| " + " | ".join(r) + " |" for r in _rows(report)]
    out.append("")
    out.append(f"Machine: {m['cpu']}, {m['cores']} cores, AVX-512 VNNI {'yes' if m['avx512_vnni'] else 'no'}, "
               f"{m['os']}, {m['interpreter']}; {m['date']}. {s['frames']} frames per model after {s['warmup']} "
               f"warm-up, interleaved in {s['rounds']} rounds (overhead ± its standard deviation over the rounds); "
               f"e2e from {s['source']} frames of {s['frame_size'][0]}x{s['frame_size'][1]}, a summary every "
               f"{s.get('publish_interval', 0):g} s{' (every frame)' if not s.get('publish_interval') else ''}"
               + ("; score: the flywheel's per-frame score (--keep-frames) inside the e2e loop, mean ms and share "
                  "of the frame time." if s.get("keep_score") else "."))
    return "\n".join(out)


def pareto_front(points: list[dict]) -> list[dict]:
    """The results no other is both faster (``e2e_fps``) and more accurate
    (``miou8``) than, sorted by FPS."""
    def beaten(r):
        return any(o["e2e_fps"] >= r["e2e_fps"] and o["miou8"] > r["miou8"] or
                   o["e2e_fps"] > r["e2e_fps"] and o["miou8"] >= r["miou8"] for o in points)
    return sorted((r for r in points if not beaten(r)), key=lambda r: r["e2e_fps"])


def plot_pareto(report: dict, out: str) -> None:
    """Speed vs accuracy (PNG at ``out``): end-to-end FPS against val mIoU-8,
    both axes from 0 (accuracy up to 1) so distances are honest, one marker per
    thread count, the Pareto front when it joins two or more points, the
    machine in the title. Raises ValueError without accuracy, ImportError
    without matplotlib."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    pts = [r for r in report["results"] if r["miou8"] is not None]
    if not pts:
        raise ValueError("--plot needs accuracy: give --data")
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    markers = {1: "o", 2: "s", 4: "^"}
    for t in sorted({r["threads"] for r in pts}):
        mine = [r for r in pts if r["threads"] == t]
        ax.scatter([r["e2e_fps"] for r in mine], [r["miou8"] for r in mine], marker=markers.get(t, "D"), s=50,
                   label=f"{t} thread{'s' if t > 1 else ''}")
    for r in pts:
        ax.annotate(r["model"], (r["e2e_fps"], r["miou8"]), fontsize=7, xytext=(4, 3), textcoords="offset points")
    front = pareto_front(pts)
    if len(front) > 1:
        ax.plot([r["e2e_fps"] for r in front], [r["miou8"] for r in front], "k--", lw=0.8, label="Pareto front")
    s, m = report["settings"], report["machine"]
    ax.set(xlabel=f"end-to-end FPS at {s['frame_size'][0]}x{s['frame_size'][1]} frames (higher is better)",
           ylabel=f"{s.get('split') or 'val'} mIoU-8", title=f"speed vs accuracy on {m['cpu']} ({m['cores']} cores)",
           xlim=(0, 1.15 * max(r["e2e_fps"] for r in pts)), ylim=(0, 1))
    ax.title.set_fontsize(9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, out, dpi=110)
