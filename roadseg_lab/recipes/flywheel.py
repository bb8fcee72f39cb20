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
"""
from __future__ import annotations

import json
import math
from pathlib import Path

#: simulated Unix time of the first frame (2027-01-15 08:00 UTC): the kept frames' names and records carry it
DRIVE_START = 1_800_000_000.0


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
