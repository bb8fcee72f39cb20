"""Real filesystems for the vehicle's disk-fault tests (issue 31): a small tmpfs that fills up, a loop-mounted
ext4 image the kernel remounts read-only after an I/O error. Both need root and mount permission (skipped
without)."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest


def _mount(args: list[str]) -> None:
    r = subprocess.run(["mount", *args], check=False, capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount here ({r.stderr.strip()[:80]}): needs root and mount permission")


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 2 MiB tmpfs: a card that fills up."""
    point = tmp_path / "card"
    point.mkdir()
    _mount(["-t", "tmpfs", "-o", "size=2m", "tmpfs", str(point)])
    yield point
    subprocess.run(["umount", "-l", str(point)], check=False, capture_output=True)


@pytest.fixture
def ext4_image_card(tmp_path):
    """A loop-mounted 8 MiB ext4 image, errors=remount-ro: a card the kernel can remount read-only.
    Yields ``(mount point, image)`` (the image for an fsck, as a reboot does)."""
    image, point = tmp_path / "card.img", tmp_path / "card"
    point.mkdir()
    with open(image, "wb") as f:
        f.truncate(8 << 20)
    if shutil.which("mkfs.ext4") is None:
        pytest.skip("mkfs.ext4 not installed (e2fsprogs)")
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True, capture_output=True)
    _mount(["-o", "loop,errors=remount-ro", str(image), str(point)])
    yield point, image
    subprocess.run(["umount", "-l", str(point)], check=False, capture_output=True)


@pytest.fixture
def ext4_card(ext4_image_card):
    """:func:`ext4_image_card`'s mount point alone."""
    return ext4_image_card[0]


def io_error_remounts_read_only(point: Path) -> None:
    """What the kernel does after an I/O error on a card mounted errors=remount-ro (Raspberry Pi OS's default):
    ext4's own error path, triggered through /sys/fs/ext4/<dev>/trigger_fs_error, with files still open."""
    dev = Path(subprocess.run(["findmnt", "-n", "-o", "SOURCE", str(point)], capture_output=True, text=True,
                              check=True).stdout.strip()).name
    Path(f"/sys/fs/ext4/{dev}/trigger_fs_error").write_text("roadseg test: I/O error\n")
    with pytest.raises(OSError, match="Read-only file system"):
        (point / "probe").write_bytes(b"x")


def remount(point: Path, mode: str) -> None:
    """Remount the tmpfs at ``point`` ``ro`` or ``rw`` (a card that goes read-only, and comes back)."""
    subprocess.run(["mount", "-o", f"remount,{mode}", str(point)], check=True, capture_output=True)
