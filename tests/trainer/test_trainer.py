"""Teachers: training, resume, export contract, eval, CLI errors (tiny sizes)."""
import json

import numpy as np
import pytest

import trainer  # noqa: F401  (legacy-Keras environment first)

tf = pytest.importorskip("tensorflow")

from trainer.train import TrainConfig, train  # noqa: E402
from trainer.commands.train import main as train_main

TINY_SF = {"num_stages": 2, "hidden_dims": [16, 32], "projection": 32}


@pytest.fixture(scope="module")
def tiny_fpn_run(synth_cityscapes, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "tiny-fpn"
    # FPN on ResNet-18 (segmentation-models, legacy Keras): the same code path as FPN-EfficientNetB0, a third faster
    cfg = TrainConfig(arch="fpn-resnet18", data=str(synth_cityscapes), out=str(out),
                      size=(64, 64), epochs=1, steps_per_epoch=2, batch=2)
    train(cfg)
    return out


def test_run_directory_complete(tiny_fpn_run):
    for f in ("config.json", "history.csv", "curves.png", "metrics.json", "confusion.png",
              "samples.png", "best.weights.h5", "checkpoints/last.npz", "export/saved_model.pb"):
        assert (tiny_fpn_run / f).exists(), f
    cfg = json.loads((tiny_fpn_run / "config.json").read_text())
    assert cfg["arch"] == "fpn-resnet18" and cfg["size"] == [64, 64]
    m = json.loads((tiny_fpn_run / "metrics.json").read_text())
    assert 0 <= m["metrics"]["miou8"] <= 1 and m["timing"]["images"] == 3


def test_export_signature_and_softmax(tiny_fpn_run):
    loaded = tf.saved_model.load(str(tiny_fpn_run / "export"))
    fn = loaded.signatures["serving_default"]
    (name, spec), = fn.structured_input_signature[1].items()
    assert spec.dtype == tf.uint8 and spec.shape.as_list() == [None, 64, 64, 3]
    x = np.random.default_rng(0).integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    p = fn(**{name: tf.constant(x)})["probabilities"].numpy()
    assert p.shape == (3, 64, 64, 8)
    np.testing.assert_allclose(p.sum(-1), 1.0, atol=1e-5)
    assert (p >= 0).all()


def test_eval_equals_metrics_module(tiny_fpn_run, synth_cityscapes):
    from edge_runtime.contract.preprocessing import preprocess
    from edge_runtime.eval.metrics import ConfusionMatrix
    from trainer.datasets import list_samples, load_sample
    from trainer.evaluate import evaluate_export
    from trainer.export import ExportedModel
    fmt, samples = list_samples(synth_cityscapes, "val")
    report = evaluate_export(tiny_fpn_run / "export", samples, fmt)
    m = ExportedModel(tiny_fpn_run)
    cm = ConfusionMatrix()
    import cv2
    for s in samples:
        img, lab = load_sample(s, fmt)
        pred = np.argmax(m(preprocess(img, m.size)[None]).numpy()[0], -1).astype(np.uint8)
        cm.update(cv2.resize(pred, lab.shape[::-1], interpolation=cv2.INTER_NEAREST), lab)
    ref = cm.compute().as_dict()
    assert report["metrics"]["miou8"] == pytest.approx(ref["miou8"])
    assert report["metrics"]["miou7"] == pytest.approx(ref["miou7"])
    assert report["confusion"] == cm.matrix.tolist()


def test_training_step_lowers_loss_on_fixed_batch():
    import keras

    from edge_runtime.eval.synthetic import synthetic_scene
    from trainer.losses import make_loss
    from trainer.models import build_model
    seg = build_model("segformer-b0", (32, 32), **TINY_SF)
    imgs, labs = zip(*[synthetic_scene(i, 32, 32) for i in range(2)])
    x, y = tf.constant(np.stack(imgs)), tf.constant(np.stack(labs))
    loss_fn = make_loss("ce+dice")
    opt = keras.optimizers.Adam(3e-3)
    first = float(loss_fn(seg.model(x, training=False), y))
    for _ in range(15):
        with tf.GradientTape() as tape:
            loss = loss_fn(seg.model(x, training=True), y)
        g = tape.gradient(loss, seg.model.trainable_variables)
        opt.apply_gradients(zip(g, seg.model.trainable_variables))
    assert float(loss_fn(seg.model(x, training=False), y)) < first * 0.8


def test_segformer_predicts_2to1_frame(tmp_path):
    from trainer.export import ExportedModel, export_savedmodel, window_offsets
    from trainer.models import build_model
    assert window_offsets(64, 32) == [0, 16, 32]
    assert window_offsets(32, 32) == [0]
    seg = build_model("segformer-b0", (32, 32), **TINY_SF)
    export_savedmodel(seg, (32, 64), tmp_path / "export")
    m = ExportedModel(tmp_path / "export")
    assert m.size == (32, 64)
    p = m(np.zeros((1, 32, 64, 3), np.uint8)).numpy()
    assert p.shape == (1, 32, 64, 8)
    np.testing.assert_allclose(p.sum(-1), 1.0, atol=1e-5)
    # a window's own region matches the model run on that crop alone (no blending there)
    x = np.random.default_rng(1).integers(0, 256, (1, 32, 64, 3), dtype=np.uint8)
    full = m(x).numpy()
    left = tf.nn.softmax(seg.model(x[:, :, :32], training=False)).numpy()
    np.testing.assert_allclose(full[:, :, :16], left[:, :, :16], atol=1e-5)


@pytest.mark.slow  # 41 s (a SegFormer export): the loop's checkpoint and resume are in the default suite below
def test_checkpoint_roundtrip_and_resume(synth_cityscapes, tmp_path):
    """A SegFormer run cut off after its first epoch (its time budget) leaves a checkpoint that holds every
    weight and the step; --resume goes on from there to the end (one export, at the end)."""
    from trainer.loop import BudgetReached, Checkpointer, make_optimizer
    from trainer.models import build_model
    out = tmp_path / "r"
    base = dict(arch="segformer-b0", data=str(synth_cityscapes), out=str(out), size=(32, 64),
                steps_per_epoch=2, batch=2, model_kwargs=TINY_SF, epochs=2)
    with pytest.raises(BudgetReached):
        train(TrainConfig(time_budget_min=1e-4, **base))  # the first epoch always runs, then it stops
    assert not (out / "export").exists()
    ckpt = Checkpointer(out)
    seg = build_model("segformer-b0", (32, 32), **TINY_SF)
    opt = make_optimizer("keras3", 1e-3, 1e-4)
    opt.build(seg.model.trainable_variables)
    state = ckpt.load(seg.model, opt)
    assert state["epoch"] == 1 and state["step"] == 2
    saved = np.load(ckpt.last)
    for i, v in enumerate(seg.model.weights):
        np.testing.assert_array_equal(np.asarray(v), saved[f"w{i}"])
    # resume continues where it stopped
    train(TrainConfig(**base), resume=True)
    rows = (out / "history.csv").read_text().strip().splitlines()
    assert len(rows) == 3 and rows[1].startswith("1,") and rows[2].startswith("2,")
    assert (out / "export" / "saved_model.pb").is_file()


def test_cli_errors(synth_cityscapes, tmp_path, capsys):
    rc = train_main(["--arch", "nope", "--data", str(synth_cityscapes), "--out", str(tmp_path / "a")])
    err = capsys.readouterr().err
    assert rc != 0 and "unknown architecture 'nope'" in err and "fpn-efficientnetb0" in err
    rc = train_main(["--arch", "segformer-b0", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "b")])
    assert rc != 0 and "not found" in capsys.readouterr().err
    rc = train_main(["--arch", "segformer-b0", "--data", str(synth_cityscapes), "--out", str(tmp_path / "c"), "--resume"])
    assert rc != 0 and "no checkpoint" in capsys.readouterr().err
    blocker = tmp_path / "a-file"
    blocker.write_text("")  # --out below a regular file cannot be created, even as root
    rc = train_main(["--arch", "segformer-b0", "--data", str(synth_cityscapes), "--out", str(blocker / "x")])
    assert rc != 0 and "cannot write" in capsys.readouterr().err


def test_time_budget_stops_between_epochs_and_resume_goes_on(synth_cityscapes, tmp_path, capsys):
    """Issue 21: a long CPU run is time-budgeted: it stops before an epoch that would overrun the budget,
    keeps its checkpoint, exits 75 in one line, and --resume (with a new budget) finishes it."""
    from trainer.commands.common import EXIT_BUDGET
    from trainer.loop import BudgetReached
    from distill.distill import DistillConfig, distill  # the loop every training shares, on a light model
    out = tmp_path / "r"
    base = dict(student="roadseg-fast", no_kd=True, width=0.25, data=str(synth_cityscapes), out=str(out),
                size=(32, 64), epochs=2, steps_per_epoch=2, batch=2)
    with pytest.raises(BudgetReached, match=r"after epoch 1/2; continue with --resume"):
        distill(DistillConfig(time_budget_min=1e-4, **base))  # 6 ms: the first epoch always runs, then it stops
    assert len((out / "history.csv").read_text().strip().splitlines()) == 2 and not (out / "export").exists()
    saved = np.load(out / "checkpoints" / "last.npz")
    state = json.loads(str(saved["__state__"]))
    assert state["epoch"] == 1 and state["step"] == 2 and sum(k.startswith("w") for k in saved.files) > 10
    assert any(k.startswith("o") for k in saved.files)  # the optimizer's moments too
    distill(DistillConfig(time_budget_min=60, **base), resume=True)
    rows = (out / "history.csv").read_text().strip().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["1", "2"] and (out / "export").is_dir()
    assert EXIT_BUDGET == 75


def test_time_budget_exit_code_is_75_in_one_line(synth_cityscapes, tmp_path, capsys):
    from distill.commands.distill import main as distill_main  # the same run plumbing, a lighter model
    rc = distill_main(["--student", "roadseg-fast", "--no-kd", "--width", "0.25", "--data", str(synth_cityscapes),
                       "--out", str(tmp_path / "b"), "--size", "32x64", "--epochs", "3", "--steps-per-epoch", "1",
                       "--batch", "2", "--time-budget", "0.0001"])
    err = capsys.readouterr().err.strip().splitlines()
    stops = [ln for ln in err if "time budget" in ln]
    assert rc == 75 and len(stops) == 1 and "continue with --resume" in stops[0]
