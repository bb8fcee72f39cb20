"""Guards for the shape of the code base (issue 25's "Done when" and point 7).

Pure ``ast``/text checks over the source tree: nothing of the project is
imported, so this file runs in about a second and in any venv. Each assertion
message lists every offender as ``path:line name`` so a reader can fix them in
one go.

* ``scripts/`` holds shell entry points; a Python file there stays within 100
  lines (product code belongs in an importable package).
* No function or method over 80 lines outside ``tests/``, counted from its
  ``def`` line to its last line (docstring included, decorators excluded).
* Every public definition outside ``tests/`` and ``scripts/`` has a docstring:
  each module, and each class, function and method whose name does not start
  with ``_`` (methods of a class whose name does not either). Nested functions,
  ``@overload`` stubs and property setters/deleters are exempt; ``__init__`` is
  private by its name (its class's docstring documents construction).
* ``edge_runtime`` never imports TensorFlow or Keras (DESIGN.md's one rule):
  not at module level and not inside a function, since the vehicle's venv has
  neither. ``tests/edge_runtime/test_isolation.py`` proves the same at run time.
"""
from __future__ import annotations

import ast
import functools
import os
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: folders that hold no source of ours: generated, ignored by git, or run outputs
SKIP_DIRS = {"__pycache__", "build", "dist", "runs", "out", "node_modules"}
MAX_SCRIPT_LINES = 100
MAX_FUNCTION_LINES = 80
#: top-level modules that are, or pull in, TensorFlow or Keras
BANNED_IN_RUNTIME = {"tensorflow", "tf_keras", "keras", "keras_hub", "keras_cv", "keras_nlp",
                     "segmentation_models", "tensorflow_hub", "tensorflow_datasets",
                     "tensorflow_model_optimization"}
_DYNAMIC_IMPORT = re.compile(r"""(?:import_module|__import__)\(\s*['"]([A-Za-z_][\w.]*)""")


def _python_files(under: str = "") -> list[Path]:
    """Every ``.py`` below ``ROOT/under``, skipping hidden, generated and ignored folders."""
    found = []
    for folder, dirs, files in os.walk(ROOT / under):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in SKIP_DIRS
                         and not d.endswith(".egg-info"))
        found += [Path(folder) / f for f in sorted(files) if f.endswith(".py")]
    return found


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _source_files() -> list[Path]:
    """Product code: every Python file outside ``tests/``."""
    return [p for p in _python_files() if not _rel(p).startswith("tests/")]


@functools.cache
def _tree(path: Path) -> ast.Module | None:
    try:
        return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (SyntaxError, UnicodeDecodeError, ValueError):
        return None


def _report(rule: str, offenders: list[str]) -> str:
    return f"{rule} ({len(offenders)} offender(s)):\n  " + "\n  ".join(offenders)


def _functions(node: ast.AST, prefix: str = ""):
    """Yield ``(qualified name, def node)`` for every function and method, nested ones included."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            name = f"{prefix}{child.name}"
            if not isinstance(child, ast.ClassDef):
                yield name, child
            yield from _functions(child, name + ".")
        else:
            yield from _functions(child, prefix)


def _exempt(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """``@overload`` stubs and ``@x.setter``/``@x.deleter`` share the documented definition's docstring."""
    for dec in fn.decorator_list:
        if isinstance(dec, ast.Name) and dec.id == "overload":
            return True
        if isinstance(dec, ast.Attribute) and dec.attr in ("overload", "setter", "deleter"):
            return True
    return False


def _public_definitions(node: ast.AST, prefix: str = ""):
    """Yield ``(qualified name, node)`` for public classes, functions and methods.

    Descends into public classes and into compound statements (``if``, ``try``,
    ``with``), never into function bodies (nested functions are not public)."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
            if not child.name.startswith("_") and not _exempt(child):
                yield f"{prefix}{child.name}", child
        elif isinstance(child, ast.ClassDef):
            if not child.name.startswith("_"):
                yield f"{prefix}{child.name}", child
                yield from _public_definitions(child, f"{prefix}{child.name}.")
        elif isinstance(child, ast.stmt):
            yield from _public_definitions(child, prefix)


def _has_docstring(node: ast.AST) -> bool:
    return bool((ast.get_docstring(node) or "").strip())


def _long_functions(tree: ast.Module, rel: str) -> list[str]:
    """``path:line name (N lines)`` for each function longer than MAX_FUNCTION_LINES."""
    return [f"{rel}:{fn.lineno} {name} ({n} lines)" for name, fn in _functions(tree)
            if (n := fn.end_lineno - fn.lineno + 1) > MAX_FUNCTION_LINES]


def _missing_docstrings(tree: ast.Module, rel: str) -> list[str]:
    """``path:line name`` for the module and each public definition without a docstring."""
    missing = [] if _has_docstring(tree) else [f"{rel}:1 <module>"]
    return missing + [f"{rel}:{node.lineno} {name}" for name, node in _public_definitions(tree)
                      if not _has_docstring(node)]


def _banned_imports(tree: ast.Module, text: str, rel: str) -> list[str]:
    """``path:line import X`` for every import of a BANNED_IN_RUNTIME module: statements
    anywhere (module level or in a function) and ``import_module("...")`` calls."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.append((node.lineno, node.module))
    for i, line in enumerate(text.splitlines(), 1):
        found += [(i, m.group(1)) for m in _DYNAMIC_IMPORT.finditer(line)]
    return [f"{rel}:{line} import {mod}" for line, mod in sorted(set(found))
            if mod.split(".")[0] in BANNED_IN_RUNTIME]


def _check(files: list[Path], check) -> list[str]:
    """Run ``check(tree, text, rel)`` over ``files``; a file that does not parse is an offender."""
    offenders = []
    for p in files:
        tree = _tree(p)
        if tree is None:
            offenders.append(f"{_rel(p)}:1 does not parse")
        else:
            offenders += check(tree, p.read_text(encoding="utf-8"), _rel(p))
    return offenders


def test_scripts_hold_no_long_python():
    offenders = [f"{_rel(p)}:1 ({n} lines)" for p in _python_files("scripts")
                 if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_SCRIPT_LINES]
    assert not offenders, _report(
        f"Python files over {MAX_SCRIPT_LINES} lines in scripts/ (move the code into a package, "
        "keep a shell entry point)", offenders)


def test_no_function_over_80_lines():
    offenders = _check(_source_files(), lambda tree, text, rel: _long_functions(tree, rel))
    assert not offenders, _report(f"functions over {MAX_FUNCTION_LINES} lines outside tests/", offenders)


def test_public_definitions_have_docstrings():
    files = [p for p in _source_files() if not _rel(p).startswith("scripts/")]
    offenders = _check(files, lambda tree, text, rel: _missing_docstrings(tree, rel))
    assert not offenders, _report(
        "public definitions without a docstring (say what, shapes/units, Raises:, sources)", offenders)


def test_edge_runtime_never_imports_tensorflow_or_keras():
    files = _python_files("edge_runtime")
    assert files, "no edge_runtime sources found"
    offenders = _check(files, _banned_imports)
    assert not offenders, _report("edge_runtime imports TensorFlow/Keras (DESIGN.md: never)", offenders)


# A sample holding one of each kind the checks must flag, beside what they must let pass.
_SAMPLE = '''"""A module."""
import numpy
from tensorflow import keras as K


class Public:
    """Documented."""

    def __init__(self):
        pass

    def method(self):
        import keras.ops

        def nested():
            pass

    @property
    def size(self):
        """Documented."""

    @size.setter
    def size(self, value):
        pass


class _Private:
    def method(self):
        pass


if numpy:
    def late():
        importlib.import_module("tf_keras.layers")


def long():
    """Documented."""
''' + "    x = 1\n" * 79


def test_checks_catch_each_kind():
    """Each check flags its kind on a known sample (and nothing more), so a green run means something."""
    tree = ast.parse(_SAMPLE)
    assert _missing_docstrings(tree, "m.py") == ["m.py:12 Public.method", "m.py:33 late"]
    assert _missing_docstrings(ast.parse("class A:\n    '''Doc.'''\n"), "n.py") == ["n.py:1 <module>"]
    assert _long_functions(tree, "m.py") == ["m.py:37 long (81 lines)"]
    assert _long_functions(ast.parse("def f():\n" + "    x = 1\n" * 79), "n.py") == []
    assert _banned_imports(tree, _SAMPLE, "m.py") == [
        "m.py:3 import tensorflow", "m.py:13 import keras.ops", "m.py:34 import tf_keras.layers"]
