"""Files named by a user are read size-first and only when regular (issue 32 item 10): a password or
token file, a ``--config`` TOML and a model's sidecar that is a link to /dev/zero, a FIFO or over its
cap is refused in one line naming the file, at once, without its content and without the memory it
would take (before: MemoryError, a hang, 854 MB for a 73 MB config); a sidecar nested too deeply for
JSON's parser names its file (before: exit 4 with a bare RecursionError)."""
from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SECRET = "hunter2-do-not-echo"
#: the memory a reader gets in the /dev/zero probe: before the fix it read until this ran out
AS_LIMIT = 1 << 30


def _caps() -> dict[str, int]:
    from edge_runtime.commands.settings import MAX_CONFIG_BYTES
    from edge_runtime.contract.sidecar import MAX_SIDECAR_BYTES
    from edge_runtime.io.credentials import MAX_SECRET_FILE_BYTES
    return {"mqtt-password": MAX_SECRET_FILE_BYTES, "api-token": MAX_SECRET_FILE_BYTES, "config": MAX_CONFIG_BYTES,
            "sidecar": MAX_SIDECAR_BYTES}


READERS = ("mqtt-password", "api-token", "config", "sidecar")


def read_with(reader: str, path: str):
    """Read ``path`` as ``reader`` would (the sidecar: as the sidecar of ``<path stem>.tflite``)."""
    if reader == "mqtt-password":
        from edge_runtime.io.credentials import credentials_from_env
        return credentials_from_env(path)
    if reader == "api-token":
        from edge_runtime.api.auth import load_token
        return load_token(path)
    if reader == "config":
        from edge_runtime.commands.settings import load_settings
        return load_settings({}, path, env={})
    if reader == "sidecar":
        from edge_runtime.contract.sidecar import read_sidecar
        return read_sidecar(Path(path).with_suffix(".tflite"), verify=False)
    raise AssertionError(reader)


def _name(reader: str) -> str:
    return "m.json" if reader == "sidecar" else reader


def _oversize(reader: str, path: Path) -> None:
    """One byte over the reader's cap, of content that would otherwise be read (TOML comments for the config)."""
    line = (f"# {SECRET}\n" if reader == "config" else f"{SECRET}\n").encode()
    cap = _caps()[reader]
    path.write_bytes((line * (cap // len(line) + 2))[:cap + 1])


@pytest.mark.parametrize("reader", READERS)
def test_a_file_over_its_cap_is_refused_before_it_is_read(reader, tmp_path):
    path = tmp_path / _name(reader)
    _oversize(reader, path)
    with pytest.raises(ValueError) as e:
        read_with(reader, str(path))
    msg = str(e.value)
    assert str(path) in msg and f"{_caps()[reader] + 1} bytes, over the {_caps()[reader]}" in msg, msg
    assert SECRET not in msg and "\n" not in msg


@pytest.mark.timeout(30)  # before the fix the open() itself waited for a writer, for ever
@pytest.mark.parametrize("reader", READERS)
def test_a_fifo_is_refused_at_once(reader, tmp_path):
    path = tmp_path / _name(reader)
    os.mkfifo(path)
    with pytest.raises(ValueError) as e:
        read_with(reader, str(path))
    assert str(path) in str(e.value) and "not a regular file (a FIFO)" in str(e.value), str(e.value)


def test_a_link_to_dev_zero_is_refused_under_a_memory_ceiling(tmp_path):
    """Each reader in a process limited to 1 GiB of address space (before the fix: MemoryError, or a
    sidecar taken for missing and a config file 'not found')."""
    for reader in READERS:
        path = tmp_path / reader / _name(reader)
        path.parent.mkdir()
        path.symlink_to("/dev/zero")
        code = ("import sys\nfrom tests.edge_runtime.test_small_files import read_with\n"
                "try:\n    read_with(sys.argv[1], sys.argv[2])\nexcept ValueError as e:\n    print(e)\n"
                "else:\n    print('read without an error')\n")
        r = subprocess.run([sys.executable, "-c", code, reader, str(path)], cwd=ROOT, capture_output=True, text=True,
                           check=False, timeout=60, env=dict(os.environ, PYTHONPATH=str(ROOT)),
                           preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (AS_LIMIT, AS_LIMIT)))
        out = r.stdout.strip()
        assert r.returncode == 0 and str(path) in out and "not a regular file (a character device)" in out, \
            (reader, r.returncode, out, r.stderr[-500:])


def test_the_helper_reads_a_regular_file_and_a_link_to_one(tmp_path):
    from edge_runtime.atomic import read_small_file, read_small_text
    f = tmp_path / "token"
    f.write_bytes(b"\xef\xbb\xbfabc\n")
    (tmp_path / "link").symlink_to(f)  # secrets mounted as links (Kubernetes, systemd credentials) are fine
    assert read_small_file(tmp_path / "link", 7) == b"\xef\xbb\xbfabc\n"
    assert read_small_text(f, 7, "token file") == "abc\n"
    assert read_small_file(tmp_path / "missing", 7, missing_ok=True) is None
    with pytest.raises(ValueError, match=r"^cannot read token file .*missing: no such file$"):
        read_small_text(tmp_path / "missing", 7, "token file")
    with pytest.raises(ValueError, match="not a regular file \\(a directory\\)"):
        read_small_file(tmp_path, 7)
    f.write_bytes(b"\xff\xfe" + SECRET.encode())
    with pytest.raises(ValueError, match="not UTF-8 text") as e:
        read_small_text(f, 100, "token file")
    assert SECRET not in str(e.value)


def test_a_deeply_nested_sidecar_names_its_file(tmp_path):
    from edge_runtime.contract.sidecar import (
        MAX_SIDECAR_BYTES,
        SidecarError,
        read_sidecar,
    )
    side = tmp_path / "m.json"
    side.write_text("[" * 200_000 + "]" * 200_000)  # 400 KB: under the cap, deeper than the parser goes
    assert side.stat().st_size < MAX_SIDECAR_BYTES
    with pytest.raises(SidecarError, match=f"sidecar {side} is nested too deeply"):
        read_sidecar(tmp_path / "m.tflite", verify=False)


def _cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          check=False, env=dict(os.environ, PYTHONPATH=str(ROOT)),
                          preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (4 * AS_LIMIT, 4 * AS_LIMIT)))


def test_the_commands_refuse_such_files_in_one_line(tmp_path):
    """The issue's commands: the monitor's (and so the dashboard's, fleet.broker) password file as a link
    to /dev/zero, roadseg-serve's token file as a FIFO, roadseg-serve's model with a nested sidecar: exit 2,
    one line naming the file, under a 4 GiB ceiling and a time limit."""
    zero = tmp_path / "password"
    zero.symlink_to("/dev/zero")
    r = _cli("fleet.monitor", "--mqtt-password-file", str(zero), "--mqtt-username", "monitor", "--duration", "1")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr[-500:]
    assert f"{zero}: not a regular file" in r.stderr
    fifo = tmp_path / "token"
    os.mkfifo(fifo)
    model = tmp_path / "m.tflite"
    shutil.copy(ROOT / "tests/data/tiny-int8.tflite", model)
    shutil.copy(ROOT / "tests/data/tiny-int8.json", tmp_path / "m.json")
    r = _cli("edge_runtime.commands.serve", "--model", str(model), "--api-token-file", str(fifo),
             "--http", "127.0.0.1:1")
    assert r.returncode == 2 and _said(r) == [
        f"roadseg-serve: error: cannot read token file {fifo}: not a regular file (a FIFO)"], r.stderr[-500:]
    (tmp_path / "m.json").write_text("[" * 200_000 + "]" * 200_000)
    r = _cli("edge_runtime.commands.serve", "--model", str(model), "--http", "127.0.0.1:1")
    said = _said(r)
    assert r.returncode == 2 and len(said) == 1 and f"{tmp_path / 'm.json'} is nested too deeply" in said[0], \
        r.stderr[-500:]


def _said(r: subprocess.CompletedProcess) -> list[str]:
    """The command's own lines on stderr (LiteRT's native "Created TensorFlow Lite XNNPACK delegate" aside)."""
    return [line for line in r.stderr.splitlines() if not line.startswith("INFO: Created TensorFlow Lite")]
