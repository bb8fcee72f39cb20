"""The benchmark on a tiny model: every field present and sane, no timing thresholds."""
import importlib.util
import json

import pytest

from edge_runtime.commands.bench import main


def test_bench_json_fields(tiny_tflite, synth_cityscapes, tmp_path, capsys):
    out = tmp_path / "b.json"
    md = tmp_path / "b.md"
    png = tmp_path / "b.png"
    plot = ["--plot", str(png)] if importlib.util.find_spec("matplotlib") else []  # the plot extra
    rc = main(["--model", str(tiny_tflite), "--threads", "1,2", "--frames", "20", "--warmup", "3", "--rounds", "2",
               "--frame-size", "120x160", "--data", str(synth_cityscapes), "--json", str(out),
               "--markdown", str(md), *plot])
    assert rc == 0
    table = capsys.readouterr().out
    assert "e2e FPS" in table and "tiny" in table
    rep = json.loads(out.read_text())
    assert rep["machine"]["cores"] >= 1 and rep["machine"]["interpreter"] and rep["machine"]["date"]
    assert len(rep["results"]) == 2
    for r in rep["results"]:
        lat = r["latency_ms"]
        assert 0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"]
        assert r["invoke_fps"] > 0 and r["e2e_fps"] > 0 and r["frames"] == 20
        assert r["overhead"] < 1 and r["cpu_utilisation"] > 0 and r["size_mb"] > 0
        assert r["precision"] == "int8" and r["input"] == "64x128" and 0 <= r["miou8"] <= 1
    assert {r["threads"] for r in rep["results"]} == {1, 2}
    assert rep["peak_rss_mb"] > 0
    assert md.read_text().startswith("| model |") and (not plot or png.stat().st_size > 0)


def test_bench_bad_model(tmp_path, capsys):
    assert main(["--model", str(tmp_path / "none.tflite"), "--frames", "5"]) == 2
    assert "model not found" in capsys.readouterr().err


def _video(path, n=12, h=96, w=160):
    import cv2
    import numpy as np
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (w, h))
    for i in range(n):
        out.write(np.full((h, w, 3), 10 * i, np.uint8))
    out.release()
    return path


def test_overhead_comes_with_its_noise_and_a_file_with_its_own_size(tiny_tflite, tmp_path, capsys):
    video = _video(tmp_path / "street.avi")
    rc = main(["--model", str(tiny_tflite), "--threads", "1", "--frames", "12", "--warmup", "2", "--rounds", "3",
               "--source", str(video), "--json"])
    assert rc == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["settings"]["frame_size"] == [96, 160]  # what the file holds, not --frame-size's default
    r = rep["results"][0]
    assert r["rounds"] == 3 and r["overhead_sd"] is not None and r["overhead_sd"] >= 0
    from edge_runtime.eval.bench import format_markdown, format_table
    assert "±" in format_table(rep) and "96x160" in format_table(rep) and "±" in format_markdown(rep)


def test_plot_without_matplotlib_is_one_line_before_measuring(tiny_tflite, synth_cityscapes, tmp_path):
    import subprocess
    import sys
    from pathlib import Path
    code = ("import sys; sys.modules['matplotlib'] = None\n"
            "from edge_runtime.commands.bench import main; sys.exit(main(sys.argv[1:]))")
    r = subprocess.run([sys.executable, "-c", code,
                        "--model", str(tiny_tflite), "--frames", "4", "--data", str(synth_cityscapes),
                        "--plot", str(tmp_path / "p.png")], cwd=Path(__file__).resolve().parents[2],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stdout == "", r.stdout  # refused before measuring: no table
    errors = [ln for ln in r.stderr.splitlines() if "error" in ln]
    assert len(errors) == 1 and 'pip install "roadseg[plot]"' in errors[0] and "Traceback" not in r.stderr


def _report(points):
    return {"machine": {"cpu": "Test CPU", "cores": 2},
            "settings": {"frame_size": [480, 640], "split": "val"},
            "results": [{"model": m, "threads": t, "e2e_fps": f, "miou8": a} for m, t, f, a in points]}


def test_plot_axes_start_at_zero_and_the_legend_has_no_empty_entry(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")  # the plot extra
    from edge_runtime.eval import bench
    figures = []
    monkeypatch.setattr(bench, "save_figure", lambda fig, out, dpi=None: figures.append(fig))
    bench.plot_pareto(_report([("a", 1, 30.0, 0.046), ("b", 1, 20.0, 0.049)]), str(tmp_path / "p.png"))
    ax = figures[-1].axes[0]
    assert ax.get_ylim() == (0, 1) and ax.get_xlim()[0] == 0  # 0.046 vs 0.049 is not drawn as a gulf
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "Pareto front" in labels and "1 thread" in labels
    assert "Test CPU" in ax.get_title() and "480x640" in ax.get_xlabel()
    bench.plot_pareto(_report([("a", 1, 30.0, 0.05), ("b", 2, 20.0, 0.04)]), str(tmp_path / "q.png"))
    labels = [t.get_text() for t in figures[-1].axes[0].get_legend().get_texts()]
    assert "Pareto front" not in labels and labels == ["1 thread", "2 threads"]  # one point is no front


def test_bench_without_model_uses_the_shipped_one(capsys):
    import pytest

    from edge_runtime.commands import cli
    try:
        shipped = cli.shipped_model()
    except (ValueError, FileNotFoundError):
        pytest.skip("no shipped model in this checkout")
    assert main(["--frames", "2", "--warmup", "1", "--rounds", "1", "--frame-size", "120x160", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["results"][0]["path"] == shipped
