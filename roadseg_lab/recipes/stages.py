"""Running a recipe's stages: each stage is one ``roadseg-*`` command run as
a subprocess from the checkout, its output appended to a log file and its
progress lines echoed."""
from __future__ import annotations

import shlex
import subprocess
import sys
import time
from pathlib import Path

from roadseg_lab.pages import ROOT

#: the folder of this interpreter's console scripts (roadseg-train, ...)
BIN = Path(sys.executable).parent
#: words of a command's output worth echoing while it runs
PROGRESS = (" epoch ", "val mIoU", "teacher cache", "accuracy gate", "mIoU-", "round ", "error", "Error", "drop",
            "wrote")


def log(msg: str) -> None:
    """A recipe's progress line on stdout, with the time of day."""
    print(f"[reproduce {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def run(cmd: list[str], logfile: Path, ok_codes: tuple[int, ...] = (0,)) -> int:
    """Run ``cmd`` in the checkout, appending its output to ``logfile`` and
    echoing its progress lines; returns its exit code. Raises
    ``SystemExit`` (naming the log) when the code is not in ``ok_codes``."""
    logfile.parent.mkdir(parents=True, exist_ok=True)
    log("$ " + " ".join(shlex.quote(c) for c in cmd) + f"  (log: {logfile})")
    t0 = time.time()
    with logfile.open("a") as f:
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
        for line in p.stdout:
            f.write(line)
            if any(k in line for k in PROGRESS):
                print("    " + line.rstrip()[-160:], flush=True)
        if p.wait() not in ok_codes:
            raise SystemExit(f"stage failed ({p.returncode}): see {logfile}")
    log(f"done in {time.time() - t0:.0f}s")
    return p.returncode


def stage_done(run_dir: Path) -> bool:
    """Whether a training stage finished: ``metrics.json`` and the export are there."""
    return (run_dir / "metrics.json").is_file() and (run_dir / "export" / "saved_model.pb").is_file()


def resume_flag(run_dir: Path) -> list[str]:
    """``["--resume"]`` when the run has a checkpoint to continue from, else ``[]``."""
    return ["--resume"] if (run_dir / "checkpoints" / "last.npz").is_file() else []


def repeat(flag: str, values) -> list[str]:
    """``flag`` before each of ``values`` (``--model a --model b``)."""
    return sum(([flag, str(v)] for v in values), [])
