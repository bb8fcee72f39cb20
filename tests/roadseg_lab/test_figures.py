"""docs/img's figures (issue 24): drawn in the project's palette, axes from 0
where they show fractions or sizes, no legend over the data, the hardware
named, accuracy and speed of the same file at the same size, held-out
frames spread over their sequence. Real matplotlib, the real LiteRT
interpreter with the checked-in tiny model, a tiny CamVid layout on disk."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("matplotlib")

from edge_runtime.contract.labels import CATEGORIES, PALETTE  # noqa: E402
from roadseg_lab import figures  # noqa: E402
from roadseg_lab.figures import kd_gain, kd_share, per_class, qualitative, soak_rss, speed, style  # noqa: E402
from roadseg_lab.tables import table  # noqa: E402


@pytest.fixture
def drawn(monkeypatch):
    """Every figure saved during the test, through style.save or atomic.save_figure (both still write it)."""
    from edge_runtime import atomic
    figs = []
    def keeping(save):
        def keep(fig, path, dpi=100):
            figs.append(fig)
            return save(fig, path, dpi)
        return keep
    for owner, name in ((style, "save"), (atomic, "save_figure")):
        monkeypatch.setattr(owner, name, keeping(getattr(owner, name)))
    return figs


def rgb(c) -> tuple:
    """Any matplotlib colour as an RGB tuple rounded to 3 decimals."""
    from matplotlib.colors import to_rgb
    return tuple(round(v, 3) for v in to_rgb(c))


def palette(name: str) -> tuple:
    return rgb(PALETTE[CATEGORIES.index(name)] / 255)


def legends(fig) -> list:
    return [*fig.legends, *(ax.get_legend() for ax in fig.axes if ax.get_legend())]


def _report_figure(ious, out):
    """The pretrained report's figure (it draws through the same function since issue 24)."""
    from roadseg_lab.reports.pretrained import per_class_figure
    per_class_figure(ious, "0006R0", out)
    return out


DRAWERS = {"figures": lambda ious, out: per_class.per_class_bars(ious, "t", "measured on X", out),
           "pretrained report": _report_figure}


@pytest.mark.parametrize("drawer", list(DRAWERS))
def test_per_class_bars_one_panel_per_class_in_its_colour_no_legend(drawer, tmp_path, drawn):
    ious = {"teacher (float)": dict(zip(per_class.CLASSES7, (0.97, 0.6, 0.2, 0.7, 0.8, 0.5, 0.81))),
            "s0 (float)": dict(zip(per_class.CLASSES7, (0.9, 0.5, 0.1, 0.6, 0.7, 0.2, 0.6))),
            "s0 (int8)": dict(zip(per_class.CLASSES7, (0.9, 0.5, 0.1, 0.6, 0.7, 0.2, None)))}
    page = tmp_path / "m.md"
    page.write_text("\n".join(["## x", "", *table(["model", *per_class.CLASSES7],
                                                  [[m, *(f"{v:.3f}" if v is not None else "n/a" for v in d.values())]
                                                   for m, d in ious.items()])]))
    with pytest.raises(ValueError, match="not a number"):  # an n/a cell in a page is refused, not drawn as 0
        per_class.read_per_class(page)
    out = DRAWERS[drawer](ious, tmp_path / "p.png")
    assert out.stat().st_size < style.MAX_BYTES
    fig = drawn[-1]
    assert not legends(fig)  # nothing can hide a bar (the teacher's vehicle bar was under the legend)
    for ax, cls in zip(fig.axes, per_class.CLASSES7):
        bars = ax.patches
        assert ax.get_title() == cls and ax.get_xlim()[0] == 0
        assert {rgb(b.get_facecolor()) for b in bars} == {palette(cls)}
        widths = [round(b.get_width(), 3) for b in bars]
        assert widths == [d[cls] for d in ious.values() if d[cls] is not None]  # the numbers, in order
        assert [bool(b.get_hatch()) for b in bars] == [False, False, True][:len(bars)]  # int8 hatched


def test_per_class_figures_of_the_docs_read_their_pages():
    for f in per_class.FIGURES.values():
        rows = per_class.read_per_class(f.source)
        assert "teacher (float)" in rows and any("int8" in m for m in rows)
        assert all(0 <= v <= 1 for d in rows.values() for v in d.values())


def test_kd_gain_figure_zero_line_palette_legend_outside(tmp_path, drawn):
    page = tmp_path / "g.md"
    page.write_text("\n".join(table(["student", "seed", "epoch 25", "epoch 50"],
                                    [["lite0", "0", "+2.3", "-0.5"], ["lite0", "1", "+1.0", ""],
                                     ["fast2", "0", "-5.8", "+1.5"]])))
    assert kd_gain.read_gains(page) == {("lite0", "0"): {25: 2.3, 50: -0.5}, ("lite0", "1"): {25: 1.0},
                                        ("fast2", "0"): {25: -5.8, 50: 1.5}}
    kd_gain.render(tmp_path, page)
    fig = drawn[-1]
    assert "NVIDIA H200" in fig._suptitle.get_text() and "lent" not in fig._suptitle.get_text()
    assert not any(ax.get_legend() for ax in fig.axes) and len(fig.legends) == 1  # outside the axes
    colours = {rgb(line.get_color()) for ax in fig.axes for line in ax.get_lines() if len(line.get_xdata()) > 1}
    assert colours <= {rgb(style.series_colour(i)) for i in range(8)}
    assert all(ax.get_xlim()[0] == 0 for ax in fig.axes)


def test_kd_share_figure_reads_the_page_palette_share_labels_honest_axis(tmp_path, drawn):
    """Issue 21's KD picture: one bar pair per setting and seed, the teacher as a tick, the share of the
    teacher's lead recovered written beside it, palette colours, an x axis that says where it starts."""
    page = tmp_path / "r.md"
    page.write_text("\n".join(["intro", ""] + table(["setting", "seed", "labels only", "KD", "teacher", "note"],
                                                      [["1/4, cached", "0", "0.550", "0.575", "0.650", "x"],
                                                       ["1/4, live", "1", "0.560", "0.540", "0.650", "y"]])))
    rows = kd_share.read_rows(page)
    assert [(r["setting"], r["seed"], r["kd"]) for r in rows] == [("1/4, cached", "0", 0.575), ("1/4, live", "1", 0.54)]
    (tmp_path / "s.md").write_text("\n".join(table([*kd_share.HEADER, kd_share.SHARE], [["a", "0", "0.5", "0.6", "0.7", "+47%"]])))
    assert kd_share.read_rows(tmp_path / "s.md")[0]["share"] == pytest.approx(0.47)  # the page's own share wins
    kd_share.render(tmp_path, page)
    fig = drawn[-1]
    ax = fig.axes[0]
    texts = [t.get_text() for t in ax.texts]
    assert texts == ["+25% of the lead", "-22% of the lead"]  # 0.025 / 0.100 and -0.020 / 0.090
    colours = {rgb(p.get_facecolor()) for p in ax.patches}
    assert colours <= {rgb(style.series_colour(i)) for i in range(8)} and len(colours) == 2
    lo = ax.get_xlim()[0]
    assert f"starts at {lo:.2f}" in ax.get_xlabel() and lo < 0.54
    assert "2-core CPU" in fig._suptitle.get_text() and (tmp_path / "kd-share.png").is_file()
    (tmp_path / "none.md").write_text("no table here")
    with pytest.raises(ValueError, match="no Markdown table"):
        kd_share.read_rows(tmp_path / "none.md")


def test_soak_figure_starts_at_zero_without_the_harness_run(tmp_path, drawn):
    page = tmp_path / "s.md"
    page.write_text("\n".join(["| | run 1 | goal |", "|---|---|---|", "| frames | 1 | 2 |", "",
                               *table(["", "shared client, 90 min", "new client per call (old harness), 90 min"],
                                      [[soak_rss.RSS_ROW, "126.7, 149.9, 150.2", "126.8, 170.2, 219.2"],
                                       [soak_rss.SLOPE_ROW, "0.272", "42.461"]])]))
    assert soak_rss.read_soak(page) == {"shared client, 90 min": {"rss": (126.7, 149.9, 150.2), "slope": 0.272}}
    soak_rss.render(tmp_path, page)
    ax = drawn[-1].axes[0]
    assert ax.get_ylim()[0] == 0 and max(b.get_height() for b in ax.patches) == 150.2
    assert {rgb(b.get_facecolor()) for b in ax.patches} <= {rgb(style.series_colour(i)) for i in range(3)}
    other = tmp_path / "other.md"
    other.write_text("| | a |\n|---|---|\n| x | 1 |\n")
    with pytest.raises(ValueError, match="RSS MB"):
        soak_rss.read_soak(other)


def _heldout_copy(tiny: Path, tmp_path: Path, name: str, split: str = "holdout:SEQ") -> Path:
    """The tiny model under ``name`` with its sidecar's accuracy block on ``split``."""
    out = tmp_path / f"{name}.tflite"
    shutil.copyfile(tiny, out)
    side = json.loads(tiny.with_suffix(".json").read_text())
    side["accuracy"]["split"] = split
    out.with_suffix(".json").write_text(json.dumps(side))
    return out


def test_fps_vs_miou_same_file_same_size_named_cpu(tiny_tflite, tmp_path, drawn):
    with pytest.raises(ValueError, match="no held-out int8 accuracy"):  # a val score of a model trained on val
        speed.heldout_accuracy(tiny_tflite)
    models = {"a": _heldout_copy(tiny_tflite, tmp_path, "a"), "b": _heldout_copy(tiny_tflite, tmp_path, "b")}
    bench = speed.measure(list(models.values()), threads=1, frames=6, rounds=2, frame_size=(36, 48))
    speed.render(models, bench, tmp_path, note="test")
    ax = drawn[-1].axes[0]
    assert ax.get_xlim()[0] == 0 and ax.get_ylim() == (0, 1)
    assert bench["machine"]["cpu"] in ax.get_title() and bench["machine"]["date"][:10] in ax.get_title()
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert len(texts) == 2 and all(t.strip() for t in texts)  # one entry per model, none empty
    assert all("64x128" in t and "mIoU-7 0.219" in t for t in texts)  # the file's own size and held-out score
    with pytest.raises(ValueError, match="0 results"):  # a model the report does not hold is not guessed
        speed.points({"c": _heldout_copy(tiny_tflite, tmp_path, "c")}, bench)


def _camvid(root: Path, frames: int = 9) -> Path:
    """A CamVid layout: ``frames`` frames of sequence SEQ in train/, one of OTHER in train/ and val/ each."""
    rng = np.random.default_rng(0)
    for split in ("train", "trainannot", "val", "valannot"):
        (root / split).mkdir(parents=True)
    for i, name in enumerate([f"SEQ_f{k:05d}" for k in range(frames)] + ["OTHER_f00001", "OTHER_f00002"]):
        split = "val" if name == "OTHER_f00002" else "train"
        cv2.imwrite(str(root / split / f"{name}.png"), rng.integers(0, 255, (36, 48, 3), dtype=np.uint8))
        cv2.imwrite(str(root / f"{split}annot" / f"{name}.png"), np.full((36, 48), i % 12, np.uint8))
    return root


def test_qualitative_held_out_frames_spread_with_palette_legend(tiny_tflite, tmp_path, drawn):
    data = _camvid(tmp_path / "camvid")
    out = qualitative.render(tiny_tflite, data, tmp_path, frames=3, split="holdout:SEQ")
    assert out.stat().st_size < style.MAX_BYTES
    fig = drawn[-1]
    names = [ax.get_title() for ax in fig.axes[::3]]
    assert names == ["SEQ_f00000", "SEQ_f00004", "SEQ_f00008"]  # first, middle, last: not neighbours
    assert [t.get_text() for t in fig.legends[0].get_texts()] == list(CATEGORIES)
    assert all("int8 prediction" in ax.get_title() for ax in fig.axes[2::3])
    assert "never trained on" in fig._suptitle.get_text() and "LiteRT" in fig.texts[-1].get_text()
    with pytest.raises(ValueError, match="no frames"):
        qualitative.pick([], 4)


def test_figures_command_one_line_errors(tmp_path, capsys):
    from roadseg_lab.cli import main
    assert main(["figures", "qualitative", "--out-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "needs --twin" in err and "Traceback" not in err
    assert main(["figures", "soak-rss", "--out-dir", str(tmp_path)]) == 0
    assert (tmp_path / "soak-rss.png").is_file() and figures.NAMES[-1] == "fps-vs-miou"


def test_soak_report_plot_from_zero_harness_named(tmp_path, drawn):
    from roadseg_lab.reports.soak import load_runs, plot
    from tests.roadseg_lab import artifacts
    runs = load_runs(artifacts.soak_runs(tmp_path))
    runs["arena=2, 90 min"]["http_client"] = "per-request"
    plot(runs, tmp_path / "rss.png")
    ax = drawn[-1].axes[0]
    assert ax.get_ylim()[0] == 0
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[0] == "shared client" and "test harness" in labels[1] and "not the runtime" in labels[1]
    assert [rgb(line.get_color()) for line in ax.get_lines()] == [rgb(style.series_colour(i)) for i in range(2)]
