r"""roadseg-bench: how fast is it here? Invoke latency and end-to-end FPS
of the real pipeline, side by side, TensorFlow-free.

    roadseg-bench [--model A.tflite --model B.tflite ...] [--threads 1 --threads 2 ...] [--frames 300] \
        [--warmup 20] [--source synthetic|FILE] [--frame-size 480x640] [--data PATH] \
        [--keep-score] [--json] [--out report.json] [--markdown out.md] [--plot out.png]

For each model and thread count: invoke latency p50/p90/p99/mean and
invoke-only FPS; end-to-end FPS of the pipeline the vehicle runs (source
decode, preprocess, invoke, postprocess, coverage, and a summary serialized for
a null publisher every ``--publish-interval`` seconds as roadseg-run does; 0
makes one per frame, the worst case); CPU utilisation; resident memory; and the
pipeline overhead ``1 - e2e FPS / invoke FPS``. Models are measured
interleaved in rounds (A B A B ...) so machine drift hits all alike.
"""
from __future__ import annotations

import json
import logging
import os
import sys

from edge_runtime.commands import cli


def parse_threads(values: list[str] | None, prog: str = "roadseg-bench") -> list[int]:
    """``--threads N`` (repeatable); the old comma list ``1,2,4`` still works, with a warning."""
    if not values:
        return [os.cpu_count() or 1]
    out = []
    for v in values:
        if "," in v:
            print(f"{prog}: warning: --threads {v} (a comma list) is deprecated; repeat --threads instead",
                  file=sys.stderr)
        for t in v.split(","):
            try:
                n = int(t)
            except ValueError:
                raise ValueError(f"--threads {t!r} is not a whole number") from None
            if n <= 0:
                raise ValueError(f"--threads {n} must be at least 1")
            out.append(n)
    return out


def split_json_path(argv: list[str]) -> tuple[list[str], str | None]:
    """The old ``--json PATH`` (a file) taken out of ``argv``: ``(rest, PATH)``;
    ``--json`` alone (print the report on stdout) stays."""
    out, path, i = [], None, 0
    while i < len(argv):
        a = argv[i]
        if a.startswith("--json="):
            path = a.split("=", 1)[1]
        elif a == "--json" and i + 1 < len(argv) and not argv[i + 1].startswith("-"):
            path = argv[i + 1]
            i += 1
        else:
            out.append(a)
        i += 1
    return out, path


def _size(text: str) -> tuple[int, int]:
    """``HxW`` -> (H, W); NumPy and OpenCV are imported only when a size is given."""
    from edge_runtime.contract.preprocessing import parse_size
    return parse_size(text)


def build_parser():
    """roadseg-bench's parser."""
    p = cli.parser("roadseg-bench", __doc__)
    p.add_argument("--model", action="append",
                   help="a .tflite or .onnx (repeat to compare, e.g. both backends side by side); default: the "
                        "shipped model")
    p.add_argument("--threads", action="append", help="interpreter threads (repeat to sweep; default: all cores)")
    p.add_argument("--size", type=cli.size_arg, metavar="HxW",
                   help="input size for models whose input height and width are dynamic (default: their sidecar's)")
    p.add_argument("--frames", type=int, default=300, help="measured frames per model and thread count; default 300")
    p.add_argument("--warmup", type=int, default=20, help="frames run first and not measured; default 20")
    p.add_argument("--rounds", type=int, default=5,
                   help="rounds the frames are split into, models interleaved; the overhead's ± is its standard "
                        "deviation over them; default 5")
    p.add_argument("--source", default="synthetic", help="synthetic or a video file / image folder (decoded on "
                                                         "every frame); default synthetic")
    p.add_argument("--frame-size", type=_size, default=(480, 640),
                   help="HxW of synthetic camera frames; default 480x640 (a file's own size is used for a file)")
    p.add_argument("--publish-interval", type=float, default=1.0,
                   help="seconds per coverage summary, as roadseg-run (0 = every frame, the worst case); default 1")
    p.add_argument("--keep-score", action="store_true",
                   help="also score every frame for the data flywheel, as roadseg-run --keep-frames does, and report "
                        "its cost (score ms, score %% of the frame time)")
    p.add_argument("--data", help="labelled dataset for an accuracy column")
    p.add_argument("--split", default="val", help="the --data split scored; default val")
    p.add_argument("--json", action="store_true",
                   help="print the report as one JSON object on stdout (instead of the table)")
    p.add_argument("--out", help="write the JSON report to this file")
    p.add_argument("--markdown", help="write the table as Markdown to this file")
    p.add_argument("--plot", help="write the speed-vs-accuracy plot (PNG) to this file (needs --data and "
                                  "matplotlib: pip install \"roadseg[plot]\")")
    return p


def check_plot(args) -> None:
    """Refuse ``--plot`` before measuring when it cannot be drawn (ValueError, one line)."""
    if not args.plot:
        return
    if not args.data:
        raise ValueError("--plot needs accuracy: give --data")
    import importlib.util
    if importlib.util.find_spec("matplotlib") is None:
        raise ValueError("--plot needs matplotlib, which this install lacks: pip install \"roadseg[plot]\"")


def main(argv: list[str] | None = None) -> int:
    """roadseg-bench's entry point: the exit code (cli.EXIT_CODES)."""
    argv, json_path = split_json_path(list(sys.argv[1:] if argv is None else argv))
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)

    def body():
        if json_path is not None:  # the old meaning: a file path
            print("roadseg-bench: warning: --json PATH is deprecated; use --out PATH (--json now prints to stdout)",
                  file=sys.stderr)
            args.out = json_path
        threads = parse_threads(args.threads)
        if args.frames <= 0:
            raise ValueError("--frames must be positive")
        check_plot(args)
        from edge_runtime import atomic
        from edge_runtime.eval.bench import benchmark, format_markdown, format_table, plot_pareto
        report = benchmark(args.model or [cli.shipped_model()], threads, args.frames, args.warmup,
                           max(1, min(args.rounds, args.frames)), args.source, args.frame_size, args.data,
                           args.split, args.publish_interval, args.size, args.keep_score)
        print(json.dumps(report) if args.json else format_table(report))
        if args.out:
            atomic.write_text(args.out, json.dumps(report, indent=2))
        if args.markdown:
            atomic.write_text(args.markdown, format_markdown(report) + "\n")
        if args.plot:
            plot_pareto(report, args.plot)

    return cli.run("roadseg-bench", body)


if __name__ == "__main__":
    sys.exit(main())
