"""roadseg-distill: train a compact student on labels and on frozen
teachers' soft predictions.

    roadseg-distill --teacher runs/A [--teacher runs/B ...] --student roadseg-fast \
        --data PATH --out runs/NAME [--size 192x256] [--epochs 30] [--steps-per-epoch N] \
        [--temperature 2] [--alpha 1.0] [--cwd 0] [--teacher-weighting iou|mean] \
        [--teacher-cache DIR] [--cache-views 4] [--no-kd] [--width 1.0] [--init-weights FILE ...] [--resume]

Teachers are loaded from their SavedModel exports and run on exactly the
augmented batch the student sees. With ``--teacher-cache`` their
predictions for ``--cache-views`` augmented views of every training image are
computed once (float16, at the student's output resolution, keyed by the
augmentation seed) and replayed: epoch ``e`` sees view ``e % K``, the same
images, crops, flips and colours the teachers saw. ``--no-kd`` trains the same
student on labels only with the same schedule: the baseline.
"""
from __future__ import annotations

import hashlib
import json
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import trainer  # noqa: F401  (legacy-Keras environment before TensorFlow)
from edge_runtime import atomic
from trainer.runs import RunConfig, fit_and_finish, main as run_main, start_run

log = logging.getLogger("roadseg.distill")


@dataclass(kw_only=True)
class DistillConfig(RunConfig):
    student: str
    teacher: list[str] = field(default_factory=list)
    epochs: int = 30
    lr: float = 2e-3
    warmup_epochs: float = 1.0
    temperature: float = 2.0
    alpha: float = 1.0
    cwd: float = 0.0
    cwd_temperature: float = 4.0
    teacher_weighting: str = "iou"
    teacher_cache: str | None = None
    cache_views: int = 4
    no_kd: bool = False
    width: float = 1.0
    bn_momentum: float = 0.9
    encoder_weights: str = "none"
    init_weights: list[str] = field(default_factory=list)


class Teachers:
    """Frozen teacher exports; ``probs(images, out_size)`` averages them
    (optionally per-class by val IoU) at the student's output resolution."""

    def __init__(self, runs: list[str], weighting: str = "iou"):
        import tensorflow as tf
        from distill.losses import teacher_class_weights
        from edge_runtime.contract.labels import CATEGORIES
        from trainer.export import ExportedModel
        self.tf = tf
        self.runs = [Path(r) for r in runs]
        self.models = [ExportedModel(check_teacher(r)) for r in self.runs]
        self.class_weights = None
        if weighting not in ("iou", "mean"):
            raise ValueError(f"unknown --teacher-weighting {weighting!r}; valid: iou, mean")
        if weighting == "iou" and len(self.models) > 1:
            ious = []
            for r in self.runs:
                m = json.loads((r / "metrics.json").read_text())["metrics"]["iou"] if (r / "metrics.json").is_file() else {}
                ious.append([m.get(c) for c in CATEGORIES])
            self.class_weights = teacher_class_weights(ious)

    def describe(self) -> list[dict]:
        return [{"run": str(r), "arch": m.meta.get("arch"), "size": list(m.size)} for r, m in zip(self.runs, self.models)]

    def probs(self, images, out_size):
        from distill.losses import combine_teachers
        tf = self.tf
        outs = []
        h, w = images.shape[1], images.shape[2]
        for m in self.models:
            x = images
            if (h, w) != m.size:
                x = tf.cast(tf.image.resize(images, m.size, method="bilinear") + 0.5, tf.uint8)
            p = m(x)
            # area resize averages probabilities: still a distribution per pixel
            outs.append(tf.image.resize(p, out_size, method="area"))
        return combine_teachers(outs, self.class_weights)


def _cache_key(cfg: DistillConfig, teachers: Teachers, samples, out_size, crop) -> dict:
    files = hashlib.sha256("\n".join(str(s.image) for s in samples).encode()).hexdigest()
    return {"teachers": teachers.describe(), "teacher_weighting": cfg.teacher_weighting,
            "files": files, "images": len(samples), "size": list(cfg.size), "crop": list(crop),
            "out_size": list(out_size), "views": cfg.cache_views, "seed": cfg.seed, "augment": cfg.augment,
            "teacher_mtimes": [(m.path / "saved_model.pb").stat().st_mtime for m in teachers.models]}


def build_teacher_cache(cache_dir: Path, split, teachers: Teachers, cfg: DistillConfig, crop, out_size,
                        aug) -> "object":
    """Compute (or reuse) ``views.npy`` [K, N, h, w, C] float16. Returns a memmap."""
    import numpy as np
    key = _cache_key(cfg, teachers, split.samples, out_size, crop)
    meta_file, data_file = cache_dir / "meta.json", cache_dir / "views.npy"
    if meta_file.is_file() and data_file.is_file():
        if json.loads(meta_file.read_text()).get("key") == key:
            log.info("teacher cache %s is current; reusing it", cache_dir)
            return np.load(data_file, mmap_mode="r")
        log.info("teacher cache %s is stale (teachers, data or views changed); rebuilding", cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    n, k = len(split), cfg.cache_views
    tmp = cache_dir / "views.tmp.npy"
    arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=(k, n, *out_size, 8))
    t0 = time.time()
    done, total = 0, k * n
    for view in range(k):
        for images, _, idx in split.views(view, cfg.size, crop, cfg.batch, seed=cfg.seed, shuffle=False,
                                          augment_cfg=aug, drop_remainder=False):
            arr[view, idx.numpy()] = teachers.probs(images, out_size).numpy().astype(np.float16)
            done += len(idx)
            if done % max(cfg.batch * 8, 1) < cfg.batch or done == total:
                rate = done / max(time.time() - t0, 1e-6)
                log.info("teacher cache: %d/%d views of images (%.1f/s, %.0fs left)", done, total, rate,
                         (total - done) / max(rate, 1e-6))
    arr.flush()
    del arr
    tmp.replace(data_file)
    atomic.write_text(meta_file, json.dumps({"key": key, "seconds": round(time.time() - t0, 1)}, indent=2))
    return np.load(data_file, mmap_mode="r")


def check_teacher(run: str | Path) -> Path:
    from trainer.export import ExportedModel
    try:
        return ExportedModel.resolve(run)
    except FileNotFoundError as e:
        raise FileNotFoundError(f"--teacher {run}: {e}") from None


def distill(cfg: DistillConfig, resume: bool = False) -> Path:
    import dataclasses

    import numpy as np
    import tensorflow as tf

    from distill.losses import channel_kd, pixel_kd, valid_mask_at
    from distill.students import STUDENTS, build_student, count_macs, student_kwargs
    from trainer.losses import make_loss
    from trainer.pipeline import AugmentConfig, DecodedSplit

    if cfg.student not in STUDENTS:
        raise ValueError(f"unknown student {cfg.student!r}; valid: {', '.join(sorted(STUDENTS))}")
    if not cfg.no_kd and not cfg.teacher:
        raise ValueError("give at least one --teacher, or --no-kd for the labels-only baseline")
    if cfg.no_kd and cfg.teacher_cache:
        raise ValueError("--teacher-cache has no use with --no-kd")
    if cfg.size[0] % 32 or cfg.size[1] % 32:
        raise ValueError(f"student sizes must be divisible by 32, got {cfg.size[0]}x{cfg.size[1]}")
    kwargs = student_kwargs(cfg.student, cfg.width, cfg.encoder_weights, cfg.bn_momentum)
    for t in ([] if cfg.no_kd else cfg.teacher):
        check_teacher(t)
    run = start_run(cfg, resume, extra_config={"kind": "student"})
    teachers = None if cfg.no_kd else Teachers(cfg.teacher, cfg.teacher_weighting)
    with run.strategy.scope():
        st = build_student(cfg.student, **kwargs)
        if cfg.init_weights and not resume:
            from trainer.models import load_weight_files
            load_weight_files(st.model, cfg.init_weights)
            log.info("initial weights from %s", ", ".join(cfg.init_weights))
    seg = dataclasses.replace(st, input_size=cfg.size)
    crop = cfg.size
    stride = seg.output_stride
    out_size = (crop[0] // stride, crop[1] // stride)
    aug = AugmentConfig(enabled=cfg.augment)
    split = DecodedSplit(run.train_samples, run.fmt)
    gt_loss = make_loss(cfg.loss)

    cache = None
    if teachers is not None and cfg.teacher_cache:
        cache = build_teacher_cache(Path(cfg.teacher_cache), split, teachers, cfg, crop, out_size, aug)

    def train_batches(epoch):
        view = epoch % cfg.cache_views if cache is not None else epoch
        ds = split.views(view, cfg.size, crop, cfg.batch, seed=cfg.seed, augment_cfg=aug)
        if cache is not None:
            def lookup(idx):
                return np.asarray(cache[view][idx], np.float16)

            def add(images, labels, idx):
                t = tf.numpy_function(lookup, [idx], tf.float16, stateful=False)
                t.set_shape([None, *out_size, 8])
                return images, labels, t
            ds = ds.map(add)
        return ds.repeat()

    def step_loss(model, batch, training):
        x, y = batch[0], batch[1]
        logits = model(x, training=training)
        loss = gt_loss(logits, y)
        if teachers is None:
            return loss
        t = batch[2] if cache is not None else tf.stop_gradient(teachers.probs(x, out_size))
        mask = valid_mask_at(y, out_size)
        if cfg.alpha:
            loss += cfg.alpha * pixel_kd(logits, t, cfg.temperature, mask)
        if cfg.cwd:
            loss += cfg.cwd * channel_kd(logits, t, cfg.cwd_temperature)
        return loss

    log.info("student %s (%d params) on %s, %s, %d steps/epoch x %d epochs, %d replica(s)", seg.arch,
             seg.model.count_params(), cfg.data, "labels only (--no-kd)" if teachers is None else
             f"KD from {len(teachers.models)} teacher(s), T={cfg.temperature}, alpha={cfg.alpha}, cwd={cfg.cwd}, "
             f"{'cached' if cache is not None else 'online'} teachers", run.steps, cfg.epochs, run.replicas)
    return fit_and_finish(run, seg, train_batches=train_batches, step_loss=step_loss, extra_meta={
        "kind": "student", "output_stride": stride, "macs_256x512": count_macs(seg.model, (256, 512)),
        "teachers": teachers.describe() if teachers else []})


def add_arguments(p) -> None:
    a = p.add_argument
    a("--teacher", action="append", help="teacher run directory (repeatable)")
    a("--student", help="student name (see --list)")
    a("--temperature", type=float)
    a("--alpha", type=float, help="weight of the pixel-wise KD term")
    a("--cwd", type=float, help="weight of channel-wise distillation (0 = off)")
    a("--teacher-weighting", choices=["iou", "mean"])
    a("--teacher-cache", help="folder for cached teacher predictions")
    a("--cache-views", type=int)
    a("--no-kd", action="store_true", default=None)
    a("--width", type=float)
    a("--encoder-weights", help="imagenet, none, or a .pth file (EfficientNet-Lite students)")
    a("--init-weights", action="append", metavar="FILE",
      help="start from these weights: a .weights.h5, or .npz arrays in get_weights() order (repeatable: the "
           "parts of one set, e.g. from scripts/teacher_keras_backend.py); with --epochs 0, only evaluate and "
           "export them")


def main(argv: list[str] | None = None) -> int:
    from distill.students import STUDENTS
    return run_main("roadseg-distill", __doc__, add_arguments, distill, DistillConfig, ("student", "data", "out"),
                    lambda: list(STUDENTS), argv)


if __name__ == "__main__":
    sys.exit(main())
