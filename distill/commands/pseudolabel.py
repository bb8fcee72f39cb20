r"""python -m distill.commands.pseudolabel: the teacher labels the frames the
vehicles kept, into a dataset ``roadseg-distill --extra-data`` trains on.

    python -m distill.commands.pseudolabel --teacher runs/TEACHER [--teacher runs/B ...] \
        --frames /srv/roadseg/kept --out data/pseudo [--tta flip,0.75,1.25] [--min-confidence 0.5] \
        [--sheet out/contact-sheet.png] [--sheet-frames 16]

Every frame under ``--frames`` (kept frames with their records, checked, or
plain .jpg/.png images) is labelled by the teachers' exports with their
test-time views (as ``roadseg-distill --teacher-tta``); pixels whose top
probability is below ``--min-confidence`` become void. ``--out`` gets a
CamVid-layout dataset (``train/``, ``trainannot/``), ``pseudolabels.json``
(teachers, views, per frame its record and confidence) and a contact sheet
(frame, pseudo-label, confidence) to check them by eye.
"""
from __future__ import annotations

import argparse
import logging
import sys

from edge_runtime.commands import cli


def build_parser() -> argparse.ArgumentParser:
    """The command line."""
    p = cli.parser("python -m distill.commands.pseudolabel", __doc__)
    p.add_argument("--teacher", action="append", required=True, help="teacher run directory (repeatable)")
    p.add_argument("--frames", required=True, help="folder of kept frames (searched recursively)")
    p.add_argument("--out", required=True, help="the dataset to write (CamVid layout)")
    p.add_argument("--tta", default="flip", metavar="VIEWS",
                   help="the teachers' test-time views: 'flip' and/or scales, e.g. flip,0.75,1.25 (scales need "
                        "size-agnostic teachers); '' for none; default flip")
    p.add_argument("--min-confidence", type=float, default=0.5,
                   help="pixels whose top probability is below this become void; default 0.5")
    p.add_argument("--teacher-weighting", choices=["iou", "mean"], default="iou",
                   help="how several teachers are combined (as roadseg-distill); default iou")
    p.add_argument("--sheet", help="the contact sheet PNG; default OUT/contact-sheet.png")
    p.add_argument("--sheet-frames", type=int, default=16, help="frames on the contact sheet; default 16")
    return p


def main(argv: list[str] | None = None) -> int:
    """The entry point; returns the exit code (edge_runtime.commands.cli's)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    def body():
        if args.sheet_frames < 1:
            raise ValueError("--sheet-frames must be at least 1")
        import trainer  # noqa: F401  (legacy-Keras environment before TensorFlow)
        from distill.pseudolabel import pseudolabel
        m = pseudolabel(args.teacher, args.frames, args.out, args.tta, args.min_confidence, args.teacher_weighting,
                        args.sheet, args.sheet_frames)
        print(f"labelled {len(m['frames'])} frames into {args.out} ({len(m['skipped'])} skipped)")

    return cli.run("python -m distill.commands.pseudolabel", body)


if __name__ == "__main__":
    sys.exit(main())
