"""Calibration and conversion of a run's export into a deployable pair,
``NAME.tflite`` (or ``.onnx``) + its sidecar ``NAME.json``: what
``roadseg-calibrate`` runs (its command line is
:mod:`calibration.commands.calibrate`).

The extension of ``out`` chooses the format: ``.tflite`` for LiteRT (int8
by default, calibrated on a representative set of training frames,
:mod:`calibration.representative_data`), ``.onnx`` for ONNX Runtime (fp32
through tf2onnx). The accuracy gate (:func:`accuracy_gate`) evaluates the
float SavedModel and the converted model (through ``edge_runtime``'s
interpreter, as on the vehicle) on the val split and refuses the model
(:class:`GateError`) when the float mIoU-7 is under ``min_miou``, the
mIoU-8 drop exceeds ``max_drop`` points or the pixel agreement falls below
``min_agreement``, unless ``force``. Nothing is written until the gate
passes; the model and its sidecar are then written together atomically.
"""
from __future__ import annotations

import logging
import subprocess
import tempfile
import time
from pathlib import Path

import trainer  # noqa: F401

import numpy as np

from edge_runtime.commands import cli

log = logging.getLogger("roadseg.calibration")


class GateError(cli.Refused):
    """The converted model lost more accuracy than allowed, or the float model is under the floor."""


#: the absolute floor on the float model's mIoU-7 (void ignored) on the gate's split. A model that labels
#: every pixel "flat" scores about 0.05-0.10 on street scenes (one class right, six at zero); the
#: from-scratch baselines of docs/RESULTS.md score 0.50 or more. A small int8 drop says nothing about
#: whether the model was worth converting.
DEFAULT_MIN_MIOU = 0.25


def git_commit() -> str | None:
    """The checkout's ``HEAD`` commit (40 hex digits) recorded in the
    sidecar, or None outside a git checkout (never raises)."""
    try:
        r = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                           cwd=Path(__file__).resolve().parent)
        return r.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def accuracy_gate(float_seg, quant_seg, samples, fmt: str, split: str = "val") -> dict:
    """Evaluate both segmenters (``segment(RGB uint8 [H,W,3]) -> class map``)
    on ``samples`` of layout ``fmt``: mIoU (both conventions, 0..1), the
    drop in points (100 x difference, float minus quantized), the per-class
    IoU drop in points and the fraction of pixels where the two predictions
    agree. Raises ``DatasetError`` for an unreadable frame."""
    from edge_runtime.eval.evaluation import evaluate_segmenters
    from edge_runtime.contract.labels import CATEGORIES
    ev = evaluate_segmenters({"float": float_seg, "quantized": quant_seg}, samples, fmt, keep=0)
    mf, mq = ev.confusion["float"].compute(), ev.confusion["quantized"].compute()
    per_class = {c: (None if np.isnan(a) or np.isnan(b) else round(100 * (a - b), 3))
                 for c, a, b in zip(CATEGORIES, mf.iou, mq.iou)}
    return {"split": split, "images": len(samples),
            "float": {"miou7": round(mf.miou7, 6), "miou8": round(mf.miou8, 6)},
            "quantized": {"miou7": round(mq.miou7, 6), "miou8": round(mq.miou8, 6)},
            "drop_points": round(100 * (mf.miou8 - mq.miou8), 3),
            "drop_points_miou7": round(100 * (mf.miou7 - mq.miou7), 3),
            "per_class_iou_drop_points": per_class,
            "pixel_agreement": round(ev.agreement or 0.0, 6),
            "quantized_metrics": mq.as_dict()}


def format_gate(g: dict, precision: str) -> str:
    """The gate's report as printed by ``roadseg-calibrate`` (``g`` from :func:`accuracy_gate`)."""
    lines = [f"accuracy gate on {g['images']} {g['split']} images ({precision} vs float):",
             f"  mIoU-8  float {g['float']['miou8']:.4f}  {precision} {g['quantized']['miou8']:.4f}  "
             f"drop {g['drop_points']:+.2f} points",
             f"  mIoU-7  float {g['float']['miou7']:.4f}  {precision} {g['quantized']['miou7']:.4f}  "
             f"drop {g['drop_points_miou7']:+.2f} points",
             f"  pixel agreement {100 * g['pixel_agreement']:.2f}%",
             "  per-class IoU drop (points): " + ", ".join(
                 f"{c} {'-' if v is None else f'{v:+.2f}'}" for c, v in g["per_class_iou_drop_points"].items())]
    return "\n".join(lines)


def check_out(out: Path, precision: str | None) -> str:
    """The precision for ``out`` (default int8 for ``.tflite``, fp32 for
    ``.onnx``). Raises ``ValueError`` for another extension, a precision
    ``.onnx`` is not made in here, or a model of the other format already
    at the same stem (one sidecar per stem)."""
    if out.suffix not in (".tflite", ".onnx"):
        raise ValueError(f"--out {out} must end in .tflite (LiteRT) or .onnx (ONNX Runtime)")
    onnx = out.suffix == ".onnx"
    other = out.with_suffix(".tflite" if onnx else ".onnx")
    if other.exists():  # one sidecar per stem: NAME.json would then describe the wrong file
        raise ValueError(f"{other} is already there with the sidecar {out.with_suffix('.json')}: give the "
                         f"{out.suffix} another name (e.g. {out.stem}-{'ort' if onnx else 'lite'}{out.suffix})")
    precision = precision or ("fp32" if onnx else "int8")
    if onnx and precision != "fp32":
        raise ValueError(f"--precision {precision} is not made for .onnx here: export fp32 and let the provider "
                         "reduce it (TensorRT: --delegate-option trt_fp16_enable=1), or use a .tflite for int8")
    return precision


def convert_export(exported, out: Path, size: tuple[int, int], precision: str, output: str, train, fmt: str,
                   samples: int, selection: str, seed: int) -> tuple[bytes, str, dict, dict | None]:
    """Convert ``exported`` (a ``trainer.export.ExportedModel``) at ``size``
    into ``out``'s format: ``(model bytes, output kind, tensor report,
    calibration summary or None)``. int8 is calibrated on ``samples``
    frames of ``train`` picked by ``selection`` (diverse or random, with
    ``seed``). Raises what the converters raise for a graph they cannot convert."""
    from calibration import representative_data as rd
    from calibration.convert import convert, convert_onnx, onnx_report, tensor_report
    t0 = time.time()
    summary, rep = None, None
    if precision == "int8":
        picked, summary = rd.select(train, fmt, samples, selection, seed)
        log.info("calibration set: %d %s frames from train (files digest %s)", len(picked), selection,
                 summary["files_sha256"][:12])
        rep = lambda: rd.frames(picked, fmt, size)  # noqa: E731
    log.info("converting %s to %s at %dx%d (%s output)", exported.path, precision, size[0], size[1], output)
    if out.suffix == ".onnx":
        model_bytes, kind = convert_onnx(exported, size, output)
        report = onnx_report(model_bytes)
    else:
        model_bytes, kind = convert(exported, size, precision, rep, output)
        report = tensor_report(model_bytes)
    log.info("converted in %.1fs: %d bytes, ops %s", time.time() - t0, len(model_bytes), ", ".join(report["ops"]))
    return model_bytes, kind, report, summary


def gate_converted(model_bytes: bytes, out: Path, kind: str, exported, size: tuple[int, int], val, fmt: str,
                   val_split: str, threads: int | None) -> tuple[dict, dict]:
    """Score the converted model (loaded by the runtime's interpreter from a
    temporary copy) against the float export on ``val``:
    ``(gate from accuracy_gate, the sidecar's input/output blocks as the
    runtime reads them)``. Raises :class:`GateError` when the runtime
    refuses to load the converted model (e.g. a calibration that left the
    uint8 input unable to hold 0..255): nothing can be scored or shipped,
    so ``--force`` does not write it either."""
    from edge_runtime.model.errors import ModelError
    from edge_runtime.model.segmenter import DeviceSegmenter
    with tempfile.TemporaryDirectory(prefix="roadseg-cal-") as td:
        tmp_model = Path(td) / out.name
        tmp_model.write_bytes(model_bytes)
        try:  # its sidecar comes after the gate
            q = DeviceSegmenter(tmp_model, threads=threads, warn_without_sidecar=False)
        except ModelError as e:
            raise GateError(f"gate failed: the runtime refuses the converted model ({e}); no model written "
                            "(look at the calibration set)") from None
        gate = accuracy_gate(exported.segmenter(size, like_device=True), q.segment_classes, val, fmt, val_split)
        return gate, q.sidecar_blocks(kind)  # the contract's builder: input/output as the runtime reads them


def gate_problems(gate: dict, val_split: str, max_drop: float, min_agreement: float, min_miou: float) -> list[str]:
    """What the gate refuses, one phrase each (empty: it passes): float
    mIoU-7 under ``min_miou``, an mIoU-8 drop over ``max_drop`` points, a
    pixel agreement under ``min_agreement`` (a fraction)."""
    problems = []
    if gate["float"]["miou7"] < min_miou:
        problems.append(f"float mIoU-7 {gate['float']['miou7']:.3f} on {val_split} is under the floor "
                        f"--min-miou {min_miou:g}")
    if gate["drop_points"] > max_drop:
        problems.append(f"mIoU-8 drop {gate['drop_points']:.2f} points exceeds --max-drop {max_drop}")
    if gate["pixel_agreement"] < min_agreement:
        # a weak model's mIoU can move either way by chance; disagreement with float cannot hide
        problems.append(f"pixel agreement with the float model {100 * gate['pixel_agreement']:.1f}% is below "
                        f"--min-agreement {100 * min_agreement:.1f}%")
    return problems


def calibrate(model: str, data: str, out: str, size: tuple[int, int] | None = None, precision: str | None = None,
              samples: int = 200, selection: str = "diverse", output: str = "logits", max_drop: float = 1.0,
              force: bool = False, fmt: str = "auto", seed: int = 0, threads: int | None = None,
              min_agreement: float = 0.95, train_split: str = "train", val_split: str = "val",
              min_miou: float = DEFAULT_MIN_MIOU) -> dict:
    """Convert the export of run ``model`` (at ``size``, default its frame
    size), gate it on ``val_split`` of ``data`` and write ``out`` with its
    sidecar; returns the sidecar (a dict).

    ``samples`` frames of ``train_split`` calibrate int8; ``max_drop`` is in
    mIoU-8 points, ``min_agreement`` a pixel fraction, ``min_miou`` the float
    model's mIoU-7 floor (see :data:`DEFAULT_MIN_MIOU`).

    Raises:
        ValueError: a bad ``out``/``precision`` (:func:`check_out`), a
            ``size`` the export cannot take, an unreadable dataset.
        FileNotFoundError: ``model`` has no export.
        GateError: the gate refused the model and ``force`` is not set, or
            the runtime cannot load the converted model (nothing is written).
    """
    from edge_runtime.contract.sidecar import build_sidecar, write_pair
    from trainer.datasets import list_samples
    from trainer.export import ExportedModel

    run, out = Path(model), Path(out)
    precision = check_out(out, precision)
    try:
        exported = ExportedModel(run)
    except FileNotFoundError as e:
        raise FileNotFoundError(f"--model {model}: {e}") from None
    size = tuple(size or exported.size)
    fmt, train = list_samples(data, train_split, fmt)
    _, val = list_samples(data, val_split, fmt)
    model_bytes, kind, report, summary = convert_export(exported, out, size, precision, output, train, fmt, samples,
                                                        selection, seed)
    gate, blocks = gate_converted(model_bytes, out, kind, exported, size, val, fmt, val_split, threads)
    print(format_gate(gate, precision), flush=True)
    problems = gate_problems(gate, val_split, max_drop, min_agreement, min_miou)
    if problems:
        msg = ("gate failed: " + "; ".join(problems) + "; no model written (look for per-tensor weights, hard-swish, bilinear "
               "resizes or a poor calibration set; --force writes it anyway)")
        if not force:
            raise GateError(msg)
        log.warning("%s; writing anyway (--force)", msg)
    sidecar = build_sidecar(model_bytes, name=out.stem, **blocks, precision=precision, calibration=summary,
                            accuracy=gate, conversion=report, source_run=str(run),
                            source_arch=exported.meta.get("arch"), git_commit=git_commit())
    model_path, side = write_pair(model_bytes, sidecar, out)
    log.info("wrote %s (%.2f MB) and %s", model_path, len(model_bytes) / 1e6, side)
    return sidecar
