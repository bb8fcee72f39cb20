"""Full-frame prediction and the SavedModel export every later stage loads.

The export's ``serving_default`` signature takes uint8 RGB ``[N,H,W,3]`` at
the run's frame size and returns ``{"probabilities": float32 [N,H,W,8]}``
(softmax). Square-only models (SegFormer) cover the frame by sliding a square
window with overlap and averaging logits. ``roadseg.json`` beside the
SavedModel records the size and taxonomy, so consumers never guess.
"""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import tensorflow as tf

from edge_runtime.contract.labels import CATEGORIES, NUM_CLASSES
from edge_runtime.contract.sidecar import input_block

EXPORT_META = "roadseg.json"


def window_offsets(length: int, window: int, overlap: float = 1 / 3) -> list[int]:
    """Start offsets of windows of ``window`` covering ``length`` with at
    least ``overlap`` between neighbours; first at 0, last flush with the end."""
    if window >= length:
        return [0]
    stride = max(1, int(window * (1 - overlap)))
    n = math.ceil((length - window) / stride) + 1
    return [round(i * (length - window) / (n - 1)) for i in range(n)]


def make_predict_fn(model, model_size: tuple[int, int], frame_size: tuple[int, int],
                    square_only: bool = False):
    """``fn(uint8 [N,H,W,3]) -> float32 logits [N,H,W,C]`` at ``frame_size``."""
    mh, mw = model_size
    fh, fw = frame_size

    def call(x):
        y = tf.cast(model(x, training=False), tf.float32)
        if y.shape[1] != x.shape[1] or y.shape[2] != x.shape[2]:  # students: logits at 1/8
            y = tf.image.resize(y, tf.shape(x)[1:3], method="bilinear")
        return y

    if (mh, mw) == (fh, fw):
        return call
    if square_only:
        s = mh

        def sliding(images):
            x = images
            if fh != s:  # scale the frame so its height is the window
                nw = max(s, round(fw * s / fh))
                x = tf.cast(tf.image.resize(images, [s, nw], method="bilinear") + 0.5, tf.uint8)
            else:
                nw = fw
            ys, xs = window_offsets(s, s), window_offsets(nw, s)
            acc = None
            cnt = np.zeros((1, s, nw, 1), np.float32)
            for y0 in ys:
                for x0 in xs:
                    lg = call(x[:, y0:y0 + s, x0:x0 + s])
                    pad = [[0, 0], [y0, s - y0 - s], [x0, nw - x0 - s], [0, 0]]
                    lg = tf.pad(lg, pad)
                    acc = lg if acc is None else acc + lg
                    cnt[:, y0:y0 + s, x0:x0 + s] += 1
            out = acc / tf.constant(cnt)
            if (s, nw) != (fh, fw):
                out = tf.image.resize(out, [fh, fw], method="bilinear")
            return out

        return sliding

    def resized(images):
        x = tf.cast(tf.image.resize(images, [mh, mw], method="bilinear") + 0.5, tf.uint8)
        return tf.image.resize(call(x), [fh, fw], method="bilinear")

    return resized


class _Serving(tf.Module):
    def __init__(self, model, predict, frame_size, logits_signature: bool):
        super().__init__()
        self.model = model
        self._predict = predict
        h, w = frame_size
        self.serve = tf.function(
            self._serve, input_signature=[tf.TensorSpec([None, h, w, 3], tf.uint8, name="images")])
        if logits_signature:
            # any size, float32 RGB 0..255: calibration converts the raw logits (at the
            # model's stride) at the device's size, with no uint8->float cast in the graph
            self.logits = tf.function(
                self._logits, input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32, name="images")])

    def _serve(self, images):
        return {"probabilities": tf.nn.softmax(self._predict(images), axis=-1)}

    def _logits(self, images):
        return {"logits": tf.cast(self.model(images, training=False), tf.float32)}


def export_savedmodel(segmodel, frame_size: tuple[int, int], out_dir: str | Path,
                      extra_meta: dict | None = None) -> Path:
    """Write the SavedModel to ``out_dir`` atomically (temporary folder, then rename)."""
    out_dir = Path(out_dir)
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    predict = make_predict_fn(segmodel.model, segmodel.input_size, frame_size, segmodel.square_only)
    logits_sig = segmodel.size_agnostic
    module = _Serving(segmodel.model, predict, frame_size, logits_sig)
    if segmodel.framework == "keras3":
        # Keras 3 variables are tracked through an ExportArchive-style holder
        module.variables_ = [v.value if hasattr(v, "value") else v for v in segmodel.model.variables]
    signatures = {"serving_default": module.serve}
    if logits_sig:
        signatures["logits"] = module.logits
    tf.saved_model.save(module, str(tmp), signatures=signatures)
    meta = {
        "format": "roadseg.export/1",
        "arch": segmodel.arch,
        "framework": segmodel.framework,
        "input": input_block(frame_size),  # the sidecar's input block: uint8 RGB, stretch resize
        "model_input_size": list(segmodel.input_size),
        "output": "probabilities",
        "signatures": sorted(signatures),
        "output_stride": segmodel.output_stride,
        "classes": list(CATEGORIES),
        **(extra_meta or {}),
    }
    (tmp / EXPORT_META).write_text(json.dumps(meta, indent=2))
    if out_dir.exists():
        shutil.rmtree(out_dir)
    tmp.rename(out_dir)
    return out_dir


class ExportedModel:
    """The one reader of the export contract (``roadseg.export/1``).

    ``m(images_uint8)`` -> probabilities at the frame size ``m.size``;
    ``m.logits`` is the size-agnostic logits signature (students) or None;
    ``m.segmenter(size)`` a class-map function for evaluation and the gate;
    ``m.meta`` the ``roadseg.json`` written beside the SavedModel."""

    def __init__(self, path: str | Path):
        self.path = self.resolve(path)
        meta_file = self.path / EXPORT_META
        self.meta = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
        self.loaded = tf.saved_model.load(str(self.path))
        self.serving = self.loaded.signatures["serving_default"]
        (name, spec), = self.serving.structured_input_signature[1].items()
        self._input_name = name
        self.size = (int(spec.shape[1]), int(spec.shape[2]))
        self.logits = self.loaded.signatures.get("logits")
        self.num_classes = NUM_CLASSES

    @staticmethod
    def resolve(path: str | Path) -> Path:
        """A run directory or its ``export/`` folder -> the SavedModel folder.
        Raises ``FileNotFoundError`` when there is no ``saved_model.pb``."""
        path = Path(path)
        if (path / "export").is_dir():
            path = path / "export"
        if not (path / "saved_model.pb").is_file():
            raise FileNotFoundError(f"no SavedModel export at {path} (expected saved_model.pb)")
        return path

    def __call__(self, images) -> tf.Tensor:
        images = tf.convert_to_tensor(images, tf.uint8)
        if images.shape.rank != 4 or tuple(images.shape[1:]) != (*self.size, 3):
            raise ValueError(f"{self.path} takes uint8 RGB frames [N,{self.size[0]},{self.size[1]},3], "
                             f"got {list(images.shape)}; resize with edge_runtime.contract.preprocessing.preprocess")
        return self.serving(**{self._input_name: images})["probabilities"]

    def info(self) -> dict:
        """The export as reports describe it: kind, path, frame size and ``roadseg.json``'s fields."""
        return {"kind": "savedmodel", "path": str(self.path), "size": list(self.size), **self.meta}

    def segmenter(self, size: tuple[int, int] | None = None, like_device: bool = False):
        """``segment(RGB uint8 [H,W,3]) -> class map uint8`` at ``size``
        (default: the export's frame size), frames resized by the runtime's
        preprocessing contract.

        ``like_device`` scores the size-agnostic logits the way the device
        does (logits at the model's stride, bilinear upsampling, argmax): the
        float reference of the int8 gate. Otherwise the serving signature's
        probabilities are used, which need ``size`` to be the frame size
        (``ValueError`` otherwise)."""
        from edge_runtime.contract.preprocessing import preprocess, scores_to_classes
        size = tuple(size or self.size)
        if like_device and self.logits is not None:
            sig = self.logits

            def segment(image):
                x = preprocess(image, size).astype(np.float32)[None]
                logits = sig(images=tf.constant(x))["logits"].numpy()[0]
                return scores_to_classes(logits, size).astype(np.uint8)
            return segment
        if size != self.size:
            raise ValueError(f"--size {size[0]}x{size[1]} differs from the export's fixed input "
                             f"{self.size[0]}x{self.size[1]}; re-export or omit --size")

        def segment(image):
            x = preprocess(image, self.size)[None]
            return np.argmax(self(x).numpy()[0], axis=-1).astype(np.uint8)
        return segment


def macs_entry(count: int, size: tuple[int, int]) -> dict:
    """The export metadata's ``macs``: multiply-accumulates of one frame
    (``count``) with the (height, width) in pixels it was counted at, e.g.
    ``{"count": 1234567, "height": 256, "width": 512}``."""
    return {"count": int(count), "height": int(size[0]), "width": int(size[1])}


def macs_of(meta: dict) -> tuple[int, tuple[int, int]] | None:
    """``(multiply-accumulates per frame, (height, width) counted at)`` from an
    export's ``roadseg.json`` (``ExportedModel.meta``); runs written before
    the size was recorded carry ``macs_256x512``, read as counted at 256x512.
    None when the export has no count (teachers). Raises ValueError for a
    ``macs`` entry that is not ``{"count", "height", "width"}`` integers."""
    entry = meta.get("macs")
    if entry is None:
        old = meta.get("macs_256x512")
        return None if old is None else (int(old), (256, 512))
    try:
        return int(entry["count"]), (int(entry["height"]), int(entry["width"]))
    except (TypeError, KeyError, ValueError):
        raise ValueError(f"export metadata 'macs' is not {{count, height, width}}: {entry!r:.80}") from None
