"""The training loop shared by teachers (``roadseg-train``) and students
(``roadseg-distill``): a custom TensorFlow loop that drives both Keras 3 and
tf-keras models, under ``tf.distribute``.

Per epoch: ``steps_per_epoch`` optimizer steps on augmented batches, then
val mIoU; the last state is checkpointed every epoch (weights, optimizer slots,
epoch, best score) so ``--resume`` loses at most the epoch in progress; the
best-by-val-mIoU weights are kept separately.
"""
from __future__ import annotations

import contextlib
import csv
import json
import logging
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import tensorflow as tf

from edge_runtime.atomic import atomic_path, save_figure
from edge_runtime.eval.metrics import ConfusionMatrix
from trainer.schedule import lr_at

log = logging.getLogger("roadseg.train")


def get_strategy() -> tf.distribute.Strategy:
    """MultiWorkerMirroredStrategy when ``TF_CONFIG`` is set, MirroredStrategy
    on several GPUs, the default strategy otherwise."""
    if os.environ.get("TF_CONFIG"):
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def set_mixed_precision(mode: str, framework: str) -> str:
    """``auto`` turns on mixed bfloat16 on a GPU (no loss scaling needed)."""
    on = mode == "on" or (mode == "auto" and tf.config.list_physical_devices("GPU"))
    policy = "mixed_bfloat16" if on else "float32"
    if framework == "keras3":
        import keras
        keras.mixed_precision.set_global_policy(policy)
    else:
        import tf_keras
        tf_keras.mixed_precision.set_global_policy(policy)
    return policy


def make_optimizer(framework: str, lr: float, weight_decay: float):
    """AdamW (decoupled weight decay, Loshchilov & Hutter 2019) of the Keras
    that builds the model: ``keras3`` or ``tf_keras``; ``lr`` is replaced
    every step by the schedule."""
    if framework == "keras3":
        import keras
        return keras.optimizers.AdamW(learning_rate=lr, weight_decay=weight_decay, clipnorm=None)
    import tf_keras
    return tf_keras.optimizers.AdamW(learning_rate=lr, weight_decay=weight_decay)


def _opt_variables(opt) -> list:
    v = opt.variables
    return list(v() if callable(v) else v)


def _value(v):
    return v.numpy() if hasattr(v, "numpy") else np.asarray(v)


def _build_optimizer(opt, variables) -> None:
    opt.build(variables)


def _set_lr(opt, lr: float) -> None:
    opt.learning_rate.assign(lr)


class Checkpointer:
    """Weights + optimizer slots + loop state in one ``.npz``, written to a
    temporary name then renamed, so a crash never leaves a half checkpoint."""

    def __init__(self, run_dir: Path, load_dir: Path | None = None):
        self.dir = run_dir / "checkpoints"
        self.last = self.dir / "last.npz"
        self.load_from = (load_dir or run_dir) / "checkpoints" / "last.npz"

    def save(self, model, opt, state: dict) -> None:
        """Write ``checkpoints/last.npz``: weights ``w*``, optimizer variables
        ``o*`` and ``state`` as JSON. Raises ``OSError`` when it cannot."""
        self.dir.mkdir(parents=True, exist_ok=True)
        arrays = {f"w{i}": _value(v) for i, v in enumerate(model.weights)}
        arrays.update({f"o{i}": _value(v) for i, v in enumerate(_opt_variables(opt))})
        with atomic_path(self.last) as tmp:
            np.savez(tmp, __state__=np.array(json.dumps(state)), **arrays)

    def load(self, model, opt) -> dict:
        """Restore weights and optimizer variables; returns the loop state.
        Raises ``FileNotFoundError`` without a checkpoint and ``ValueError``
        when the optimizer's variables do not match the checkpoint's."""
        if not self.load_from.is_file():
            raise FileNotFoundError(f"nothing to resume: no checkpoint at {self.load_from}")
        data = np.load(self.load_from, allow_pickle=False)
        state = json.loads(str(data["__state__"]))
        weights = model.weights
        for i, v in enumerate(weights):
            v.assign(data[f"w{i}"])
        ov = _opt_variables(opt)
        n = sum(1 for k in data.files if k.startswith("o"))
        if n != len(ov):
            raise ValueError(f"checkpoint has {n} optimizer variables, the optimizer {len(ov)}")
        for i, v in enumerate(ov):
            v.assign(data[f"o{i}"])
        return state


def save_weights(model, path: Path) -> None:
    """``model.save_weights`` to ``path`` through a temporary name."""
    with atomic_path(path) as tmp:
        model.save_weights(str(tmp))


@dataclass
class LoopConfig:
    """What the loop needs of the settings: ``epochs`` of ``steps_per_epoch``
    steps, the peak ``lr`` (AdamW, ``weight_decay``), ``warmup_steps`` and
    ``schedule`` (:func:`lr_at`), the ``seed`` and ``time_budget_s``
    (wall-clock seconds this process may train; None: no limit)."""
    epochs: int
    steps_per_epoch: int
    lr: float
    weight_decay: float = 1e-4
    warmup_steps: int = 0
    schedule: str = "cosine"
    seed: int = 0
    time_budget_s: float | None = None  # wall-clock seconds this process may train; None: no limit


class StopRequested(Exception):
    """A signal asked the loop to stop; the last finished epoch is checkpointed."""


class BudgetReached(StopRequested):
    """``time_budget_s`` ran out; the last finished epoch is checkpointed."""


def evaluate(predict: Callable, batches: Iterable) -> ConfusionMatrix:
    """Confusion matrix of ``argmax(predict(images))`` against labels."""
    cm = ConfusionMatrix()
    for images, labels in batches:
        logits = predict(images)
        pred = tf.argmax(logits, axis=-1, output_type=tf.int32).numpy()
        lab = labels.numpy()
        if pred.shape != lab.shape:
            from edge_runtime.contract.preprocessing import resize_mask
            pred = np.stack([resize_mask(p.astype(np.uint8), lab.shape[1:3]) for p in pred])
        cm.update(pred, lab)
    return cm


def _train_step_fn(model, opt, strategy: tf.distribute.Strategy, step_loss: Callable) -> Callable:
    """One optimizer step on a batch under ``strategy`` (a ``tf.function``):
    the loss per replica, scaled by the replica count for the gradient,
    averaged over replicas for the log."""
    tvars = model.trainable_variables

    def _step(batch):
        with tf.GradientTape() as tape:
            loss = step_loss(model, batch, True)
            scaled = loss / strategy.num_replicas_in_sync
        grads = tape.gradient(scaled, tvars)
        opt.apply_gradients(zip(grads, tvars))
        return loss

    @tf.function
    def train_step(batch):
        per_replica = strategy.run(_step, args=(batch,))
        return strategy.reduce(tf.distribute.ReduceOp.MEAN, per_replica, axis=None)
    return train_step


@contextlib.contextmanager
def _stop_on_signals():
    """SIGINT and SIGTERM set the yielded flag (the loop finishes its step and
    stops, keeping the last checkpoint); the previous handlers come back after."""
    stop = {"flag": False}

    def on_signal(signum, frame):
        stop["flag"] = True
        log.warning("signal %d: stopping after this step; resume with --resume", signum)

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _check_budget(cfg: LoopConfig, state: dict, epoch: int, started: float) -> None:
    """Raise :class:`BudgetReached` before an epoch (not the first of this
    invocation) that would end past ``cfg.time_budget_s``, judged by the
    last epoch's duration."""
    if cfg.time_budget_s is not None and epoch > state.get("_first_epoch", epoch) and \
            time.time() - started + state.get("_epoch_s", 0.0) > cfg.time_budget_s:
        raise BudgetReached(f"time budget of {cfg.time_budget_s / 60:g} min reached after epoch "
                            f"{epoch}/{cfg.epochs}; continue with --resume")


def _train_epoch(epoch: int, cfg: LoopConfig, state: dict, opt, train_step: Callable, data, stop: dict) -> list:
    """``cfg.steps_per_epoch`` steps from the iterator ``data``, each at
    :func:`lr_at` of the global step; returns the step losses. Raises
    :class:`StopRequested` when a signal set ``stop``."""
    total_steps = cfg.epochs * cfg.steps_per_epoch
    losses = []
    for i in range(cfg.steps_per_epoch):
        if stop["flag"]:
            raise StopRequested()
        _set_lr(opt, lr_at(state["step"], total_steps, cfg.lr, cfg.warmup_steps, cfg.schedule))
        losses.append(float(train_step(next(data))))
        state["step"] += 1
        if (i + 1) % max(1, cfg.steps_per_epoch // 4) == 0 or i + 1 == cfg.steps_per_epoch:
            log.info("epoch %d/%d step %d/%d loss %.4f", epoch + 1, cfg.epochs, i + 1,
                     cfg.steps_per_epoch, float(np.mean(losses[-20:])))
    return losses


def _append_history(history_file: Path, row: dict) -> None:
    """One epoch's row appended to ``history.csv`` (a header first in a new file)."""
    new_file = not history_file.exists()
    with history_file.open("a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(row))
        if new_file:
            w.writeheader()
        w.writerow(row)


def _start_state(ckpt: Checkpointer, model, opt, history_file: Path, resume: bool) -> dict:
    """The loop state: a fresh one (and no stale ``history.csv``), or the
    checkpoint's when resuming (weights and optimizer slots restored)."""
    if resume:
        state = ckpt.load(model, opt)
        log.info("resumed from %s at epoch %d (best val mIoU-8 %.4f)", ckpt.load_from, state["epoch"],
                 state["best_miou"])
        return state
    if history_file.exists():
        history_file.unlink()
    return {"epoch": 0, "step": 0, "best_miou": -1.0, "best_epoch": -1}


def run_loop(*, model, framework: str, run_dir: Path, cfg: LoopConfig,
             train_batches: Callable[[int], tf.data.Dataset], step_loss: Callable,
             val_batches: Callable[[], Iterable], predict: Callable,
             resume: bool, strategy: tf.distribute.Strategy | None = None,
             weights_name: str = "best.weights.h5", resume_dir: Path | None = None) -> dict:
    """Train ``model``; returns the final state ``{"epoch", "step",
    "best_miou", "best_epoch"}`` (mIoU-8 on val, 0..1).

    ``train_batches(epoch)`` is a dataset of tuples whose first two items are
    (images, labels); ``step_loss(model, batch, training)`` returns the
    scalar loss; ``predict(images)`` logits at the labels' size (or any size:
    argmax is resized by nearest) for ``val_batches()``. Every epoch appends
    to ``run_dir/history.csv``, keeps the best weights in ``weights_name``
    and checkpoints (``resume`` continues from ``resume_dir``'s, default
    ``run_dir``'s).

    Raises:
        FileNotFoundError: ``resume`` without a checkpoint.
        ValueError: a checkpoint of another optimizer.
        BudgetReached: ``cfg.time_budget_s`` ran out (after a checkpoint).
        StopRequested: SIGINT or SIGTERM (the last finished epoch is checkpointed).
    """
    strategy = strategy or tf.distribute.get_strategy()
    with strategy.scope():
        opt = make_optimizer(framework, cfg.lr, cfg.weight_decay)
        _build_optimizer(opt, model.trainable_variables)
    ckpt = Checkpointer(run_dir, resume_dir)
    history_file = run_dir / "history.csv"
    state = _start_state(ckpt, model, opt, history_file, resume)
    total_steps = cfg.epochs * cfg.steps_per_epoch
    train_step = _train_step_fn(model, opt, strategy, step_loss)
    started = time.time()
    with _stop_on_signals() as stop:
        for epoch in range(state["epoch"], cfg.epochs):
            _check_budget(cfg, state, epoch, started)
            state.setdefault("_first_epoch", epoch)
            t0 = time.time()
            ds = train_batches(epoch)
            if strategy.num_replicas_in_sync > 1:
                ds = strategy.experimental_distribute_dataset(ds)
            losses = _train_epoch(epoch, cfg, state, opt, train_step, iter(ds), stop)
            train_time = time.time() - t0
            metrics = evaluate(predict, val_batches()).compute()
            row = {"epoch": epoch + 1, "loss": float(np.mean(losses)), "val_miou8": metrics.miou8,
                   "val_miou7": metrics.miou7, "val_pixel_accuracy": metrics.pixel_accuracy,
                   "lr": float(lr_at(state["step"] - 1, total_steps, cfg.lr, cfg.warmup_steps, cfg.schedule)),
                   "time_s": round(time.time() - t0, 2), "train_time_s": round(train_time, 2)}
            _append_history(history_file, row)
            score = metrics.miou8 if not np.isnan(metrics.miou8) else 0.0
            if score > state["best_miou"]:
                state["best_miou"], state["best_epoch"] = float(score), epoch + 1
                save_weights(model, run_dir / weights_name)
            state["epoch"] = epoch + 1
            state["_epoch_s"] = time.time() - t0
            ckpt.save(model, opt, {k: v for k, v in state.items() if not k.startswith("_")})
            log.info("epoch %d/%d loss %.4f val mIoU-8 %.4f mIoU-7 %.4f (%.1fs)%s", epoch + 1, cfg.epochs,
                     row["loss"], metrics.miou8, metrics.miou7, row["time_s"],
                     " best" if state["best_epoch"] == epoch + 1 else "")
    return {k: v for k, v in state.items() if not k.startswith("_")}


def plot_curves(history_file: Path, out: Path) -> None:
    """``curves.png`` at ``out`` from ``history.csv``: training loss and val
    mIoU (both conventions) per epoch; nothing for an empty history. Needs
    matplotlib (``ImportError``)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = list(csv.DictReader(history_file.open()))
    if not rows:
        return
    ep = [int(r["epoch"]) for r in rows]
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.2))
    ax[0].plot(ep, [float(r["loss"]) for r in rows], marker="o")
    ax[0].set(title="training loss", xlabel="epoch")
    ax[1].plot(ep, [float(r["val_miou8"]) for r in rows], marker="o", label="mIoU-8")
    ax[1].plot(ep, [float(r["val_miou7"]) for r in rows], marker="s", label="mIoU-7 (void ignored)")
    ax[1].set(title="validation mIoU", xlabel="epoch", ylim=(0, 1))
    ax[1].legend()
    fig.tight_layout()
    save_figure(fig, out)
