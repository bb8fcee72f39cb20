"""roadseg-data: dataset statistics, preview grids and synthetic scenes.

    roadseg-data stats --data PATH --split val [--format auto] [--json]
    roadseg-data preview --data PATH --split val --out preview.png [--count 8]
    roadseg-data synth --out DIR [--layout cityscapes|camvid] [--train 48 --val 12] [--size 256x512]
"""
from __future__ import annotations

import argparse
import json
import logging
import sys

from edge_runtime.commands import cli
from edge_runtime.contract.preprocessing import parse_size

log = logging.getLogger("roadseg.data")


def build_parser() -> argparse.ArgumentParser:
    """``roadseg-data``'s parser: the ``stats``, ``preview`` and ``synth`` subcommands."""
    p = cli.parser("roadseg-data", __doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    st = sub.add_parser("stats", help="per-category pixel counts over a split", allow_abbrev=False)
    pv = sub.add_parser("preview", help="PNG grid of images with colour-coded masks", allow_abbrev=False)
    for sp in (st, pv):
        sp.add_argument("--data", required=True, help="dataset root")
        sp.add_argument("--split", default="train")
        sp.add_argument("--format", default="auto", choices=["auto", "cityscapes", "camvid"])
    st.add_argument("--json", action="store_true", help="print exactly one JSON object")
    pv.add_argument("--out", required=True)
    pv.add_argument("--count", type=int, default=8)
    sy = sub.add_parser("synth", help="write synthetic street scenes in a dataset layout", allow_abbrev=False)
    sy.add_argument("--out", required=True)
    sy.add_argument("--layout", default="cityscapes", choices=["cityscapes", "camvid"])
    sy.add_argument("--train", type=int, default=48)
    sy.add_argument("--val", type=int, default=12)
    sy.add_argument("--size", type=parse_size, default=(256, 512), help="HEIGHTxWIDTH")
    sy.add_argument("--seed", type=int, default=0)
    return p


def print_stats(stats: dict) -> None:
    """The ``stats`` table: pixels and fraction per category."""
    total = sum(stats["pixels"].values()) or 1
    print(f"{stats['format']} {stats['split']}: {stats['images']} images, {total} pixels")
    print(f"{'category':<14}{'pixels':>14}{'fraction':>10}")
    for c, n in stats["pixels"].items():
        print(f"{c:<14}{n:>14}{n / total:>10.4f}")


def main(argv: list[str] | None = None) -> int:
    """``roadseg-data``; returns the exit code (0, or 2 for bad input such as a missing dataset)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    def body():
        from trainer.dataset_stats import category_stats, write_preview
        if args.cmd == "stats":
            stats = category_stats(args.data, args.split, args.format, progress=not args.json)
            if args.json:
                print(json.dumps(stats))
            else:
                print_stats(stats)
        elif args.cmd == "preview":
            out = write_preview(args.data, args.split, args.out, args.format, args.count)
            log.info("wrote %s", out)
        else:
            from edge_runtime.eval.synthetic import write_dataset
            h, w = args.size
            write_dataset(args.out, args.layout, {"train": args.train, "val": args.val}, h, w, args.seed)
            log.info("wrote synthetic %s dataset to %s", args.layout, args.out)

    return cli.run("roadseg-data", body)


if __name__ == "__main__":
    sys.exit(main())
