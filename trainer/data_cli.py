"""``roadseg-data``: dataset statistics, preview grids and synthetic scenes.

    roadseg-data stats --data PATH --split val [--format auto] [--json]
    roadseg-data preview --data PATH --split val --out preview.png [--count 8]
    roadseg-data synth --out DIR [--layout cityscapes|camvid] [--train 48 --val 12] [--size 256x512]
"""
from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import numpy as np

from edge_runtime.commands import cli
from edge_runtime.atomic import save_figure
from edge_runtime.contract.labels import CATEGORIES, NUM_CLASSES
from edge_runtime.contract.preprocessing import parse_size
from trainer.datasets import list_samples, load_sample

log = logging.getLogger("roadseg.data")


def category_stats(root: str | Path, split: str, fmt: str = "auto", progress: bool = False) -> dict:
    """Per-category pixel counts over a split at the files' native resolution."""
    fmt, samples = list_samples(root, split, fmt)
    counts = np.zeros(NUM_CLASSES, np.int64)
    for i, s in enumerate(samples):
        _, lab = load_sample(s, fmt)
        counts += np.bincount(lab.ravel(), minlength=NUM_CLASSES)[:NUM_CLASSES]
        if progress and (i + 1) % 50 == 0:
            log.info("%d/%d images", i + 1, len(samples))
    return {"split": split, "format": fmt, "images": len(samples),
            "pixels": {c: int(n) for c, n in zip(CATEGORIES, counts)}}


def write_preview(root: str | Path, split: str, out: str | Path, fmt: str = "auto",
                  count: int = 8, seed: int = 0) -> Path:
    """A PNG grid: image | colour-coded mask, with a legend."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    from edge_runtime.contract.labels import PALETTE, colorize

    fmt, samples = list_samples(root, split, fmt)
    rng = np.random.default_rng(seed)
    pick = sorted(rng.choice(len(samples), size=min(count, len(samples)), replace=False))
    fig, axes = plt.subplots(len(pick), 2, figsize=(8, 2.2 * len(pick)), squeeze=False)
    for row, i in zip(axes, pick):
        img, lab = load_sample(samples[i], fmt)
        row[0].imshow(img)
        row[0].set_title(samples[i].name, fontsize=8)
        row[1].imshow(colorize(lab))
        for ax in row:
            ax.axis("off")
    handles = [Patch(color=PALETTE[i] / 255, label=f"{i} {c}") for i, c in enumerate(CATEGORIES)]
    fig.legend(handles=handles, loc="lower center", ncol=4, fontsize=8)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return save_figure(fig, out)


def main(argv: list[str] | None = None) -> int:
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
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    def body():
        if args.cmd == "stats":
            stats = category_stats(args.data, args.split, args.format, progress=not args.json)
            if args.json:
                print(json.dumps(stats))
            else:
                total = sum(stats["pixels"].values()) or 1
                print(f"{stats['format']} {stats['split']}: {stats['images']} images, {total} pixels")
                print(f"{'category':<14}{'pixels':>14}{'fraction':>10}")
                for c, n in stats["pixels"].items():
                    print(f"{c:<14}{n:>14}{n / total:>10.4f}")
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
