"""The model shipped inside the runtime package: used when no ``--model`` is given.

The pair ``roadseg-default.tflite`` + ``roadseg-default.json`` (the sidecar) and
its model card ``MODEL_CARD.md`` are package data, written by
``python -m calibration.commands.ship`` from a run of ``scripts/train_shipped.sh``
(the project's own commands; never edited by hand). The card's numbers live in
``card.json`` beside it, the same numbers docs/RESULTS.md quotes.

CamVid, which trained it, is released for research use (Brostow et al., PRL
2009): so is this model.
"""
from __future__ import annotations

import json
from pathlib import Path

#: the folder that holds the shipped pair inside the installed package
HERE = Path(__file__).resolve().parent
NAME = "roadseg-default"


class NoShippedModel(FileNotFoundError):
    """The package was built without its model (e.g. a source tree before ``calibration.ship`` ran)."""


def default_model() -> Path:
    """Path of the shipped ``.tflite`` (its sidecar lies beside it).

    Raises:
        NoShippedModel: the ``.tflite`` or its sidecar is missing from the package.
    """
    model = HERE / f"{NAME}.tflite"
    if not model.is_file() or not model.with_suffix(".json").is_file():
        raise NoShippedModel(f"no shipped model in {HERE} (expected {model.name} and {NAME}.json): "
                             "give --model PATH.tflite")
    return model


def card() -> dict:
    """The shipped model's card numbers (``card.json``): held-out scores, speed, commands.

    Raises:
        NoShippedModel: ``card.json`` is missing.
        ValueError: ``card.json`` is not JSON.
    """
    p = HERE / "card.json"
    if not p.is_file():
        raise NoShippedModel(f"no card.json in {HERE}")
    return json.loads(p.read_text())
