"""Put a calibrated model inside the runtime package, with its model card.

    python -m calibration.commands.ship --model dist/shipped/shipped.tflite --twin dist/shipped/twin.tflite \
        --bench dist/shipped/bench.json [--aarch64 dist/shipped/aarch64.json] [--out edge_runtime/models]

``--model`` is the pair to ship (trained on every train and val frame);
``--twin`` the same recipe trained with the held-out sequence left out: its
sidecar's accuracy gate (scored through the LiteRT interpreter on frames
training never saw) gives the held-out numbers the card quotes. ``--bench``
is ``roadseg-bench --out`` with the shipped model and a reference model side
by side (the card quotes end-to-end FPS at each thread count). Writes, each
through a temporary name: ``roadseg-default.tflite`` and ``.json`` (the
sidecar, verified against the .tflite's sha256), ``card.json`` (every number
of the card) and ``MODEL_CARD.md``. ``results_section(card)`` renders the
same numbers for docs/RESULTS.md, so the two cannot disagree.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from edge_runtime import atomic
from edge_runtime.contract.labels import CATEGORIES

NAME = "roadseg-default"
MAX_BYTES = 10 * 1024 * 1024  # issue 21: at most 10 MB of model in the wheel
TERMS = ("CamVid (Brostow et al., \"Semantic object classes in video: A high-definition ground truth "
         "database\", Pattern Recognition Letters 2009), SegNet split, mapped to the 8 Cityscapes categories. "
         "CamVid is released for research use; so is this model.")


def _sidecar(tflite: Path) -> dict:
    from edge_runtime.contract.sidecar import read_sidecar
    meta = read_sidecar(tflite)
    if meta is None:
        raise FileNotFoundError(f"{tflite} has no sidecar {tflite.with_suffix('.json').name}")
    return meta


def _speed(bench: dict, model_path: str) -> list[dict]:
    """Rows of ``roadseg-bench`` JSON: e2e and invoke FPS of every model and thread count."""
    rows = []
    for r in bench["results"]:
        rows.append({"model": r["model"], "shipped": Path(r["path"]).resolve() == Path(model_path).resolve(),
                     "threads": r["threads"], "input": r["input"], "invoke_fps": r["invoke_fps"],
                     "e2e_fps": r["e2e_fps"], "latency_p50_ms": r["latency_ms"]["p50"]})
    return rows


def build_card(model: Path, twin: Path, bench: dict | None, aarch64: dict | None, command: str,
               speed_note: str = "", previous: dict | None = None, release: int | None = None) -> dict:
    """Every number of the model card, from the two sidecars and the benchmark;
    ``previous`` (the card.json of the model this one replaces) puts its held-out
    numbers beside the new ones, ``release`` the fleet release number it goes out as.

    Raises:
        FileNotFoundError: a sidecar is missing.
        edge_runtime.contract.sidecar.SidecarError: a sidecar does not match its .tflite.
    """
    meta, held = _sidecar(model), _sidecar(twin)
    acc = held["accuracy"]
    q = acc["quantized_metrics"]
    card = {
        "name": NAME, "source": meta["name"], "sha256": meta["sha256"], "bytes": model.stat().st_size,
        "arch": meta.get("source_arch"), "precision": meta["precision"],
        "input": f"{meta['input']['height']}x{meta['input']['width']}", "data": TERMS, "command": command,
        "heldout": {"split": acc["split"], "images": acc["images"], "twin": held["name"],
                    "float_miou7": acc["float"]["miou7"], "float_miou8": acc["float"]["miou8"],
                    "int8_miou7": acc["quantized"]["miou7"], "int8_miou8": acc["quantized"]["miou8"],
                    "drop_points_miou7": acc["drop_points_miou7"], "pixel_agreement": acc["pixel_agreement"],
                    "iou7": q["iou7"], "mdice7": q.get("mdice7")},
        "trainval_gate": {"split": meta["accuracy"]["split"], "int8_miou7": meta["accuracy"]["quantized"]["miou7"]},
        "speed": None if bench is None else {"machine": bench.get("machine", {}), "rows": _speed(bench, str(model)),
                                             "note": speed_note},
        "aarch64": aarch64,
        "release": release,
        "previous": None if previous is None else {
            "release": previous.get("release") or 0, "sha256": previous["sha256"], "input": previous["input"],
            "command": previous["command"], "int8_miou7": previous["heldout"]["int8_miou7"],
            "iou7": previous["heldout"]["iou7"]},
    }
    return card


def _f3(x) -> str:
    return "—" if x is None else f"{x:.3f}"


def _speed_ratios(rows: list[dict]) -> list[str]:
    """One line per thread count: the shipped model's end-to-end FPS over each reference's."""
    out = []
    for r in rows:
        if not r["shipped"]:
            mine = [x for x in rows if x["shipped"] and x["threads"] == r["threads"]]
            if mine:
                out.append(f"- {r['threads']} thread(s): {mine[0]['e2e_fps'] / r['e2e_fps']:.2f}x the end-to-end FPS "
                           f"of {r['model']}.")
    return out


def card_markdown(card: dict) -> str:
    """The model card as Markdown (MODEL_CARD.md)."""
    h = card["heldout"]
    rel = f" (fleet release {card['release']})" if card.get("release") is not None else ""
    lines = [f"# {card['name']}: the model roadseg runs when no --model is given{rel}", "",
             f"- File: `{card['name']}.tflite` ({card['bytes'] / 1e6:.2f} MB, {card['precision']}, uint8 RGB input "
             f"{card['input']}), sidecar `{card['name']}.json`, sha256 `{card['sha256']}`.",
             f"- Architecture: {card['arch']}.",
             f"- Data and terms: {card['data']}",
             f"- Trained by: `{card['command']}` (the shipped model on every train and val frame; its twin, by the "
             f"same recipe, with sequence 0006R0 held out).", "",
             f"## Held-out accuracy ({h['split']}, {h['images']} frames the twin never saw; int8 through LiteRT)", "",
             f"mIoU-7 (void ignored) {_f3(h['int8_miou7'])} int8, {_f3(h['float_miou7'])} float "
             f"(drop {h['drop_points_miou7']:+.2f} points, pixel agreement {100 * h['pixel_agreement']:.1f}%); "
             f"mIoU-8 {_f3(h['int8_miou8'])}.", "",
             "| " + " | ".join(h["iou7"]) + " |", "|" + "---|" * len(h["iou7"]),
             "| " + " | ".join(_f3(v) for v in h["iou7"].values()) + " |", ""]
    p = card.get("previous")
    if p:
        names = list(h["iou7"])
        lines += ["## Beside the model it replaces (the same held-out frames, int8)", "",
                  "| release | input | mIoU-7 | " + " | ".join(names) + " |", "|" + "---|" * (3 + len(names)),
                  f"| {p['release']} (sha256 {p['sha256'][:12]}) | {p['input']} | {_f3(p['int8_miou7'])} | "
                  + " | ".join(_f3(p["iou7"].get(n)) for n in names) + " |",
                  f"| {card.get('release') if card.get('release') is not None else 'this'} (this model) | "
                  f"{card['input']} | {_f3(h['int8_miou7'])} | " + " | ".join(_f3(h["iou7"][n]) for n in names)
                  + " |", "", f"The replaced model was trained by `{p['command']}`.", ""]
    if card["speed"]:
        m = card["speed"]["machine"]
        lines += [f"## Speed (roadseg-bench, end to end, interleaved rounds; {m.get('cpu', '?')}, "
                  f"{m.get('cores', '?')} cores, {m.get('date', m.get('when', '?'))})", "",
                  "| model | threads | input | e2e FPS | invoke FPS | p50 ms |", "|---|---|---|---|---|---|"]
        lines += [f"| {NAME if r['shipped'] else r['model'] + ' (reference)'} | {r['threads']} | {r['input']} | "
                  f"{r['e2e_fps']:.1f} | {r['invoke_fps']:.1f} | {r['latency_p50_ms']:.2f} |"
                  for r in card["speed"]["rows"]]
        lines += ["", *_speed_ratios(card["speed"]["rows"]), "", card["speed"].get("note") or "", ""]
    if card["aarch64"]:
        a = card["aarch64"]
        lines += [f"Under aarch64 (arm64 Debian bookworm under qemu, `scripts/test_aarch64.sh`; timings meaningless): "
                  f"argmax identical to x86's on {100 * a['agreement']:.2f}% of the pixels of {a['frames']} fixed "
                  f"frame(s), raw int8 outputs within {a.get('max_steps', '?')} quantization step(s); "
                  f"{a.get('note', '')}", ""]
    lines += ["What these numbers do not show: one held-out road sequence (CamVid 0006R0, daylight, one "
              "camera) is not every road; human and object stay weak at this input size; the speed is of this "
              "machine, not of a Raspberry Pi or a Jetson (run `roadseg-bench` there).", ""]
    return "\n".join(lines)


def results_section(card: dict) -> str:
    """The docs/RESULTS.md section of the shipped model: the card's own numbers."""
    body = card_markdown(card).split("\n", 2)[2]
    return "## The shipped model\n\n" + body.replace("\n## ", "\n### ")


def ship(model: Path, twin: Path, out: Path, bench: Path | None, aarch64: Path | None, command: str,
         speed_note: str = "", previous: Path | None = None, release: int | None = None) -> dict:
    """Copy the pair into ``out`` under the shipped name and write its card; returns the card.

    Raises:
        ValueError: the model is over 10 MB or its classes differ from the runtime's taxonomy.
        FileNotFoundError: a model or sidecar is missing.
    """
    if model.stat().st_size > MAX_BYTES:
        raise ValueError(f"{model} is {model.stat().st_size / 1e6:.1f} MB, over the 10 MB the wheel allows")
    meta = _sidecar(model)
    if [c["name"] for c in meta["classes"]] != list(CATEGORIES):
        raise ValueError(f"{model}: classes differ from the runtime's taxonomy")
    card = build_card(model, twin, json.loads(bench.read_text()) if bench else None,
                      json.loads(aarch64.read_text()) if aarch64 else None, command, speed_note,
                      json.loads(previous.read_text()) if previous else None, release)
    out.mkdir(parents=True, exist_ok=True)
    with atomic.atomic_path(out / f"{NAME}.json") as tmp_side, atomic.atomic_path(out / f"{NAME}.tflite") as tmp:
        shutil.copyfile(model, tmp)
        tmp_side.write_text(json.dumps(dict(meta, name=NAME), indent=2))
    _sidecar(out / f"{NAME}.tflite")  # the copy verifies against its sha256
    atomic.write_text(out / "card.json", json.dumps(card, indent=2))
    atomic.write_text(out / "MODEL_CARD.md", card_markdown(card))
    return card
