"""The model sidecar: one pydantic schema, its builder, its JSON Schema, and
one-line errors naming the key (issue 22 item 7, issue 25 point 4)."""
from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest

from edge_runtime.contract.sidecar import (
    SidecarError,
    build_sidecar,
    input_block,
    json_schema,
    output_block,
    read_sidecar,
    write_pair,
)

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"


def _meta() -> dict:
    return json.loads((DATA / "tiny-int8.json").read_text())


def _set(path: str, value):
    """A mutation: set ``a.b.c`` to ``value`` (``...`` deletes the key)."""
    def apply(meta):
        *parents, last = path.split(".")
        node = meta
        for p in parents:
            node = node[int(p)] if isinstance(node, list) else node[p]
        if value is ...:
            del node[last]
        else:
            node[last] = value
    return apply


# (mutation, the key the one-line error must name): wrong types, wrong values, missing and unknown keys
BROKEN = [
    (_set("classes", ["void", "flat", "construction", "object", "nature", "sky", "human", "vehicle"]), "classes.0"),
    (_set("classes.2.name", "building"), "classes"),
    (_set("classes.0.color", [0, 0]), "classes.0.color"),
    (_set("classes.0.color", [0, 0, 300]), "classes.0.color.2"),
    (_set("input.channel_order", "xyz"), "input.channel_order"),
    (_set("input.channel_order", "RGB"), "input.channel_order"),
    (_set("input.height", "128"), "input.height"),
    (_set("input.height", 64.0), "input.height"),
    (_set("input.height", True), "input.height"),
    (_set("input.width", 0), "input.width"),
    (_set("input.width", ...), "input.width"),
    (_set("input.dtype", "uint16"), "input.dtype"),
    (_set("input.resize_policy", "crop"), "input.resize_policy"),
    (_set("input.colour_order", "rgb"), "input.colour_order"),
    (_set("output.kind", "segmap"), "output.kind"),
    (_set("output.stride", "8"), "output.stride"),
    (_set("output.class_mapping", [0, 9]), "output.class_mapping.1"),
    (_set("output", ...), "output"),
    (_set("precision", "int4"), "precision"),
    (_set("sha256", "abc"), "sha256"),
    (_set("schema", "roadseg.model/2"), "schema"),
    (_set("created", "yesterday"), "created"),
    (_set("name", 7), "name"),
]


def _broken_pair(tiny_tflite, folder: Path, mutate) -> Path:
    """A copy of the tiny model with its sidecar changed by ``mutate``."""
    model = folder / "m.tflite"
    model.write_bytes(tiny_tflite.read_bytes())
    meta = _meta()
    mutate(meta)
    model.with_suffix(".json").write_text(json.dumps(meta))
    return model


@pytest.mark.parametrize("mutate,key", BROKEN, ids=[k for _, k in BROKEN])
def test_wrong_type_or_value_is_one_line_naming_the_key(mutate, key, tiny_tflite, tmp_path):
    with pytest.raises(SidecarError) as e:
        read_sidecar(_broken_pair(tiny_tflite, tmp_path, mutate))
    msg = str(e.value)
    assert "\n" not in msg and f": {key}: " in msg, msg


def test_checked_in_sidecar_is_valid_and_is_what_the_builder_makes(tiny_tflite):
    from edge_runtime.model.segmenter import DeviceSegmenter
    meta = read_sidecar(tiny_tflite)
    assert meta == _meta()
    seg = DeviceSegmenter(tiny_tflite, threads=1)
    blocks = seg.sidecar_blocks()
    assert blocks == {"input": meta["input"], "output": meta["output"]}
    built = build_sidecar(tiny_tflite.read_bytes(), name="tiny-int8", **blocks, precision="int8",
                          calibration=meta["calibration"])
    assert built["sha256"] == meta["sha256"] and built["classes"] == meta["classes"]
    assert built["categories"] == meta["categories"] and built["schema"] == "roadseg.model/1"


def test_the_sidecar_is_checked_against_the_model(tiny_tflite, tmp_path):
    """kind class_map on a logits tensor, sizes and dtypes the tensors contradict: one line naming the key."""
    from edge_runtime.model.segmenter import DeviceSegmenter
    cases = [(_set("output.kind", "class_map"), "output.kind"), (_set("input.height", 128), "input.height"),
             (_set("output.width", 32), "output.height/width"), (_set("input.dtype", "float32"), "input.dtype"),
             (_set("output.dtype", "uint8"), "output.dtype"), (_set("input.zero_point", 3), "input.zero_point"),
             (_set("output.class_mapping", [0, 1, 2]), "output.class_mapping")]
    for mutate, key in cases:
        with pytest.raises(SidecarError) as e:
            DeviceSegmenter(_broken_pair(tiny_tflite, tmp_path, mutate), threads=1)
        assert key in str(e.value) and "\n" not in str(e.value), (key, str(e.value))


def test_not_json_too_large_and_foreign_model_are_refused(tiny_tflite, tmp_path):
    model = tmp_path / "m.tflite"
    model.write_bytes(tiny_tflite.read_bytes())
    side = model.with_suffix(".json")
    side.write_text("{not json")
    with pytest.raises(SidecarError, match="is not JSON"):
        read_sidecar(model)
    side.write_text(json.dumps(_meta()) + " " * (1 << 20))
    with pytest.raises(SidecarError, match="bytes, over the"):
        read_sidecar(model)
    side.write_text(json.dumps(_meta()))
    model.write_bytes(tiny_tflite.read_bytes() + b"\0")
    with pytest.raises(SidecarError, match="does not match its sidecar"):
        read_sidecar(model)
    assert read_sidecar(model, verify=False)["name"] == "tiny-int8"
    assert read_sidecar(tmp_path / "none.tflite") is None


def test_builder_refuses_a_wrong_block_and_writes_nothing(tmp_path):
    with pytest.raises(SidecarError, match="input.channel_order"):
        input_block((64, 128), channel_order="xyz")
    with pytest.raises(SidecarError, match="output.kind"):
        output_block("segmap", (8, 16), 8, "int8")
    meta = build_sidecar(b"model", name="m", input=input_block((64, 128)),
                         output=output_block("logits", (8, 16), 8, "int8"), precision="int8")
    with pytest.raises(SidecarError, match="precision"):
        write_pair(b"model", dict(meta, precision="int4"), tmp_path / "m.tflite")
    assert list(tmp_path.iterdir()) == []
    model, side = write_pair(b"model", meta, tmp_path / "m.tflite")
    assert read_sidecar(model)["input"]["height"] == 64


def test_json_schema_is_published_and_agrees_with_the_model(tmp_path):
    r = subprocess.run([sys.executable, "-m", "edge_runtime.contract.sidecar", "--schema"], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    schema = json.loads(r.stdout)
    assert schema == json_schema()
    assert json.loads((ROOT / "docs" / "schemas" / "sidecar.json").read_text()) == schema, \
        "docs/schemas/sidecar.json is stale: python -m edge_runtime.contract.sidecar docs/schemas"
    assert set(schema["required"]) >= {"schema", "name", "classes", "input", "output", "precision", "sha256"}
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.validate(_meta(), schema)
    for mutate, key in BROKEN:
        if key in ("classes", "created", "sha256"):  # taxonomy, time and digest checks are the runtime's
            continue
        broken = copy.deepcopy(_meta())
        mutate(broken)
        if isinstance(broken["input"].get("height"), float):  # JSON Schema counts 64.0 as an integer
            continue
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(broken, schema)
    r = subprocess.run([sys.executable, "-m", "edge_runtime.contract.sidecar"], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "usage" in r.stderr


def test_roadseg_run_with_a_broken_sidecar_is_one_line_exit_2(tiny_tflite, tmp_path):
    model = _broken_pair(tiny_tflite, tmp_path, _set("classes", list(_meta()["categories"])))
    r = subprocess.run([sys.executable, "-c", "import sys; from edge_runtime.commands.launch import run; "
                        "sys.exit(run(sys.argv[1:]))", "--model", str(model), "--source", "synthetic",
                        "--max-frames", "1"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if "error" in ln]
    assert len(lines) == 1 and "classes.0" in lines[0] and "Traceback" not in r.stderr, r.stderr
