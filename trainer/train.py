"""Training a teacher into a run directory: what ``roadseg-train`` runs
(its command line is :mod:`trainer.commands.train`).

A run directory holds config.json (everything needed to rerun),
best.weights.h5 and the last checkpoint, history.csv, curves.png,
metrics.json and export/ (the SavedModel later stages load).
``init_weights`` starts from weights trained elsewhere (a ``.weights.h5``,
or ``.npz`` arrays in ``get_weights()`` order such as the any-backend
trainer, ``python -m distill.commands.keras_backend train``, writes on a JAX
or PyTorch machine); with ``epochs=0`` the run only evaluates, exports and
reports them.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from trainer.runs import RunConfig, fit_and_finish, start_run

log = logging.getLogger("roadseg.train")


@dataclass(kw_only=True)
class TrainConfig(RunConfig):
    """:class:`RunConfig` for a teacher: ``arch`` (a name of
    ``trainer.models.ARCHITECTURES``), the training ``crop`` (height, width;
    default the frame size, square for SegFormer), inverse-frequency
    ``class_weights``, a keras-hub ``pretrained`` preset (SegFormer) or
    ``encoder_weights`` (``imagenet``, ``none`` or a file), the
    ``mixed_precision`` mode (auto, on, off), extra ``model_kwargs`` and
    ``init_weights`` files."""
    arch: str
    crop: tuple[int, int] | None = None
    class_weights: bool = False
    pretrained: str | None = None
    encoder_weights: str = "none"
    mixed_precision: str = "auto"
    model_kwargs: dict = field(default_factory=dict)
    init_weights: list[str] = field(default_factory=list)


def train(cfg: TrainConfig, resume: bool = False) -> Path:
    """Train, evaluate, export; returns the run directory.

    Raises ``ValueError`` for an unknown architecture, a ``pretrained``
    preset on a non-SegFormer, or weights of another architecture;
    ``FileNotFoundError``/``PermissionError`` for data or run directories
    (:func:`trainer.runs.start_run`); ``trainer.loop.BudgetReached`` when
    ``time_budget_min`` runs out and ``StopRequested`` on SIGINT/SIGTERM
    (both after checkpointing the last finished epoch)."""
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
        from trainer.dataset_stats import category_stats
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
