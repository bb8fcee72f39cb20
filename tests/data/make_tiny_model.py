"""Regenerate ``tests/data/tiny-int8.tflite`` and its sidecar ``tiny-int8.json``.

    python tests/data/make_tiny_model.py          # needs .[train,runtime]; about a minute on 2 cores

The runtime's tests read this pair instead of training a model, so they run in
a ``[runtime]``-only install. It is the project's real pipeline at toy scale: a
width-0.5 roadseg-fast student trained for 24 steps on synthetic scenes
(64x128), converted to int8 by ``roadseg-calibrate`` with the gate's floors off.
Its accuracy means nothing; its contract (uint8 RGB in, int8 logits out, 8
classes, a matching sidecar with sha256) is what the tests use.
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))


def main() -> int:
    """Train, calibrate, and replace the pair in this folder (temporary name, then rename)."""
    import trainer  # noqa: F401  (legacy-Keras environment before TensorFlow)
    from calibration.calibrate import calibrate
    from distill.distill import DistillConfig, distill
    from edge_runtime.eval.synthetic import write_dataset

    with tempfile.TemporaryDirectory(prefix="roadseg-tiny-") as td:
        data = write_dataset(Path(td) / "data", "cityscapes", {"train": 6, "val": 3}, 64, 128, seed=1)
        run = Path(td) / "run"
        distill(DistillConfig(student="roadseg-fast", data=str(data), out=str(run), size=(64, 128), epochs=4,
                              steps_per_epoch=6, batch=2, no_kd=True, width=0.5, lr=3e-3))
        out = Path(td) / "tiny-int8.tflite"
        sidecar = calibrate(str(run), str(data), str(out), samples=4, max_drop=100.0, min_agreement=0.0,
                            min_miou=0.0)
        sidecar.update(source_run="tests/data/make_tiny_model.py", git_commit=None)
        from edge_runtime.contract.sidecar import write_pair
        write_pair(out.read_bytes(), sidecar, HERE / "tiny-int8.tflite")
    print(f"wrote {HERE / 'tiny-int8.tflite'} and {HERE / 'tiny-int8.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
