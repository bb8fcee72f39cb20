"""``roadseg-train``: train a teacher into a run directory.

    roadseg-train --arch fpn-efficientnetb0 --data PATH --out runs/fpn-b0 \
        [--size 192x256] [--epochs 10] [--steps-per-epoch N] [--batch 8] [--lr 1e-3] \
        [--loss ce+dice] [--class-weights] [--pretrained PRESET] [--encoder-weights none] \
        [--resume] [--config FILE]

A run directory holds ``config.json`` (everything needed to rerun),
``best.weights.h5`` and ``last`` checkpoint, ``history.csv``, ``curves.png``,
``metrics.json`` and ``export/`` (the SavedModel later stages load).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import trainer  # noqa: F401  (legacy-Keras environment before TensorFlow)

log = logging.getLogger("roadseg.train")


@dataclass
class TrainConfig:
    arch: str
    data: str
    out: str
    size: tuple[int, int] = (192, 256)
    crop: tuple[int, int] | None = None
    format: str = "auto"
    epochs: int = 10
    steps_per_epoch: int | None = None
    batch: int = 8
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_epochs: float = 0.5
    schedule: str = "cosine"
    loss: str = "ce+dice"
    class_weights: bool = False
    pretrained: str | None = None
    encoder_weights: str = "none"
    mixed_precision: str = "auto"
    augment: bool = True
    seed: int = 0
    model_kwargs: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> "TrainConfig":
        return config_from_dict(cls, d)


def config_from_dict(cls, d: dict):
    """Build a config dataclass from JSON/TOML values: sizes back to tuples,
    unknown keys refused."""
    d = dict(d)
    for k in ("size", "crop"):
        if d.get(k) is not None:
            d[k] = tuple(d[k])
    unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
        raise ValueError(f"unknown config keys: {sorted(unknown)}")
    return cls(**d)


def prepare_run_dir(out: Path, resume: bool) -> None:
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


def train(cfg: TrainConfig, resume: bool = False) -> Path:
    """Train, evaluate, export; returns the run directory."""
    import numpy as np
    import tensorflow as tf

    from trainer.datasets import list_samples
    from trainer.export import make_predict_fn
    from trainer.loop import LoopConfig, get_strategy, run_loop, set_mixed_precision
    from trainer.losses import class_weights_from_counts, make_loss
    from trainer.models import ARCHITECTURES, build_model
    from trainer.pipeline import AugmentConfig, DecodedSplit, make_dataset

    if cfg.arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {cfg.arch!r}; valid: {', '.join(sorted(ARCHITECTURES))}")
    out = Path(cfg.out)
    prepare_run_dir(out, resume)
    fmt, train_samples = list_samples(cfg.data, "train", cfg.format)
    _, val_samples = list_samples(cfg.data, "val", fmt)
    is_segformer = cfg.arch.startswith("segformer")
    crop = cfg.crop or ((cfg.size[0], cfg.size[0]) if is_segformer else cfg.size)
    if len(train_samples) < cfg.batch:
        raise ValueError(f"{len(train_samples)} training images is fewer than one batch of {cfg.batch}")
    steps = cfg.steps_per_epoch or max(1, len(train_samples) // cfg.batch)
    if not resume:
        cfg_json = cfg.to_json() | {"crop": list(crop), "steps_per_epoch": steps, "format": fmt}
        (out / "config.json").write_text(json.dumps(cfg_json, indent=2))
    tf.keras.utils.set_random_seed(cfg.seed) if hasattr(tf.keras.utils, "set_random_seed") else None
    np.random.seed(cfg.seed)
    tf.random.set_seed(cfg.seed)

    framework = "keras3" if is_segformer else "tf_keras"
    policy = set_mixed_precision(cfg.mixed_precision, framework)
    strategy = get_strategy()
    log.info("%s on %s (%d train / %d val images), crop %s, frame %s, %d replica(s), %s",
             cfg.arch, cfg.data, len(train_samples), len(val_samples), crop, cfg.size,
             strategy.num_replicas_in_sync, policy)
    with strategy.scope():
        kwargs = dict(cfg.model_kwargs)
        if is_segformer:
            kwargs["pretrained"] = cfg.pretrained
        else:
            if cfg.pretrained:
                raise ValueError("--pretrained takes a keras-hub preset for segformer-*; "
                                 "use --encoder-weights imagenet for segmentation-models encoders")
            kwargs["encoder_weights"] = cfg.encoder_weights
        seg = build_model(cfg.arch, crop, **kwargs)
    weights = None
    if cfg.class_weights:
        from trainer.data_cli import category_stats
        counts = list(category_stats(cfg.data, "train", fmt)["pixels"].values())
        weights = class_weights_from_counts(counts)
        log.info("class weights %s", [round(w, 3) for w in weights])
    loss_fn = make_loss(cfg.loss, weights)
    aug = AugmentConfig(enabled=cfg.augment)

    split = DecodedSplit(train_samples, fmt)

    def train_batches(epoch):
        # one augmented view of the split per epoch, repeated if steps outrun it
        return split.views(epoch, cfg.size, crop, cfg.batch * strategy.num_replicas_in_sync,
                           seed=cfg.seed, augment_cfg=aug).repeat()

    val_ds = make_dataset(val_samples, fmt, cfg.size, cfg.batch, training=False)
    predict = tf.function(make_predict_fn(seg.model, seg.input_size, cfg.size, seg.square_only))

    def step_loss(model, batch, training):
        x, y = batch[0], batch[1]
        return loss_fn(model(x, training=training), y)

    loop_cfg = LoopConfig(epochs=cfg.epochs, steps_per_epoch=steps, lr=cfg.lr,
                          weight_decay=cfg.weight_decay, warmup_steps=int(cfg.warmup_epochs * steps),
                          schedule=cfg.schedule, seed=cfg.seed)
    t0 = time.time()
    state = run_loop(model=seg.model, framework=framework, run_dir=out, cfg=loop_cfg,
                     train_batches=train_batches, step_loss=step_loss, val_batches=lambda: val_ds,
                     predict=predict, resume=resume, strategy=strategy)
    log.info("training done in %.0fs; best val mIoU-8 %.4f at epoch %d",
             time.time() - t0, state["best_miou"], state["best_epoch"])
    finish_run(seg, out, cfg.size, val_samples, fmt, state, train_seconds=time.time() - t0)
    return out


def finish_run(seg, out: Path, size, val_samples, fmt: str, state: dict, train_seconds: float,
               extra_meta: dict | None = None) -> None:
    """Best weights -> export/ -> metrics.json, curves.png, confusion.png, samples.png."""
    from trainer.evaluate import evaluate_export, write_report
    from trainer.export import export_savedmodel
    from trainer.loop import plot_curves

    best = out / "best.weights.h5"
    if best.is_file():
        seg.model.load_weights(str(best))
    params = int(sum(int(__import__("numpy").prod(v.shape)) for v in seg.model.weights))
    export_savedmodel(seg, size, out / "export", extra_meta={
        "best_epoch": state["best_epoch"], "params": params, **(extra_meta or {})})
    plot_curves(out / "history.csv", out / "curves.png")
    report = evaluate_export(out / "export", val_samples, fmt)
    report.update({"best_epoch": state["best_epoch"], "params": params,
                   "train_seconds": round(train_seconds, 1), "arch": seg.arch})
    write_report(report, out)
    log.info("val mIoU-7 %.4f mIoU-8 %.4f; run directory %s",
             report["metrics"]["miou7"], report["metrics"]["miou8"], out)


def build_parser() -> argparse.ArgumentParser:
    from edge_runtime.preprocessing import parse_size
    p = argparse.ArgumentParser(prog="roadseg-train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", help="architecture name (see --list)")
    p.add_argument("--list", action="store_true", help="list architectures and exit")
    p.add_argument("--data", help="dataset root (Cityscapes or CamVid layout)")
    p.add_argument("--out", help="run directory, e.g. runs/fpn-b0")
    p.add_argument("--format", choices=["auto", "cityscapes", "camvid"])
    p.add_argument("--size", type=parse_size, help="frame size HEIGHTxWIDTH (default 192x256)")
    p.add_argument("--crop", type=parse_size, help="training crop (default: --size; square for SegFormer)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--steps-per-epoch", type=int)
    p.add_argument("--batch", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--weight-decay", type=float)
    p.add_argument("--schedule", choices=["cosine", "poly", "constant"])
    p.add_argument("--loss", choices=["ce+dice", "ce", "dice", "tversky", "ce+tversky"])
    p.add_argument("--class-weights", action="store_true", default=None,
                   help="weight cross-entropy by inverse label frequency")
    p.add_argument("--pretrained", help="keras-hub preset for segformer-* (needs a download)")
    p.add_argument("--encoder-weights", choices=["imagenet", "none"])
    p.add_argument("--mixed-precision", choices=["auto", "on", "off"])
    p.add_argument("--no-augment", dest="augment", action="store_false", default=None)
    p.add_argument("--seed", type=int)
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--config", help="JSON or TOML file of the same settings (command line wins)")
    return p


def load_config_file(path: str) -> dict:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"config file not found: {p}")
    text = p.read_text()
    try:
        if p.suffix == ".toml":
            import tomllib
            return tomllib.loads(text)
        return json.loads(text)
    except Exception as e:
        raise ValueError(f"malformed config file {p}: {e}") from e


def config_from_args(args, cls=TrainConfig, required=("arch", "data", "out"), drop=()):
    """Settings: a resumed run's config.json < ``--config`` file < command line."""
    base: dict = {}
    if args.resume and args.out and (Path(args.out) / "config.json").is_file():
        base = {k: v for k, v in json.loads((Path(args.out) / "config.json").read_text()).items() if k not in drop}
    if args.config:
        base.update(load_config_file(args.config))
    for k, v in vars(args).items():
        if v is not None and k not in ("config", "resume", "list"):
            base[k.replace("-", "_")] = v
    for req in required:
        if not base.get(req):
            raise ValueError(f"--{req} is required")
    return cls.from_json(base)


def run_cli(prog: str, job, cfg_fn, args) -> int:
    """Run ``job(cfg, resume=...)`` with the CLI's error contract: a clear
    message and exit 2 for bad input, 130 for an interrupted run (resumable)."""
    from trainer.loop import StopRequested
    try:
        cfg = cfg_fn(args)
        if not Path(cfg.data).is_dir():
            raise FileNotFoundError(f"--data {cfg.data}: folder not found")
        job(cfg, resume=args.resume)
    except (KeyboardInterrupt, StopRequested):
        print(f"{prog}: stopped; the last finished epoch is checkpointed, continue with --resume", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, PermissionError, RuntimeError) as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    args = build_parser().parse_args(argv)
    if args.list:
        from trainer.models import ARCHITECTURES
        print("\n".join(sorted(ARCHITECTURES)))
        return 0
    return run_cli("roadseg-train", train, config_from_args, args)


if __name__ == "__main__":
    sys.exit(main())
