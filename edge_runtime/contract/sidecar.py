"""The model sidecar: ``<name>.json`` beside ``<name>.tflite``.

One schema, agreed here, written by calibration and read by the runtime; the
runtime needs nothing else to run a model correctly.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from edge_runtime.atomic import atomic_path
from edge_runtime.contract.labels import CATEGORIES, PALETTE
from edge_runtime.contract.preprocessing import RESIZE_POLICY

SCHEMA = "roadseg.model/1"
OUTPUT_KINDS = ("logits", "probabilities", "class_map")
REQUIRED = ("schema", "name", "classes", "input", "output", "precision", "sha256", "created")


class SidecarError(ValueError):
    pass


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sidecar_path(tflite: str | Path) -> Path:
    return Path(tflite).with_suffix(".json")


def classes_block() -> list[dict]:
    return [{"index": i, "name": c, "color": [int(v) for v in PALETTE[i]]} for i, c in enumerate(CATEGORIES)]


def validate(meta: dict, tflite: str | Path | None = None) -> dict:
    """Check the schema (and the .tflite's sha256 when given); return ``meta``."""
    missing = [k for k in REQUIRED if k not in meta]
    if missing:
        raise SidecarError(f"sidecar lacks {missing}")
    if meta["schema"] != SCHEMA:
        raise SidecarError(f"sidecar schema {meta['schema']!r} is not {SCHEMA!r}")
    if [c["name"] for c in meta["classes"]] != list(CATEGORIES):
        raise SidecarError("sidecar classes differ from this runtime's taxonomy")
    inp, out = meta["input"], meta["output"]
    for k in ("height", "width", "dtype", "channel_order", "resize_policy"):
        if k not in inp:
            raise SidecarError(f"sidecar input lacks {k!r}")
    if inp["resize_policy"] != RESIZE_POLICY:
        raise SidecarError(f"unsupported resize policy {inp['resize_policy']!r}")
    if out.get("kind") not in OUTPUT_KINDS:
        raise SidecarError(f"sidecar output kind {out.get('kind')!r} not in {OUTPUT_KINDS}")
    if tflite is not None:
        digest = sha256_file(tflite)
        if digest != meta["sha256"]:
            raise SidecarError(f"{tflite} does not match its sidecar (sha256 {digest[:12]}... != "
                               f"{meta['sha256'][:12]}...): the pair was not written together")
    return meta


def read_sidecar(tflite: str | Path, verify: bool = True) -> dict | None:
    """The sidecar of ``tflite``, validated; ``None`` when there is none."""
    p = sidecar_path(tflite)
    if not p.is_file():
        return None
    try:
        meta = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise SidecarError(f"malformed sidecar {p}: {e}") from e
    return validate(meta, tflite if verify else None)


def write_pair(tflite_bytes: bytes, meta: dict, tflite: str | Path) -> tuple[Path, Path]:
    """Write ``<name>.tflite`` and ``<name>.json`` atomically: both go to
    temporary names first, the sha256 is filled in, then both are renamed.
    On failure neither temporary survives."""
    tflite = Path(tflite)
    side = sidecar_path(tflite)
    meta = dict(meta, sha256=hashlib.sha256(tflite_bytes).hexdigest(), schema=SCHEMA)
    validate(meta)
    # the sidecar is renamed last: a .tflite whose sidecar is stale fails the sha256 check
    with atomic_path(side) as tmp_side, atomic_path(tflite) as tmp_model:
        tmp_model.write_bytes(tflite_bytes)
        tmp_side.write_text(json.dumps(meta, indent=2))
    return tflite, side
