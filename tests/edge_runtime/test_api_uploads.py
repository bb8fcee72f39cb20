"""edge_runtime.api.uploads: bytes (declared, counted, timed), type and pixels before decoding."""
import itertools
import socket
import struct
import threading
import time
import zlib

import cv2
import numpy as np
import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from edge_runtime.api import create_app  # noqa: E402
from tests.edge_runtime.api_serving import png_bytes, raw_head, read_response, served  # noqa: E402


@pytest.fixture(scope="module")
def seg(tiny_tflite):
    from edge_runtime.model.segmenter import DeviceSegmenter
    return DeviceSegmenter(tiny_tflite, threads=1)


def test_requests_default_multipart_upload_gets_coverage(seg, tmp_path):
    """``requests.post(url, files={"file": open(p, "rb")})`` sends the part without a content type."""
    requests = pytest.importorskip("requests")
    p = tmp_path / "street.png"
    p.write_bytes(png_bytes())
    jpg = tmp_path / "street.jpg"
    jpg.write_bytes(cv2.imencode(".jpg", cv2.imdecode(np.frombuffer(png_bytes(), np.uint8), cv2.IMREAD_COLOR))[1])
    with served(create_app(seg)) as (url, _):
        for path in (p, jpg):
            with open(path, "rb") as f:
                r = requests.post(f"{url}/v1/segment", files={"file": f}, timeout=30)
            assert r.status_code == 200, r.text
            assert sum(r.json()["coverage"].values()) == pytest.approx(1.0, abs=1e-4)
        r = requests.post(f"{url}/v1/segment", files={"file": ("x.bin", p.read_bytes(), "application/octet-stream")},
                          timeout=30)
        assert r.status_code == 200, r.text
        r = requests.post(f"{url}/v1/segment?format=png", files={"file": p.open("rb")}, timeout=30)
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"


@pytest.mark.parametrize("ctype,body,status", [
    (None, png_bytes(), 200),                                   # requests' default part
    ("application/octet-stream", png_bytes(), 200),             # curl -F file=@x.bin
    ("image/png; charset=binary", png_bytes(), 200),
    ("IMAGE/PNG", png_bytes(), 200),
    ("text/plain", png_bytes(), 415),                           # a declared non-image type is refused
    ("image/webp", png_bytes(), 415),
    (None, b"hello, not an image", 422),                        # a missing type does not let text through
    ("application/octet-stream", b"<html>\xff\xd8</html>", 422),
    (None, b"", 422),
])
def test_content_type_may_be_missing_or_generic_but_the_bytes_decide(seg, ctype, body, status):
    c = TestClient(create_app(seg))
    part = ("f", body) if ctype is None else ("f", body, ctype)
    r = c.post("/v1/segment", files={"file": part})
    assert r.status_code == status, r.text


def test_bad_type_bad_image_oversized(seg):
    c = TestClient(create_app(seg, max_upload=50_000))
    r = c.post("/v1/segment", files={"file": ("f.txt", b"hello", "text/plain")})
    assert r.status_code == 415 and "image/jpeg" in r.json()["detail"]
    r = c.post("/v1/segment", files={"file": ("f.png", b"not really a png", "image/png")})
    assert r.status_code == 422 and "not a decodable" in r.json()["detail"]
    big = cv2.imencode(".png", np.random.default_rng(0).integers(0, 255, (200, 200, 3), np.uint8))[1].tobytes()
    assert len(big) > 50_000
    r = c.post("/v1/segment", files={"file": ("f.png", big, "image/png")})
    assert r.status_code == 413


def _png_header_only(w: int, h: int) -> bytes:
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + struct.pack(">IIBBBBB", w, h, 1, 0, 0, 0, 0)


def _bomb_png(w: int, h: int) -> bytes:
    """A real, decodable 1-bit PNG of w x h: a few tens of KB that decode to gigabytes."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    raw = zlib.compress(b"\x00" * ((w + 7) // 8 + 1) * h, 9)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 1, 0, 0, 0, 0))
            + chunk(b"IDAT", raw) + chunk(b"IEND", b""))


def _jpeg_claiming(w: int, h: int) -> bytes:
    jpg = cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))[1].tobytes()
    i = jpg.index(b"\xff\xc0")
    return jpg[:i + 5] + struct.pack(">HH", h, w) + jpg[i + 9:]


def test_decompression_bombs_are_413_from_the_header_and_broken_headers_422(seg):
    from edge_runtime.api.uploads import image_dimensions
    bomb = _bomb_png(20000, 20000)
    assert len(bomb) < 200_000 and image_dimensions(bomb) == ("png", 20000, 20000)
    assert image_dimensions(_jpeg_claiming(13000, 13000)) == ("jpeg", 13000, 13000)
    c = TestClient(create_app(seg), raise_server_exceptions=False)
    for body in (bomb, _png_header_only(40000, 40000), _jpeg_claiming(13000, 13000), _jpeg_claiming(65500, 65500)):
        r = c.post("/v1/segment?format=png", files={"file": ("b.png", body, "image/png")})
        assert r.status_code == 413 and "--max-pixels" in r.json()["detail"], r.text
    for body in (b"\xff\xd8\xff\xe0\x00\x10JFIF", b"\xff\xd8<html>", b"\x89PNG\r\n\x1a\n\x00", b"\xff\xd8\xff",
                 _png_header_only(0, 10)):
        r = c.post("/v1/segment", files={"file": ("t.jpg", body, "image/jpeg")})
        assert r.status_code in (413, 422), (body, r.status_code)
    jpg = cv2.imencode(".jpg", np.zeros((30, 50, 3), np.uint8))[1].tobytes()
    assert image_dimensions(jpg) == ("jpeg", 50, 30)


PART_HEAD = b'--b\r\nContent-Disposition: form-data; name="file"; filename="x.png"\r\n\r\n'


def _multipart_head(port: int, length: int | None, path: str = "/v1/segment"):
    headers = {"Content-Type": "multipart/form-data; boundary=b"}
    headers.update({"Content-Length": str(length)} if length is not None else {"Transfer-Encoding": "chunked"})
    return raw_head(port, "POST", path, headers, timeout=5)


def test_a_declared_length_over_the_cap_is_413_before_the_body(seg):
    with served(create_app(seg, max_upload=50_000)) as (_, port):
        for path, length in (("/v1/segment", 300_000_000), ("/v1/segment", 50_000 + 20_000),
                             ("/v1/live-url", 1_000_000), ("/v1/stats", 100_000)):
            sock = _multipart_head(port, length, path)  # not a byte of the body is sent
            status, headers, body = read_response(sock)
            assert status == 413 and headers["connection"] == "close", (path, status, body)
            sock.close()


def _send_until_answered(sock: socket.socket, total: int, chunked: bool) -> tuple[int, int]:
    """Push ``total`` bytes of one multipart file part from a thread while
    reading the answer: (status, bytes pushed by then)."""
    pushed = [0]
    answered = threading.Event()
    pieces = itertools.chain([PART_HEAD], itertools.repeat(b"x" * 16384))

    def push():
        try:
            while pushed[0] < total and not answered.is_set():
                piece = next(pieces)
                sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
                pushed[0] += len(piece)
            if chunked and not answered.is_set():
                sock.sendall(b"0\r\n\r\n")
        except OSError:
            pass

    t = threading.Thread(target=push, daemon=True)
    t.start()
    status = read_response(sock)[0]
    answered.set()
    t.join(timeout=10)
    return status, pushed[0]


def test_a_chunked_body_is_cut_off_at_the_cap_while_it_is_read(seg):
    with served(create_app(seg, max_upload=50_000)) as (_, port):
        status, pushed = _send_until_answered(_multipart_head(port, None), 50 * 1024 * 1024, chunked=True)
        assert status == 413 and pushed < 50 * 1024 * 1024  # answered long before the 50 MB were sent


def test_a_slow_body_is_408(seg):
    with served(create_app(seg, body_timeout=0.5)) as (_, port):
        # stalls after a few bytes
        sock = _multipart_head(port, 10_000)
        sock.sendall(b"--b\r\n")
        t0 = time.monotonic()
        status, headers, body = read_response(sock)
        assert status == 408 and headers["connection"] == "close" and b"did not arrive" in body
        assert time.monotonic() - t0 < 5
        # dribbles a valid multipart body a byte every 50 ms: far below 500 bytes/s
        sock = _multipart_head(port, 10_000)
        stop = threading.Event()
        part = PART_HEAD + png_bytes()

        def dribble():
            try:
                for i in range(len(part)):
                    if stop.wait(0.05):
                        break
                    sock.sendall(part[i:i + 1])
            except OSError:
                pass

        t = threading.Thread(target=dribble, daemon=True)
        t.start()
        try:
            assert read_response(sock)[0] == 408
        finally:
            stop.set()
            t.join(timeout=5)
