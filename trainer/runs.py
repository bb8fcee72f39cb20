"""The run plumbing that ``roadseg-train`` and ``roadseg-distill`` share.

A training job is: settings (:class:`RunConfig`, extended by each command) ->
:func:`start_run` (run directory, splits, strategy, seeds, ``config.json``) ->
the job builds its model in ``run.strategy.scope()`` and says how a batch is
drawn and scored -> :func:`fit_and_finish` (the training loop, best weights,
``export/``, ``metrics.json`` and plots).

Several machines: with ``TF_CONFIG`` set, every worker runs the same command;
:class:`tf.distribute.MultiWorkerMirroredStrategy` keeps them in step. Only
the chief writes the run directory; the other workers write their copies
(which the collective ops need them to write) into a scratch folder that is
removed at the end, so nothing clobbers the chief's files.

The command lines (flags, settings files, exit codes) are in
:mod:`trainer.commands.common`.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import trainer  # noqa: F401  (legacy-Keras environment before TensorFlow)
from edge_runtime import atomic

log = logging.getLogger("roadseg.train")


@dataclass(kw_only=True)
class RunConfig:
    """Settings every training job has; ``roadseg-train`` and
    ``roadseg-distill`` add their own fields (and defaults) by subclassing.

    ``size``: the frame (height, width) in pixels; ``epochs`` of
    ``steps_per_epoch`` optimizer steps (default: one pass over the train
    split) on batches of ``batch``; ``lr`` the peak learning rate of
    ``schedule`` (:func:`trainer.schedule.lr_at`) after ``warmup_epochs``;
    ``loss`` a name of ``trainer.losses.LOSSES``; ``train_split`` and
    ``val_split`` as ``trainer.datasets.list_samples`` reads them;
    ``time_budget_min`` the minutes this invocation may train (then it stops
    and ``--resume`` goes on)."""
    data: str
    out: str
    size: tuple[int, int] = (192, 256)
    format: str = "auto"
    epochs: int = 10
    steps_per_epoch: int | None = None
    batch: int = 8
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_epochs: float = 0.5
    schedule: str = "cosine"
    loss: str = "ce+dice"
    augment: bool = True
    seed: int = 0
    train_split: str = "train"
    val_split: str = "val"
    time_budget_min: float | None = None  # minutes this invocation may train (then stop; --resume goes on)

    def to_json(self) -> dict:
        """The settings as JSON values (what ``config.json`` holds)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, d: dict):
        """From JSON/TOML values: sizes back to tuples. Raises ``ValueError``
        for a key that is not a field (naming it) and ``TypeError`` for a
        missing required field."""
        d = dict(d)
        for k in ("size", "crop"):
            if d.get(k) is not None:
                d[k] = tuple(d[k])
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown config keys: {sorted(unknown)}")
        return cls(**d)


# --- the run ------------------------------------------------------------------------

@dataclass
class Run:
    """A started training job (:func:`start_run`): its settings, where this
    process writes (``out``: the run directory on the chief, scratch on other
    workers), the dataset layout ``fmt`` and splits, optimizer steps per
    epoch, the ``tf.distribute`` strategy, and when it started (Unix seconds)."""
    cfg: RunConfig
    out: Path              # where this process writes (the run directory on the chief)
    run_dir: Path          # the run directory
    fmt: str
    train_samples: list
    val_samples: list
    steps: int
    strategy: object
    resume: bool
    is_chief: bool
    started: float = 0.0

    @property
    def replicas(self) -> int:
        """Model replicas training in step (GPUs times workers; 1 on a CPU)."""
        return self.strategy.num_replicas_in_sync


def is_chief() -> bool:
    """The chief of a ``TF_CONFIG`` cluster (or the only process)."""
    tf_config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    task = tf_config.get("task") or {}
    kind, index = task.get("type", "chief"), int(task.get("index", 0))
    has_chief = "chief" in (tf_config.get("cluster") or {})
    return kind == "chief" or (kind == "worker" and index == 0 and not has_chief)


def prepare_run_dir(out: Path, resume: bool) -> None:
    """Check that ``out`` can become (or, with ``resume``, already is) a run
    directory. Raises ``FileNotFoundError`` when ``resume`` finds no
    checkpoint and ``PermissionError`` when ``out`` cannot be written."""
    if resume:
        if not (out / "checkpoints" / "last.npz").is_file():
            raise FileNotFoundError(f"--resume: {out} has no checkpoint to resume from "
                                    f"(expected {out / 'checkpoints' / 'last.npz'})")
        return
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise PermissionError(f"cannot write to --out {out}: {e.strerror or e}") from e


def start_run(cfg: RunConfig, resume: bool = False, extra_config: dict | None = None) -> Run:
    """Check the data, create the strategy (before any other TensorFlow work,
    as multi-worker training requires), prepare the run directory, write
    ``config.json`` (chief) and seed everything. Raises
    ``FileNotFoundError`` for a missing ``--data`` (or checkpoint when
    resuming), ``PermissionError`` for an unwritable ``--out``,
    ``ValueError`` when the splits share images (except ``trainval``) or the
    train split is smaller than one batch."""
    import keras
    import numpy as np
    import tensorflow as tf

    from trainer.datasets import list_samples
    from trainer.loop import get_strategy

    if not Path(cfg.data).is_dir():
        raise FileNotFoundError(f"--data {cfg.data}: folder not found")
    chief = is_chief()
    run_dir = Path(cfg.out)
    if chief:
        prepare_run_dir(run_dir, resume)
    fmt, train_samples = list_samples(cfg.data, cfg.train_split, cfg.format)
    _, val_samples = list_samples(cfg.data, cfg.val_split, fmt)
    overlap = {str(s.image) for s in train_samples} & {str(s.image) for s in val_samples}
    if overlap and cfg.train_split == "trainval":
        log.warning("--train-split trainval also trains on the %d --val-split %s frames: its val scores "
                    "overstate accuracy (a twin trained with that split held out gives the honest number)",
                    len(overlap), cfg.val_split)
    elif overlap:
        raise ValueError(f"--train-split {cfg.train_split} and --val-split {cfg.val_split} share "
                         f"{len(overlap)} images (e.g. {sorted(overlap)[0]})")
    if len(train_samples) < cfg.batch:
        raise ValueError(f"{len(train_samples)} training images is fewer than one batch of {cfg.batch}")
    steps = cfg.steps_per_epoch or max(1, len(train_samples) // cfg.batch)
    strategy = get_strategy()
    if chief:
        out = run_dir
    else:  # a worker's copies go to scratch, never over the chief's files
        out = Path(tempfile.mkdtemp(prefix="roadseg-worker-"))
    if chief and not resume:
        config = cfg.to_json() | {"steps_per_epoch": steps, "format": fmt} | (extra_config or {})
        atomic.write_text(run_dir / "config.json", json.dumps(config, indent=2))
    np.random.seed(cfg.seed)
    tf.random.set_seed(cfg.seed)
    keras.utils.set_random_seed(cfg.seed)
    return Run(cfg=cfg, out=out, run_dir=run_dir, fmt=fmt, train_samples=train_samples, val_samples=val_samples,
               steps=steps, strategy=strategy, resume=resume, is_chief=chief, started=time.time())


def fit_and_finish(run: Run, seg, *, train_batches: Callable, step_loss: Callable,
                   extra_meta: dict | None = None) -> Path:
    """Train ``seg`` (a :class:`trainer.models.SegModel`), then best weights ->
    ``export/`` -> ``metrics.json``, ``curves.png``, ``confusion.png``,
    ``samples.png``. Returns the run directory."""
    import tensorflow as tf

    from trainer.export import make_predict_fn
    from trainer.loop import LoopConfig, run_loop
    from trainer.pipeline import make_dataset

    cfg = run.cfg
    val_ds = make_dataset(run.val_samples, run.fmt, cfg.size, cfg.batch)
    predict = tf.function(make_predict_fn(seg.model, seg.input_size, cfg.size, seg.square_only))
    loop_cfg = LoopConfig(epochs=cfg.epochs, steps_per_epoch=run.steps, lr=cfg.lr, weight_decay=cfg.weight_decay,
                          warmup_steps=int(cfg.warmup_epochs * run.steps), schedule=cfg.schedule, seed=cfg.seed,
                          time_budget_s=None if cfg.time_budget_min is None else cfg.time_budget_min * 60)
    t0 = time.time()
    try:
        state = run_loop(model=seg.model, framework=seg.framework, run_dir=run.out, cfg=loop_cfg,
                         train_batches=train_batches, step_loss=step_loss, val_batches=lambda: val_ds,
                         predict=predict, resume=run.resume, strategy=run.strategy,
                         resume_dir=run.run_dir)
        log.info("training done in %.0fs; best val mIoU-8 %.4f at epoch %d",
                 time.time() - t0, state["best_miou"], state["best_epoch"])
        _finish(seg, run, state, time.time() - t0, extra_meta)
    finally:
        if not run.is_chief:
            shutil.rmtree(run.out, ignore_errors=True)
    return run.run_dir


def _finish(seg, run: Run, state: dict, train_seconds: float, extra_meta: dict | None) -> None:
    import numpy as np

    from trainer.evaluate import evaluate_export, write_report
    from trainer.export import export_savedmodel
    from trainer.loop import plot_curves

    out = run.out
    best = out / "best.weights.h5"
    if best.is_file():
        seg.model.load_weights(str(best))
    params = int(sum(int(np.prod(v.shape)) for v in seg.model.weights))
    export_savedmodel(seg, run.cfg.size, out / "export", extra_meta={
        "best_epoch": state["best_epoch"], "params": params, **(extra_meta or {})})
    if (out / "history.csv").is_file():  # --epochs 0 (imported weights) trains nothing
        plot_curves(out / "history.csv", out / "curves.png")
    report = evaluate_export(out / "export", run.val_samples, run.fmt)
    report.update({"best_epoch": state["best_epoch"], "params": params,
                   "train_seconds": round(train_seconds, 1), "arch": seg.arch})
    write_report(report, out)
    if run.is_chief:
        log.info("val mIoU-7 %.4f mIoU-8 %.4f; run directory %s",
                 report["metrics"]["miou7"], report["metrics"]["miou8"], out)
