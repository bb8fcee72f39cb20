"""Write a file so that readers see the old content or the new, never half of
it: write to a temporary name in the same folder, then rename over the target.

Every artifact roadseg writes (reports, checkpoints, plots, benchmark tables)
goes through :func:`atomic_path`, so a crash or a full disk never leaves a
truncated file looking valid.

The other way, a small file named by a user (a password or token file, a
``--config`` TOML, a model's sidecar) is read with :func:`read_small_file`:
a regular file only, its size checked before a byte is read, so a link to
``/dev/zero``, a FIFO or a 73 MB "config" costs nothing.
"""
from __future__ import annotations

import contextlib
import os
import stat
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


_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def read_small_file(path: str | Path, max_bytes: int, what: str = "file", missing_ok: bool = False) -> bytes | None:
    """The bytes of ``path`` (symbolic links followed), which must be a regular
    file of at most ``max_bytes`` bytes; None when it does not exist and
    ``missing_ok``.

    The file is opened without blocking (a FIFO with no writer opens at once),
    then its kind and size are checked with ``fstat`` on that descriptor (no
    race with a rename), and at most ``max_bytes + 1`` bytes are read (a file
    that grew meanwhile is refused too): a link to ``/dev/zero``, a FIFO or a
    huge file cost no memory and no wait.

    Raises:
        ValueError: one line, ``cannot read {what} {path}: {reason}`` (missing,
            not a regular file and which kind it is, over ``max_bytes`` with its
            size, or the OS error); never any of the file's content.
    """
    def refuse(reason: str) -> ValueError:
        return ValueError(f"cannot read {what} {path}: {reason}")

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        if missing_ok:
            return None
        raise refuse("no such file") from None
    except OSError as e:
        raise refuse(e.strerror or type(e).__name__) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = next((name for test, name in _KINDS if test(st.st_mode)), "not a plain file")
            raise refuse(f"not a regular file ({kind})")
        if st.st_size > max_bytes:
            raise refuse(f"{st.st_size} bytes, over the {max_bytes} it may have")
        chunks, left = [], max_bytes + 1
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        if left <= 0:
            raise refuse(f"over the {max_bytes} bytes it may have (it grew while read)")
        return b"".join(chunks)
    except OSError as e:
        raise refuse(e.strerror or type(e).__name__) from None
    finally:
        os.close(fd)


def read_small_text(path: str | Path, max_bytes: int, what: str = "file", missing_ok: bool = False) -> str | None:
    """:func:`read_small_file` decoded as UTF-8 (a BOM dropped). Raises
    ValueError as it does, and ``cannot read {what} {path}: not UTF-8 text``."""
    data = read_small_file(path, max_bytes, what, missing_ok)
    if data is None:
        return None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ValueError(f"cannot read {what} {path}: not UTF-8 text") from None


def free_bytes(folder: str | Path) -> tuple[int, bool]:
    """``(bytes this user may still write, read-only?)`` of the file system holding
    ``folder``, from ``statvfs(2)`` (no write: safe on a card that errs; root also
    takes ext4's reserved blocks). Blocks while the file system does.

    Raises:
        OSError: ``folder`` cannot be looked at (FileNotFoundError when it does not exist).
    """
    st = os.statvfs(folder)
    free = (st.f_bfree if os.geteuid() == 0 else st.f_bavail) * st.f_frsize
    return free, bool(st.f_flag & os.ST_RDONLY)


def fsync_dir(path: str | Path) -> None:
    """Flush a folder's entries (a rename or unlink in it) to disk (POSIX: fsync on the directory).

    Raises:
        OSError: the folder cannot be opened or synced.
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def durable_write(path: str | Path, data: bytes, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` so that after a power cut it holds the old bytes or the new:
    a temporary file in the same folder (created with ``mode``, e.g. 0o600 for a key), fsync,
    rename, fsync of the folder. What :func:`write_bytes` leaves to the page cache, this puts on disk.

    Raises:
        OSError: the folder or file cannot be written or synced.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    fsync_dir(path.parent)
