"""Distillation losses, a distillation step with two tiny teachers, the
teacher cache's exact replay, and student conversion to int8."""
import json

import numpy as np
import pytest

import trainer  # noqa: F401

tf = pytest.importorskip("tensorflow")

from distill.losses import channel_kd, combine_teachers, pixel_kd, teacher_class_weights  # noqa: E402


def _rand_probs(shape, seed):
    x = np.random.default_rng(seed).normal(size=shape).astype(np.float32)
    return tf.nn.softmax(x, axis=-1)


@pytest.mark.parametrize("T", [1.0, 2.0, 4.0])
def test_kd_zero_when_agree_positive_otherwise(T):
    p = _rand_probs((2, 3, 4, 8), 0)
    logits = tf.math.log(p) + 5.0  # any constant shift: same distribution
    assert float(pixel_kd(logits, p, T)) == pytest.approx(0.0, abs=1e-5)
    assert float(channel_kd(tf.math.log(p), p, T)) == pytest.approx(0.0, abs=1e-5)
    other = tf.math.log(_rand_probs((2, 3, 4, 8), 1))
    assert float(pixel_kd(other, p, T)) > 1e-3
    assert float(channel_kd(other, p, T)) > 1e-3


def test_temperature_scaling_by_hand():
    # one pixel, two classes
    t = np.array([[[[0.8, 0.2]]]], np.float32)
    s = np.array([[[[1.0, 0.0]]]], np.float32)
    T = 2.0
    pt = np.exp(np.log(t) / T)
    pt /= pt.sum()
    ps = np.exp(s / T)
    ps /= ps.sum()
    expected = (pt * (np.log(pt) - np.log(ps))).sum() * T * T
    assert float(pixel_kd(tf.constant(s), tf.constant(t), T)) == pytest.approx(expected, rel=1e-5)


def test_kd_mask_excludes_pixels():
    p = _rand_probs((1, 2, 2, 8), 0)
    s = tf.math.log(_rand_probs((1, 2, 2, 8), 3))
    full = float(pixel_kd(s, p, 1.0))
    only0 = float(pixel_kd(s, p, 1.0, mask=tf.constant([[[1.0, 0.0], [0.0, 0.0]]])))
    ref = float(pixel_kd(s[:, :1, :1], p[:, :1, :1], 1.0))
    assert only0 == pytest.approx(ref, rel=1e-5) and full != pytest.approx(only0)


def test_combine_teachers_per_class_weights():
    a = tf.constant([[[[0.9, 0.1]]]])
    b = tf.constant([[[[0.1, 0.9]]]])
    np.testing.assert_allclose(combine_teachers([a, b]).numpy(), [[[[0.5, 0.5]]]], atol=1e-6)
    w = teacher_class_weights([[1.0, 0.0], [0.0, 1.0]])  # a knows class 0, b class 1
    mixed = combine_teachers([a, b], w).numpy()
    np.testing.assert_allclose(mixed, [[[[0.5, 0.5]]]], atol=1e-6)  # 0.9 and 0.9, renormalized
    w2 = teacher_class_weights([[1.0, 1.0], [0.0, 0.0]])  # only a is any good
    np.testing.assert_allclose(combine_teachers([a, b], w2).numpy(), a.numpy(), atol=1e-6)
    assert teacher_class_weights([[None], [0.5]]) == [[0.5], [0.5]]


_BACKEND_FREE = """
import json, sys
import numpy as np
from distill.losses import channel_kd, combine_teachers, pixel_kd, valid_mask_at
rng = np.random.default_rng(0)
p = rng.dirichlet(np.ones(8), size=(2, 3, 4)).astype("float32")
q = rng.dirichlet(np.ones(8), size=(2, 3, 4)).astype("float32")
s = rng.normal(size=(2, 3, 4, 8)).astype("float32")
labels = np.zeros((2, 6, 8), np.uint8); labels[:, :2] = 255
mask = valid_mask_at(labels, (3, 4))
out = {"pixel": float(pixel_kd(s, p, 2.0, mask)), "channel": float(channel_kd(s, p, 4.0)),
       "mask": np.asarray(mask).tolist(), "mix": np.asarray(combine_teachers([p, q])).sum().item(),
       "tensorflow": "tensorflow" in sys.modules}
print(json.dumps(out))
"""


def test_kd_losses_are_one_definition_for_every_backend():
    """distill.losses runs on Keras backends other than TensorFlow (the
    backend-free trainer uses it on JAX) and gives TensorFlow's numbers."""
    import os
    import subprocess
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parents[2]
    pytest.importorskip("jax")
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(root)}
    r = subprocess.run([sys.executable, "-c", _BACKEND_FREE], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    other = json.loads(r.stdout.strip().splitlines()[-1])
    assert other["tensorflow"] is False
    ns: dict = {}
    exec(_BACKEND_FREE.replace("print(json.dumps(out))", ""), ns)
    here = ns["out"]
    assert other["pixel"] == pytest.approx(here["pixel"], rel=1e-5) and here["pixel"] > 0
    assert other["channel"] == pytest.approx(here["channel"], rel=1e-5) and here["channel"] > 0
    assert other["mask"] == here["mask"]
    assert np.asarray(here["mask"])[:, 0].sum() == 0 and np.asarray(here["mask"])[:, 1:].min() == 1
    assert other["mix"] == pytest.approx(2 * 3 * 4, rel=1e-5)


@pytest.fixture(scope="module")
def two_teachers(tmp_path_factory):
    from trainer.export import export_savedmodel
    from trainer.models import build_model
    root = tmp_path_factory.mktemp("teachers")
    a = build_model("segformer-b0", (32, 32), num_stages=2, hidden_dims=[16, 32], projection=32)
    export_savedmodel(a, (64, 128), root / "sf" / "export")
    b = build_model("unet-resnet18", (64, 128))
    export_savedmodel(b, (64, 128), root / "unet" / "export")
    return [root / "sf", root / "unet"]


def test_distill_online_from_one_teacher(synth_cityscapes, tmp_path):
    """The KD loop with a teacher run online on each batch (the default suite's
    KD path; the cached one is the slow test below)."""
    import csv

    from distill.distill import DistillConfig, distill
    from trainer.export import export_savedmodel
    from trainer.models import build_model
    t = build_model("segformer-b0", (32, 32), num_stages=2, hidden_dims=[16, 32], projection=32)
    export_savedmodel(t, (64, 128), tmp_path / "sf" / "export")
    cfg = DistillConfig(student="roadseg-fast", width=0.25, data=str(synth_cityscapes), out=str(tmp_path / "st"),
                        teacher=[str(tmp_path / "sf")], size=(64, 128), epochs=1, steps_per_epoch=2, batch=2, cwd=0.5,
                        cutmix=1.0, kd_stride=4)
    out = distill(cfg)
    rows = list(csv.DictReader((out / "history.csv").open()))
    assert len(rows) == 1 and np.isfinite(float(rows[0]["loss"])) and float(rows[0]["loss"]) > 0
    meta = json.loads((out / "export" / "roadseg.json").read_text())
    assert meta["output_stride"] == 8 and len(meta["teachers"]) == 1


@pytest.mark.slow  # ~3 minutes: two teachers, a cache and two students
def test_distill_with_two_teachers_cache_replays_views(two_teachers, synth_cityscapes, tmp_path):
    from distill.distill import DistillConfig, Teachers, distill
    from trainer.datasets import list_samples
    from trainer.pipeline import AugmentConfig, DecodedSplit
    cache = tmp_path / "cache"
    cfg = DistillConfig(student="lraspp-mobilenetv3-small", data=str(synth_cityscapes), out=str(tmp_path / "st"),
                        teacher=[str(t) for t in two_teachers], size=(64, 128), epochs=1, steps_per_epoch=2,
                        batch=2, teacher_cache=str(cache), cache_views=2, cwd=1.0)
    out = distill(cfg)
    for f in ("config.json", "history.csv", "metrics.json", "export/saved_model.pb", "curves.png"):
        assert (out / f).exists(), f
    meta = json.loads((out / "export" / "roadseg.json").read_text())
    assert "logits" in meta["signatures"] and meta["output_stride"] == 8
    views = np.load(cache / "views.npy")
    assert views.shape == (2, 6, 16, 32, 8)  # at 1/4 of the frame (--kd-stride 4)
    np.testing.assert_allclose(views.astype(np.float32).sum(-1), 1.0, atol=1e-2)
    # the cache holds exactly what the teachers say on that view's augmented images
    teachers = Teachers(cfg.teacher)
    fmt, samples = list_samples(synth_cityscapes, "train")
    split = DecodedSplit(samples, fmt)
    images, _, idx = next(iter(split.views(1, (64, 128), (64, 128), 3, seed=0, shuffle=True,
                                           augment_cfg=AugmentConfig())))
    online = teachers.probs(images, (16, 32)).numpy()
    np.testing.assert_allclose(views[1, idx.numpy()].astype(np.float32), online, atol=2e-3)
    # a second run with the same teachers reuses the cache
    mtime = (cache / "views.npy").stat().st_mtime
    cfg.out = str(tmp_path / "st2")
    distill(cfg)
    assert (cache / "views.npy").stat().st_mtime == mtime


def test_distill_cli_errors(synth_cityscapes, tmp_path, capsys):
    from distill.commands.distill import main
    assert main(["--student", "nope", "--data", str(synth_cityscapes), "--out", str(tmp_path / "a"), "--no-kd"]) == 2
    assert "roadseg-fast" in capsys.readouterr().err
    assert main(["--student", "roadseg-fast", "--data", str(synth_cityscapes), "--out", str(tmp_path / "b")]) == 2
    assert "--teacher" in capsys.readouterr().err
    assert main(["--student", "roadseg-fast", "--teacher", str(tmp_path / "none"), "--data", str(synth_cityscapes),
                 "--out", str(tmp_path / "c")]) == 2
    assert "no SavedModel export" in capsys.readouterr().err
    # a student's builder arguments are checked before a run directory is made
    assert main(["--student", "roadseg-fast", "--encoder-weights", "imagenet", "--no-kd", "--data",
                 str(synth_cityscapes), "--out", str(tmp_path / "d")]) == 2
    assert "applies to the EfficientNet-Lite students, not roadseg-fast" in capsys.readouterr().err
    assert main(["--student", "lraspp-efficientnet-lite0", "--width", "2", "--no-kd", "--data",
                 str(synth_cityscapes), "--out", str(tmp_path / "e")]) == 2
    assert "fixed width" in capsys.readouterr().err
    assert not (tmp_path / "d").exists() and not (tmp_path / "e").exists()


def test_students_registry_and_output_stride():
    from distill.students import STUDENTS, build_student, count_macs
    assert {"lraspp-mobilenetv3-small", "lraspp-mobilenetv3-large", "roadseg-fast"} <= set(STUDENTS)
    with pytest.raises(ValueError, match="valid: .*roadseg-fast"):
        build_student("nope")
    s = build_student("roadseg-fast", width=0.5)
    assert s.model(np.zeros((1, 64, 96, 3), np.uint8)).shape == (1, 8, 12, 8)
    assert count_macs(s.model, (64, 96)) > 0
    assert count_macs(build_student("roadseg-fast", width=1.0).model, (64, 96)) > count_macs(s.model, (64, 96))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["lraspp-mobilenetv3-small", "lraspp-mobilenetv3-large", "roadseg-fast",
                                  "lraspp-efficientnet-lite0-s4"])
def test_every_student_converts_to_full_int8(name, tmp_path):
    import dataclasses

    from calibration.convert import convert, tensor_report
    from distill.students import build_student
    from edge_runtime.eval.synthetic import synthetic_scene
    from trainer.export import export_savedmodel
    st = build_student(name)
    export_savedmodel(dataclasses.replace(st, input_size=(64, 128)), (64, 128), tmp_path / "export")
    frames = lambda: (synthetic_scene(i, 64, 128)[0].astype(np.float32)[None] for i in range(4))  # noqa: E731
    tfl, kind = convert(tmp_path / "export", (64, 128), "int8", frames)
    rep = tensor_report(tfl)
    assert kind == "logits" and rep["input"]["dtype"] == "uint8" and rep["output"]["dtype"] == "int8"
    assert rep["float_ops"] == [], rep


def test_teacher_test_time_augmentation(tiny_student_run):
    """Issue 21: one teacher object combines models and test-time views. A flip view is the mirrored
    prediction of the mirrored image, averaged with the plain one; scales go through the size-agnostic
    signature; every result is a distribution per pixel; bad TTA items are one-line errors."""
    import tensorflow as tf

    from distill.distill import Teachers, parse_tta
    rng = np.random.default_rng(0)
    images = tf.constant(rng.integers(0, 256, (2, 64, 128, 3), dtype=np.uint8))
    plain = Teachers([str(tiny_student_run)], "mean").probs(images, (16, 32)).numpy()
    flipped = Teachers([str(tiny_student_run)], "mean", "flip")
    got = flipped.probs(images, (16, 32)).numpy()
    m = flipped.models[0]
    mirror = tf.image.flip_left_right(tf.image.resize(m(tf.image.flip_left_right(images)), (16, 32), method="area"))
    np.testing.assert_allclose(got, (plain + mirror.numpy()) / 2, atol=1e-5)
    assert not np.allclose(got, plain, atol=1e-4)  # the flip view changed something on random images
    multi = Teachers([str(tiny_student_run)], "mean", "flip,0.75,1.25").probs(images, (16, 32)).numpy()
    np.testing.assert_allclose(multi.sum(-1), 1.0, atol=1e-4)
    assert flipped.describe()[0]["flip"] is True
    assert parse_tta("flip, 0.5,1,0.5") == (True, (0.5,))
    for bad, msg in (("mirror", "use flip or a scale"), ("9", "outside 0.25..4")):
        with pytest.raises(ValueError, match=msg):
            parse_tta(bad)


def test_kd_term_at_the_upsampled_output_includes_void():
    """Issue 21: with --kd-stride 4 the KD term is KL at 1/4 of the frame against the student's 1/8
    logits upsampled bilinearly; void pixels (category 0) count, padding (IGNORE_INDEX) does not."""
    from distill.distill import DistillConfig, kd_step_loss
    from distill.students import build_student
    from edge_runtime.contract.labels import IGNORE_INDEX
    from trainer.losses import make_loss
    st = build_student("roadseg-fast", width=0.25)
    rng = np.random.default_rng(0)
    x = tf.constant(rng.integers(0, 256, (2, 64, 96, 3), dtype=np.uint8))
    y = np.zeros((2, 64, 96), np.uint8)                  # all void ...
    y[:, :, 48:] = IGNORE_INDEX                          # ... but the right half is padding
    t = _rand_probs((2, 16, 24, 8), 1)
    logits = st.model(x, training=False)
    up = tf.image.resize(logits, (16, 24), method="bilinear")
    mask = np.zeros((2, 16, 24), np.float32)
    mask[:, :, :12] = 1
    for stride, expect_grid in ((4, up), (8, logits)):
        cfg = DistillConfig(student="roadseg-fast", data="-", out="-", teacher=["-"], kd_stride=stride,
                            temperature=2.0, alpha=1.0)
        size = (64 // stride, 96 // stride)
        tt = t if stride == 4 else tf.image.resize(t, size, method="area")
        m = mask if stride == 4 else mask[:, ::2, ::2]
        got = float(kd_step_loss(cfg, object(), True, size)(st.model, (x, tf.constant(y), tt), False))
        want = float(make_loss(cfg.loss)(logits, tf.constant(y)) + pixel_kd(expect_grid, tt, 2.0, m))
        assert got == pytest.approx(want, rel=1e-4)
    # void counts: a mask that left it out would give 0 KD on these all-void labels
    assert float(pixel_kd(up, t, 2.0, mask)) > 0


def test_cutmix_batches_are_the_same_with_and_without_kd(synth_cityscapes):
    """The labels-only twin sees exactly the KD run's mixed batches (seeded by seed, epoch, batch);
    a share of 0 mixes nothing, 1 every batch; with a cache the teacher targets move with the pixels."""
    from distill.distill import DistillConfig, student_batches
    from trainer.datasets import list_samples
    from trainer.pipeline import AugmentConfig, DecodedSplit
    fmt, samples = list_samples(synth_cityscapes, "train")
    split = DecodedSplit(samples, fmt)

    def first(cfg, cache=None, out_size=(16, 32)):
        return next(iter(student_batches(split, cfg, AugmentConfig(), cache, out_size)(1)))

    base = dict(student="roadseg-fast", data="-", out="-", size=(64, 128), batch=3, seed=4)
    plain = first(DistillConfig(**base, no_kd=True))
    kd = first(DistillConfig(**base, teacher=["-"], cutmix=1.0))
    twin = first(DistillConfig(**base, no_kd=True, cutmix=1.0))
    none = first(DistillConfig(**base, no_kd=True, cutmix=0.0))
    np.testing.assert_array_equal(kd[0].numpy(), twin[0].numpy())
    np.testing.assert_array_equal(kd[1].numpy(), twin[1].numpy())
    np.testing.assert_array_equal(none[0].numpy(), plain[0].numpy())
    assert not np.array_equal(twin[0].numpy(), plain[0].numpy())
    # cached targets: a cache whose every cell holds its frame's index moves with the pasted pixels
    n = len(samples)
    cache = np.broadcast_to(np.arange(n, dtype=np.float16)[None, :, None, None, None], (4, n, 16, 32, 8))
    cached = first(DistillConfig(**base, teacher=["-"], cutmix=1.0, cache_views=4), cache)
    idx = first(DistillConfig(**base, no_kd=True))[2].numpy()
    np.testing.assert_array_equal(cached[0].numpy(), kd[0].numpy())
    src = cached[2].numpy()[..., 0].astype(int)
    assert set(np.unique(src[0])) <= {idx[0], idx[1]} and len(np.unique(src[0])) == 2


def test_stride4_student_doubles_the_output_grid():
    """Issue 21 item 3: the Lite0 student with a stride-4 skip returns logits at 1/4, costs more MACs
    than the 1/8 one, and records its stride for the export."""
    from distill.students import build_student, count_macs
    s8 = build_student("lraspp-efficientnet-lite0", encoder_weights="none")
    s4 = build_student("lraspp-efficientnet-lite0-s4", encoder_weights="none")
    x = np.zeros((1, 64, 96, 3), np.uint8)
    assert s8.model(x).shape == (1, 8, 12, 8) and s8.output_stride == 8
    assert s4.model(x).shape == (1, 16, 24, 8) and s4.output_stride == 4
    assert count_macs(s4.model, (64, 96)) > count_macs(s8.model, (64, 96))


def test_distill_cli_refuses_bad_kd_grid_and_cutmix_share(synth_cityscapes, tmp_path, capsys):
    from distill.commands.distill import main
    common = ["--student", "roadseg-fast", "--no-kd", "--data", str(synth_cityscapes)]
    assert main(common + ["--out", str(tmp_path / "a"), "--cutmix", "1.5"]) == 2
    assert "--cutmix is a share of batches" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(common + ["--out", str(tmp_path / "b"), "--kd-stride", "3"])
    assert e.value.code == 2 and "--kd-stride: invalid choice" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_resumed_run_keeps_the_kd_grid_it_started_with(tmp_path):
    """A run whose config.json predates --kd-stride and --cutmix resumes with what it ran with (the
    student's 1/8 grid, no CutMix), not today's defaults; a new run gets the defaults."""
    import argparse

    from distill.commands.distill import add_arguments
    from distill.distill import DistillConfig
    from trainer.commands.common import add_run_arguments, config_from_args
    run = tmp_path / "old"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"student": "roadseg-fast", "data": "d", "out": str(run),
                                                 "teacher": ["t"], "size": [64, 128]}))
    p = argparse.ArgumentParser()
    add_run_arguments(p)
    add_arguments(p)
    old = config_from_args(p.parse_args(["--out", str(run), "--resume"]), DistillConfig, ("student",))
    assert (old.kd_stride, old.cutmix) == (8, 0.0)
    given = config_from_args(p.parse_args(["--out", str(run), "--resume", "--kd-stride", "2"]), DistillConfig, ())
    assert given.kd_stride == 2
    new = config_from_args(p.parse_args(["--out", str(tmp_path / "new"), "--student", "roadseg-fast", "--data", "d"]),
                           DistillConfig, ("student",))
    assert (new.kd_stride, new.cutmix) == (4, 0.0)


@pytest.mark.parametrize("kd_stride", [16, 32])
def test_kd_on_a_coarser_grid_reaches_every_logit(kd_stride):
    """A KD grid coarser than the student's output averages its logits (area), so each one gets a gradient."""
    from distill.distill import DistillConfig, kd_step_loss
    from distill.students import build_student
    st = build_student("roadseg-fast", width=0.25)
    x = tf.constant(np.random.default_rng(0).integers(0, 256, (1, 64, 128, 3), dtype=np.uint8))
    size = (64 // kd_stride, 128 // kd_stride)
    logits_var = tf.Variable(st.model(x, training=False))

    class Fixed:  # the student's logits as a variable, to read their gradient
        def __call__(self, images, training=False):
            return logits_var
    batch = (x, tf.zeros((1, 64, 128), tf.uint8), _rand_probs((1, *size, 8), 2))
    grads = []
    for alpha in (1.0, 0.0):  # the labels' gradient is the same in both: the difference is the KD term's
        cfg = DistillConfig(student="roadseg-fast", data="-", out="-", teacher=["-"], kd_stride=kd_stride,
                            alpha=alpha)
        with tf.GradientTape() as tape:
            total = kd_step_loss(cfg, object(), True, size)(Fixed(), batch, True)
        grads.append(tape.gradient(total, logits_var).numpy())
    kd_only = np.abs(grads[0] - grads[1]).sum(-1)
    assert (kd_only > 0).all()


def test_cutmix_needs_two_frames_per_batch(synth_cityscapes, tmp_path):
    from distill.distill import DistillConfig, check_config
    cfg = DistillConfig(student="roadseg-fast", data=str(synth_cityscapes), out=str(tmp_path / "a"), no_kd=True,
                        batch=1, cutmix=0.5)
    with pytest.raises(ValueError, match="needs --batch 2 or more"):
        check_config(cfg)


def test_import_script_quotes_names_and_finds_weights_beside_itself(tmp_path):
    """scripts/gpu_session.sh's import.sh: every name is quoted (a folder named like a command substitution
    runs nothing), and weights are found relative to the script, wherever the session folder went."""
    import os
    import subprocess

    from distill.commands.keras_backend import write_imports
    session = tmp_path / "s"
    for d, arch in (("teacher", "fpn-efficientnet-lite2"), ("students/x$(touch PWNED) y", "roadseg-fast")):
        (session / d).mkdir(parents=True)
        (session / d / "weights-0.npz").write_bytes(b"")
        (session / d / "train_log.json").write_text(json.dumps({"weight_files": ["weights-0.npz"],
                                                                "args": {"arch": arch, "width": 2.0}}))
    write_imports(session, (64, 128), "fpn-efficientnet-lite2", "0006R0")
    moved = tmp_path / "elsewhere"
    session.rename(moved)
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    for tool in ("roadseg-train", "roadseg-distill"):  # print the arguments each import line would run with
        (fake_bin / tool).write_text('#!/bin/sh\nfor a in "$@"; do printf "%s\\n" "$a"; done; echo ---\n')
        (fake_bin / tool).chmod(0o755)
    r = subprocess.run(["bash", str(moved / "import.sh"), "DATA", str(tmp_path / "runs")], capture_output=True,
                       text=True, cwd=tmp_path, env=dict(os.environ, PATH=f"{fake_bin}:{os.environ['PATH']}"))
    assert r.returncode == 0, r.stderr
    assert not (tmp_path / "PWNED").exists()
    args = r.stdout.split("---\n")
    assert str(moved / "teacher" / "weights-0.npz") in args[0].splitlines()
    assert str(moved / "students" / "x$(touch PWNED) y" / "weights-0.npz") in args[1].splitlines()
    assert str(tmp_path / "runs" / "x$(touch PWNED) y") in args[1].splitlines() and "2" in args[1].splitlines()


def test_teacher_cache_is_bounded_in_bytes(tiny_student_run, synth_cityscapes, tmp_path):
    """The cache grows as views x frames x KD-grid cells (x16 from 1/4 to 1/1): over --cache-max-mb it is
    refused in one line naming the size, before anything is written."""
    from distill.distill import DistillConfig, Teachers, build_teacher_cache
    from trainer.datasets import list_samples
    from trainer.pipeline import AugmentConfig, DecodedSplit
    fmt, samples = list_samples(synth_cityscapes, "train")
    cfg = DistillConfig(student="roadseg-fast", data="-", out="-", teacher=[str(tiny_student_run)], size=(64, 128),
                        cache_views=4, kd_stride=1, cache_max_mb=0.5)
    with pytest.raises(ValueError, match=r"would take \d+ MiB .* over --cache-max-mb 0.5"):
        build_teacher_cache(tmp_path / "c", DecodedSplit(samples, fmt), Teachers(cfg.teacher), cfg, cfg.size, (64, 128),
                            AugmentConfig())
    assert not (tmp_path / "c").exists()


def test_kd_stride_choices_are_the_losses_one_list():
    """--kd-stride's choices are written out in the command (its --help imports no TensorFlow); they must be
    distill.losses.KD_STRIDES, which both trainers check against."""
    import argparse

    from distill.commands.distill import add_arguments
    from distill.losses import KD_STRIDES
    p = argparse.ArgumentParser()
    add_arguments(p)
    assert tuple(next(a for a in p._actions if a.dest == "kd_stride").choices) == KD_STRIDES
