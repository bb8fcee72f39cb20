"""What the workstation and the vehicle agree on about a model release
(issue 29): the announcement that points a vehicle at a release, the
``custom`` block a release's signed TUF target carries, and the golden frames.

A release lives in a TUF repository (static files: metadata/ and targets/).
Its files are TUF targets under ``releases/<version>/``: the model
(``<name>.tflite`` or ``.onnx``), its sidecar (``<name>.json``), the model
card (``<name>.md``, optional) and ``golden.npz``. The model's target carries
:class:`ReleaseInfo` in its ``custom`` field, under the key ``roadseg``: the
release version (a whole number that only grows), the other files' target
paths, the sidecar's input contract, the held-out scores and the lowest
runtime version that can run it. TUF signs all of it; a vehicle trusts it
only after :class:`tuf.ngclient.Updater` verified it.

An :class:`Announcement` (MQTT, retained, ``roadseg/fleet/release`` for the
whole fleet and ``roadseg/<device-id>/release`` to override it for one
vehicle) only points: ``{version, target, repo}``. Nothing in it is trusted:
the target must exist in the signed metadata, its signed version must be the
announced one, and the repository must be one the vehicle was configured with.

Readers check the size first (:data:`MAX_ANNOUNCEMENT_BYTES`,
:data:`MAX_GOLDEN_BYTES`), then the schema, then use it.
"""
from __future__ import annotations

import io
import json
import re
from typing import Annotated, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from edge_runtime.contract.labels import NUM_CLASSES

ANNOUNCEMENT_SCHEMA = "roadseg.release/1"
RELEASE_SCHEMA = "roadseg.release-info/1"
#: the fleet-wide announcement; a vehicle's own override is ``roadseg/<device-id>/release``
FLEET_RELEASE_TOPIC = "roadseg/fleet/release"
#: the topic kind of a vehicle's override and of its model state (under ``roadseg/<device-id>/``)
RELEASE_KIND, MODEL_STATE_KIND = "release", "model"
#: an announcement is about 200 bytes; anything far larger is not one
MAX_ANNOUNCEMENT_BYTES = 2048
#: golden frames are a few small images: more than this is refused unread
MAX_GOLDEN_BYTES = 8 << 20
#: at most this many golden frames, each at most this many pixels a side
MAX_GOLDEN_FRAMES, MAX_GOLDEN_SIDE = 16, 2048
#: where the model target's ``custom`` field holds :class:`ReleaseInfo`
CUSTOM_KEY = "roadseg"

#: a target path: 1..4 segments of letters, digits, ``._-``, no segment starting with a dot (no ``..``)
TARGET_PATTERN = r"^(?:[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}/){0,3}[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}$"
#: the repository's base URL: http(s), host, optional port and path; no user, query or fragment
REPO_URL_PATTERN = r"^https?://[A-Za-z0-9._~\[\]:-]{1,260}(?:/[A-Za-z0-9._~%-]{0,100}){0,8}/?$"
VERSION_PATTERN = r"^\d{1,4}\.\d{1,4}(?:\.\d{1,4})?$"

TargetPath = Annotated[str, StringConstraints(pattern=TARGET_PATTERN, max_length=300)]
RepoUrl = Annotated[str, StringConstraints(pattern=REPO_URL_PATTERN, max_length=300)]
ReleaseVersion = Annotated[int, Field(ge=0, le=2**31 - 1)]


class ReleaseError(ValueError):
    """An announcement, release info or golden-frames file that breaks its schema or bounds (one line)."""


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, allow_inf_nan=False, extra="forbid", frozen=True)


class Announcement(_Strict):
    """``roadseg/fleet/release`` or ``roadseg/<device-id>/release`` (retained): run release ``version``,
    whose model is the signed target ``target`` of the TUF repository at ``repo`` (base URL holding
    ``metadata/`` and ``targets/``). ``ts``: when it was announced (RFC 3339, informative)."""
    schema_: Literal["roadseg.release/1"] = Field(alias="schema")
    version: ReleaseVersion
    target: TargetPath
    repo: RepoUrl
    ts: Annotated[str, StringConstraints(max_length=40)] | None = None


#: a number written as text: TUF signs canonical JSON, which has no floats
Decimal = Annotated[str, StringConstraints(pattern=r"^-?\d{1,12}(?:\.\d{1,12})?(?:e[-+]?\d{1,3})?$")]


class InputContract(_Strict):
    """The sidecar's ``input`` block, as the release records it: height and width in pixels, dtype,
    channel order, resize policy, and the quantization (``scale`` as a decimal text, ``zero_point``)."""
    height: Annotated[int, Field(ge=1, le=16384)]
    width: Annotated[int, Field(ge=1, le=16384)]
    dtype: Annotated[str, StringConstraints(max_length=20)]
    channel_order: Literal["rgb", "bgr"]
    resize_policy: Annotated[str, StringConstraints(max_length=20)] | None = None
    scale: Decimal | None = None
    zero_point: int | None = None


class ReleaseInfo(_Strict):
    """The model target's ``custom.roadseg`` block: release ``version``; target paths of the
    ``sidecar``, the model ``card`` (or None) and the ``golden`` frames; the sidecar's
    ``input`` contract; held-out ``scores`` (name -> decimal text, e.g. ``int8_miou7``:
    ``"0.615"``); ``min_runtime``: the lowest ``edge_runtime.__version__`` that runs it;
    ``golden_agreement_ppm``: the share of golden pixels, in parts per million, the
    vehicle's class maps must equal. Numbers are whole or text: TUF signs canonical JSON."""
    schema_: Literal["roadseg.release-info/1"] = Field(alias="schema")
    version: ReleaseVersion
    name: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    sidecar: TargetPath
    card: TargetPath | None = None
    golden: TargetPath
    input: InputContract
    scores: Annotated[dict[Annotated[str, StringConstraints(max_length=40)], Decimal], Field(max_length=64)]
    min_runtime: Annotated[str, StringConstraints(pattern=VERSION_PATTERN)]
    golden_agreement_ppm: Annotated[int, Field(ge=0, le=1_000_000)]
    created: Annotated[str, StringConstraints(max_length=40)]

    @property
    def golden_agreement(self) -> float:
        """The golden share as a fraction (0..1)."""
        return self.golden_agreement_ppm / 1e6


def decimal(value: float) -> str:
    """A float as the decimal text the signed metadata carries (6 significant digits)."""
    text = format(float(value), ".6g")
    if not re.fullmatch(r"-?\d{1,12}(?:\.\d{1,12})?(?:e[-+]?\d{1,3})?", text):
        raise ReleaseError(f"{value!r} is not a finite number")
    return text


def _one_line(model: type[BaseModel], e: ValidationError) -> str:
    err = e.errors(include_url=False, include_input=False)[0]
    where = ".".join(str(p) for p in err["loc"]) or "payload"
    return f"{model.__name__.lower()} {where}: {err['msg']} ({e.error_count()} problem(s))"


def parse_announcement(payload: bytes) -> Announcement:
    """A received announcement -> :class:`Announcement`. Size first (more than
    :data:`MAX_ANNOUNCEMENT_BYTES` is refused unparsed), then the schema.
    Raises :class:`ReleaseError` (one line, never echoing the payload)."""
    if len(payload) > MAX_ANNOUNCEMENT_BYTES:
        raise ReleaseError(f"announcement: {len(payload)} bytes, more than the {MAX_ANNOUNCEMENT_BYTES} allowed")
    try:
        return Announcement.model_validate_json(payload)
    except ValidationError as e:
        raise ReleaseError(_one_line(Announcement, e)) from None


def announcement(version: int, target: str, repo: str, ts: str | None = None) -> dict:
    """The announcement's JSON-ready dict (checked). Raises :class:`ReleaseError`."""
    fields = {"schema": ANNOUNCEMENT_SCHEMA, "version": version, "target": target, "repo": repo}
    if ts is not None:
        fields["ts"] = ts
    try:
        m = Announcement.model_validate(fields)
    except ValidationError as e:
        raise ReleaseError(_one_line(Announcement, e)) from None
    return m.model_dump(mode="json", by_alias=True, exclude_none=True)


def parse_release_info(custom: object) -> ReleaseInfo:
    """The model target's ``custom`` field -> :class:`ReleaseInfo` (from its ``roadseg`` key).
    Raises :class:`ReleaseError` when it is missing or breaks the schema."""
    if not isinstance(custom, dict) or CUSTOM_KEY not in custom:
        raise ReleaseError(f"the target's custom field has no {CUSTOM_KEY!r} block: not a roadseg model release")
    try:
        return ReleaseInfo.model_validate_json(json.dumps(custom[CUSTOM_KEY]))
    except (TypeError, ValueError) as e:
        if isinstance(e, ValidationError):
            raise ReleaseError(_one_line(ReleaseInfo, e)) from None
        raise ReleaseError(f"releaseinfo: not JSON: {e}") from None


def release_info(**fields) -> dict:
    """A checked :class:`ReleaseInfo` as the JSON-ready dict the target's ``custom.roadseg`` holds
    (``schema`` is filled in). Floats are turned into what the schema takes: ``scores`` values and
    ``input.scale`` into decimal text, ``golden_agreement`` (0..1) into ``golden_agreement_ppm``.
    Raises :class:`ReleaseError`."""
    fields = dict(fields)
    if "golden_agreement" in fields:
        fields["golden_agreement_ppm"] = int(round(float(fields.pop("golden_agreement")) * 1e6))
    fields["scores"] = {k: v if isinstance(v, str) else decimal(v) for k, v in (fields.get("scores") or {}).items()}
    if isinstance(fields.get("input"), dict):
        inp = {k: v for k, v in fields["input"].items() if k in InputContract.model_fields}
        if isinstance(inp.get("scale"), (int, float)):
            inp["scale"] = decimal(inp["scale"])
        fields["input"] = inp
    try:
        m = ReleaseInfo.model_validate({"schema": RELEASE_SCHEMA, **fields})
    except ValidationError as e:
        raise ReleaseError(_one_line(ReleaseInfo, e)) from None
    return m.model_dump(mode="json", by_alias=True)


def version_tuple(text: str) -> tuple[int, ...]:
    """``"0.1.0"`` -> (0, 1, 0); anything after the numbers (``0.2.0rc1``) is ignored."""
    m = re.match(r"^(\d+)(?:\.(\d+))?(?:\.(\d+))?", text)
    return tuple(int(g) for g in m.groups() if g is not None) if m else (0,)


# -- golden frames ----------------------------------------------------------------------------------------
def golden_bytes(frames: np.ndarray, classes: np.ndarray) -> bytes:
    """``frames`` uint8 [N, H, W, 3] RGB and ``classes`` uint8 [N, h, w] category ids -> an ``.npz``
    (no pickles). Raises :class:`ReleaseError` for shapes or types outside the bounds."""
    _check_golden(frames, classes)
    buf = io.BytesIO()
    np.savez_compressed(buf, frames=frames, classes=classes)
    return buf.getvalue()


def read_golden(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """The golden frames and class maps of an ``.npz`` (see :func:`golden_bytes`): size first,
    never unpickled, shapes and class ids checked. Raises :class:`ReleaseError`."""
    if len(data) > MAX_GOLDEN_BYTES:
        raise ReleaseError(f"golden frames: {len(data)} bytes, more than the {MAX_GOLDEN_BYTES} allowed")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            if sorted(z.files) != ["classes", "frames"]:
                raise ReleaseError(f"golden frames: arrays {sorted(z.files)[:4]}, expected classes and frames")
            for name in ("frames", "classes"):  # the uncompressed size, before anything is decompressed
                if z.zip.getinfo(f"{name}.npy").file_size > 4 * MAX_GOLDEN_BYTES:
                    raise ReleaseError(f"golden frames: {name} decompresses to more than {4 * MAX_GOLDEN_BYTES} "
                                       "bytes")
            frames, classes = z["frames"], z["classes"]
    except ReleaseError:
        raise
    except Exception as e:  # zipfile, numpy's format errors: not a golden file
        raise ReleaseError(f"golden frames: not a readable .npz ({type(e).__name__})") from None
    _check_golden(frames, classes)
    return frames, classes


def _check_golden(frames: np.ndarray, classes: np.ndarray) -> None:
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[3] != 3:
        raise ReleaseError(f"golden frames: frames {frames.dtype} {list(frames.shape)}, expected uint8 [N,H,W,3]")
    if classes.dtype != np.uint8 or classes.ndim != 3 or classes.shape[0] != frames.shape[0]:
        raise ReleaseError(f"golden frames: classes {classes.dtype} {list(classes.shape)}, expected uint8 "
                           f"[{frames.shape[0]},h,w]")
    if not 1 <= frames.shape[0] <= MAX_GOLDEN_FRAMES or max(*frames.shape[1:3], *classes.shape[1:3]) > \
            MAX_GOLDEN_SIDE:
        raise ReleaseError(f"golden frames: {frames.shape[0]} frames of {frames.shape[1]}x{frames.shape[2]}; at most "
                           f"{MAX_GOLDEN_FRAMES} of {MAX_GOLDEN_SIDE} pixels a side")
    if classes.size and int(classes.max()) >= NUM_CLASSES:
        raise ReleaseError(f"golden frames: class id {int(classes.max())} outside 0..{NUM_CLASSES - 1}")
