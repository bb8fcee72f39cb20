"""``python -m roadseg_lab COMMAND``: every command of the lab (argparse lives
here only; the modules it calls raise, they do not exit).

    reproduce-scratch DATA          from-scratch CamVid recipe -> docs/RESULTS.md
    reproduce-pretrained DATA       pretrained, sequence-disjoint recipe -> its section
    results-report DATA RUNS DIST BEST SIZE BENCH_SIZE MINUTES
    pretrained-report NAME... --runs --dist --size --best --teacher [...]
    gpu-students-report --kd --runs --dist --teacher [...]
    soak --model X.tflite [--minutes 35 ...]      (exit 1 when a goal is missed)
    soak-report LABEL=JSON... [--plot PNG] [--markdown MD]
    aarch64-check MODEL OUT_DIR                 (inside the arm64 root)
    aarch64-compare MODEL ARM_DIR RC SECONDS    (on x86, after it)
    cityscapes-lut                              regenerate edge_runtime/contract/_cityscapes_lut.py
    teacher-eval --teacher RUN [...] --data D   each teacher, with --tta, and their combination
    flywheel-keep --model X.tflite --data D --split S --n N --mode selected|random --out DIR
    flywheel-oracle --kept DIR --data D --split S --out DIR
    flywheel-compare --runs LABEL=DIR --runs LABEL=DIR [--markdown MD] [--plot PNG]
    flywheel-report --runs runs/flywheel [--markdown MD] [--plot PNG]
    figures NAME... [--twin X.tflite --data DIR] [--model LABEL=X.tflite ...]   docs/img/*.png

Each subcommand's ``--help`` lists its flags. A run that fails says why in
one line on stderr and exits non-zero.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edge_runtime.commands.cli import plain
from roadseg_lab.pages import IMG, MEASUREMENTS


def _parser(sub, name: str, doc: str) -> argparse.ArgumentParser:
    doc = plain(doc)
    return sub.add_parser(name, help=doc.split("\n\n")[0].replace("\n", " "), description=doc, allow_abbrev=False,
                          formatter_class=argparse.RawDescriptionHelpFormatter)


def add_recipes_and_results(sub) -> None:
    """``reproduce-scratch``, ``reproduce-pretrained`` and ``results-report``."""
    from roadseg_lab.recipes import pretrained, scratch
    from roadseg_lab.reports import results
    for name, mod in (("reproduce-scratch", scratch), ("reproduce-pretrained", pretrained)):
        _parser(sub, name, mod.__doc__).add_argument("data", help="CamVid folder (train/, trainannot/, val/, valannot/)")
    r = _parser(sub, "results-report", results.__doc__)
    for a in ("data", "runs", "dist", "best", "size", "bench_size", "minutes"):
        r.add_argument(a)


def add_pretrained_report(sub) -> None:
    """``pretrained-report``'s flags."""
    from roadseg_lab.reports import pretrained
    p = _parser(sub, "pretrained-report", pretrained.__doc__)
    p.add_argument("names", nargs="+")
    for flag in ("--runs", "--dist", "--size", "--best", "--teacher"):
        p.add_argument(flag, required=True)
    p.add_argument("--bench")
    p.add_argument("--holdout", default="0006R0")
    p.add_argument("--minutes")
    p.add_argument("--teacher-note", default="", help="where the imported teacher was trained (machine)")
    p.add_argument("--title", default=pretrained.DEFAULT_TITLE,
                   help="the section's heading (a new heading makes a new section of RESULTS.md)")
    p.add_argument("--how", help="what made these runs, replacing the sentence about the recipe")
    p.add_argument("--extra", default="", help="a paragraph of reading, placed before the caveats")
    p.add_argument("--out", default=str(MEASUREMENTS / "05-pretrained.md"))
    p.add_argument("--figure", default=str(IMG / "pretrained-per-class.png"))


def add_gpu_students_report(sub) -> None:
    """``gpu-students-report``'s flags."""
    from roadseg_lab.reports import gpu_students
    p = _parser(sub, "gpu-students-report", gpu_students.__doc__)
    p.add_argument("--kd", required=True, help="gpu_students.sh output: NAME.log and NAME/train_log.json")
    p.add_argument("--rerun", help="optional second output folder (runs stopped early and rerun)")
    p.add_argument("--runs", required=True, help="imported run directories, one per NAME")
    p.add_argument("--dist", required=True, help="calibrated NAME-int8-SIZE.tflite and sidecars")
    p.add_argument("--bench", help="roadseg-bench --out JSON of the int8 models side by side")
    p.add_argument("--teacher", required=True, help="the teacher's run directory (metrics.json)")
    p.add_argument("--size", default="352x480")
    p.add_argument("--gpu", default="a GPU", help="the hardware the students trained on, as it is named (e.g. "
                   "'one NVIDIA H200 (JAX, float32)'), for the page and the figure's title")
    p.add_argument("--date", default="2026-11-26")
    p.add_argument("--bench-note", default="", help="what else ran during the benchmark, appended to its line")
    p.add_argument("--extra", default="", help="a paragraph of reading, placed before the caveats")
    p.add_argument("--out", default=str(MEASUREMENTS / "06-gpu-students.md"))
    p.add_argument("--figure", default=str(IMG / "gpu-students-kd.png"))


def add_soak(sub) -> None:
    """``soak``'s and ``soak-report``'s flags."""
    from roadseg_lab.checks import soak
    from roadseg_lab.reports import soak as soak_report
    p = _parser(sub, "soak", soak.__doc__)
    p.add_argument("--model", required=True)
    for flag, default in (("--minutes", 35.0), ("--warmup-minutes", 10.0), ("--fps", 30.0)):
        p.add_argument(flag, type=float, default=default)
    p.add_argument("--frame-size", default="480x640", help="synthetic camera frames HEIGHTxWIDTH")
    for flag, default in (("--broker-every", 180.0), ("--broker-down", 10.0), ("--camera-every", 150.0),
                          ("--camera-down", 8.0)):
        p.add_argument(flag, type=float, default=default)
    p.add_argument("--watchdog-s", type=float, default=10.0, help="the service's WatchdogSec")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--api-every", type=float, default=5.0,
                   help="seconds between API request pairs (an upload and a stats request); 0: API off")
    p.add_argument("--http-client", choices=["shared", "per-request", "new-connection"], default="shared",
                   help="shared: one client, one kept-alive connection; new-connection: one client, a new TCP "
                        "connection for every call (as browsers and scripts come and go); per-request: a new client "
                        "(and TLS context) for every call, as this harness did before 2026-11-26")
    p.add_argument("--verbose", action="store_true", help="the runtime's warnings too (drops, reconnections)")
    p.add_argument("--out", help="write the report as JSON here")
    p.add_argument("--faults", default="", help=f"comma-separated fault schedule, in turn: {', '.join(soak.FAULTS)} "
                                                "or all (default none; disk-full and read-only mount tmpfs: root)")
    p.add_argument("--fault-every", type=float, default=300.0, help="seconds between two faults")
    p.add_argument("--fault-hold", type=float, default=20.0, help="seconds each fault lasts")
    p.add_argument("--slow-fsync-ms", type=int, default=1500, help="milliseconds each fsync takes when slow")
    p.add_argument("--capture-timeout", type=float, default=2.0, help="the vehicle's --capture-timeout, seconds")
    p.add_argument("--publish-interval", type=float, default=1.0, help="seconds between coverage summaries")
    r = _parser(sub, "soak-report", soak_report.__doc__)
    r.add_argument("runs", nargs="+", metavar="LABEL=JSON")
    r.add_argument("--plot")
    r.add_argument("--markdown")


def add_checks(sub) -> None:
    """``aarch64-check``, ``aarch64-compare`` and ``cityscapes-lut``."""
    from roadseg_lab import cityscapes_lut
    from roadseg_lab.checks import aarch64
    c = _parser(sub, "aarch64-check", aarch64.check.__doc__)
    c.add_argument("model")
    c.add_argument("out_dir")
    c = _parser(sub, "aarch64-compare", aarch64.compare.__doc__)
    c.add_argument("model")
    c.add_argument("arm_dir")
    c.add_argument("rc", type=int)
    c.add_argument("seconds", type=int)
    _parser(sub, "cityscapes-lut", cityscapes_lut.__doc__)


def _labelled(text: str) -> tuple[str, str]:
    """argparse ``type=`` for ``LABEL=PATH`` (a bare PATH is labelled with its own name)."""
    label, _, path = text.rpartition("=")
    return (label or Path(path).name, path)


def add_figures(sub) -> None:
    """``figures``'s flags."""
    from roadseg_lab import figures
    p = _parser(sub, "figures", figures.__doc__)
    p.add_argument("names", nargs="+", choices=[*figures.NAMES, "all"], metavar="NAME",
                   help=f"one or more of {', '.join(figures.NAMES)}, or all")
    p.add_argument("--out-dir", default=str(IMG), help="where the PNGs go; default docs/img")
    p.add_argument("--data", help="CamVid folder (qualitative)")
    p.add_argument("--twin", help="int8 .tflite never trained on the held-out sequence (qualitative)")
    p.add_argument("--frames", type=int, default=4, help="held-out frames shown (qualitative); default 4")
    p.add_argument("--model", action="append", type=_labelled, default=[], metavar="LABEL=X.tflite",
                   help="int8 model with a held-out accuracy block in its sidecar (fps-vs-miou; repeat)")
    p.add_argument("--bench", help="a roadseg-bench --out report of those models, instead of measuring them")
    p.add_argument("--bench-out", help="keep the new benchmark report here (JSON)")
    for flag, default, what in (("--bench-frames", 150, "measured frames per model"),
                                ("--rounds", 5, "interleaved rounds"), ("--threads", 2, "interpreter threads")):
        p.add_argument(flag, type=int, default=default, help=f"{what} (fps-vs-miou); default {default}")
    p.add_argument("--note", default="", help="what else ran during the benchmark, for the caption")


def build_parser() -> argparse.ArgumentParser:
    """The parser of every lab command."""
    p = argparse.ArgumentParser(prog="python -m roadseg_lab", description=plain(__doc__), allow_abbrev=False,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    for add in (add_recipes_and_results, add_pretrained_report, add_gpu_students_report, add_soak, add_checks,
                add_figures, add_teacher_eval, add_flywheel):
        add(sub)
    return p


def _data_dir(data: str) -> str:
    if not Path(data).is_dir():
        raise SystemExit(f"usage: python -m roadseg_lab reproduce-... CAMVID_DIR  (a folder with train/, trainannot/, "
                         f"val/, valannot/); {data} is not a folder")
    return data


def _pretrained_report(a: argparse.Namespace) -> int:
    from roadseg_lab.reports.pretrained import Settings, write_report
    out = write_report(Settings(names=a.names, runs=Path(a.runs), dist=Path(a.dist), size=a.size, best=a.best,
                                teacher=Path(a.teacher), bench=a.bench, holdout=a.holdout, minutes=a.minutes,
                                teacher_note=a.teacher_note, title=a.title, how=a.how, extra=a.extra,
                                out=Path(a.out), figure=Path(a.figure)))
    print(f"wrote {out} and {a.figure}")
    return 0


def _gpu_students_report(a: argparse.Namespace) -> int:
    from roadseg_lab.reports.gpu_students import Settings, write_report
    print(write_report(Settings(kd=Path(a.kd), runs=Path(a.runs), dist=Path(a.dist), teacher=Path(a.teacher),
                                rerun=Path(a.rerun) if a.rerun else None, bench=a.bench, size=a.size, gpu=a.gpu,
                                date=a.date, bench_note=a.bench_note, extra=a.extra, out=Path(a.out),
                                figure=Path(a.figure))))
    return 0


def _results_report(a: argparse.Namespace) -> int:
    from roadseg_lab.reports.results import write_results
    print(f"wrote {write_results(a.data, a.runs, a.dist, a.best, a.size, a.bench_size)}")
    return 0


def _soak(a: argparse.Namespace) -> int:
    from roadseg_lab.checks.soak import SoakSettings, run_soak
    return run_soak(SoakSettings(**{k: v for k, v in vars(a).items() if k != "cmd"}))


def _soak_report(a: argparse.Namespace) -> int:
    from edge_runtime import atomic
    from roadseg_lab.reports.soak import load_runs, plot, soak_table
    try:
        runs = load_runs(a.runs)
    except ValueError as e:
        print(f"soak-report: {e}", file=sys.stderr)
        return 1
    text = soak_table(runs)
    print(text)
    if a.markdown:
        atomic.write_text(a.markdown, text + "\n")
    if a.plot:
        plot(runs, a.plot)
    return 0


def _cityscapes_lut(a: argparse.Namespace) -> int:
    from roadseg_lab.cityscapes_lut import write
    print(f"wrote {write()}")
    return 0


def _recipe(module: str):
    def run(a: argparse.Namespace) -> int:
        import importlib
        importlib.import_module(f"roadseg_lab.recipes.{module}").main(_data_dir(a.data))
        return 0
    return run


def _aarch64_check(a: argparse.Namespace) -> int:
    from roadseg_lab.checks.aarch64 import check
    return check(a.model, a.out_dir)


def _aarch64_compare(a: argparse.Namespace) -> int:
    from roadseg_lab.checks.aarch64 import compare
    return compare(a.model, a.arm_dir, a.rc, a.seconds)


def add_teacher_eval(sub) -> None:
    """``teacher-eval``'s flags."""
    from roadseg_lab.checks import teachers
    p = _parser(sub, "teacher-eval", teachers.__doc__)
    p.add_argument("--teacher", action="append", required=True, help="a teacher run directory (repeat to combine)")
    p.add_argument("--data", required=True)
    p.add_argument("--split", default="holdout:0006R0")
    p.add_argument("--size", default="192x256", help="the student's input HEIGHTxWIDTH the frames are resized to")
    p.add_argument("--tta", default="", help="test-time views, e.g. flip or flip,0.75,1.25")
    p.add_argument("--out", help="write the rows as JSON here")


def _teacher_eval(a: argparse.Namespace) -> int:
    import json

    from edge_runtime.commands.cli import run
    from edge_runtime.contract.preprocessing import parse_size
    from roadseg_lab.checks import teachers

    def body() -> int:
        rows = teachers.evaluate(a.teacher, a.tta, a.data, a.split, parse_size(a.size))
        for r in rows:
            print(json.dumps(r))
        if a.out:
            from edge_runtime import atomic
            atomic.write_text(a.out, json.dumps(rows, indent=2))
        return 0
    return run("python -m roadseg_lab teacher-eval", body)


def _figures(a: argparse.Namespace) -> int:
    from edge_runtime.commands.cli import run
    from roadseg_lab import figures
    names = figures.NAMES if "all" in a.names else a.names
    s = figures.Settings(out_dir=Path(a.out_dir), data=a.data and Path(a.data), twin=a.twin and Path(a.twin),
                         frames=a.frames, models={k: Path(v) for k, v in a.model}, bench=a.bench,
                         bench_out=a.bench_out, bench_frames=a.bench_frames, rounds=a.rounds, threads=a.threads,
                         note=a.note)

    def render_all() -> int:
        for n in names:
            print(f"wrote {figures.render(n, s)}")
        return 0
    return run("python -m roadseg_lab figures", render_all)


def add_flywheel(sub) -> None:
    """``flywheel-keep``, ``flywheel-oracle`` and ``flywheel-report`` (issue 30: scripts/flywheel_camvid.sh)."""
    from roadseg_lab.recipes import flywheel
    from roadseg_lab.reports import flywheel as report
    k = _parser(sub, "flywheel-keep", flywheel.__doc__)
    k.add_argument("--model", required=True, help="the vehicle's int8 .tflite (its sidecar beside it)")
    k.add_argument("--data", required=True, help="CamVid folder")
    k.add_argument("--split", required=True, help="the frames driven through, e.g. 'holdout:0006R0[:50]'")
    k.add_argument("--n", type=int, required=True, help="frames to keep")
    k.add_argument("--mode", choices=("selected", "random"), required=True)
    k.add_argument("--seed", type=int, default=0, help="the random draw's seed")
    k.add_argument("--out", required=True, help="folder for the kept frames")
    o = _parser(sub, "flywheel-oracle", flywheel.__doc__)
    o.add_argument("--kept", required=True, help="flywheel-keep's --out folder")
    o.add_argument("--data", required=True, help="CamVid folder")
    o.add_argument("--split", required=True, help="the split the vehicle drove, e.g. 'holdout:0006R0[:50]'")
    o.add_argument("--out", required=True, help="a new folder for the frames with their human labels")
    c = _parser(sub, "flywheel-compare", report.__doc__)
    c.add_argument("--runs", action="append", required=True, metavar="LABEL=DIR",
                   help="a run folder and what taught it, e.g. 'human labels=runs/oracle' (two or more)")
    c.add_argument("--markdown", help="write the table here")
    c.add_argument("--plot", help="write the figure here")
    c.add_argument("--note", default="", help="the end of the figure's caption: what the sources are")
    r = _parser(sub, "flywheel-report", report.__doc__)
    r.add_argument("--runs", required=True, help="scripts/flywheel_camvid.sh's RUNS folder")
    r.add_argument("--markdown", help="write the table here (default: RUNS/flywheel.md)")
    r.add_argument("--plot", help="write the figure here (default: RUNS/flywheel.png)")
    r.add_argument("--data", help="CamVid folder: weigh the kept frames' pseudo-labels against its human labels")
    r.add_argument("--drive", help="the split the vehicles drove, e.g. 'holdout:0006R0[:50]' (with --data)")


def _flywheel_keep(a: argparse.Namespace) -> int:
    from edge_runtime.commands.cli import run
    from roadseg_lab.recipes import flywheel

    def body() -> int:
        got = flywheel.keep(a.model, a.data, a.split, a.n, a.mode, a.out, a.seed)
        print(f"kept {got['kept']} of {a.n} frames ({a.mode}) in {a.out}")
        return 0
    return run("python -m roadseg_lab flywheel-keep", body)


def _flywheel_oracle(a: argparse.Namespace) -> int:
    from edge_runtime.commands.cli import run
    from roadseg_lab.recipes import flywheel

    def body() -> int:
        got = flywheel.oracle(a.kept, a.data, a.split, a.out)
        print(f"{len(got['frames'])} kept frames with their human labels in {a.out}")
        return 0
    return run("python -m roadseg_lab flywheel-oracle", body)


def _flywheel_compare(a: argparse.Namespace) -> int:
    from edge_runtime import atomic
    from edge_runtime.commands.cli import run
    from roadseg_lab.reports import flywheel

    def body() -> int:
        sources = []
        for item in a.runs:
            label, sep, folder = item.partition("=")
            if not sep or not label or not folder:
                raise ValueError(f"--runs {item!r}: LABEL=DIR")
            sources.append((label, folder))
        cmp = flywheel.compare(sources)
        if not cmp:
            raise ValueError("--runs: no arm and seed that every folder ran")
        text = "\n".join(flywheel.compare_table(cmp)) + "\n"
        if a.markdown:
            atomic.write_text(a.markdown, text)
        if a.plot:
            flywheel.compare_plot(cmp, a.plot, a.note)
        print(text, end="")
        return 0
    return run("python -m roadseg_lab flywheel-compare", body)


def _flywheel_report(a: argparse.Namespace) -> int:
    from edge_runtime.commands.cli import run
    from roadseg_lab.reports import flywheel

    def body() -> int:
        if bool(a.data) != bool(a.drive):
            raise ValueError("--data and --drive go together")
        print(flywheel.report(a.runs, a.markdown or str(Path(a.runs) / "flywheel.md"),
                              a.plot or str(Path(a.runs) / "flywheel.png"), a.data, a.drive), end="")
        return 0
    return run("python -m roadseg_lab flywheel-report", body)


HANDLERS = {"reproduce-scratch": _recipe("scratch"), "reproduce-pretrained": _recipe("pretrained"),
            "results-report": _results_report, "pretrained-report": _pretrained_report,
            "gpu-students-report": _gpu_students_report, "soak": _soak, "soak-report": _soak_report,
            "aarch64-check": _aarch64_check, "aarch64-compare": _aarch64_compare, "cityscapes-lut": _cityscapes_lut,
            "figures": _figures, "teacher-eval": _teacher_eval, "flywheel-keep": _flywheel_keep,
            "flywheel-oracle": _flywheel_oracle, "flywheel-compare": _flywheel_compare,
            "flywheel-report": _flywheel_report}


def main(argv: list[str] | None = None) -> int:
    """Parse and run one lab command; returns its exit code."""
    args = build_parser().parse_args(argv)
    return HANDLERS[args.cmd](args)
