"""The distillation loop of ``roadseg-distill`` (TensorFlow; its command line
is :mod:`distill.commands.distill`): a compact student trained on labels
and on frozen teachers' soft predictions.

Teachers are loaded from their SavedModel exports (:class:`Teachers`) and
run on exactly the augmented batch the student sees. With a teacher cache
(:func:`build_teacher_cache`) their predictions for ``cache_views``
augmented views of every training image are computed once (float16, at the
student's output resolution, keyed by the augmentation seed) and replayed:
epoch ``e`` sees view ``e % K``, the same images, crops, flips and colours
the teachers saw. ``no_kd`` trains the same student on labels only with the
same schedule: the baseline. The loss of one step is :func:`step_loss`'s:
the labels' loss (``trainer.losses``) plus ``alpha`` x pixel-wise KD
(Hinton et al. 2015) plus ``cwd`` x channel-wise KD (Shu et al. 2021), from
:mod:`distill.losses`.
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import trainer  # noqa: F401  (legacy-Keras environment before TensorFlow)
from edge_runtime import atomic
from trainer.runs import RunConfig, fit_and_finish, start_run

log = logging.getLogger("roadseg.distill")


@dataclass(kw_only=True)
class DistillConfig(RunConfig):
    """:class:`RunConfig` for a student: its name (``distill.students.STUDENTS``),
    ``width`` multiplier, ``encoder_weights`` and BatchNormalization
    momentum; the ``teacher`` run directories and how they are combined
    (``teacher_weighting``: per-class by val IoU, or a plain mean); the KD
    temperature T and weight ``alpha``, the channel-wise KD weight ``cwd``
    and its temperature; ``kd_stride``: the KD terms' grid, 1/``kd_stride``
    of the frame (the student's logits are resized onto it: 4 distils at the
    upsampled output, as CIRKD and Af-DCD do; 8 at a Lite0 student's own
    1/8 grid, what runs before this setting used, see ``LEGACY_DEFAULTS``);
    ``cutmix``: the share of batches mixed by CutMix
    (:func:`trainer.augment.cutmix_batch`: images, labels and cached teacher
    targets alike, with the same draws in the labels-only twin); the teacher
    cache folder, its number of augmented views and its size limit
    (``cache_max_mb``, MiB); ``no_kd`` for the labels-only baseline;
    ``init_weights``; ``extra_data``, a dataset whose train split joins the
    labelled frames (the teacher's pseudo-labels of kept frames,
    :mod:`distill.pseudolabel`), ``extra_ratio`` of every batch's frames
    drawn from it (:func:`mix_extra`)."""
    #: values of settings added later, for a resumed run whose config.json predates them (what it ran with)
    LEGACY_DEFAULTS = {"kd_stride": 8, "cutmix": 0.0}

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
    teacher_tta: str = ""      # test-time augmentation of every teacher: "flip", scales, e.g. "flip,0.75,1.25"
    kd_stride: int = 4
    cutmix: float = 0.0
    teacher_cache: str | None = None
    cache_views: int = 4
    cache_max_mb: float = 2048.0
    no_kd: bool = False
    width: float = 1.0
    bn_momentum: float = 0.9
    encoder_weights: str = "none"
    init_weights: list[str] = field(default_factory=list)
    extra_data: str | None = None
    extra_ratio: float = 0.25


def parse_tta(text: str) -> tuple[bool, tuple[float, ...]]:
    """``"flip,0.75,1.25"`` -> (flip, scales other than 1). Raises ValueError naming a bad item.

    Test-time augmentation of a teacher: the average of its predictions on the mirrored and
    rescaled views (e.g. Chen et al., DeepLab v3+, ECCV 2018: left-right flips and scales 0.5-1.75)."""
    flip, scales = False, []
    for item in (t.strip() for t in (text or "").split(",") if t.strip()):
        if item == "flip":
            flip = True
            continue
        try:
            s = float(item)
        except ValueError:
            raise ValueError(f"--teacher-tta item {item!r}: use flip or a scale such as 0.75") from None
        if not 0.25 <= s <= 4.0:
            raise ValueError(f"--teacher-tta scale {s:g} is outside 0.25..4")
        if s != 1.0 and s not in scales:
            scales.append(s)
    return flip, tuple(scales)


def tf_mean(tf, tensors: list):
    """The elementwise mean of same-shaped tensors (a mean of distributions is a distribution)."""
    return tensors[0] if len(tensors) == 1 else tf.add_n(tensors) / float(len(tensors))


class Teachers:
    """Frozen teacher exports; ``probs(images, out_size)`` averages them
    (optionally per-class by val IoU) at the student's output resolution.

    ``runs``: teacher run directories (or their ``export/``);
    ``weighting``: ``iou`` (each teacher counts per class by its val IoU
    from ``metrics.json``, :func:`distill.losses.teacher_class_weights`) or
    ``mean``. Raises ``FileNotFoundError`` for a run without an export and
    ``ValueError`` for another weighting."""

    def __init__(self, runs: list[str], weighting: str = "iou", tta: str = ""):
        import tensorflow as tf
        from distill.losses import teacher_class_weights
        from edge_runtime.contract.labels import CATEGORIES
        from trainer.export import ExportedModel
        self.tf = tf
        self.runs = [Path(r) for r in runs]
        self.models = [ExportedModel(check_teacher(r)) for r in self.runs]
        self.flip, self.scales = parse_tta(tta)
        if self.scales:
            flat = [str(r) for r, m in zip(self.runs, self.models) if m.logits is None]
            if flat:
                raise ValueError(f"--teacher-tta scales need a size-agnostic teacher export (a 'logits' signature); "
                                 f"{flat[0]} has none: use 'flip' only for it")
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
        """Each teacher's run, architecture and frame size (recorded in the
        student's export and the teacher cache's key)."""
        return [{"run": str(r), "arch": m.meta.get("arch"), "size": list(m.size), "flip": self.flip,
                 "scales": list(self.scales)} for r, m in zip(self.runs, self.models)]

    def probs(self, images, out_size: tuple[int, int]):
        """Combined teacher probabilities float32 ``[B,h,w,C]`` at
        ``out_size = (h, w)`` for uint8 ``images [B,H,W,3]``: each teacher
        sees the images resized bilinearly to its frame size, its
        probabilities are area-averaged onto ``out_size`` (still a
        distribution per pixel) and combined
        (:func:`distill.losses.combine_teachers`)."""
        from distill.losses import combine_teachers
        outs = []
        for m in self.models:
            views = [self._view(m, images, out_size, False, 1.0)]
            views += [self._view(m, images, out_size, True, 1.0)] if self.flip else []
            views += [self._view(m, images, out_size, f, s) for s in self.scales for f in ([False, True] if self.flip
                                                                                          else [False])]
            outs.append(tf_mean(self.tf, views))
        return combine_teachers(outs, self.class_weights)

    def _view(self, m, images, out_size, flip: bool, scale: float):
        """One teacher's probabilities ``[B,h,w,C]`` at ``out_size`` for one test-time view: the
        images mirrored left-right (and the prediction mirrored back) and/or resized by ``scale``
        (through the size-agnostic logits signature); area resizing keeps a distribution per pixel."""
        tf = self.tf
        x = tf.image.flip_left_right(images) if flip else images
        h, w = images.shape[1], images.shape[2]
        if scale == 1.0:
            if (h, w) != m.size:
                x = tf.cast(tf.image.resize(x, m.size, method="bilinear") + 0.5, tf.uint8)
            p = m(x)
        else:
            size = (max(8, round(m.size[0] * scale)), max(8, round(m.size[1] * scale)))
            x = tf.image.resize(tf.cast(x, tf.float32), size, method="bilinear")
            p = tf.nn.softmax(m.logits(images=x)["logits"], axis=-1)
        p = tf.image.resize(p, out_size, method="area")
        return tf.image.flip_left_right(p) if flip else p


def _cache_key(cfg: DistillConfig, teachers: Teachers, samples, out_size, crop) -> dict:
    from trainer.augment import AUGMENT_VERSION
    files = hashlib.sha256("\n".join(str(s.image) for s in samples).encode()).hexdigest()
    return {"teachers": teachers.describe(), "teacher_weighting": cfg.teacher_weighting,
            "augment_version": AUGMENT_VERSION,
            "files": files, "images": len(samples), "size": list(cfg.size), "crop": list(crop),
            "out_size": list(out_size), "views": cfg.cache_views, "seed": cfg.seed, "augment": cfg.augment,
            "teacher_mtimes": [(m.path / "saved_model.pb").stat().st_mtime for m in teachers.models]}


def build_teacher_cache(cache_dir: Path, split, teachers: Teachers, cfg: DistillConfig, crop, out_size,
                        aug) -> "object":
    """Compute (or reuse) the teachers' probabilities for ``cfg.cache_views``
    augmented views of every frame of ``split``: ``cache_dir/views.npy``
    float16 ``[K, N, h, w, C]`` at ``out_size = (h, w)``, reused while
    ``meta.json``'s key (teachers, files, sizes, views, seed, augmentation
    version) matches, rebuilt otherwise (written under a temporary name,
    then renamed). Returns a read-only memmap. Raises ``ValueError`` when it
    would exceed ``cfg.cache_max_mb`` (it grows as views x frames x the KD
    grid's cells) and ``OSError`` when the folder cannot be written."""
    import numpy as np
    need = cfg.cache_views * len(split) * out_size[0] * out_size[1] * 8 * 2
    if need > cfg.cache_max_mb * 2 ** 20:
        raise ValueError(f"the teacher cache would take {need / 2 ** 20:.0f} MiB ({cfg.cache_views} views x {len(split)} "
                         f"frames at {out_size[0]}x{out_size[1]}), over --cache-max-mb {cfg.cache_max_mb:g}: use "
                         f"fewer --cache-views, a coarser --kd-stride, or raise the limit")
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
    """The SavedModel folder of a teacher run (or of its ``export/``).
    Raises ``FileNotFoundError`` naming ``--teacher`` when there is none."""
    from trainer.export import ExportedModel
    try:
        return ExportedModel.resolve(run)
    except FileNotFoundError as e:
        raise FileNotFoundError(f"--teacher {run}: {e}") from None


def check_config(cfg: DistillConfig) -> dict:
    """Refuse settings that cannot run, before a run directory is made;
    returns the student builder's arguments. Raises ``ValueError`` (an
    unknown student, no teacher without ``no_kd``, a cache without KD, a
    size not divisible by 32, an argument the student does not take) and
    ``FileNotFoundError`` (a teacher without an export)."""
    from distill.students import STUDENTS, student_kwargs
    if cfg.student not in STUDENTS:
        raise ValueError(f"unknown student {cfg.student!r}; valid: {', '.join(sorted(STUDENTS))}")
    if not cfg.no_kd and not cfg.teacher:
        raise ValueError("give at least one --teacher, or --no-kd for the labels-only baseline")
    if cfg.no_kd and cfg.teacher_cache:
        raise ValueError("--teacher-cache has no use with --no-kd")
    if cfg.size[0] % 32 or cfg.size[1] % 32:
        raise ValueError(f"student sizes must be divisible by 32, got {cfg.size[0]}x{cfg.size[1]}")
    from distill.losses import KD_STRIDES
    if cfg.kd_stride not in KD_STRIDES:
        raise ValueError(f"--kd-stride must be one of {', '.join(map(str, KD_STRIDES))}, got {cfg.kd_stride}")
    if not 0.0 <= cfg.cutmix <= 1.0:
        raise ValueError(f"--cutmix is a share of batches, 0..1, got {cfg.cutmix:g}")
    if cfg.cutmix and cfg.batch < 2:
        raise ValueError("--cutmix mixes frames within a batch: it needs --batch 2 or more")
    if cfg.extra_data is not None:
        if not 0.0 < cfg.extra_ratio < 1.0:
            raise ValueError(f"--extra-ratio is the share of frames from --extra-data, between 0 and 1 (both "
                             f"excluded), got {cfg.extra_ratio:g}")
        if cfg.teacher_cache:
            raise ValueError("--extra-data with --teacher-cache: the cache holds the labelled frames' views only; "
                             "drop --teacher-cache (the teachers then run on every batch)")
        if not Path(cfg.extra_data).is_dir():
            raise FileNotFoundError(f"--extra-data {cfg.extra_data}: folder not found")
    kwargs = student_kwargs(cfg.student, cfg.width, cfg.encoder_weights, cfg.bn_momentum)
    for t in ([] if cfg.no_kd else cfg.teacher):
        check_teacher(t)
    return kwargs


def kd_step_loss(cfg: DistillConfig, teachers: Teachers | None, cached: bool, out_size: tuple[int, int]):
    """``step_loss(model, batch, training) -> scalar``: the KD loop's loss of
    one batch ``(images uint8 [B,H,W,3], labels uint8 [B,H,W][, cached
    teacher probabilities float16 [B,h,w,C]])``: the labels' loss
    (``cfg.loss``, :func:`trainer.losses.make_loss`) plus ``alpha`` x
    pixel-wise KD (Hinton et al. 2015) over labelled pixels plus ``cwd`` x
    channel-wise KD (Shu et al. 2021), against the teachers' probabilities
    at the KD grid ``out_size`` (1/``cfg.kd_stride`` of the frame; the
    student's logits are resized onto it, bilinearly up or averaged over
    each cell down, so that every logit gets a gradient), from the cache when ``cached``, else
    the teachers run on the batch, without gradient. Void pixels count in
    the pixel-wise term (void is a category the teacher predicts); padding
    (``IGNORE_INDEX``) does not. The channel-wise term spans every position
    of the grid, padding included (its distributions are over positions)."""
    import tensorflow as tf

    from distill.losses import channel_kd, pixel_kd, valid_mask_at
    from trainer.losses import make_loss
    gt_loss = make_loss(cfg.loss)

    def step_loss(model, batch, training):
        x, y = batch[0], batch[1]
        logits = model(x, training=training)
        loss = gt_loss(logits, y)
        if teachers is None:
            return loss
        t = batch[2] if cached else tf.stop_gradient(teachers.probs(x, out_size))
        s = logits
        if out_size[0] > logits.shape[1]:
            s = tf.image.resize(logits, out_size, method="bilinear")
        elif out_size[0] < logits.shape[1]:  # a mean over each cell: every logit gets a gradient
            f = logits.shape[1] // out_size[0]
            s = tf.nn.avg_pool2d(logits, f, f, "VALID")
        if cfg.alpha:
            loss += cfg.alpha * pixel_kd(s, t, cfg.temperature, valid_mask_at(y, out_size))
        if cfg.cwd:
            loss += cfg.cwd * channel_kd(s, t, cfg.cwd_temperature)
        return loss
    return step_loss


def cutmix_grid(cfg: DistillConfig) -> int:
    """The lattice of CutMix rectangles in pixels: 8, or the KD grid's cell when coarser, so
    that cached teacher probabilities (at 1/``kd_stride``) cut along the same edges."""
    return max(8, cfg.kd_stride)


def mix_extra(labelled, extra, ratio: float, batch: int):
    """Batches of ``batch`` frames from two datasets of batches (elements
    ``(images, labels, indices)``, as :meth:`trainer.pipeline.DecodedSplit.views`
    yields), frame ``i`` of the stream from ``extra`` exactly when
    ``floor((i + 1) r) > floor(i r)``: a share ``ratio`` of the frames over any
    run of them, deterministic; both repeat. Indices are the datasets' own
    (meaningless once mixed: a teacher cache cannot be used with it)."""
    import tensorflow as tf
    r = tf.constant(ratio, tf.float64)

    def pick(i):
        i = tf.cast(i, tf.float64)
        return tf.cast(tf.floor((i + 1) * r) - tf.floor(i * r), tf.int64)
    choice = tf.data.Dataset.range(2 ** 62).map(pick)
    streams = [labelled.unbatch().repeat(), extra.unbatch().repeat()]
    return tf.data.Dataset.choose_from_datasets(streams, choice).batch(batch, drop_remainder=True)


def student_batches(split, cfg: DistillConfig, aug, cache, out_size: tuple[int, int], extra=None):
    """``train_batches(epoch)``: the epoch's augmented view of ``split``,
    repeated; with a teacher ``cache`` (``[K,N,h,w,C]``) epoch ``e`` replays
    view ``e % K`` and each batch carries the cached probabilities third.
    With ``cfg.cutmix`` > 0, batch ``b`` of epoch ``e`` is mixed
    (:func:`trainer.augment.cutmix_batch`) when a generator seeded
    ``(seed, e, b)`` draws under the share, with rectangles from the same
    generator: an online KD run and its labels-only twin get identical
    batches; a cached run replays view ``e % K`` where the twin draws view
    ``e``, so from epoch K on only the mixing draws are shared. With an
    ``extra`` split (a DecodedSplit of ``cfg.extra_data``), ``cfg.extra_ratio``
    of the frames come from its view ``e`` (:func:`mix_extra`)."""
    import numpy as np
    import tensorflow as tf

    from trainer.augment import cutmix_batch

    def train_batches(epoch):
        view = epoch % cfg.cache_views if cache is not None else epoch
        ds = split.views(view, cfg.size, cfg.size, cfg.batch, seed=cfg.seed, augment_cfg=aug)
        if extra is not None:
            more = extra.views(epoch, cfg.size, cfg.size, cfg.batch, seed=cfg.seed + 1, augment_cfg=aug,
                               drop_remainder=False)
            ds = mix_extra(ds, more, cfg.extra_ratio, cfg.batch)
        if cache is not None:
            def lookup(idx):
                return np.asarray(cache[view][idx], np.float16)

            def add(images, labels, idx):
                t = tf.numpy_function(lookup, [idx], tf.float16, stateful=False)
                t.set_shape([None, *out_size, 8])
                return images, labels, t
            ds = ds.map(add)
        if cfg.cutmix > 0:
            ds = ds.enumerate().map(lambda b, batch: mix(epoch, b, batch))
        return ds.repeat()

    def mix(epoch, b, batch):
        images, labels, third = batch

        def one(bi, im, lab, t):
            rng = np.random.default_rng([int(cfg.seed), int(epoch), int(bi)])
            if rng.uniform() >= cfg.cutmix:
                return im, lab, t
            im, lab, maps = cutmix_batch(im, lab, rng, cutmix_grid(cfg), (t,) if cache is not None else ())
            return im, lab, maps[0] if maps else t
        out = tf.numpy_function(one, [b, images, labels, third], [images.dtype, labels.dtype, third.dtype],
                                stateful=False)
        for o, ref in zip(out, (images, labels, third)):
            o.set_shape(ref.shape)
        return tuple(out)
    return train_batches


def build_student_for(run, cfg: DistillConfig, kwargs: dict, resume: bool):
    """The student (a ``SegModel`` at the frame size) built in the run's
    strategy scope, with ``init_weights`` loaded unless resuming. Raises
    ``ValueError`` for weights of another architecture."""
    import dataclasses

    from distill.students import build_student
    with run.strategy.scope():
        st = build_student(cfg.student, **kwargs)
        if cfg.init_weights and not resume:
            from trainer.models import load_weight_files
            load_weight_files(st.model, cfg.init_weights)
            log.info("initial weights from %s", ", ".join(cfg.init_weights))
    return dataclasses.replace(st, input_size=cfg.size)


def distill(cfg: DistillConfig, resume: bool = False) -> Path:
    """Train the student of ``cfg``, evaluate and export it; returns the run
    directory (``config.json``, ``history.csv``, ``metrics.json``,
    ``export/`` whose ``roadseg.json`` records the teachers and the output
    stride). Raises what :func:`check_config` and
    :func:`trainer.runs.start_run` raise, ``trainer.loop.BudgetReached``
    when ``time_budget_min`` runs out and ``StopRequested`` on
    SIGINT/SIGTERM (both after checkpointing the last finished epoch)."""
    from distill.students import count_macs
    from trainer.export import macs_entry
    from trainer.pipeline import AugmentConfig, DecodedSplit

    kwargs = check_config(cfg)
    run = start_run(cfg, resume, extra_config={"kind": "student"})
    teachers = None if cfg.no_kd else Teachers(cfg.teacher, cfg.teacher_weighting, cfg.teacher_tta)
    seg = build_student_for(run, cfg, kwargs, resume)
    stride = seg.output_stride
    out_size = (cfg.size[0] // cfg.kd_stride, cfg.size[1] // cfg.kd_stride)
    aug = AugmentConfig(enabled=cfg.augment)
    split = DecodedSplit(run.train_samples, run.fmt)
    cache = None
    if teachers is not None and cfg.teacher_cache:
        cache = build_teacher_cache(Path(cfg.teacher_cache), split, teachers, cfg, cfg.size, out_size, aug)
    how = "labels only (--no-kd)" if teachers is None else (
        f"KD from {len(teachers.models)} teacher(s), T={cfg.temperature}, alpha={cfg.alpha}, cwd={cfg.cwd} at "
        f"1/{cfg.kd_stride}, {'cached' if cache is not None else 'online'} teachers")
    how += f", CutMix on {cfg.cutmix:.0%} of batches" if cfg.cutmix else ""
    extra = None
    if cfg.extra_data:
        from trainer.datasets import list_samples
        extra_fmt, extra_samples = list_samples(cfg.extra_data, "train")
        extra = DecodedSplit(extra_samples, extra_fmt)
        how += f", {cfg.extra_ratio:.0%} of frames from {len(extra)} in --extra-data {cfg.extra_data}"
    log.info("student %s (%d params) on %s, %s, %d steps/epoch x %d epochs, %d replica(s)", seg.arch,
             seg.model.count_params(), cfg.data, how, run.steps, cfg.epochs, run.replicas)
    return fit_and_finish(run, seg, train_batches=student_batches(split, cfg, aug, cache, out_size, extra),
                          step_loss=kd_step_loss(cfg, teachers, cache is not None, out_size), extra_meta={
        "kind": "student", "output_stride": stride, "macs": macs_entry(count_macs(seg.model, cfg.size), cfg.size),
        "teachers": teachers.describe() if teachers else [],
        "extra_data": {"path": cfg.extra_data, "frames": len(extra), "ratio": cfg.extra_ratio} if extra else None})
