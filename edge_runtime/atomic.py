"""Write a file so that readers see the old content or the new, never half of
it: write to a temporary name in the same folder, then rename over the target.

Every artifact roadseg writes (reports, checkpoints, plots, benchmark tables)
goes through :func:`atomic_path`, so a crash or a full disk never leaves a
truncated file looking valid.
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same suffix, so libraries that
    pick a format by extension still work); on success it replaces ``path``,
    on an exception it is removed and ``path`` is untouched.

    The temporary name is ``.<stem>.<pid>.tmp.<suffixes>`` in the target's
    folder (created if missing), so the final ``os.replace`` is a rename
    within one file system: atomic on POSIX. Two threads of one process
    writing the same ``path`` at once would share the temporary name: don't.

    Raises:
        OSError: the folder cannot be created, or the rename fails (e.g. the
            caller wrote nothing to the temporary path, or a permission).
    """
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
    """Write ``data`` to ``path`` atomically (see :func:`atomic_path`) and return it as a Path.

    Raises:
        OSError: the folder or file cannot be written.
    """
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically, in the locale's encoding as
    :meth:`pathlib.Path.write_text`, and return it as a Path.

    Raises:
        OSError: the folder or file cannot be written.
        UnicodeEncodeError: ``text`` does not fit the locale's encoding.
    """
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def save_figure(fig, path: str | Path, dpi: int = 100) -> Path:
    """``fig.savefig`` atomically, then close the figure (matplotlib), even on failure.

    Args:
        fig: a ``matplotlib.figure.Figure``.
        path: the target; its suffix picks the format (``.png``, ``.svg``...).
        dpi: dots per inch for raster formats.

    Raises:
        ImportError: matplotlib is not installed (the ``plot`` extra).
        OSError: the folder or file cannot be written.
        ValueError: matplotlib does not know the suffix's format.
    """
    import matplotlib.pyplot as plt
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=dpi)
    finally:
        plt.close(fig)
    return Path(path)
