"""edge_runtime.api.auth: the bearer token, signed URLs, and refusing before the body is read."""
import os
import sys
import tempfile
import threading
import time
from urllib.parse import quote

import numpy as np
import pytest

pytest.importorskip("fastapi")
import cv2  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from edge_runtime.api import LiveState, create_app, load_token  # noqa: E402
from tests.edge_runtime.api_serving import raw_head, raw_request, read_response, served  # noqa: E402

TOKEN = "s3cret-token"
BEARER = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def seg(tiny_tflite):
    from edge_runtime.model.segmenter import DeviceSegmenter
    return DeviceSegmenter(tiny_tflite, threads=1)


def test_token_guards_every_route_but_health_including_the_docs(seg):
    c = TestClient(create_app(seg, token=TOKEN))
    assert c.get("/healthz").status_code == 200
    for method, path in (("GET", "/v1/stats"), ("GET", "/openapi.json"), ("GET", "/docs"), ("POST", "/v1/live-url"),
                         ("POST", "/v1/docs-url"), ("GET", "/v1/stream.mjpg"), ("GET", "/redoc"), ("GET", "/nope")):
        r = c.request(method, path)
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", (path, r.status_code)
        r = c.request(method, path, headers={"Authorization": "Bearer wrong"})
        assert r.status_code == 401, path
    schema = c.get("/openapi.json", headers=BEARER).json()
    assert schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert c.get("/docs", headers=BEARER).status_code == 200
    r = c.get("/v1/stats", headers={"Authorization": f"bearer   {TOKEN}  "})  # scheme is case-insensitive
    assert r.status_code == 200 and r.json()["model"]["input_size"] == [64, 128]
    assert all(op.get("security") for p, ops in schema["paths"].items() for op in ops.values() if p != "/healthz")
    # without a token everything is open, as before, and the schema declares nothing to authorize (issue 33: no
    # Authorize button, no padlocks in /docs)
    open_schema = TestClient(create_app(seg)).get("/openapi.json")
    assert open_schema.status_code == 200
    assert "securitySchemes" not in open_schema.json().get("components", {})
    assert not [p for p, ops in open_schema.json()["paths"].items() for op in ops.values() if "security" in op]


def test_a_signed_docs_url_opens_the_docs_and_their_schema_only(seg):
    c = TestClient(create_app(seg, token=TOKEN))
    got = c.post("/v1/docs-url?ttl=60", headers=BEARER).json()
    assert got["url"].startswith("/docs?expires=") and TOKEN not in got["url"]
    page = c.get(got["url"])
    assert page.status_code == 200
    openapi = page.text.split("url: '")[1].split("'")[0]  # the schema URL the page fetches, signed too
    assert openapi.startswith("/openapi.json?expires=") and c.get(openapi).status_code == 200
    assert c.get("/v1/stats?" + got["url"].split("?")[1]).status_code == 401  # the signature opens /docs only
    assert c.get("/openapi.json?" + got["url"].split("?")[1]).status_code == 401


def test_protected_live_view_opens_from_a_signed_url(seg):
    live = LiveState()
    img = np.zeros((64, 128, 3), np.uint8)
    live.update(img, "rgb", seg.segment(img, "rgb"), 10.0)
    c = TestClient(create_app(seg, live, token=TOKEN))
    assert c.post("/v1/live-url").status_code == 401
    got = c.post("/v1/live-url?ttl=60", headers=BEARER).json()
    assert TOKEN not in got["url"] and got["expires"] > time.time()
    with c.stream("GET", got["url"]) as r:  # no header: what an <img> in a browser does
        assert r.status_code == 200
        assert b"--frame" in next(r.iter_bytes())
    assert c.get(got["url"].replace("sig=", "sig=0")).status_code == 401
    path, query = got["url"].split("?")
    assert c.get(f"{path}?expires={int(time.time()) - 5}&{query.split('&')[1]}").status_code == 401
    assert c.get("/v1/stats?" + query).status_code == 401  # the signature opens the live view only


# query values that are not ASCII digits / hex, or out of range: each must be a 401, never a 500 or a reset
BAD_EXPIRES = ["²", "%C2%B2", "%D9%A1%D9%A2", "١٢", "-1", "1e12", "99999999999999999999999", "", "%00", "0x10",
               " 1", "%FF%FE"]
BAD_SIGS = ["é", "%C3%A9", "%FF", "", "ZZ", "0" * 63, "g" * 64, "0" * 10_000, "%00" * 64]


def test_malformed_signed_url_parameters_are_401_over_a_real_server(seg):
    live = LiveState()
    with served(create_app(seg, live, token=TOKEN)) as (_, port):
        good_sig = "a" * 64
        targets = [f"/v1/stream.mjpg?expires={e}&sig={good_sig}" for e in BAD_EXPIRES]
        targets += [f"/v1/stream.mjpg?expires={int(time.time()) + 60}&sig={s}" for s in BAD_SIGS]
        targets += ["/v1/stream.mjpg?expires=&expires=1&sig=&sig=", "/docs?sig=%", "/v1/stream.mjpg?%%%"]
        for target in targets:
            # percent-encoded, as a browser sends it: the token check refuses it
            quoted = quote(target, safe="/?&=%")
            status, _, body = raw_request(port, f"GET {quoted} HTTP/1.1\r\nHost: x\r\n\r\n".encode("ascii"))
            assert status == 401, (quoted, status, body[:200])
            # raw UTF-8 in the request line, as a careless client sends it: refused by HTTP parsing or the token
            status, _, body = raw_request(port, f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode("utf-8"))
            assert status in (400, 401), (target, status, body[:200])


@pytest.mark.parametrize("token", ["s3cret-token", "tök€n with spaces", "\u00e9t\u00e9"])
def test_tokens_with_spaces_and_unicode_work_as_utf8_and_latin1(seg, tmp_path, token):
    f = tmp_path / "token"
    f.write_text(f"  {token}\n", encoding="utf-8")
    from edge_runtime.api.auth import Authenticator
    assert load_token(str(f)) == token
    auth = Authenticator(token)
    assert auth.allows("/v1/stats", b"Bearer " + token.encode("utf-8"))
    try:
        assert auth.allows("/v1/stats", b"Bearer " + token.encode("latin-1"))  # requests' header encoding
    except UnicodeEncodeError:
        pass
    assert not auth.allows("/v1/stats", b"Bearer " + token.encode("utf-8")[:-1])
    assert not auth.allows("/v1/stats", b"Basic " + token.encode("utf-8"))


def test_an_unreadable_token_file_is_one_line_without_its_content(tmp_path):
    f = tmp_path / "token"
    f.write_bytes(b"\xff\xfe not utf-8")
    with pytest.raises(ValueError, match="cannot read token file") as e:
        load_token(str(f))
    assert "not utf-8" not in str(e.value)
    with pytest.raises(ValueError, match="cannot read token file"):
        load_token(str(tmp_path / "missing"))


class _Opens:
    """Files opened under a folder, seen through Python's audit hooks (PEP 578):
    Starlette spools uploads with tempfile, whose O_TMPFILE files have no name
    to list afterwards, but each open is an audit event with the folder's path."""
    folders: list[str] = []
    seen: list[str] = []

    @classmethod
    def hook(cls, event, args):
        if event in ("open", "tempfile.mkstemp") and args and isinstance(args[0], (str, bytes)):
            path = os.fsdecode(args[0])
            if any(path.startswith(f) for f in cls.folders):
                cls.seen.append(path)


sys.addaudithook(_Opens.hook)


def _noise_png(h: int, w: int) -> bytes:
    return cv2.imencode(".png", np.random.default_rng(0).integers(0, 255, (h, w, 3), np.uint8))[1].tobytes()


def _multipart(data: bytes, boundary: str = "roadsegboundary") -> tuple[str, bytes]:
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.png\"\r\n"
            "Content-Type: image/png\r\n\r\n").encode()
    return f"multipart/form-data; boundary={boundary}", head + data + f"\r\n--{boundary}--\r\n".encode()


def test_an_unauthenticated_upload_is_refused_before_its_body_is_read(seg, tmp_path, monkeypatch):
    spool = tmp_path / "spool"
    spool.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spool))
    _Opens.folders, _Opens.seen = [str(spool)], []
    ctype, body = _multipart(_noise_png(700, 800))
    assert len(body) > 1024 * 1024  # above Starlette's in-memory spool: an accepted upload goes to disk
    with served(create_app(seg, token=TOKEN)) as (_, port):
        # control: an authorized upload of this size is spooled to the folder the hook watches
        sock = raw_head(port, "POST", "/v1/segment", {"Content-Type": ctype, "Content-Length": str(len(body)),
                                                      **BEARER})
        sock.sendall(body)
        assert read_response(sock)[0] == 200
        assert _Opens.seen, "the audit hook did not see the spooled upload: this test could not fail"
        _Opens.seen.clear()
        # 300 MB announced, not a byte of it sent: the 401 comes at once, from the head alone
        head = {"Content-Type": ctype, "Content-Length": str(300_000_000)}
        sock = raw_head(port, "POST", "/v1/segment", head, timeout=5)
        status, headers, _ = read_response(sock)
        assert status == 401 and headers["connection"] == "close"
        # a client that pushes the body without waiting (as requests does) gets the 401 too, and nothing is kept
        sock = raw_head(port, "POST", "/v1/segment", head, timeout=5)
        pushed = []
        pusher = threading.Thread(target=_push, args=(sock, body, pushed), daemon=True)
        pusher.start()
        assert read_response(sock)[0] == 401
        pusher.join(timeout=10)
    assert _Opens.seen == [] and list(spool.iterdir()) == []


def _push(sock, body: bytes, pushed: list) -> None:
    try:
        for i in range(0, 8 * len(body), 65536):
            sock.sendall(body[i % len(body):i % len(body) + 65536])
            pushed.append(65536)
    except OSError:  # the server closed: what was refused is not read
        pass
