"""edge_runtime.commands.serve: roadseg-serve, the device API alone, as a process."""
import os
import signal
import subprocess
import sys
import threading

import pytest

from edge_runtime.commands import serve
from tests.edge_runtime.api_serving import free_port, png_bytes


def test_the_commands_defaults_are_the_apis():
    pytest.importorskip("fastapi")
    from edge_runtime.api import app, uploads
    limits = serve.upload_limits(None, None, None)
    assert limits == {"max_upload": uploads.DEFAULT_MAX_UPLOAD, "max_pixels": uploads.DEFAULT_MAX_PIXELS,
                      "max_inflight": app.DEFAULT_MAX_INFLIGHT}


def test_model_defaults_to_the_shipped_one_like_roadseg_run():
    model = next(a for a in serve.build_parser()._actions if "--model" in a.option_strings)
    assert not model.required and "default: the shipped model" in model.help


@pytest.mark.parametrize("argv,flag", [(["--max-upload-mb", "0"], "--max-upload-mb"),
                                       (["--max-upload-mb", "nan"], "--max-upload-mb"),
                                       (["--max-pixels", "-5"], "--max-pixels"),
                                       (["--max-inflight", "0"], "--max-inflight")])
def test_bad_limits_are_one_line_and_exit_2(tiny_tflite, capsys, argv, flag):
    assert serve.main(["--model", str(tiny_tflite), *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("roadseg-serve: error:") and flag in err[0]


def test_a_bad_address_or_busy_port_is_one_line(tiny_tflite, capsys):
    assert serve.main(["--model", str(tiny_tflite), "--http", "localhost"]) == 2
    assert "is not HOST:PORT" in capsys.readouterr().err
    import socket
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        rc = serve.main(["--model", str(tiny_tflite), "--http", f"127.0.0.1:{busy.getsockname()[1]}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 4 and len(err) == 1 and "cannot listen there" in err[0]


def test_roadseg_serve_answers_requests_and_stops_on_sigterm(tiny_tflite, tmp_path):
    requests = pytest.importorskip("requests")
    pytest.importorskip("uvicorn")
    port = free_port()
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    proc = subprocess.Popen([sys.executable, "-m", "edge_runtime.commands.serve", "--model", str(tiny_tflite),
                             "--http", f"127.0.0.1:{port}", "--api-token-file", str(token), "--max-upload-mb", "1"],
                            stderr=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    lines, up = [], threading.Event()

    def read_log():
        for line in proc.stderr:
            lines.append(line)
            if "Uvicorn running on" in line:
                up.set()

    reader = threading.Thread(target=read_log, daemon=True)
    reader.start()
    try:
        assert up.wait(timeout=60), "".join(lines)
        assert any("serving" in line and "threads" in line and "token required" in line for line in lines), lines
        url = f"http://127.0.0.1:{port}"
        p = tmp_path / "street.png"
        p.write_bytes(png_bytes())
        with open(p, "rb") as f:
            r = requests.post(f"{url}/v1/segment", files={"file": f}, headers={"Authorization": "Bearer s3cret"},
                              timeout=30)
        assert r.status_code == 200 and r.json()["schema"] == "roadseg.segment/1", r.text
        r = requests.post(f"{url}/v1/segment", headers={"Authorization": "Bearer s3cret",
                                                        "Content-Type": "multipart/form-data; boundary=x"},
                          data=b"x" * (2 * 1024 * 1024), timeout=30)
        assert r.status_code == 413  # --max-upload-mb 1
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=30)
        reader.join(timeout=5)
    assert rc == 0, "".join(lines)
    assert "Traceback" not in "".join(lines)
