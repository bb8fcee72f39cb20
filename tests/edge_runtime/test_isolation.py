"""edge_runtime must import and work with TensorFlow and Keras unimportable."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

CODE = r"""
import sys
for name in ("tensorflow", "keras", "tf_keras", "keras_hub", "segmentation_models"):
    sys.modules[name] = None  # any import of these now raises ImportError
import pkgutil, importlib, numpy as np
import edge_runtime
for mod in pkgutil.walk_packages(edge_runtime.__path__, "edge_runtime."):
    importlib.import_module(mod.name)
from edge_runtime.eval.metrics import ConfusionMatrix
from edge_runtime.eval.synthetic import synthetic_scene
from trainer.datasets import list_samples  # readers are TF-free too
img, mask = synthetic_scene(0, 32, 64)
cm = ConfusionMatrix(); cm.update(mask, mask)
assert cm.compute().miou8 == 1.0
bad = [m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras") and sys.modules[m] is not None]
assert not bad, bad
print("ok")
"""


def test_edge_runtime_without_tensorflow():
    r = subprocess.run([sys.executable, "-c", CODE], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().endswith("ok")
