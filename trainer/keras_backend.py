"""The any-backend trainer: Keras 3 on JAX, PyTorch or TensorFlow, from a
packed dataset (:mod:`trainer.packed`), without TensorFlow or tf.data.

Why: ``roadseg-train`` is the tool (tf.data pipeline, checkpoints, reports,
export), but a GPU machine may hold JAX or PyTorch and no TensorFlow. The
Keras 3 architectures (``fpn-efficientnet-lite*``, ``segformer-*``, the
students) build the same on every backend, so their weights move between
backends as plain arrays. What this trainer shares with ``roadseg-train``:
the augmentation (:func:`trainer.augment.augment`), the learning-rate
schedule (:func:`trainer.schedule.lr_at`, here on the fraction of epochs or
time spent), and the evaluation (:func:`trainer.evaluate.evaluate_frames`:
frames through the preprocessing contract, scored at the label's size).

:func:`fit` writes ``weights-K.npz`` (the model's weights in
``get_weights()`` order, split to stay under 12 MB a file) and
``train_log.json`` (settings, one row per epoch, held-out mIoU at every
evaluation); ``roadseg-train``/``roadseg-distill --epochs 0 --init-weights``
import them where TensorFlow lives. A second loss on a second output of the
network (distillation: :mod:`distill.keras_backend`) plugs in as an
:class:`ExtraLoss`. The command line is :mod:`distill.commands.keras_backend`.
"""
from __future__ import annotations

import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

import trainer  # noqa: F401  (the package's environment first)
from edge_runtime.contract.labels import IGNORE_INDEX
from trainer.augment import AugmentConfig, augment, view_rng
from trainer.evaluate import evaluate_frames
from trainer.packed import Frame
from trainer.schedule import lr_at_progress

#: the largest ``weights-K.npz`` part in bytes (files that travel through size-limited channels)
MAX_PART = 12 * 2 ** 20


@dataclass(kw_only=True)
class BackendConfig:
    """Settings of one any-backend run. ``size``: the crop and frame
    (height, width) in pixels; ``epochs`` and ``minutes`` both bound the run
    and the learning-rate schedule (whichever ends first); ``lr``: AdamW's
    peak rate; ``eval_every``: epochs between held-out evaluations (each one
    also saves the weights); ``workers``: augmentation threads; ``bf16``:
    mixed bfloat16 (GPUs); ``float16_kernels``: kernels (ndim >= 2) saved in
    float16, the rest in float32."""
    size: tuple[int, int] = (352, 480)
    epochs: int = 100
    minutes: float = 1e9
    batch: int = 16
    lr: float = 1e-3
    weight_decay: float = 1e-4
    eval_every: int = 10
    workers: int = 8
    seed: int = 0
    bf16: bool = False
    float16_kernels: bool = False


@dataclass
class ExtraLoss:
    """A second output of the training network and its loss, weighted
    ``weight`` against cross-entropy. ``output(image_input, logits)`` builds
    the output from the model's input and logits (Keras tensors, logits at
    1/stride); ``target(labels uint8 [B,H,W], stride)`` the batch's
    ``y_true`` for it; ``log``: what ``train_log.json`` records about it."""
    name: str
    output: Callable[[Any, Any], Any]
    loss: Callable[[Any, Any], Any]
    weight: float
    target: Callable[[np.ndarray, int], np.ndarray]
    log: dict


def prepare(cfg: BackendConfig) -> str:
    """Set the dtype policy (``mixed_bfloat16`` with ``cfg.bf16``) and every
    random seed before a model is built; returns the Keras backend's name."""
    import keras
    if cfg.bf16:
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
    keras.utils.set_random_seed(cfg.seed)
    return keras.backend.backend()


def output_stride(model, size: tuple[int, int]) -> int:
    """How many input pixels one logit covers (1 for teachers, 8 for the
    students), from one forward pass on zeros at ``size``."""
    probe = model(np.zeros((1, *size, 3), np.float32), training=False)
    return size[0] // int(probe.shape[1])


def training_model(model, size: tuple[int, int], stride: int, extra: ExtraLoss | None):
    """The network to fit: output ``ce``, the logits upsampled bilinearly to
    ``size``; with ``extra`` also its output, by its name."""
    import keras
    from keras import layers
    inp = keras.Input((*size, 3), dtype="float32", name="image")
    s = model(inp)
    full = layers.UpSampling2D(stride, interpolation="bilinear")(s) if stride > 1 else s
    outputs = {"ce": layers.Identity(name="ce")(full)}
    if extra is not None:
        outputs[extra.name] = extra.output(inp, s)
    return keras.Model(inp, outputs)


def compile_for_training(net, cfg: BackendConfig, extra: ExtraLoss | None) -> None:
    """AdamW (decoupled weight decay, Loshchilov & Hutter 2019) on
    cross-entropy over labelled pixels (``IGNORE_INDEX`` left out), plus the
    extra loss at its weight."""
    import keras
    losses = {"ce": keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=IGNORE_INDEX)}
    weights = None
    if extra is not None:
        losses[extra.name] = extra.loss
        weights = {"ce": 1.0, extra.name: extra.weight}
    net.compile(optimizer=keras.optimizers.AdamW(cfg.lr, weight_decay=cfg.weight_decay), loss=losses,
                loss_weights=weights)


def make_views(frames: list[Frame], cfg: BackendConfig, extra: ExtraLoss | None, stride: int,
               pool: ThreadPoolExecutor, aug: AugmentConfig = AugmentConfig()):
    """``views(epoch_seed)``: a ``keras.utils.PyDataset`` of one epoch of
    augmented batches ``(uint8 [B,H,W,3], {"ce": labels [B,H,W], extra:
    target})``. Batch ``i`` draws its frames and their views from
    ``(epoch_seed, i)`` only, so the prefetching threads share no random state."""
    import keras
    h, w = cfg.size
    steps = max(1, len(frames) // cfg.batch)

    def view(pick):
        index, seed = pick
        img, lab = frames[index]
        return augment(img, lab, (h, w), h, aug, view_rng(seed, index))

    class Views(keras.utils.PyDataset):
        def __init__(self, epoch_seed: int):
            super().__init__(workers=4, use_multiprocessing=False, max_queue_size=8)
            self.epoch_seed = epoch_seed

        def __len__(self):
            return steps

        def __getitem__(self, i):
            rng = np.random.default_rng((self.epoch_seed, i))
            picks = zip(rng.integers(0, len(frames), cfg.batch).tolist(), rng.integers(0, 2 ** 31, cfg.batch).tolist())
            pairs = list(pool.map(view, picks))
            x, y = np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])
            targets = {"ce": y}
            if extra is not None:
                targets[extra.name] = extra.target(y, stride)
            return x, targets

    return Views


def evaluate_held(model, held: list[Frame], size: tuple[int, int]) -> tuple[float, dict]:
    """``(mIoU-7, IoU per category)`` of ``model`` on the held-out frames,
    scored like ``roadseg-train``'s report (:func:`evaluate_frames`)."""
    m = evaluate_frames(lambda x: model.predict(x, verbose=0), held, size).compute().as_dict()
    return m["miou7"], m["iou"]


def save_weights(model, out: Path, log: dict, float16_kernels: bool) -> None:
    """``weights-K.npz`` parts (each under :data:`MAX_PART` bytes, arrays
    named ``w00000``... in ``get_weights()`` order) and ``train_log.json``,
    each written under a temporary name and renamed; called after every
    evaluation too, so a run stopped by a time limit keeps its last
    evaluated weights (``train_log.json``'s last epoch says which).
    ``float16_kernels``: convolution/dense kernels (ndim >= 2) in float16,
    half the bytes to move; biases and BatchNormalization statistics stay
    float32. Raises ``OSError`` when ``out`` cannot be written."""
    parts, cur, size = [], {}, 0
    for i, v in enumerate(np.asarray(v) for v in model.get_weights()):
        v = v.astype(np.float16 if float16_kernels and v.ndim >= 2 else np.float32)
        if size + v.nbytes > MAX_PART and cur:
            parts.append(cur)
            cur, size = {}, 0
        cur[f"w{i:05d}"], size = v, size + v.nbytes
    parts.append(cur)
    for k, p in enumerate(parts):
        tmp = out / f".weights-{k}.npz"
        np.savez(tmp, **p)
        os.replace(tmp, out / f"weights-{k}.npz")
    log["weight_files"] = [f"weights-{k}.npz" for k in range(len(parts))]
    tmp = out / ".train_log.json"
    tmp.write_text(json.dumps(log, indent=1))
    os.replace(tmp, out / "train_log.json")


def _epoch_row(net, views, epoch: int, lr: float, extra: ExtraLoss | None) -> dict:
    """Fit one epoch of ``views`` at ``lr``; its ``train_log.json`` row."""
    net.optimizer.learning_rate.assign(lr)
    t0 = time.time()
    hist = net.fit(views, epochs=1, verbose=0).history
    row = {"epoch": epoch + 1, "lr": round(lr, 6), "loss": round(float(hist["loss"][-1]), 4),
           "seconds": round(time.time() - t0, 2)}
    if extra is not None:
        row["ce"] = round(float(hist.get("ce_loss", [np.nan])[-1]), 4)
        row[extra.name] = round(float(hist.get(f"{extra.name}_loss", [np.nan])[-1]), 4)
    return row


def fit(model, cfg: BackendConfig, frames: list[Frame], held: list[Frame], out: str | Path, log: dict,
        extra: ExtraLoss | None = None, echo: Callable[[str], None] = print) -> dict:
    """Train ``model`` (Keras 3; logits at any stride) on augmented views of
    ``frames``, evaluate it on ``held`` every ``cfg.eval_every`` epochs and at
    the end, and save its weights into ``out`` (:func:`save_weights`).

    The learning rate follows :func:`trainer.schedule.lr_at_progress` on the
    fraction of the epochs or of ``cfg.minutes`` spent, whichever is
    further (the first epoch, which also compiles, does not count against
    the time); training stops at the end of either. ``log`` (settings,
    written as ``train_log.json``) receives ``epochs`` (a row per epoch:
    lr, loss, seconds, ``holdout_miou7`` and ``holdout_iou`` when
    evaluated), ``train_seconds`` and ``weight_files``; ``echo`` gets each
    row as JSON. Returns ``log``. Raises ``OSError`` when ``out`` cannot be written."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stride = output_stride(model, cfg.size)
    net = training_model(model, cfg.size, stride, extra)
    compile_for_training(net, cfg, extra)
    log.update({"output_stride": stride, "kd": False, **(extra.log if extra else {}), "epochs": []})
    budget, t0 = cfg.minutes * 60, time.time()
    with ThreadPoolExecutor(cfg.workers) as pool:
        views = make_views(frames, cfg, extra, stride, pool)
        for epoch in range(cfg.epochs):
            progress = max(epoch / cfg.epochs, (time.time() - t0) / budget)
            row = _epoch_row(net, views(cfg.seed * 1000 + epoch), epoch, lr_at_progress(progress, cfg.lr), extra)
            if epoch == 0:
                t0 = time.time()  # the budget is for training: the first epoch also compiles
            last = epoch + 1 == cfg.epochs or (time.time() - t0) / budget >= 1.0
            if (epoch + 1) % cfg.eval_every == 0 or last:
                row["holdout_miou7"], row["holdout_iou"] = evaluate_held(model, held, cfg.size)
            log["epochs"].append(row)
            echo(json.dumps(row))
            if "holdout_miou7" in row and not last:  # a checkpoint: what a time limit would otherwise take away
                save_weights(model, out, log, cfg.float16_kernels)
            if last:
                break
    log["train_seconds"] = round(time.time() - t0 + log["epochs"][0]["seconds"], 1)
    save_weights(model, out, log, cfg.float16_kernels)
    return log
