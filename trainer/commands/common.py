"""What every training command line shares: the flags of
:class:`trainer.runs.RunConfig`, how settings are layered (a resumed run's
``config.json`` < ``--config`` file < flags), ``--list``, and the exit codes
(``edge_runtime.commands.cli``'s, plus :data:`EXIT_BUDGET` for a run stopped
by ``--time-budget``). ``roadseg-train`` and ``roadseg-distill`` add their own
flags and job."""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from pathlib import Path
from typing import Callable

import trainer  # noqa: F401  (legacy-Keras environment before TensorFlow)
from edge_runtime.commands import cli
from edge_runtime.contract.preprocessing import parse_size
from trainer.runs import RunConfig

#: exit code of a run stopped by ``--time-budget`` (sysexits' EX_TEMPFAIL: try again, with --resume)
EXIT_BUDGET = 75

#: ``trainer.losses.LOSSES``, repeated so that ``--help`` does not import TensorFlow (a test keeps them equal)
LOSSES = ["ce+dice", "ce", "dice", "tversky", "ce+tversky"]


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of :class:`RunConfig`, the same in every training command.
    Defaults are None so that a ``--config`` file or a resumed run's settings
    are only overridden by what is given."""
    a = p.add_argument
    a("--list", action="store_true", help="list the architectures and exit")
    a("--data", help="dataset root (Cityscapes or CamVid layout)")
    a("--out", help="run directory, e.g. runs/NAME")
    a("--format", choices=["auto", "cityscapes", "camvid"])
    a("--size", type=parse_size, help="frame size HEIGHTxWIDTH")
    a("--epochs", type=int)
    a("--steps-per-epoch", type=int)
    a("--batch", type=int)
    a("--lr", type=float)
    a("--weight-decay", type=float)
    a("--schedule", choices=["cosine", "poly", "constant"])
    a("--loss", choices=LOSSES)
    a("--no-augment", dest="augment", action="store_false", default=None)
    a("--seed", type=int)
    a("--train-split", help="train (default), trainval (every train and val frame: a model to ship), or "
                            "except:PREFIX for all train+val frames not of a sequence")
    a("--val-split", help="val (default), or holdout:PREFIX, e.g. holdout:0006R0 (a CamVid sequence never trained on)")
    a("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    a("--time-budget", dest="time_budget_min", type=float, metavar="MINUTES",
      help="train at most this long in this invocation: stop before an epoch that would overrun it, keep the "
           "checkpoint and exit 75; continue with --resume (and a new --time-budget)")
    a("--config", help="JSON or TOML file of the same settings (command line wins)")


def load_config_file(path: str) -> dict:
    """The settings in a ``.toml`` or JSON file, as a dict of flag names
    (underscored). Raises ``FileNotFoundError`` for a missing file and
    ``ValueError`` for one that does not parse."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"config file not found: {p}")
    text = p.read_text()
    try:
        if p.suffix == ".toml":
            import tomllib
            return tomllib.loads(text)
        return json.loads(text)
    except Exception as e:
        raise ValueError(f"malformed config file {p}: {e}") from e


def config_from_args(args: argparse.Namespace, cls: type[RunConfig], required: tuple[str, ...]) -> RunConfig:
    """Settings: a resumed run's config.json < ``--config`` file < command
    line. Raises ``ValueError`` when a ``required`` setting is missing or a
    key is unknown to ``cls``, and what :func:`load_config_file` raises."""
    known = {f.name for f in dataclasses.fields(cls)}
    base: dict = {}
    if args.resume and args.out and (Path(args.out) / "config.json").is_file():
        saved = json.loads((Path(args.out) / "config.json").read_text())
        base = {k: v for k, v in saved.items() if k in known}
        # settings added after the run started: what it ran with, not today's default
        base.update({k: v for k, v in getattr(cls, "LEGACY_DEFAULTS", {}).items() if k not in saved})
    if args.config:
        base.update(load_config_file(args.config))
    for k, v in vars(args).items():
        if v is not None and k not in ("config", "resume", "list"):
            base[k] = v
    for req in required:
        if not base.get(req):
            raise ValueError(f"--{req.replace('_', '-')} is required")
    return cls.from_json(base)


def run_command(prog: str, doc: str, add_arguments: Callable[[argparse.ArgumentParser], None], job: Callable,
                cls: type[RunConfig], required: tuple[str, ...], names: Callable[[], list[str]],
                argv: list[str] | None = None) -> int:
    """The whole command line of a training command: parse the run flags and
    ``add_arguments``' flags, answer ``--list`` with ``names()``, layer the
    settings, run ``job(cfg, resume=...)``. Returns the exit code: 0, 2 for
    bad input, 4 for a runtime failure, 75 (:data:`EXIT_BUDGET`) when
    ``--time-budget`` ran out, 130 when interrupted (the last finished
    epoch is checkpointed)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    p = cli.parser(prog, doc)
    add_run_arguments(p)
    add_arguments(p)
    args = p.parse_args(argv)
    if args.list:
        print("\n".join(sorted(names())))
        return 0
    from trainer.loop import BudgetReached, StopRequested

    def body():
        cfg = config_from_args(args, cls, required)
        try:
            job(cfg, resume=args.resume)
        except BudgetReached as e:
            print(f"{prog}: stopped: {e}", file=sys.stderr)
            return EXIT_BUDGET
        except StopRequested:
            raise KeyboardInterrupt from None

    return cli.run(prog, body, interrupted_hint="the last finished epoch is checkpointed, continue with --resume")
