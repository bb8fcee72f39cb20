"""The one convention every ``roadseg-*`` command follows.

* Flags: the same name for the same idea everywhere (``--model``, ``--data``,
  ``--out``, ``--size HxW``, ``--threads N``, ``--mqtt-host``/``--mqtt-port``,
  ``--http HOST:PORT``, ``--api-token-file``); abbreviations are refused
  (``allow_abbrev=False``), so a mistyped secret flag is never taken for another.
* ``--json`` prints the command's result as one JSON object on stdout (logs go
  to stderr); files are written with flags that name them.
* ``--version`` on every command.
* Exit codes (:data:`EXIT_CODES`): 0 success, 2 bad usage or input (the
  message names it), 3 a quality gate refused the result, 4 a runtime failure
  (camera, broker, model or service that failed while running), 78 this install
  cannot do what is asked (a restart will not help: e.g. ``csi:0`` without
  GStreamer), 130 interrupted.
* Errors are one line, ``PROG: error: what went wrong``, never a traceback.
* Old flag names keep working for one release with a warning on stderr.
"""
from __future__ import annotations

import argparse
import re
import sys
from typing import Callable

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_REFUSED = 3
EXIT_RUNTIME = 4
EXIT_INTERRUPTED = 130
#: sysexits' EX_CONFIG: this install cannot do what is asked (e.g. csi:0 without GStreamer); a restart will not help
EXIT_UNSUPPORTED = 78
EXIT_CODES = {EXIT_OK: "success", EXIT_USAGE: "bad usage or input", EXIT_REFUSED: "refused by a quality gate",
              EXIT_RUNTIME: "runtime failure (camera, broker, model, service)",
              EXIT_UNSUPPORTED: "this install cannot do what is asked (restarting will not help)",
              EXIT_INTERRUPTED: "interrupted"}


# defined below commands/ (io/, api/ and the loop raise them); re-exported here for the commands
from edge_runtime.errors import Refused, RuntimeFailure, Unsupported  # noqa: E402,F401


def version() -> str:
    """roadseg's version: the installed distribution's, else the source tree's ``__version__``."""
    try:
        from importlib.metadata import version as v
        return v("roadseg")
    except Exception:  # running from a source tree that is not installed
        from edge_runtime import __version__
        return __version__


def plain(doc: str | None) -> str:
    """A module docstring as terminal help: reST ``literals`` and :role:`x` unwrapped."""
    doc = doc or ""
    doc = re.sub(r":\w+:`~?([^`]+)`", r"\1", doc)
    return doc.replace("``", "")


#: how a flag's name looks (the convention's long flags, or one-letter short ones): shown in errors
_FLAG_NAME = re.compile(r"--[a-z][a-z0-9-]*|-[a-zA-Z]")
HIDDEN = "(value not shown)"


def describe_unrecognized(extras: list[str]) -> str:
    """``["--mqtt-password", "hunter2"]`` -> ``"--mqtt-password (1 value not
    shown)"``: the names of unknown flags, never what was given with them
    (a mistyped secret flag must not put the secret in the journal)."""
    names, values = [], 0
    for token in extras:
        name, eq, _ = token.partition("=")
        if _FLAG_NAME.fullmatch(name):
            names.append(name)
            values += bool(eq)
        else:
            values += 1
    hidden = f"({values} value{'s' if values > 1 else ''} not shown)" if values else ""
    return " ".join([*names, hidden]).strip()


def redact_values(message: str, argv: list[str] | tuple[str, ...], options: set[str] | dict) -> str:
    """``message`` with every value of ``argv`` (each token that is not a
    flag name in ``options``, the part after ``=`` of ``--flag=value``, and
    what follows the letter of a ``-xVALUE`` short-option token)
    replaced by :data:`HIDDEN`, quoted or not: argparse's "invalid int
    value: 'x'", "invalid choice: 'x'", "ignored explicit argument 'x'" and
    messages of ``type=`` functions name the flag and hide what was typed."""
    values = set()
    for token in argv:
        name, eq, value = token.partition("=")
        if eq and name.startswith("-"):
            values.add(value)
        elif token not in options and token != "--" and not _FLAG_NAME.fullmatch(token):
            values.add(token)
            if token[:1] == "-" and token[1:2] != "-":  # argparse reads "-xVALUE" as -x, then VALUE, x...
                values.update(token[k:] for k in range(2, len(token)))
    for value in sorted((v for v in values if v), key=len, reverse=True):
        for form in (repr(value), f'"{value}"', value):
            message = re.sub(rf"(?<![\w.-]){re.escape(form)}(?![\w.-])", "\0", message)
    return re.sub(r":?\s*\0", " " + HIDDEN, message)


class ConventionParser(argparse.ArgumentParser):
    """argparse under the convention: errors name the flag, never the value
    given (unrecognized arguments, invalid choices, values of the wrong type,
    messages of ``type=`` functions), in this parser and its subcommands'."""

    _argv: tuple[str, ...] = ()

    def parse_known_args(self, args=None, namespace=None):
        """As argparse's, remembering the arguments so :meth:`error` can hide their values."""
        args = list(sys.argv[1:] if args is None else args)
        self._argv = tuple(args)
        return super().parse_known_args(args, namespace)

    def parse_args(self, args=None, namespace=None):
        """As argparse's; unknown arguments are reported by flag name only (exit 2)."""
        namespace, extras = self.parse_known_args(args, namespace)
        if extras:
            self.error(f"unrecognized arguments: {describe_unrecognized(extras)}")
        return namespace

    def error(self, message: str):
        """Print usage and ``PROG: error: MESSAGE`` with the values hidden; exit 2."""
        super().error(redact_values(message, self._argv, self._option_string_actions))


def parser(prog: str, doc: str | None, **kwargs) -> argparse.ArgumentParser:
    """An ArgumentParser following the convention (no abbreviations,
    ``--version``, errors that never repeat a value: :class:`ConventionParser`)."""
    p = ConventionParser(prog=prog, description=plain(doc), allow_abbrev=False,
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="exit codes: " + ", ".join(f"{k} {v}" for k, v in EXIT_CODES.items()),
                                **kwargs)
    p.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    return p


class _Deprecated(argparse.Action):
    def __init__(self, option_strings, dest, new: str = "", **kwargs):
        self.new = new
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"{parser.prog}: warning: {option_string} is deprecated and will be removed in the next release; "
              f"use {self.new}", file=sys.stderr)
        setattr(namespace, self.dest, values)


def deprecated(p: argparse.ArgumentParser, old: str, new: str, dest: str, **kwargs) -> None:
    """Accept ``old`` as a hidden, warned alias of ``new`` (stored in ``dest``)."""
    p.add_argument(old, dest=dest, action=_Deprecated, new=new, help=argparse.SUPPRESS, **kwargs)


#: errors that mean "the command was given something it cannot use"
USAGE_ERRORS: tuple[type[BaseException], ...] = (ValueError, FileNotFoundError, PermissionError, ImportError,
                                                  IsADirectoryError, NotADirectoryError)


def extra_hint(e: BaseException) -> str:
    """``'; pip install "roadseg[EXTRA]"'`` when ``e`` is a ModuleNotFoundError of a
    package an extra brings (commands.launch.EXTRA_OF) and does not say so; else ""."""
    if not isinstance(e, ModuleNotFoundError) or "roadseg[" in str(e):
        return ""
    from edge_runtime.commands.launch import EXTRA_OF
    extra = EXTRA_OF.get((e.name or "").split(".")[0])
    return f'; pip install "roadseg[{extra}]"' if extra else ""


def run(prog: str, body: Callable[[], int | None], *, interrupted_hint: str = "") -> int:
    """Run ``body`` under the convention: its return value (default 0) is the
    exit code; known exceptions become one line on stderr and their code."""
    try:
        return body() or EXIT_OK
    except KeyboardInterrupt:
        print(f"{prog}: interrupted{'; ' + interrupted_hint if interrupted_hint else ''}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Refused as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return EXIT_REFUSED
    except Unsupported as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return EXIT_UNSUPPORTED
    except RuntimeFailure as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return EXIT_RUNTIME
    except USAGE_ERRORS as e:
        print(f"{prog}: error: {e}{extra_hint(e)}", file=sys.stderr)
        return EXIT_USAGE
    except (RuntimeError, OSError) as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return EXIT_RUNTIME


#: ``--model``'s help where it is optional (roadseg-run, roadseg-bench, roadseg-serve)
MODEL_HELP = "a .tflite or .onnx with its sidecar NAME.json beside it (default: the shipped model)"


def shipped_model() -> str:
    """Path of the model shipped inside the package, for a command given no
    ``--model`` (edge_runtime.models.default_model). Raises ValueError (one
    line: give --model) when this install has no shipped model."""
    try:
        from edge_runtime.models import default_model
    except ImportError:
        raise ValueError("--model is required: this install has no shipped model "
                         "(a .tflite or .onnx with its sidecar .json)") from None
    return str(default_model())


def size_arg(text: str) -> tuple[int, int]:
    """argparse ``type=`` for ``--size HxW``: (height, width) pixels. Imports the preprocessing
    contract only when the flag is given, so ``--help`` stays light. Raises ValueError (argparse
    turns it into a one-line usage error naming the flag)."""
    from edge_runtime.contract.preprocessing import parse_size
    return parse_size(text)
