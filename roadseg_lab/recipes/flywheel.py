"""The data flywheel, simulated on a road the models never saw (issue 30, item 4).

    python -m roadseg_lab flywheel-keep --model base.tflite --data CAMVID --split 'holdout:0006R0[:50]' \
        --n 25 --mode selected|random [--seed 0] --out kept/sel25

A vehicle drives the frames of ``--split`` in name order (CamVid's frames of
one sequence are one per second of the drive, every 30th frame of its 30 FPS
video: real frames, nothing interpolated or repeated) with the int8 model it
runs, and keeps ``--n`` of them:

* ``selected``: the vehicle's own code decides (edge_runtime.flywheel:
  TeachScorer on the int8 scores of every frame, KeepFrames' windows, rate
  and similarity rules, FrameStore), with a clock that advances one second
  per frame and a rate of ``n`` frames per drive (``per_hour = ceil(n *
  3600 / frames)``): the best-scoring frame of each window, a near-repeat of
  the last kept frame skipped. It may keep fewer than ``n``; the count is
  reported.
* ``random``: ``n`` frames drawn uniformly without replacement (``--seed``),
  written the same way (full-size JPEG at the store's quality).

``--out`` gets the kept frames (JPEG + record for ``selected``, JPEG for
``random``); ``OUT.keep.json`` beside it lists them with the counts. The rest of the loop
(the teacher labels them, the student learns, everything scored int8 on the
frames no vehicle kept) is ``scripts/flywheel_camvid.sh``; the table and
figure are ``python -m roadseg_lab flywheel-report``.

    python -m roadseg_lab flywheel-oracle --kept kept/sel25 --data CAMVID --split 'holdout:0006R0[:50]' \
        --out oracle/sel25

The ceiling of any labeller: the same kept frames with their human labels, in
the layout ``python -m distill.commands.pseudolabel`` writes (``train/``,
``trainannot/``, ``pseudolabels.json``), so ``roadseg-distill --extra-data``
and the report take it in its place (``ORACLE=1 scripts/flywheel_camvid.sh``).
A fleet has no such labels: it measures how much of the goal is the labels'
quality and how much the schedule's.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

#: simulated Unix time of the first frame (2027-01-15 08:00 UTC): the kept frames' names and records carry it
DRIVE_START = 1_800_000_000.0


def drive_index(frame: dict, names: dict[str, int]) -> int | None:
    """The drive's sample index of one kept frame ``{"name": ..., "record": {...} | None}``: by name (a
    random arm keeps the sample's name), else by the second of the drive its record was captured at (the
    selected arm's clock: one frame a second from :data:`DRIVE_START`); None when neither places it."""
    from datetime import datetime

    if frame.get("name") in names:
        return names[frame["name"]]
    captured = (frame.get("record") or {}).get("captured_utc")
    if not isinstance(captured, str):
        return None
    try:
        i = round(datetime.fromisoformat(captured).timestamp() - DRIVE_START)
    except ValueError:
        return None
    return i if 0 <= i < len(names) else None


#: the largest mean absolute difference (0..255 levels) between a kept JPEG and the drive frame it is taken
#: for: JPEG at the store's quality differs by 1-3 levels, another frame of a drive by tens
MAX_FRAME_DIFF = 8.0


def oracle(kept: str, data: str, split: str, out: str) -> dict:
    """The frames :func:`keep` wrote to ``kept`` with the human labels of ``split`` (CamVid layout only: the
    annotation PNG copied as it is) into ``out`` as ``train/NAME.jpg``, ``trainannot/NAME.png`` and a
    ``pseudolabels.json`` whose ``labeller`` is ``"human"`` (see the module). Each kept frame is placed in the
    drive (:func:`drive_index`) and must be that drive frame's image (mean absolute difference at most
    :data:`MAX_FRAME_DIFF` levels, the same size): a frame of another split is never given its labels.
    Every file is written to disk (fsync) in a work folder beside ``out`` (``.OUT.PID.tmp``; those of killed
    runs are removed) and renamed into place whole. Returns the pseudolabels.json written.

    Raises ValueError for a dataset that is not CamVid's layout, an existing ``out``, no kept frame, a kept
    frame the drive cannot place or whose image is not the drive frame's, a record that
    ``edge_runtime.flywheel.store.read_record`` refuses; edge_runtime's DatasetError for a bad ``data``/``split``; OSError for a disk that refuses."""
    import os
    import shutil

    import cv2
    import numpy as np

    from distill.pseudolabel import remove_leftovers
    from edge_runtime import atomic
    from edge_runtime.eval.datasets import list_samples
    from edge_runtime.flywheel.store import read_record
    fmt, samples = list_samples(data, split)
    if fmt != "camvid":
        raise ValueError(f"--data {data}: {fmt} layout; the oracle copies CamVid annotations only")
    target = Path(out)
    if target.exists():
        raise ValueError(f"--out {out}: exists; the oracle writes a new folder")
    names = {s.name: i for i, s in enumerate(samples)}
    jpegs = sorted(Path(kept).glob("*.jpg"))
    if not jpegs:
        raise ValueError(f"--kept {kept}: no kept frames (*.jpg)")
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(target)
    work = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    (work / "train").mkdir(parents=True)
    (work / "trainannot").mkdir()
    frames = []
    try:
        for jpg in jpegs:
            path = jpg.with_suffix(".json")  # a selected frame's record; a random one has none
            record = read_record(path).model_dump(by_alias=True) if path.exists() else None
            frame = {"name": jpg.stem, "source": str(jpg), "record": record}
            i = drive_index(frame, names)
            if i is None:
                raise ValueError(f"{jpg}: not a frame of {split} (no such name, no record time within the drive)")
            image = jpg.read_bytes()
            got = cv2.imdecode(np.frombuffer(image, np.uint8), cv2.IMREAD_COLOR)
            want = cv2.imread(str(samples[i].image), cv2.IMREAD_COLOR)
            diff = (float(np.abs(got.astype(np.int16) - want).mean())
                    if got is not None and want is not None and got.shape == want.shape else None)
            if diff is None or diff > MAX_FRAME_DIFF:
                raise ValueError(f"{jpg}: not the image of {samples[i].name}, the frame of {split} it is placed at ("
                                 + ("another size or unreadable" if diff is None else f"{diff:.1f} levels apart")
                                 + ")")
            atomic.durable_write(work / "train" / jpg.name, image)
            atomic.durable_write(work / "trainannot" / f"{jpg.stem}.png", samples[i].label.read_bytes())
            frames.append(frame | {"drive_frame": samples[i].name})
        doc = {"schema": "roadseg.pseudolabels/1", "labeller": "human", "teachers": [], "skipped": [],
               "frames": frames}
        atomic.durable_write(work / "pseudolabels.json", json.dumps(doc, indent=1).encode())
        os.rename(work, target)
        atomic.fsync_dir(target.parent)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return doc


def keep(model: str, data: str, split: str, n: int, mode: str, out: str, seed: int = 0) -> dict:
    """Drive ``split``'s frames with ``model`` and keep ``n`` of them into ``out``
    (see the module). Returns the ``keep.json`` it writes. Raises ValueError
    for a mode other than selected/random or ``n`` outside 1..frames,
    edge_runtime's DatasetError / model errors for bad inputs."""
    import cv2
    import numpy as np

    from edge_runtime import atomic
    from edge_runtime.eval.datasets import list_samples
    from edge_runtime.flywheel.keep import KeepFrames, KeepPolicy
    from edge_runtime.flywheel.store import FrameStore
    from edge_runtime.model.segmenter import DeviceSegmenter
    _, samples = list_samples(data, split)
    if mode not in ("selected", "random"):
        raise ValueError(f"--mode {mode!r}: selected or random")
    if not 1 <= n <= len(samples):
        raise ValueError(f"--n {n}: between 1 and the {len(samples)} frames of {split}")
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    policy = KeepPolicy()
    if mode == "random":
        picked = sorted(np.random.default_rng(seed).choice(len(samples), size=n, replace=False).tolist())
        names = []
        for i in picked:
            frame = cv2.imread(str(samples[i].image), cv2.IMREAD_COLOR)
            ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, policy.jpeg_quality])
            atomic.write_bytes(folder / f"{samples[i].name}.jpg", buf.tobytes())
            names.append(samples[i].name)
        report = {"mode": mode, "seed": seed, "n": n, "kept": len(names), "frames": names}
    else:
        seg = DeviceSegmenter(model, 2)
        clock = [DRIVE_START]
        per_hour = math.ceil(n * 3600 / len(samples))
        policy = KeepPolicy(per_hour=per_hour, queue=len(samples))
        store = FrameStore(folder, max_bytes=1 << 30)
        keeper = KeepFrames(store, seg, "fleet-sim", policy, clock=lambda: clock[0], monotonic=lambda: clock[0])
        for i, s in enumerate(samples):
            clock[0] = DRIVE_START + i  # one frame per second of the drive
            frame = cv2.imread(str(s.image), cv2.IMREAD_COLOR)
            keeper.update(frame, "bgr", seg.segment(frame, "bgr"), 1.0)
        clock[0] = DRIVE_START + len(samples)
        keeper.close(timeout=60)
        kept = sorted(store.names())
        report = {"mode": mode, "n": n, "kept": len(kept), "per_hour": per_hour, "counts": keeper.counts,
                  "frames": kept, "model": keeper.model}
    atomic.write_text(folder.parent / f"{folder.name}.keep.json", json.dumps(report, indent=1))
    return report
