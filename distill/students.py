"""Student architectures (Keras 3), looked up by name in a plain dict.

All students take RGB 0..255 of any size divisible by 32 (uint8, or float32
holding the same values, which lets the int8 converter see the raw pixel range
and give the TFLite model a plain uint8 input; normalization is inside), return logits ``[N, H/8, W/8, 8]`` (``-s4``: ``[N, H/4, W/4, 8]``), use only ops that quantize well
to TFLite int8 (no LayerNorm, GELU or attention), and are set up to train from
scratch: BatchNormalization momentum is lowered from keras.applications'
0.999, whose moving statistics otherwise stay wrong after a few thousand steps.

* ``lraspp-mobilenetv3-small`` / ``-large``: LR-ASPP (Howard et al.,
  "Searching for MobileNetV3", 2019) on keras.applications backbones; the
  reference point of published real-time work.
* ``roadseg-fast``: designed here for int8 on CPUs: dense 3x3 convolutions
  with narrow channels, residual stages at 1/8, 1/16 and 1/32, ReLU only, no
  squeeze-excite or depthwise convolutions (which int8 kernels on AVX-512 VNNI
  and ARM dot-product cores run comparatively slowly), a global-context branch
  and a small FPN fused at 1/8 with nearest (exactly quantizable) upsampling.
"""
from __future__ import annotations

from typing import Callable

import trainer  # noqa: F401  (legacy-Keras environment before TensorFlow)

import keras
from keras import layers

from edge_runtime.contract.labels import NUM_CLASSES
from trainer.models import SegModel

OUTPUT_STRIDE = 8


def _student(model: keras.Model, name: str, stride: int = OUTPUT_STRIDE) -> SegModel:
    """Students take any size divisible by 32 and return logits at 1/``stride`` (8 unless said)."""
    return SegModel(model, "keras3", name, None, output_stride=stride, size_agnostic=True)


class ResizeLike(layers.Layer):
    """Resize ``x`` to the spatial size of ``ref``; works with unknown
    (size-agnostic) shapes, which UpSampling2D's bilinear mode does not."""

    def __init__(self, method: str = "bilinear", **kwargs):
        super().__init__(**kwargs)
        self.method = method

    def call(self, x, ref):
        """``x`` ``[N,h,w,C]`` resized to ``ref``'s ``[N,H,W,*]`` spatial size."""
        if keras.backend.backend() == "tensorflow":  # dynamic shapes: what the TFLite export sees
            import tensorflow as tf
            return tf.image.resize(x, tf.shape(ref)[1:3], method=self.method)
        # JAX and PyTorch trace with concrete shapes (the any-backend trainer, trainer.keras_backend)
        return keras.ops.image.resize(x, tuple(ref.shape[1:3]), interpolation=self.method)

    def compute_output_shape(self, x_shape, ref_shape):
        """``(N, H, W, C)``: ``ref``'s spatial size, ``x``'s channels."""
        return (x_shape[0], ref_shape[1], ref_shape[2], x_shape[3])

    def get_config(self):
        """Keras config: the interpolation ``method`` ("bilinear" or "nearest")."""
        return super().get_config() | {"method": self.method}


def _set_bn_momentum(model: keras.Model, momentum: float) -> None:
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, layers.BatchNormalization):
            layer.momentum = momentum


def _conv_bn_relu(x, filters, kernel=3, stride=1, name=None):
    x = layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False,
                      name=None if name is None else name + "_conv")(x)
    x = layers.BatchNormalization(name=None if name is None else name + "_bn")(x)
    return layers.ReLU(name=None if name is None else name + "_relu")(x)


def _res_block(x, filters):
    y = _conv_bn_relu(x, filters)
    y = layers.Conv2D(filters, 3, padding="same", use_bias=False)(y)
    y = layers.BatchNormalization()(y)
    return layers.ReLU()(layers.Add()([x, y]))


def _feature_at(backbone: keras.Model, stride: int, input_size: int = 64) -> keras.KerasTensor:
    """The deepest layer output of a backbone at a given stride."""
    target = input_size // stride
    best = None
    for layer in backbone.layers:
        out = layer.output
        shp = getattr(out, "shape", None)
        if shp is not None and len(shp) == 4 and shp[1] == target:
            best = out
    if best is None:
        raise ValueError(f"no feature at stride {stride} in {backbone.name}")
    return best


def build_lraspp(variant: str = "small", width: float = 1.0, bn_momentum: float = 0.9,
                 head_channels: int = 128, weights: str | None = None) -> SegModel:
    """LR-ASPP (Howard et al. 2019) on a keras.applications MobileNetV3
    ``variant`` (small or large) at ``width``: 1/32 features -> (1x1 conv) x
    (sigmoid of pooled 1x1 conv), upsampled to 1/8 and summed with a 1x1
    classifier on 1/8 features. RGB 0..255 ``[N,H,W,3]`` -> logits
    ``[N,H/8,W/8,8]``. ``weights``: keras.applications' (``imagenet``
    needs a download) or None. Raises ``ValueError`` if the backbone has no
    feature at stride 8 or 32."""
    cls = {"small": keras.applications.MobileNetV3Small,
           "large": keras.applications.MobileNetV3Large}[variant]
    # probe the strides on a fixed size, then build the real, size-agnostic model
    probe = cls(input_shape=(64, 64, 3), include_top=False, weights=None, alpha=width,
                include_preprocessing=True)
    # layer names are auto-numbered per build; positions are stable
    pos = {s: next(i for i, l in enumerate(probe.layers) if l.output is _feature_at(probe, s)) for s in (8, 32)}
    backbone = cls(input_shape=(None, None, 3), include_top=False, weights=weights, alpha=width,
                   include_preprocessing=True)
    feats = keras.Model(backbone.input, [backbone.layers[pos[8]].output, backbone.layers[pos[32]].output])
    inp = keras.Input((None, None, 3), dtype="float32", name="image")
    low, high = feats(inp)  # MobileNetV3's own Rescaling maps 0..255 to -1..1
    model = keras.Model(inp, _lraspp_head(low, high, head_channels), name=f"lraspp_mobilenetv3_{variant}")
    _set_bn_momentum(model, bn_momentum)
    return _student(model, f"lraspp-mobilenetv3-{variant}")


def _lraspp_head(low, high, head_channels: int, name: str = "logits"):
    """LR-ASPP's head: 1/32 (or 1/16) features gated by their pooled
    sigmoid, upsampled to the 1/8 features, each with a 1x1 classifier, summed."""
    a = _conv_bn_relu(high, head_channels, 1)
    g = layers.GlobalAveragePooling2D(keepdims=True)(high)
    g = layers.Conv2D(head_channels, 1, activation="sigmoid")(g)
    a = layers.Multiply()([a, g])
    a = ResizeLike("bilinear")(a, low)
    return layers.Add(name=name)([layers.Conv2D(NUM_CLASSES, 1)(a), layers.Conv2D(NUM_CLASSES, 1)(low)])


def build_lraspp_lite(variant: str = "lite0", encoder_weights: str | None = "none", head_channels: int = 128,
                      bn_momentum: float = 0.9, stride4: bool = False, skip4_channels: int = 32, **_) -> SegModel:
    """LR-ASPP on EfficientNet-Lite (ReLU6, no squeeze-excite: int8-friendly),
    whose ImageNet weights are read offline (``encoder_weights='imagenet'``,
    a ``.pth``/``.npz`` path, or ``none``). RGB 0..255 ``[N,H,W,3]`` ->
    logits ``[N,H/8,W/8,8]``, or ``[N,H/4,W/4,8]`` with ``stride4``: a
    stride-4 skip for thin classes (poles, signs, people), the 1/8 logits
    upsampled bilinearly and summed with a classifier on the encoder's 1/4
    features after a ``skip4_channels`` 1x1 projection (the low-level skip of
    DeepLab v3+, Chen et al. ECCV 2018, reduced to LR-ASPP's sum of
    classifiers). Raises ``FileNotFoundError`` for missing weights (see
    :func:`trainer.efficientnet_lite.build_efficientnet_lite`)."""
    from trainer.efficientnet_lite import build_efficientnet_lite
    weights = None if encoder_weights in (None, "none") else encoder_weights
    encoder = build_efficientnet_lite(variant, weights, (None, None, 3), input_dtype="float32",
                                      name=f"efficientnet_{variant}")
    inp = keras.Input((None, None, 3), dtype="float32", name="image")
    f4, low, _, high = encoder(inp)  # strides 4, 8, 16, 32
    logits = _lraspp_head(low, high, head_channels, name="logits8" if stride4 else "logits")
    if stride4:
        skip = _conv_bn_relu(f4, skip4_channels, 1, name="skip4")
        logits = layers.Add(name="logits")([ResizeLike("bilinear")(logits, f4), layers.Conv2D(NUM_CLASSES, 1)(skip)])
    suffix = "-s4" if stride4 else ""
    model = keras.Model(inp, logits, name=f"lraspp_efficientnet_{variant}{suffix.replace('-', '_')}")
    if weights is None:
        _set_bn_momentum(model, bn_momentum)
    return _student(model, f"lraspp-efficientnet-{variant}{suffix}", 4 if stride4 else OUTPUT_STRIDE)


def build_roadseg_fast(width: float = 1.0, bn_momentum: float = 0.9, blocks: tuple[int, int, int] = (2, 2, 2),
                       fpn_channels: int = 64) -> SegModel:
    """roadseg-fast (designed here, see the module's notes): RGB 0..255
    ``[N,H,W,3]`` (H, W divisible by 32) -> logits ``[N,H/8,W/8,8]``.
    ``width`` scales every stage's channels (rounded to multiples of 8,
    at least 8); ``blocks``: residual blocks at 1/8, 1/16, 1/32;
    ``fpn_channels``: the FPN's width before ``width`` (Lin et al. 2017's
    top-down pathway, nearest upsampling, fused at 1/8)."""
    def c(n):
        return max(8, int(round(n * width / 8)) * 8)

    inp = keras.Input((None, None, 3), dtype="float32", name="image")
    x = layers.Rescaling(1 / 127.5, offset=-1.0)(inp)
    x = _conv_bn_relu(x, c(16), stride=2, name="stem")          # 1/2
    x = _conv_bn_relu(x, c(32), stride=2, name="down4")         # 1/4
    feats = []
    for i, (ch, n) in enumerate(zip((48, 64, 96), blocks)):     # 1/8, 1/16, 1/32
        x = _conv_bn_relu(x, c(ch), stride=2, name=f"down{8 << i}")
        for _ in range(n):
            x = _res_block(x, c(ch))
        feats.append(x)
    f8, f16, f32 = feats
    d = c(fpn_channels)
    # global context, broadcast-added at 1/32
    g = layers.GlobalAveragePooling2D(keepdims=True)(f32)
    g = _conv_bn_relu(g, d, 1)
    p32 = layers.Add()([_conv_bn_relu(f32, d, 1), g])
    p16 = layers.Add()([_conv_bn_relu(f16, d, 1), ResizeLike("nearest")(p32, f16)])
    p8 = layers.Add()([_conv_bn_relu(f8, d, 1), ResizeLike("nearest")(p16, f8)])
    p8 = _conv_bn_relu(p8, d, 3)
    logits = layers.Conv2D(NUM_CLASSES, 1, name="logits")(p8)
    model = keras.Model(inp, logits, name="roadseg_fast")
    _set_bn_momentum(model, bn_momentum)
    return _student(model, "roadseg-fast")


STUDENTS: dict[str, Callable[..., SegModel]] = {
    "lraspp-mobilenetv3-small": lambda **kw: build_lraspp("small", **kw),
    "lraspp-mobilenetv3-large": lambda **kw: build_lraspp("large", **kw),
    "roadseg-fast": build_roadseg_fast,
    "lraspp-efficientnet-lite0": lambda **kw: build_lraspp_lite("lite0", **kw),
    "lraspp-efficientnet-lite0-s4": lambda **kw: build_lraspp_lite("lite0", stride4=True, **kw),
}


def student_kwargs(name: str, width: float = 1.0, encoder_weights: str | None = "none",
                   bn_momentum: float | None = None) -> dict:
    """The builder arguments a student takes: the EfficientNet-Lite students
    have a pretrained encoder (``encoder_weights``) and a fixed width; the
    others have a width multiplier and no pretrained encoder here. Raises
    ``ValueError`` for an argument the student does not take (checked
    before any run directory is made)."""
    pretrained = "efficientnet" in name
    if not pretrained and encoder_weights not in ("none", None):
        raise ValueError(f"--encoder-weights applies to the EfficientNet-Lite students, not {name}")
    if pretrained and width != 1.0:
        raise ValueError(f"{name} has the encoder's fixed width; --width applies to the other students")
    kw = {"encoder_weights": encoder_weights} if pretrained else {"width": width}
    if bn_momentum is not None:
        kw["bn_momentum"] = bn_momentum
    return kw


def build_student(name: str, **kwargs) -> SegModel:
    """The student ``name`` of :data:`STUDENTS` built with ``kwargs``
    (:func:`student_kwargs` chooses them). Raises ``ValueError`` for an
    unknown name, listing the valid ones."""
    try:
        builder = STUDENTS[name]
    except KeyError:
        raise ValueError(f"unknown student {name!r}; valid: {', '.join(sorted(STUDENTS))}") from None
    return builder(**kwargs)


def count_macs(model: keras.Model, size: tuple[int, int]) -> int:
    """Multiply-accumulates of one frame at ``size`` = (height, width) in
    convolution layers (which dominate): per layer ``H_out * W_out * C_out *
    k_h * k_w * C_in / groups`` (``C_in`` = 1 for depthwise), from the shapes
    seen in one eager forward pass."""
    import numpy as np
    convs = [l for l in model._flatten_layers(include_self=False, recursive=True)
             if isinstance(l, (layers.Conv2D, layers.DepthwiseConv2D))]
    seen: list[tuple] = []
    originals = {}
    for layer in convs:
        originals[layer] = layer.call

        def wrapped(inputs, *a, _layer=layer, _orig=layer.call, **k):
            y = _orig(inputs, *a, **k)
            seen.append((_layer, tuple(inputs.shape), tuple(y.shape)))
            return y
        layer.call = wrapped
    try:
        model(np.zeros((1, *size, 3), np.uint8), training=False)
    finally:
        for layer, orig in originals.items():
            layer.call = orig
    total = 0
    for layer, ishape, oshape in seen:
        kh, kw = layer.kernel_size
        per_out = kh * kw * (1 if isinstance(layer, layers.DepthwiseConv2D) else ishape[3] // getattr(layer, "groups", 1))
        total += oshape[1] * oshape[2] * oshape[3] * per_out
    return int(total)
