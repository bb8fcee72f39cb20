"""roadseg-train: train a teacher into a run directory.

    roadseg-train --arch fpn-efficientnetb0 --data PATH --out runs/fpn-b0 \
        [--size 192x256] [--crop HxW] [--epochs 10] [--steps-per-epoch N] [--batch 8] [--lr 1e-3] \
        [--loss ce+dice] [--class-weights] [--pretrained PRESET] [--encoder-weights none] \
        [--init-weights FILE ...] [--resume] [--config FILE]

``--init-weights`` starts from weights trained elsewhere (a ``.weights.h5``,
or ``.npz`` arrays in ``get_weights()`` order such as
``scripts/teacher_keras_backend.py`` writes on a JAX or PyTorch machine);
with ``--epochs 0`` the run only evaluates, exports and reports them.

A run directory holds config.json (everything needed to rerun),
best.weights.h5 and the last checkpoint, history.csv, curves.png,
metrics.json and export/ (the SavedModel later stages load).
"""
from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field

from edge_runtime.contract.preprocessing import parse_size
from trainer.runs import RunConfig, fit_and_finish, main as run_main, start_run

log = logging.getLogger("roadseg.train")


@dataclass(kw_only=True)
class TrainConfig(RunConfig):
    arch: str
    crop: tuple[int, int] | None = None
    class_weights: bool = False
    pretrained: str | None = None
    encoder_weights: str = "none"
    mixed_precision: str = "auto"
    model_kwargs: dict = field(default_factory=dict)
    init_weights: list[str] = field(default_factory=list)


def train(cfg: TrainConfig, resume: bool = False):
    """Train, evaluate, export; returns the run directory."""
    from trainer.loop import set_mixed_precision
    from trainer.losses import class_weights_from_counts, make_loss
    from trainer.models import ARCHITECTURES, build_model, framework_of, load_weight_files
    from trainer.pipeline import AugmentConfig, DecodedSplit

    if cfg.arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {cfg.arch!r}; valid: {', '.join(sorted(ARCHITECTURES))}")
    is_segformer = cfg.arch.startswith("segformer")
    if cfg.pretrained and not is_segformer:
        raise ValueError("--pretrained takes a keras-hub preset for segformer-*; "
                         "use --encoder-weights imagenet for segmentation-models encoders")
    crop = cfg.crop or ((cfg.size[0], cfg.size[0]) if is_segformer else cfg.size)
    framework = framework_of(cfg.arch)
    run = start_run(cfg, resume, extra_config={"crop": list(crop)})
    policy = set_mixed_precision(cfg.mixed_precision, framework)
    log.info("%s on %s (%d train / %d val images), crop %s, frame %s, %d replica(s), %s",
             cfg.arch, cfg.data, len(run.train_samples), len(run.val_samples), crop, cfg.size, run.replicas, policy)
    with run.strategy.scope():
        kwargs = dict(cfg.model_kwargs)
        if is_segformer:
            kwargs["pretrained"] = cfg.pretrained
        else:
            kwargs["encoder_weights"] = cfg.encoder_weights
        seg = build_model(cfg.arch, crop, **kwargs)
        if cfg.init_weights and not resume:
            load_weight_files(seg.model, cfg.init_weights)
            log.info("initial weights from %s", ", ".join(cfg.init_weights))
    weights = None
    if cfg.class_weights:
        from trainer.data_cli import category_stats
        counts = list(category_stats(cfg.data, "train", run.fmt)["pixels"].values())
        weights = class_weights_from_counts(counts)
        log.info("class weights %s", [round(w, 3) for w in weights])
    loss_fn = make_loss(cfg.loss, weights)
    aug = AugmentConfig(enabled=cfg.augment)
    split = DecodedSplit(run.train_samples, run.fmt)

    def train_batches(epoch):
        # one augmented view of the split per epoch, repeated if steps outrun it
        return split.views(epoch, cfg.size, crop, cfg.batch * run.replicas, seed=cfg.seed,
                           augment_cfg=aug).repeat()

    def step_loss(model, batch, training):
        x, y = batch[0], batch[1]
        return loss_fn(model(x, training=training), y)

    return fit_and_finish(run, seg, train_batches=train_batches, step_loss=step_loss)


def add_arguments(p) -> None:
    a = p.add_argument
    a("--arch", help="architecture name (see --list)")
    a("--crop", type=parse_size, help="training crop HEIGHTxWIDTH (default: --size; square for SegFormer)")
    a("--class-weights", action="store_true", default=None, help="weight cross-entropy by inverse label frequency")
    a("--pretrained", help="keras-hub preset for segformer-* (needs a download)")
    a("--encoder-weights", help="imagenet, none, or a weights file (EfficientNet-Lite .pth, for air-gapped machines)")
    a("--mixed-precision", choices=["auto", "on", "off"])
    a("--init-weights", action="append", metavar="FILE",
      help="start from these weights: a .weights.h5, or .npz arrays in get_weights() order (repeatable: "
           "the parts of one set); with --epochs 0, only evaluate and export them")


def main(argv: list[str] | None = None) -> int:
    from trainer.models import ARCHITECTURES
    return run_main("roadseg-train", __doc__, add_arguments, train, TrainConfig, ("arch", "data", "out"),
                    lambda: list(ARCHITECTURES), argv)


if __name__ == "__main__":
    sys.exit(main())
