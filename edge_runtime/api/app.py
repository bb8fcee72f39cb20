"""The device HTTP API (FastAPI): segment an uploaded image, watch the live
overlay as MJPEG, read stats.

    roadseg-serve --model dist/X.tflite [--http 127.0.0.1:8080]      # alone
    roadseg-run ... --http 127.0.0.1:8080                           # beside the live loop

Routes: ``POST /v1/segment`` (``?format=json|png``, ``&view=overlay|mask``),
``GET /v1/stream.mjpg``, ``POST /v1/live-url``, ``GET /v1/stats``, ``GET
/healthz`` and FastAPI's ``/openapi.json`` and ``/docs``. Binds to loopback
unless told otherwise. With a token (``ROADSEG_API_TOKEN`` or
``--api-token-file``) the /v1 routes need ``Authorization: Bearer <token>``
(/docs has an Authorize button); ``POST /v1/live-url`` hands out a signed URL
of the live view, valid for minutes, that a browser can open without the
header. The token never goes into a URL. Uploads are bounded in bytes
(``--max-upload-mb``), pixels (``--max-pixels``, read from the header before
decoding) and number in flight (``--max-inflight``, 503 beyond).
"""

import hashlib
import hmac
import logging
import struct
import os
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np

log = logging.getLogger("roadseg.api")

ALLOWED_TYPES = {"image/jpeg", "image/png", "image/jpg"}
DEFAULT_MAX_UPLOAD = 10 * 1024 * 1024
DEFAULT_MAX_PIXELS = 12_000_000    # a 4000x3000 photo; about 36 MB decoded: fits beside the loop on a 1 GB Pi
DEFAULT_MAX_INFLIGHT = 2
DEFAULT_MAX_VIEWERS = 4


class LiveState:
    """The newest frame of the live loop, for the MJPEG stream and /v1/stats.
    The loop only stores references; the overlay is drawn when someone watches."""

    def __init__(self):
        self._cond = threading.Condition()
        self._item = None
        self._seq = 0
        self.stats_fn = None

    def update(self, frame: np.ndarray, order: str, classes: np.ndarray, fps: float) -> None:
        with self._cond:
            self._item = (frame, order, classes.copy(), fps)
            self._seq += 1
            self._cond.notify_all()

    def wait_next(self, last_seq: int, timeout: float = 2.0):
        with self._cond:
            self._cond.wait_for(lambda: self._seq != last_seq, timeout)
            return self._seq, self._item


def load_token(token_file: str | None = None) -> str | None:
    if token_file:
        try:
            return Path(token_file).read_text().strip() or None
        except OSError as e:
            raise ValueError(f"cannot read token file {token_file}: {e}") from None
    return os.environ.get("ROADSEG_API_TOKEN") or None


def image_dimensions(data: bytes) -> tuple[str, int, int]:
    """``(format, width, height)`` from a PNG or JPEG header, without decoding
    a pixel: the decompression-bomb check runs before any allocation."""
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        if len(data) < 24 or data[12:16] != b"IHDR":
            raise ValueError("truncated PNG header")
        w, h = struct.unpack(">II", data[16:24])
        return "png", w, h
    if data[:2] == b"\xff\xd8":
        i = 2
        while i + 4 <= len(data):
            if data[i] != 0xFF:
                raise ValueError("corrupt JPEG marker")
            marker = data[i + 1]
            if marker == 0xFF:  # fill byte
                i += 1
                continue
            if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:
                i += 2
                continue
            (length,) = struct.unpack(">H", data[i + 2:i + 4])
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # start of frame
                if i + 9 > len(data):
                    break
                h, w = struct.unpack(">HH", data[i + 5:i + 9])
                return "jpeg", w, h
            i += 2 + length
        raise ValueError("JPEG without a frame header")
    raise ValueError("neither a PNG nor a JPEG signature")


def _signature(token: str, path: str, expires: int) -> str:
    key = hashlib.sha256(b"roadseg-live-url:" + token.encode()).digest()  # the token itself never signs
    return hmac.new(key, f"{path}|{expires}".encode(), hashlib.sha256).hexdigest()


def create_app(segmenter, live: LiveState | None = None, token: str | None = None,
               max_upload: int = DEFAULT_MAX_UPLOAD, max_pixels: int = DEFAULT_MAX_PIXELS,
               max_inflight: int = DEFAULT_MAX_INFLIGHT, max_viewers: int = DEFAULT_MAX_VIEWERS):
    """The API. Uploads are checked (type, bytes, pixels from the header)
    before decoding, decoded and segmented on a worker thread with at most
    ``max_inflight`` at once (503 beyond), so the event loop and /healthz stay
    responsive. With ``token``, routes need ``Authorization: Bearer`` (the
    OpenAPI security scheme, so /docs has an Authorize button); the live view
    also opens from a short-lived signed URL (``POST /v1/live-url``) that a
    browser can put in an ``<img>``."""
    from fastapi import Depends, FastAPI, File, HTTPException, Query, Request, UploadFile
    from fastapi.concurrency import run_in_threadpool
    from fastapi.responses import JSONResponse, Response, StreamingResponse
    from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

    from edge_runtime.contract import payloads
    from edge_runtime.contract.coverage import CoverageAggregator
    from edge_runtime.io.overlay import draw_overlay

    app = FastAPI(title="roadseg device API", version="1",
                  description="Segment images with the vehicle's model and watch the live overlay."
                  + (" Authenticate with the bearer token (Authorize)." if token else ""))
    lock = threading.Lock()  # one interpreter: one inference at a time
    uploads = threading.BoundedSemaphore(max_inflight)
    viewers = threading.BoundedSemaphore(max_viewers)
    counters = {"requests": 0, "segmented": 0, "busy": 0, "started": time.time()}
    bearer = HTTPBearer(auto_error=False, description="the device's API token (ROADSEG_API_TOKEN)")

    def authorized(request: Request, creds: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        counters["requests"] += 1
        if not token:
            return
        if creds is not None and hmac.compare_digest(creds.credentials.encode(), token.encode()):
            return
        exp, sig = request.query_params.get("expires"), request.query_params.get("sig")
        if request.url.path == "/v1/stream.mjpg" and exp and sig and exp.isdigit() and int(exp) >= time.time() \
                and hmac.compare_digest(sig, _signature(token, request.url.path, int(exp))):
            return
        raise HTTPException(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):  # never a traceback to the client
        log.error("%s %s failed: %s: %s", request.method, request.url.path, type(exc).__name__, exc)
        return JSONResponse({"detail": f"internal error: {type(exc).__name__}"}, status_code=500)

    @app.get("/healthz")
    def healthz():
        return {"status": "ok", "model": segmenter.describe()["name"]}

    def segment_bytes(data: bytes, format: str, view: str):
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if img is None:
            return JSONResponse({"detail": "the upload is not a decodable JPEG or PNG image"}, status_code=422)
        with lock:
            t0 = time.perf_counter()
            classes = segmenter.segment(img, "bgr").copy()
            timing = segmenter.timing
            total = (time.perf_counter() - t0) * 1e3
        counters["segmented"] += 1
        if format == "png":
            if view == "mask":
                from edge_runtime.contract.labels import colorize
                h, w = img.shape[:2]
                out = cv2.cvtColor(colorize(cv2.resize(classes, (w, h), interpolation=cv2.INTER_NEAREST)),
                                   cv2.COLOR_RGB2BGR)
            else:
                out = draw_overlay(cv2.cvtColor(img, cv2.COLOR_BGR2RGB), classes)
            return Response(cv2.imencode(".png", out)[1].tobytes(), media_type="image/png")
        agg = CoverageAggregator()
        agg.add(classes, timing.invoke_ms, total)
        return payloads.segment_result(img.shape[1], img.shape[0], agg.summary(), timing.invoke_ms, total,
                                segmenter.describe())

    @app.post("/v1/segment", responses={200: {"content": {"image/png": {}}}, 413: {}, 415: {}, 422: {}, 503: {}},
              dependencies=[Depends(authorized)])
    async def segment(file: UploadFile = File(..., description="a JPEG or PNG image"),
                      format: str = Query("json", pattern="^(json|png)$"),
                      view: str = Query("overlay", pattern="^(overlay|mask)$")):
        if (file.content_type or "").lower() not in ALLOWED_TYPES:
            return JSONResponse({"detail": f"unsupported content type {file.content_type!r}: "
                                           "send image/jpeg or image/png"}, status_code=415)
        data = await file.read(max_upload + 1)
        if len(data) > max_upload:
            return JSONResponse({"detail": f"upload larger than {max_upload} bytes"}, status_code=413)
        if not data:
            return JSONResponse({"detail": "empty upload: send a JPEG or PNG image"}, status_code=422)
        try:
            _, w, h = image_dimensions(data)
        except (ValueError, struct.error) as e:
            return JSONResponse({"detail": f"the upload is not a decodable JPEG or PNG image ({e})"},
                                status_code=422)
        if w * h > max_pixels or w == 0 or h == 0:
            return JSONResponse({"detail": f"image of {w}x{h} = {w * h} pixels: the limit is {max_pixels} "
                                           "(--max-pixels)"}, status_code=413)
        if not uploads.acquire(blocking=False):
            counters["busy"] += 1
            return JSONResponse({"detail": f"busy: {max_inflight} uploads in flight; retry shortly"},
                                status_code=503, headers={"Retry-After": "1"})
        try:
            return await run_in_threadpool(segment_bytes, data, format, view)
        finally:
            uploads.release()

    @app.post("/v1/live-url", dependencies=[Depends(authorized)])
    def live_url(ttl: int = Query(300, ge=10, le=3600, description="seconds the URL stays valid")):
        """A URL of the live view that works without the header (for a browser's ``<img>``)."""
        path = "/v1/stream.mjpg"
        if not token:
            return {"url": path, "expires": None}
        expires = int(time.time()) + ttl
        return {"url": f"{path}?expires={expires}&sig={_signature(token, path, expires)}", "expires": expires}

    @app.get("/v1/stream.mjpg", dependencies=[Depends(authorized)])
    def stream():
        if live is None:
            return JSONResponse({"detail": "no live camera loop here (start roadseg-run --http)"}, status_code=503)
        if not viewers.acquire(blocking=False):
            return JSONResponse({"detail": f"{max_viewers} viewers already watching"}, status_code=503)

        def frames():
            try:
                seq = -1
                while True:
                    seq, item = live.wait_next(seq)
                    if item is None:
                        continue
                    frame, order, classes, fps = item
                    rgb = frame if order == "rgb" else cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
                    ok, jpg = cv2.imencode(".jpg", draw_overlay(rgb, classes, fps), [cv2.IMWRITE_JPEG_QUALITY, 80])
                    yield (b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: " + str(len(jpg)).encode() +
                           b"\r\n\r\n" + jpg.tobytes() + b"\r\n")
            finally:
                viewers.release()

        return StreamingResponse(frames(), media_type="multipart/x-mixed-replace; boundary=frame")

    @app.get("/v1/stats", dependencies=[Depends(authorized)])
    def stats():
        base = {"model": segmenter.describe(), "api": {"requests": counters["requests"],
                                                       "segmented": counters["segmented"],
                                                       "busy": counters["busy"],
                                                       "uptime_s": round(time.time() - counters["started"], 1)}}
        if live is not None and live.stats_fn is not None:
            base["live"] = live.stats_fn()
        return base

    return app


def parse_http(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"--http {text!r} is not HOST:PORT, e.g. 127.0.0.1:8080")
    return host, int(port)


def serve_in_thread(app, host: str, port: int, timeout: float = 15.0):
    """Run uvicorn beside the live loop; returns the server (``should_exit``
    stops it). A port that cannot be bound is an error here, not a log line."""
    import socket

    import uvicorn

    from edge_runtime.commands.cli import RuntimeFailure
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError as e:
        raise RuntimeFailure(f"--http {host}:{port}: cannot listen there ({e.strerror or e})") from None
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="http", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeFailure(f"--http {host}:{port}: the device API did not start")
        time.sleep(0.02)
    log.info("device API on http://%s:%d (stream: /v1/stream.mjpg, docs: /docs)", host, port)
    return server


def main(argv: list[str] | None = None) -> int:
    from edge_runtime.commands import cli
    p = cli.parser("roadseg-serve", __doc__)
    p.add_argument("--model", required=True)
    p.add_argument("--http", default="127.0.0.1:8080", help="HOST:PORT (default loopback only)")
    p.add_argument("--threads", type=int)
    p.add_argument("--max-upload-mb", type=float, default=10.0)
    p.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, help="largest image decoded, in pixels")
    p.add_argument("--max-inflight", type=int, default=DEFAULT_MAX_INFLIGHT,
                   help="uploads segmented at once (more get 503)")
    p.add_argument("--api-token-file", help="file holding the bearer token (or ROADSEG_API_TOKEN)")
    cli.deprecated(p, "--token-file", "--api-token-file", "api_token_file")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    def body():
        from edge_runtime.model.segmenter import DeviceSegmenter
        host, port = parse_http(args.http)
        seg = DeviceSegmenter(args.model, threads=args.threads)
        if args.max_pixels < 1 or args.max_inflight < 1 or args.max_upload_mb <= 0:
            raise ValueError("--max-pixels, --max-inflight and --max-upload-mb must be positive")
        app = create_app(seg, token=load_token(args.api_token_file), max_upload=int(args.max_upload_mb * 1024 * 1024),
                         max_pixels=args.max_pixels, max_inflight=args.max_inflight)
        try:
            import uvicorn
        except ImportError as e:
            raise ImportError(f"{e}; install the api extra: pip install '.[api]'") from None
        log.info("serving %s on http://%s:%d", args.model, host, port)
        uvicorn.run(app, host=host, port=port, log_level="info")

    return cli.run("roadseg-serve", body)


if __name__ == "__main__":
    sys.exit(main())
