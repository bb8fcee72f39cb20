"""``roadseg-distill``: train a compact student on labels and on frozen
teachers' soft predictions.

    roadseg-distill --teacher runs/A [--teacher runs/B ...] --student roadseg-fast \
        --data PATH --out runs/NAME [--size 192x256] [--epochs 30] [--steps-per-epoch N] \
        [--temperature 2] [--alpha 1.0] [--cwd 0] [--teacher-weighting iou|mean] \
        [--teacher-cache DIR] [--cache-views 4] [--no-kd] [--width 1.0] [--resume]

Teachers are loaded from their SavedModel exports and run on exactly the
augmented batch the student sees. With ``--teacher-cache`` their
predictions for ``--cache-views`` augmented views of every training image are
computed once (float16, at the student's output resolution, keyed by the
augmentation seed) and replayed: epoch ``e`` sees view ``e % K``, the same
images, crops, flips and colours the teachers saw. ``--no-kd`` trains the same
student on labels only with the same schedule: the baseline.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import trainer  # noqa: F401  (legacy-Keras environment before TensorFlow)

log = logging.getLogger("roadseg.distill")


@dataclass
class DistillConfig:
    student: str
    data: str
    out: str
    teacher: list[str] = field(default_factory=list)
    size: tuple[int, int] = (192, 256)
    format: str = "auto"
    epochs: int = 30
    steps_per_epoch: int | None = None
    batch: int = 8
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup_epochs: float = 1.0
    schedule: str = "cosine"
    loss: str = "ce+dice"
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
    augment: bool = True
    seed: int = 0

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> "DistillConfig":
        from trainer.train import config_from_dict
        return config_from_dict(cls, d)


@dataclass
class StudentModel:
    """What the training loop and export need to know about a student."""
    model: object
    arch: str
    input_size: tuple[int, int]
    output_stride: int
    framework: str = "keras3"
    square_only: bool = False
    size_agnostic: bool = True


class Teachers:
    """Frozen teacher exports; ``probs(images, out_size)`` averages them
    (optionally per-class by val IoU) at the student's output resolution."""

    def __init__(self, runs: list[str], weighting: str = "iou"):
        import tensorflow as tf
        from distill.losses import teacher_class_weights
        from edge_runtime.labels import CATEGORIES
        from trainer.export import ExportedModel
        self.tf = tf
        self.runs = [Path(r) for r in runs]
        self.models = []
        for r in self.runs:
            try:
                self.models.append(ExportedModel(r))
            except FileNotFoundError as e:
                raise FileNotFoundError(f"--teacher {r}: {e}") from None
        self.class_weights = None
        if weighting == "iou" and len(self.models) > 1:
            ious = []
            for r in self.runs:
                m = json.loads((r / "metrics.json").read_text())["metrics"]["iou"] if (r / "metrics.json").is_file() else {}
                ious.append([m.get(c) for c in CATEGORIES])
            self.class_weights = teacher_class_weights(ious)
        elif weighting not in ("iou", "mean"):
            raise ValueError(f"unknown --teacher-weighting {weighting!r}; valid: iou, mean")

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
            "teacher_mtimes": [(r / "export" / "saved_model.pb").stat().st_mtime if (r / "export").is_dir()
                               else (r / "saved_model.pb").stat().st_mtime for r in teachers.runs]}


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
    meta_file.write_text(json.dumps({"key": key, "seconds": round(time.time() - t0, 1)}, indent=2))
    return np.load(data_file, mmap_mode="r")


def distill(cfg: DistillConfig, resume: bool = False) -> Path:
    import numpy as np
    import tensorflow as tf

    from distill.losses import channel_kd, pixel_kd, valid_mask_at
    from distill.students import STUDENTS, build_student
    from trainer.datasets import list_samples
    from trainer.export import make_predict_fn
    from trainer.loop import LoopConfig, get_strategy, run_loop
    from trainer.losses import make_loss
    from trainer.pipeline import AugmentConfig, DecodedSplit, make_dataset
    from trainer.train import finish_run, prepare_run_dir

    if cfg.student not in STUDENTS:
        raise ValueError(f"unknown student {cfg.student!r}; valid: {', '.join(sorted(STUDENTS))}")
    if not cfg.no_kd and not cfg.teacher:
        raise ValueError("give at least one --teacher, or --no-kd for the labels-only baseline")
    if cfg.no_kd and cfg.teacher_cache:
        raise ValueError("--teacher-cache has no use with --no-kd")
    if cfg.size[0] % 32 or cfg.size[1] % 32:
        raise ValueError(f"student sizes must be divisible by 32, got {cfg.size[0]}x{cfg.size[1]}")
    teachers = None if cfg.no_kd else Teachers(cfg.teacher, cfg.teacher_weighting)
    out = Path(cfg.out)
    prepare_run_dir(out, resume)
    fmt, train_samples = list_samples(cfg.data, "train", cfg.format)
    _, val_samples = list_samples(cfg.data, "val", fmt)
    if len(train_samples) < cfg.batch:
        raise ValueError(f"{len(train_samples)} training images is fewer than one batch of {cfg.batch}")
    steps = cfg.steps_per_epoch or max(1, len(train_samples) // cfg.batch)
    if not resume:
        (out / "config.json").write_text(json.dumps(cfg.to_json() | {"steps_per_epoch": steps, "format": fmt,
                                                                     "kind": "student"}, indent=2))
    np.random.seed(cfg.seed)
    tf.random.set_seed(cfg.seed)
    import keras
    keras.utils.set_random_seed(cfg.seed)

    strategy = get_strategy()
    with strategy.scope():
        st = build_student(cfg.student, width=cfg.width, bn_momentum=cfg.bn_momentum)
    crop = cfg.size
    stride = st.output_stride
    out_size = (crop[0] // stride, crop[1] // stride)
    student = StudentModel(st.model, st.name, cfg.size, stride)
    aug = AugmentConfig(enabled=cfg.augment)
    split = DecodedSplit(train_samples, fmt)
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

    val_ds = make_dataset(val_samples, fmt, cfg.size, cfg.batch, training=False)
    predict = tf.function(make_predict_fn(st.model, cfg.size, cfg.size))
    log.info("student %s (%d params) on %s, %s, %d steps/epoch x %d epochs", st.name, st.model.count_params(),
             cfg.data, "labels only (--no-kd)" if teachers is None else
             f"KD from {len(teachers.models)} teacher(s), T={cfg.temperature}, alpha={cfg.alpha}, cwd={cfg.cwd}, "
             f"{'cached' if cache is not None else 'online'} teachers", steps, cfg.epochs)
    loop_cfg = LoopConfig(epochs=cfg.epochs, steps_per_epoch=steps, lr=cfg.lr, weight_decay=cfg.weight_decay,
                          warmup_steps=int(cfg.warmup_epochs * steps), schedule=cfg.schedule, seed=cfg.seed)
    t0 = time.time()
    state = run_loop(model=st.model, framework="keras3", run_dir=out, cfg=loop_cfg, train_batches=train_batches,
                     step_loss=step_loss, val_batches=lambda: val_ds, predict=predict, resume=resume,
                     strategy=strategy)
    from distill.students import count_macs
    finish_run(student, out, cfg.size, val_samples, fmt, state, train_seconds=time.time() - t0,
               extra_meta={"kind": "student", "output_stride": stride,
                           "macs_256x512": count_macs(st.model, (256, 512)),
                           "teachers": teachers.describe() if teachers else []})
    return out


def main(argv: list[str] | None = None) -> int:
    from edge_runtime.preprocessing import parse_size
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    p = argparse.ArgumentParser(prog="roadseg-distill", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--teacher", action="append", help="teacher run directory (repeatable)")
    p.add_argument("--student", help="student name (see --list)")
    p.add_argument("--list", action="store_true")
    p.add_argument("--data")
    p.add_argument("--out")
    p.add_argument("--format", choices=["auto", "cityscapes", "camvid"])
    p.add_argument("--size", type=parse_size)
    p.add_argument("--epochs", type=int)
    p.add_argument("--steps-per-epoch", type=int)
    p.add_argument("--batch", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--weight-decay", type=float)
    p.add_argument("--loss", choices=["ce+dice", "ce", "dice", "tversky", "ce+tversky"])
    p.add_argument("--temperature", type=float)
    p.add_argument("--alpha", type=float, help="weight of the pixel-wise KD term")
    p.add_argument("--cwd", type=float, help="weight of channel-wise distillation (0 = off)")
    p.add_argument("--teacher-weighting", choices=["iou", "mean"])
    p.add_argument("--teacher-cache", help="folder for cached teacher predictions")
    p.add_argument("--cache-views", type=int)
    p.add_argument("--no-kd", action="store_true", default=None)
    p.add_argument("--width", type=float)
    p.add_argument("--no-augment", dest="augment", action="store_false", default=None)
    p.add_argument("--seed", type=int)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--config")
    args = p.parse_args(argv)
    if args.list:
        from distill.students import STUDENTS
        print("\n".join(sorted(STUDENTS)))
        return 0
    from trainer.train import config_from_args, run_cli
    return run_cli("roadseg-distill", distill, lambda a: config_from_args(
        a, DistillConfig, required=("student", "data", "out"), drop=("kind",)), args)


if __name__ == "__main__":
    sys.exit(main())
