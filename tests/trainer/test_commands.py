"""The training side's command lines live in commands/ modules; library
modules raise and never parse flags or exit (issue 25 point 5). AST checks,
no TensorFlow: milliseconds."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("trainer", "distill", "calibration")


def _library_modules():
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            rel = path.relative_to(ROOT)
            if "commands" in rel.parts or rel.name == "__main__.py":
                continue
            yield rel, ast.parse(path.read_text())


def _offences(tree: ast.Module) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) else [])
            if "argparse" in names:
                found.append(f"{node.lineno} imports argparse")
        elif isinstance(node, ast.If) and isinstance(node.test, ast.Compare) \
                and getattr(node.test.left, "id", None) == "__name__":
            found.append(f"{node.lineno} runs as a script")
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", None) in ("exit", "add_argument") \
                and getattr(node.func.value, "id", None) in ("sys", "p", "parser", "ap"):
            found.append(f"{node.lineno} calls {node.func.attr}")
    return found


def test_library_modules_have_no_command_line():
    offenders = [f"{rel}:{o}" for rel, tree in _library_modules() for o in _offences(tree)]
    assert offenders == [], "command-line code outside commands/:\n" + "\n".join(offenders)


def test_console_scripts_start_in_commands_modules():
    from edge_runtime.commands.launch import COMMANDS
    for name in ("roadseg-train", "roadseg-eval", "roadseg-data", "roadseg-distill", "roadseg-calibrate"):
        module = COMMANDS[name].module
        assert module.split(".")[0] in PACKAGES and ".commands." in module, (name, module)
        assert (ROOT / (module.replace(".", "/") + ".py")).is_file(), module


def test_loss_names_on_the_command_line_are_the_losses():
    """--loss's choices are spelled in commands.common so that --help needs no TensorFlow; they must
    be trainer.losses' names."""
    import re
    common = (ROOT / "trainer" / "commands" / "common.py").read_text()
    losses = (ROOT / "trainer" / "losses.py").read_text()
    flag = re.search(r"^LOSSES = \[(.*)\]$", common, re.M).group(1)
    lib = re.search(r"^LOSSES = \((.*)\)$", losses, re.M).group(1)
    assert ast.literal_eval(f"[{flag}]") == list(ast.literal_eval(f"({lib})"))
