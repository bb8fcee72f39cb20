"""The workstation's half of the data flywheel (issue 30): the teacher labels
the frames the vehicles kept (``python -m distill.commands.pseudolabel``).

Frames come from a folder the vehicles pushed to (nginx's WebDAV root or a
synced S3 prefix): kept frames (``<name>.jpg`` with its record
``<name>.json``, :class:`edge_runtime.flywheel.store.KeptRecord`, checked:
size first, then the schema, then the JPEG's sha256) and plain images
(``.jpg``/``.png`` without a record, e.g. a video's frames) alike, searched
recursively. A kept frame in a vehicle's folder (``<frames>/<device-id>/``,
the folder the server let only that vehicle write) must name that vehicle in
its record. Each frame's bytes are read once, checked against the sha256
found when the folder was searched (and its record's), its pixel count read
from its header and bounded before it is decoded from those same bytes, and
those bytes are the copy written: a frame that fails (changed meanwhile, not
decodable, too many pixels, not the size its record says) is skipped with its
reason, the others labelled. Each is labelled by the teacher runs' exports with their
test-time views (:class:`distill.distill.Teachers`, as ``--teacher-tta``):
the mean probabilities at the teacher's size, resized bilinearly to the
frame's; pixels whose top probability is below ``min_confidence`` are left
unlabelled: 255, the ignore label (``IGNORE_INDEX``), which the loss does
not count (trained as void, they taught the student to answer void on the
hard pixels: -3.7 points of mIoU-7 in docs/RESULTS.md's flywheel table). The
result is a CamVid-layout dataset (SegNet split: ``train/`` the frames as
they came, ``trainannot/`` the labels as CamVid class indices, the teacher's
void as Unlabelled, unsure pixels 255) that ``roadseg-distill --extra-data`` trains on, a
``pseudolabels.json`` manifest, and a contact sheet (frame, pseudo-label,
confidence) to check them by eye. The dataset is built in a temporary folder
beside ``out`` and renamed into place when whole (a previous output is
replaced; a folder that is not one is refused), so ``--extra-data`` never
reads half a run, nor frames a rerun skipped.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np

from edge_runtime import atomic
from edge_runtime.contract.labels import IGNORE_INDEX, VOID, colorize
from edge_runtime.eval.datasets import IMAGE_EXTS

log = logging.getLogger("roadseg.pseudolabel")

#: category index -> the CamVid class index written for it (CAMVID_TO_CATEGORY maps it back):
#: void -> Unlabelled, flat -> Road, construction -> Building, object -> Pole, nature -> Tree, sky -> Sky,
#: human -> Pedestrian, vehicle -> Car
CATEGORY_TO_CAMVID = np.array([11, 3, 1, 2, 5, 0, 9, 8], np.uint8)
#: the largest frame file read (bytes): a full-HD JPEG is well under 2 MB
MAX_FRAME_BYTES = 32 * 2 ** 20
#: the most pixels a frame may have (its header is read before it is decoded): a 4K UHD frame has 8.3 million
MAX_FRAME_PIXELS = 4096 * 4096
#: contact sheet tile width (pixels)
TILE_WIDTH = 256


def find_frames(folder: str | Path) -> tuple[list[dict], list[str]]:
    """The frames under ``folder`` (recursive; hidden files and folders left
    out), sorted by path: ``[{"name", "image", "sha256", "record"}]``
    (``sha256`` of the bytes checked now, ``record`` the validated KeptRecord
    as a dict, or None for a plain image), and the reasons frames were skipped
    (a file that is not a regular one or is over MAX_FRAME_BYTES, a record
    that breaks the schema or names another frame, a frame in a vehicle's
    folder -- the first folder under ``folder`` -- without a record or
    recorded as another vehicle's, a JPEG whose sha256 differs, a name seen
    twice). Plain images are taken from ``folder`` itself only. Raises
    FileNotFoundError for a missing folder."""
    from edge_runtime.flywheel.store import read_record
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"--frames {folder}: folder not found")
    frames, skipped, seen = [], [], set()
    found = sorted((p, p.relative_to(folder).parts) for p in folder.rglob("*")
                   if p.suffix.lower() in IMAGE_EXTS and p.is_file())
    for image, parts in found:
        if any(part.startswith(".") for part in parts):
            continue
        rec_file, record = image.with_suffix(".json"), None
        vehicle = parts[0] if len(parts) > 1 else None  # the folder the server let only that vehicle write
        try:
            digest = hashlib.sha256(atomic.read_small_file(image, MAX_FRAME_BYTES, "frame")).hexdigest()
            if vehicle is not None and not rec_file.exists():
                raise ValueError(f"no record, in the folder of {vehicle}: a vehicle's folder holds kept frames only")
            if rec_file.exists():
                r = read_record(rec_file)
                if r.name != image.stem:
                    raise ValueError(f"its record names another frame ({r.name})")
                if vehicle is not None and r.device_id != vehicle:
                    raise ValueError(f"a frame of {r.device_id} in the folder of {vehicle}")
                if r.sha256 != digest:
                    raise ValueError("the JPEG's sha256 differs from its record's")
                record = r.model_dump(by_alias=True)
            if image.stem in seen:
                raise ValueError("a frame of the same name was found first")
        except (OSError, ValueError) as e:
            skipped.append(f"{image}: {str(e).splitlines()[0]}")
            continue
        seen.add(image.stem)
        frames.append({"name": image.stem, "image": image, "sha256": digest, "record": record})
    return frames, skipped


def read_frame(frame: dict) -> tuple[bytes, np.ndarray]:
    """``(bytes, RGB uint8 [H,W,3])`` of one of :func:`find_frames`' frames: the file read once (at most
    MAX_FRAME_BYTES), its sha256 checked against the one found, its size read from the header (Pillow, nothing
    decoded) and bounded by MAX_FRAME_PIXELS and its record's ``size``, then decoded from those bytes (OpenCV).
    Raises ValueError (one line) for a frame that changed, is too large, is not its record's size or does not
    decode."""
    import io

    import cv2
    from PIL import Image
    data = atomic.read_small_file(frame["image"], MAX_FRAME_BYTES, "frame")
    if hashlib.sha256(data).hexdigest() != frame["sha256"]:
        raise ValueError("changed since the folder was searched")
    try:
        with Image.open(io.BytesIO(data)) as header:
            width, height = header.size
    except Image.DecompressionBombError:  # Pillow's own bound (hundreds of millions of pixels) comes first
        raise ValueError(f"a decompression bomb: over the {MAX_FRAME_PIXELS} pixels a frame may have") from None
    except (OSError, ValueError) as e:
        raise ValueError(f"not an image Pillow can read ({type(e).__name__})") from None
    if width * height > MAX_FRAME_PIXELS:
        raise ValueError(f"{height}x{width} pixels, over the {MAX_FRAME_PIXELS} a frame may have")
    record = frame.get("record")
    if record is not None and list(record["size"]) != [height, width]:
        raise ValueError(f"{height}x{width} pixels, its record says {record['size'][0]}x{record['size'][1]}")
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None or bgr.shape[0] * bgr.shape[1] != width * height:  # (EXIF orientation may turn it)
        raise ValueError("does not decode")
    return data, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def label_frame(teachers, image: np.ndarray, min_confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """``(categories uint8 [H,W], confidence float32 [H,W])`` of one RGB uint8
    [H,W,3] frame: the teachers' mean probabilities (with their test-time
    views) at the first teacher's size, resized bilinearly to the frame; void
    where the top probability is below ``min_confidence``."""
    tf = teachers.tf
    size = teachers.models[0].size
    probs = teachers.probs(tf.constant(image[None]), size)
    probs = tf.image.resize(probs, image.shape[:2], method="bilinear")[0].numpy()
    classes = probs.argmax(axis=-1).astype(np.uint8)
    confidence = probs.max(axis=-1).astype(np.float32)
    classes[confidence < min_confidence] = IGNORE_INDEX  # not counted by the loss: an unsure pixel is no void
    return classes, confidence


def _tile(rgb: np.ndarray, height: int) -> np.ndarray:
    import cv2
    return cv2.resize(rgb, (TILE_WIDTH, height), interpolation=cv2.INTER_AREA)


def contact_sheet(rows: list[tuple[str, np.ndarray, np.ndarray, np.ndarray]], min_confidence: float,
                  out: str | Path) -> Path:
    """Draw ``rows`` of ``(name, frame RGB, categories, confidence)`` as a PNG at
    ``out``: per row the frame, the pseudo-label in the project's palette
    (void black) and the confidence (dark: low; viridis), a header saying so.
    Raises OSError when it cannot be written, ValueError without rows."""
    import cv2
    if not rows:
        raise ValueError("no frames to draw")
    h0, w0 = rows[0][1].shape[:2]
    height = max(16, round(TILE_WIDTH * h0 / w0))
    header = np.full((28, 3 * TILE_WIDTH, 3), 255, np.uint8)
    for i, text in enumerate(("frame", f"pseudo-label (black: void, < {min_confidence:g})", "confidence (dark: low)")):
        cv2.putText(header, text, (6 + i * TILE_WIDTH, 19), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 0, 0), 1, cv2.LINE_AA)
    lines = [header]
    for name, frame, classes, conf in rows:
        heat = cv2.applyColorMap(np.clip(conf * 255, 0, 255).astype(np.uint8), cv2.COLORMAP_VIRIDIS)[..., ::-1]
        shown = np.where(classes == IGNORE_INDEX, VOID, classes)  # ignored pixels drawn as void (black)
        row = np.concatenate([_tile(frame, height), _tile(colorize(shown), height), _tile(heat, height)], axis=1)
        cv2.putText(row, name[-40:], (4, height - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (255, 255, 255), 1, cv2.LINE_AA)
        lines.append(row)
    sheet = np.concatenate(lines, axis=0)
    ok, png = cv2.imencode(".png", sheet[..., ::-1])
    if not ok:
        raise ValueError("PNG encoding failed")
    return atomic.write_bytes(out, png.tobytes())


def pseudolabel(teacher_runs: list[str], frames_dir: str | Path, out: str | Path, tta: str = "flip",
                min_confidence: float = 0.5, weighting: str = "iou", sheet: str | Path | None = None,
                sheet_frames: int = 16) -> dict:
    """Label every frame under ``frames_dir`` into the CamVid-layout dataset ``out``
    (``train/``, ``trainannot/``, ``pseudolabels.json``) and draw the contact
    sheet of the first ``sheet_frames`` frames at ``sheet`` (default
    ``out/contact-sheet.png``). Frames :func:`read_frame` refuses are skipped
    (``skipped`` in the manifest, with the reason). Returns the manifest.
    Raises ValueError for a ``min_confidence`` outside 0..1, no frame to
    label or none that could be, a bad ``tta``, an ``out`` that exists and is
    not a previous output or that holds or is inside ``frames_dir``; FileNotFoundError for a missing folder or teacher
    export."""
    from distill.distill import Teachers
    if not 0.0 <= min_confidence <= 1.0:
        raise ValueError(f"--min-confidence is a probability, 0..1, got {min_confidence:g}")
    out = Path(out)
    where, source = out.resolve(), Path(frames_dir).resolve()
    if where == source or source in where.parents or where in source.parents:
        raise ValueError(f"--out {out} and --frames {frames_dir}: one inside the other (the dataset would "
                         f"label itself, or replace the frames)")
    remove_leftovers(out)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / "pseudolabels.json").is_file())):
        raise ValueError(f"--out {out}: exists and is not a pseudo-label dataset (no pseudolabels.json): "
                         f"not replaced")
    frames, skipped = find_frames(frames_dir)
    for s in skipped:
        log.warning("skipped %s", s)
    if not frames:
        raise ValueError(f"--frames {frames_dir}: no frame to label (.jpg/.png, with or without a kept record)")
    teachers = Teachers(teacher_runs, weighting, tta)
    work = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    shutil.rmtree(work, ignore_errors=True)
    try:
        (work / "train").mkdir(parents=True)
        (work / "trainannot").mkdir()
        entries, rows = [], []
        for i, f in enumerate(frames):
            try:
                data, image = read_frame(f)
            except ValueError as e:
                skipped.append(f"{f['image']}: {e}")
                log.warning("skipped %s", skipped[-1])
                continue
            classes, conf = label_frame(teachers, image, min_confidence)
            _write_pair(work, f, data, classes)
            entries.append({"name": f["name"], "source": str(f["image"]), "record": f["record"],
                            "void_share": round(float(np.mean(classes == VOID)), 4),
                            "low_confidence_share": round(float(np.mean(conf < min_confidence)), 4),
                            "mean_confidence": round(float(conf.mean()), 4)})
            if len(rows) < sheet_frames:
                rows.append((f["name"], image, classes, conf))
            log.info("labelled %d/%d: %s (%.0f%% below %.2f)", i + 1, len(frames), f["name"],
                     100 * entries[-1]["low_confidence_share"], min_confidence)
        if not entries:
            raise ValueError(f"--frames {frames_dir}: no frame could be labelled ({len(skipped)} skipped)")
        manifest = {"schema": "roadseg.pseudolabels/1", "teachers": teachers.describe(), "tta": tta,
                    "min_confidence": min_confidence, "frames": entries, "skipped": skipped}
        atomic.write_text(work / "pseudolabels.json", json.dumps(manifest, indent=1))
        contact_sheet(rows, min_confidence, work / "contact-sheet.png" if sheet is None else sheet)
        old = out.with_name(f".{out.name}.{os.getpid()}.old")
        if out.exists():
            os.replace(out, old)
        try:
            os.replace(work, out)
        except OSError:
            if old.exists():
                os.replace(old, out)  # the previous dataset back in place
            raise
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return manifest


def remove_leftovers(out: Path) -> None:
    """The work folders (``.<out>.<pid>.tmp``/``.old``) of runs killed before they finished, whose process is
    gone; a running one's are left alone."""
    for path in out.parent.glob(f".{out.name}.*"):
        pid = path.name[len(out.name) + 2:].split(".")[0]
        if not pid.isdigit() or path.suffix not in (".tmp", ".old"):
            continue
        try:
            os.kill(int(pid), 0)
            continue  # still running
        except ProcessLookupError:
            pass
        except OSError:  # another user's live process (EPERM)
            continue
        log.warning("removing %s, left by a run that was stopped", path)
        shutil.rmtree(path, ignore_errors=True)


def _write_pair(out: Path, frame: dict, data: bytes, classes: np.ndarray) -> None:
    """The frame's bytes as they were checked and decoded (no re-encoding) and its label as CamVid class
    indices, atomically."""
    import cv2
    atomic.write_bytes(out / "train" / f"{frame['name']}{frame['image'].suffix.lower()}", data)
    camvid = np.where(classes == IGNORE_INDEX, IGNORE_INDEX, CATEGORY_TO_CAMVID[np.minimum(classes, len(CATEGORY_TO_CAMVID) - 1)])
    ok, png = cv2.imencode(".png", camvid.astype(np.uint8))
    if not ok:
        raise ValueError(f"cannot encode the label of {frame['name']}")
    atomic.write_bytes(out / "trainannot" / f"{frame['name']}.png", png.tobytes())
