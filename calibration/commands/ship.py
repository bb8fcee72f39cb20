"""``python -m calibration.commands.ship``: put a calibrated model inside the
runtime package with its model card (:func:`calibration.ship.ship`).

    python -m calibration.commands.ship --model dist/shipped/shipped.tflite --twin dist/shipped/twin.tflite \
        --bench dist/shipped/bench.json [--aarch64 dist/shipped/aarch64.json] [--out edge_runtime/models]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edge_runtime import atomic
from edge_runtime.commands import cli

PROG = "python -m calibration.commands.ship"


def build_parser() -> argparse.ArgumentParser:
    """The parser of the ship command."""
    from calibration import ship
    p = cli.parser(PROG, ship.__doc__)
    p.add_argument("--model", required=True, type=Path, help="the calibrated .tflite to ship (sidecar beside it)")
    p.add_argument("--twin", required=True, type=Path, help="the same recipe with the held-out sequence left out")
    p.add_argument("--bench", type=Path, help="roadseg-bench --out JSON with the shipped model and a reference")
    p.add_argument("--aarch64", type=Path, help="JSON {agreement, frames} from the aarch64 check")
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[2] / "edge_runtime" / "models")
    p.add_argument("--command", default="scripts/train_shipped.sh CAMVID_DIR", help="the command that trained it")
    p.add_argument("--results", type=Path, help="also print the docs/RESULTS.md section to this file")
    p.add_argument("--speed-note", default="", help="a sentence on how the speed was measured (load, reference)")
    p.add_argument("--previous", type=Path, help="card.json of the model this one replaces (its held-out numbers "
                                                 "go beside the new ones)")
    p.add_argument("--release", type=int, help="the fleet release number this model goes out as")
    return p


def main(argv: list[str] | None = None) -> int:
    """Ship the model; exit 0, or 2 with one line."""
    from calibration.ship import NAME, results_section, ship
    args = build_parser().parse_args(argv)

    def body():
        card = ship(args.model, args.twin, args.out, args.bench, args.aarch64, args.command, args.speed_note,
                    args.previous, args.release)
        if args.results:
            atomic.write_text(args.results, results_section(card))
        print(f"shipped {args.model} as {args.out / NAME}.tflite (held-out int8 mIoU-7 "
              f"{card['heldout']['int8_miou7']:.3f})")

    return cli.run(PROG, body)


if __name__ == "__main__":
    sys.exit(main())
