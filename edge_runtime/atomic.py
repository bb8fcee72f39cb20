"""Write a file so that readers see the old content or the new, never half of
it: write to a temporary name in the same folder, then rename over the target.

Every artifact roadseg writes (reports, checkpoints, plots, benchmark tables)
goes through :func:`atomic_path`, so a crash or a full disk never leaves a
truncated file looking valid.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same suffix, so libraries that
    pick a format by extension still work); on success it replaces ``path``,
    on an exception it is removed and ``path`` is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    stem, dot, suffixes = path.name.partition(".")  # keep every suffix: "best.weights.h5"
    tmp = path.with_name(f".{stem}.{os.getpid()}.tmp{dot}{suffixes}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_bytes(path: str | Path, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def save_figure(fig, path: str | Path, dpi: int = 100) -> Path:
    """``fig.savefig`` atomically, then close the figure (matplotlib)."""
    import matplotlib.pyplot as plt
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=dpi)
    finally:
        plt.close(fig)
    return Path(path)
