"""The benchmark on a tiny model: every field present and sane, no timing thresholds."""
import json

from edge_runtime.commands.bench import main


def test_bench_json_fields(tiny_tflite, synth_cityscapes, tmp_path, capsys):
    out = tmp_path / "b.json"
    md = tmp_path / "b.md"
    png = tmp_path / "b.png"
    rc = main(["--model", str(tiny_tflite), "--threads", "1,2", "--frames", "20", "--warmup", "3", "--rounds", "2",
               "--frame-size", "120x160", "--data", str(synth_cityscapes), "--json", str(out),
               "--markdown", str(md), "--plot", str(png)])
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
    assert md.read_text().startswith("| model |") and png.stat().st_size > 0


def test_bench_bad_model(tmp_path, capsys):
    assert main(["--model", str(tmp_path / "none.tflite"), "--frames", "5"]) == 2
    assert "model not found" in capsys.readouterr().err
