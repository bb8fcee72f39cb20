"""The model sidecar: ``<name>.json`` beside ``<name>.tflite`` (or ``.onnx``).

One schema, :class:`Sidecar`, validated by pydantic v2 in strict mode: it is
written by calibration through :func:`build_sidecar` and :func:`write_pair`,
read by the runtime through :func:`read_sidecar`, and published for
integrators as JSON Schema (:func:`json_schema`, ``docs/schemas/sidecar.json``;
``python -m edge_runtime.contract.sidecar --schema`` prints it, ``python -m
edge_runtime.contract.sidecar docs/schemas`` rewrites the file). The runtime
needs nothing else to run a model correctly.

Every wrong type or value is a :class:`SidecarError` of one line naming the
key (``input.channel_order: Input should be 'rgb' or 'bgr' (got 'xyz')``).
The contract blocks (``classes``, ``input``, ``output``) are closed: an
unknown key there is an error. Top-level keys beyond the schema are carried
unread (reports of the tool that wrote the file).

A model made by another tool with other classes is run through
``output.class_mapping``: entry ``k`` is the roadseg category (0..7) of the
model's class ``k`` (so its length is the model's number of classes). The
runtime checks the blocks against the model's tensors at load
(:mod:`edge_runtime.model.checks`).
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import sys
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from edge_runtime.atomic import atomic_path, read_small_file
from edge_runtime.contract.labels import CATEGORIES, NUM_CLASSES, PALETTE
from edge_runtime.contract.preprocessing import RESIZE_POLICY

SCHEMA = "roadseg.model/1"
OUTPUT_KINDS = ("logits", "probabilities", "class_map")
#: a sidecar is a few KB (the calibration file list dominates); anything far larger is not one
MAX_SIDECAR_BYTES = 1 << 20
#: the largest side a model input may declare (pixels); a bound, not a recommendation
MAX_SIDE = 16384

InputDtype = Literal["uint8", "int8", "float16", "float32"]
TensorDtype = Literal["uint8", "int8", "int16", "int32", "int64", "float16", "float32"]
Side = Annotated[int, Field(ge=1, le=MAX_SIDE)]
Category = Annotated[int, Field(ge=0, lt=NUM_CLASSES)]
Channel = Annotated[int, Field(ge=0, le=255)]


class SidecarError(ValueError):
    """A sidecar that is missing a key, has a wrong type or value, is too
    large, is not JSON, or does not belong to its model file (sha256)."""


class _Block(BaseModel):
    """A closed contract block: strict types, no unknown keys."""
    model_config = ConfigDict(strict=True, extra="forbid")


class ClassEntry(_Block):
    """One category: its index (0..7), name and RGB display colour (0..255 each)."""
    index: Annotated[int, Field(ge=0)]
    name: str
    color: Annotated[list[Channel], Field(min_length=3, max_length=3)]


class InputSpec(_Block):
    """What the model takes: ``[1, height, width, 3]`` pixels (height and
    width in pixels), of ``dtype``, in ``channel_order``, resized from the
    frame by ``resize_policy``; ``scale``/``zero_point`` are the input
    quantization (``real = scale * (q - zero_point)``, TFLite's convention),
    absent or 0.0 scale for a non-quantized input."""
    height: Side
    width: Side
    dtype: InputDtype
    channel_order: Literal["rgb", "bgr"]
    resize_policy: Literal["stretch"]
    scale: Annotated[float, Field(ge=0.0)] | None = None
    zero_point: int | None = None


class OutputSpec(_Block):
    """What the model returns: per-class ``logits`` or ``probabilities``
    ``[1, height, width, classes]``, or a ``class_map`` ``[1, height, width]``
    of class ids; ``stride`` = input height / output height (pixels per
    output cell); ``class_mapping[k]`` = roadseg category of the model's
    class ``k`` (when the model's classes are not roadseg's 8)."""
    kind: Literal["logits", "probabilities", "class_map"]
    dtype: TensorDtype | None = None
    scale: Annotated[float, Field(ge=0.0)] | None = None
    zero_point: int | None = None
    height: Side | None = None
    width: Side | None = None
    stride: Side | None = None
    class_mapping: Annotated[list[Category], Field(min_length=1, max_length=65536)] | None = None


class Sidecar(BaseModel):
    """The whole sidecar (schema ``roadseg.model/1``). ``classes`` must be
    this runtime's taxonomy in order; ``sha256`` is the model file's digest
    (64 lowercase hex digits); ``created`` an ISO 8601 time with zone."""
    model_config = ConfigDict(strict=True, extra="allow", populate_by_name=True)

    schema_id: Literal["roadseg.model/1"] = Field(alias="schema")
    name: Annotated[str, Field(min_length=1, max_length=200)]
    classes: list[ClassEntry]
    input: InputSpec
    output: OutputSpec
    precision: Literal["int8", "fp16", "fp32", "dynamic"]
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    created: str
    categories: list[str] | None = None
    calibration: dict[str, Any] | None = None
    accuracy: dict[str, Any] | None = None
    conversion: dict[str, Any] | None = None
    source_run: str | None = None
    source_arch: str | None = None
    git_commit: str | None = None

    @field_validator("classes", "categories")
    @classmethod
    def _taxonomy(cls, v):
        names = None if v is None else [c if isinstance(c, str) else c.name for c in v]
        if names is not None and names != list(CATEGORIES):
            raise ValueError(f"must be this runtime's categories in order {list(CATEGORIES)}")
        if v is not None and v and not isinstance(v[0], str) and [c.index for c in v] != list(range(NUM_CLASSES)):
            raise ValueError(f"indices must be 0..{NUM_CLASSES - 1} in order")
        return v

    @field_validator("created")
    @classmethod
    def _iso_time(cls, v: str) -> str:
        try:
            dt.datetime.fromisoformat(v)
        except ValueError:
            raise ValueError("must be an ISO 8601 time, e.g. 2026-01-31T12:00:00+00:00") from None
        return v


def _short(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def one_line(error: ValidationError, where: str, prefix: str = "") -> str:
    """The first problem of a pydantic ``error`` as one line: ``where: key.path:
    what is wrong (got value)``, with a count of the others; ``prefix`` is
    the key of the block that was validated (``input``)."""
    errors = error.errors(include_url=False)
    first = errors[0]
    key = ".".join(str(p) for p in (*([prefix] if prefix else []), *first["loc"])) or "(the whole file)"
    got = "" if first["type"] in ("missing", "json_invalid") else f" (got {_short(first['input'])})"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {key}: {first['msg'].removeprefix('Value error, ')}{got}{more}"


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks (constant memory)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sidecar_path(model: str | Path) -> Path:
    """``dist/NAME.tflite`` (or ``.onnx``) -> ``dist/NAME.json``."""
    return Path(model).with_suffix(".json")


def classes_block() -> list[dict]:
    """This runtime's taxonomy as the sidecar's ``classes``: 8 entries of
    ``{"index", "name", "color": [r, g, b]}`` (Okabe-Ito colours, labels.PALETTE)."""
    return [{"index": i, "name": c, "color": [int(v) for v in PALETTE[i]]} for i, c in enumerate(CATEGORIES)]


def input_block(size: tuple[int, int], dtype: str = "uint8", quantization: tuple[float, int] | None = None,
                channel_order: str = "rgb") -> dict:
    """The ``input`` block for a model taking ``size`` = (height, width)
    pixels; ``quantization`` = (scale, zero_point) of a quantized input (the
    keys are left out when None). Also the export's ``input`` block
    (trainer.export). Raises :class:`SidecarError` naming a wrong key."""
    block = {"height": int(size[0]), "width": int(size[1]), "dtype": dtype, "channel_order": channel_order,
             "resize_policy": RESIZE_POLICY}
    if quantization is not None:
        block.update(scale=float(quantization[0]), zero_point=int(quantization[1]))
    return _checked(InputSpec, block, "input")


def output_block(kind: str, size: tuple[int, int], stride: int, dtype: str,
                 quantization: tuple[float, int] = (0.0, 0), class_mapping: list[int] | None = None) -> dict:
    """The ``output`` block: ``kind`` (logits, probabilities, class_map),
    ``size`` = (height, width) of the output tensor in cells, ``stride`` in
    input pixels per cell, tensor ``dtype`` and (scale, zero_point).
    Raises :class:`SidecarError` naming a wrong key."""
    block = {"kind": kind, "dtype": dtype, "scale": float(quantization[0]), "zero_point": int(quantization[1]),
             "height": int(size[0]), "width": int(size[1]), "stride": int(stride)}
    if class_mapping is not None:
        block["class_mapping"] = [int(c) for c in class_mapping]
    return _checked(OutputSpec, block, "output")


def _checked(model: type[BaseModel], block: dict, key: str) -> dict:
    try:
        model.model_validate_json(json.dumps(block))
    except ValidationError as e:
        raise SidecarError(one_line(e, "sidecar", key)) from None
    return block


def build_sidecar(model_bytes: bytes, *, name: str, input: dict, output: dict, precision: str,
                  **reports: Any) -> dict:
    """Assemble a validated sidecar for ``model_bytes`` (the .tflite/.onnx
    file's content): ``input``/``output`` from :func:`input_block` and
    :func:`output_block`; ``reports`` (calibration, accuracy, conversion,
    source_run, source_arch, git_commit, ...) are carried as given. The
    schema id, taxonomy, sha256 and creation time (UTC) are filled in here.
    Raises :class:`SidecarError` naming the first wrong key."""
    meta = {"schema": SCHEMA, "name": name, "classes": classes_block(), "input": input, "output": output,
            "precision": precision, **reports,
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "categories": list(CATEGORIES), "sha256": hashlib.sha256(model_bytes).hexdigest()}
    return validate(meta)


def validate(meta: Any, model: str | Path | None = None, where: str = "sidecar") -> dict:
    """Check ``meta`` (a dict as read from JSON) against :class:`Sidecar`,
    and the model file's sha256 when ``model`` is given; return ``meta``.
    Raises :class:`SidecarError` (one line, naming the key)."""
    try:
        text = json.dumps(meta)
    except (TypeError, ValueError) as e:
        raise SidecarError(f"{where}: not JSON-serializable: {e}") from None
    try:
        parsed = Sidecar.model_validate_json(text)
    except ValidationError as e:
        raise SidecarError(one_line(e, where)) from None
    if model is not None:
        digest = sha256_file(model)
        if digest != parsed.sha256:
            raise SidecarError(f"{model} does not match its sidecar (sha256 {digest[:12]}... != "
                               f"{parsed.sha256[:12]}...): the pair was not written together")
    return meta


def read_sidecar(model: str | Path, verify: bool = True) -> dict | None:
    """The sidecar of ``model`` as a dict, validated (and its sha256 checked
    against ``model`` when ``verify``); ``None`` when there is none. Raises
    :class:`SidecarError` (one line naming the file) for one that is not a
    regular file (a FIFO, a link to ``/dev/zero``), is over
    :data:`MAX_SIDECAR_BYTES` (checked before it is read), is not JSON, is
    nested deeper than JSON's parser goes, or breaks the schema."""
    p = sidecar_path(model)
    try:
        data = read_small_file(p, MAX_SIDECAR_BYTES, "sidecar", missing_ok=True)
    except ValueError as e:
        raise SidecarError(str(e)) from None
    if data is None:
        return None
    try:
        meta = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise SidecarError(f"sidecar {p} is not JSON: {e}") from None
    except RecursionError:  # "[[[[...]]]]" well under the byte cap
        raise SidecarError(f"sidecar {p} is nested too deeply to be a sidecar") from None
    return validate(meta, model if verify else None, f"sidecar {p}")


def write_pair(model_bytes: bytes, meta: dict, model: str | Path) -> tuple[Path, Path]:
    """Write ``<name>.tflite`` (or ``.onnx``) and ``<name>.json`` atomically:
    both go to temporary names first, the sha256 is filled in, then both are
    renamed (the sidecar last, so a model whose sidecar is stale fails the
    sha256 check). On failure neither temporary survives. Raises
    :class:`SidecarError` when ``meta`` breaks the schema (nothing written)."""
    model = Path(model)
    side = sidecar_path(model)
    meta = validate(dict(meta, sha256=hashlib.sha256(model_bytes).hexdigest(), schema=SCHEMA))
    with atomic_path(side) as tmp_side, atomic_path(model) as tmp_model:
        tmp_model.write_bytes(model_bytes)
        tmp_side.write_text(json.dumps(meta, indent=2))
    return model, side


SCHEMA_FILE = "sidecar.json"


def json_schema() -> dict:
    """The sidecar's JSON Schema (draft 2020-12, as pydantic writes it), for
    integrators who write sidecars for their own models; checked in as
    ``docs/schemas/sidecar.json`` beside the payloads' schemas."""
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": f"https://roadseg.example/schemas/{SCHEMA_FILE}",
            "title": "roadseg model sidecar (roadseg.model/1)",
            **{k: v for k, v in Sidecar.model_json_schema(by_alias=True).items() if k != "title"}}


def write_json_schema(folder: str | Path) -> Path:
    """Write :func:`json_schema` to ``folder/sidecar.json`` (atomically); returns the path."""
    from edge_runtime.atomic import write_text
    return write_text(Path(folder) / SCHEMA_FILE, json.dumps(json_schema(), indent=2) + "\n")


if __name__ == "__main__":  # python -m edge_runtime.contract.sidecar --schema | FOLDER (e.g. docs/schemas)
    if len(sys.argv) != 2:
        print("usage: python -m edge_runtime.contract.sidecar --schema (print the sidecar's JSON Schema) "
              "| FOLDER (write FOLDER/sidecar.json)", file=sys.stderr)
        sys.exit(2)
    if sys.argv[1] == "--schema":
        print(json.dumps(json_schema(), indent=2))
    else:
        print(write_json_schema(sys.argv[1]))
