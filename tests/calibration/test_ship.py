"""calibration.ship: the shipped model's card, beside the model it replaces."""
from __future__ import annotations

import json
from pathlib import Path

from calibration.commands.ship import main as ship_main

DATA = Path(__file__).resolve().parents[1] / "data"


def test_the_card_puts_the_replaced_models_held_out_numbers_beside_the_new_ones(tmp_path):
    out0, out1 = tmp_path / "r0", tmp_path / "r1"
    model = DATA / "tiny-int8.tflite"
    assert ship_main(["--model", str(model), "--twin", str(model), "--out", str(out0), "--command", "recipe 0"]) == 0
    first = json.loads((out0 / "card.json").read_text())
    assert first["previous"] is None and "Beside the model it replaces" not in (out0 / "MODEL_CARD.md").read_text()
    assert ship_main(["--model", str(model), "--twin", str(model), "--out", str(out1), "--command", "recipe 1",
                      "--previous", str(out0 / "card.json"), "--release", "1"]) == 0
    card = json.loads((out1 / "card.json").read_text())
    md = (out1 / "MODEL_CARD.md").read_text()
    assert card["release"] == 1 and card["previous"]["release"] == 0
    assert card["previous"]["int8_miou7"] == first["heldout"]["int8_miou7"]
    assert "(fleet release 1)" in md and "## Beside the model it replaces" in md
    assert f"| 0 (sha256 {first['sha256'][:12]}) |" in md and "`recipe 0`" in md
    for name in card["heldout"]["iou7"]:
        assert name in md
