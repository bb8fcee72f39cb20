"""The device HTTP API (FastAPI): segment an uploaded image, watch the live
overlay as MJPEG, read stats.

    roadseg-serve --model dist/X.tflite [--http 127.0.0.1:8080]      # alone
    roadseg-run ... --http 127.0.0.1:8080                           # beside the live loop

Routes: ``POST /v1/segment`` (``?format=json|png``, ``&view=overlay|mask``),
``GET /v1/stream.mjpg``, ``GET /v1/stats``, ``GET /healthz`` and FastAPI's
``/openapi.json`` and ``/docs``. Binds to loopback unless told otherwise. With a
token (``ROADSEG_API_TOKEN`` or ``--api-token-file``) every route but ``/healthz``
needs ``Authorization: Bearer <token>``.
"""

import hmac
import logging
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


def create_app(segmenter, live: LiveState | None = None, token: str | None = None,
               max_upload: int = DEFAULT_MAX_UPLOAD):
    from fastapi import FastAPI, File, Query, Request, UploadFile
    from fastapi.responses import JSONResponse, Response, StreamingResponse

    from edge_runtime import messages
    from edge_runtime.coverage import CoverageAggregator
    from edge_runtime.overlay import draw_overlay

    app = FastAPI(title="roadseg device API", version="1",
                  description="Segment images with the vehicle's model and watch the live overlay.")
    lock = threading.Lock()  # one interpreter: one inference at a time
    counters = {"requests": 0, "segmented": 0, "started": time.time()}

    @app.middleware("http")
    async def auth(request: Request, call_next):
        if token and request.url.path != "/healthz":
            got = request.headers.get("authorization", "")
            if not hmac.compare_digest(got.encode(), f"Bearer {token}".encode()):
                return JSONResponse({"detail": "missing or wrong bearer token"}, status_code=401,
                                    headers={"WWW-Authenticate": "Bearer"})
        counters["requests"] += 1
        return await call_next(request)

    @app.get("/healthz")
    def healthz():
        return {"status": "ok", "model": segmenter.describe()["name"]}

    @app.post("/v1/segment", responses={200: {"content": {"image/png": {}}}})
    async def segment(file: UploadFile = File(..., description="a JPEG or PNG image"),
                      format: str = Query("json", pattern="^(json|png)$"),
                      view: str = Query("overlay", pattern="^(overlay|mask)$")):
        if (file.content_type or "").lower() not in ALLOWED_TYPES:
            return JSONResponse({"detail": f"unsupported content type {file.content_type!r}: "
                                           "send image/jpeg or image/png"}, status_code=415)
        data = await file.read(max_upload + 1)
        if len(data) > max_upload:
            return JSONResponse({"detail": f"upload larger than {max_upload} bytes"}, status_code=413)
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
            rgb = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
            if view == "mask":
                from edge_runtime.labels import colorize
                h, w = img.shape[:2]
                out = cv2.cvtColor(colorize(cv2.resize(classes, (w, h), interpolation=cv2.INTER_NEAREST)),
                                   cv2.COLOR_RGB2BGR)
            else:
                out = draw_overlay(rgb, classes)
            ok, png = cv2.imencode(".png", out)
            return Response(png.tobytes(), media_type="image/png")
        agg = CoverageAggregator()
        agg.add(classes, timing.invoke_ms, total)
        return messages.segment(img.shape[1], img.shape[0], agg.summary(), timing.invoke_ms, total,
                                segmenter.describe())

    @app.get("/v1/stream.mjpg")
    def stream():
        if live is None:
            return JSONResponse({"detail": "no live camera loop here (start roadseg-run --http)"}, status_code=503)

        def frames():
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

        return StreamingResponse(frames(), media_type="multipart/x-mixed-replace; boundary=frame")

    @app.get("/v1/stats")
    def stats():
        base = {"model": segmenter.describe(), "api": {"requests": counters["requests"],
                                                       "segmented": counters["segmented"],
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


def serve_in_thread(app, host: str, port: int):
    """Run uvicorn beside the live loop; returns the server (``should_exit`` stops it)."""
    import uvicorn
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
    threading.Thread(target=server.run, name="http", daemon=True).start()
    log.info("device API on http://%s:%d (stream: /v1/stream.mjpg, docs: /docs)", host, port)
    return server


def main(argv: list[str] | None = None) -> int:
    from edge_runtime import cli
    p = cli.parser("roadseg-serve", __doc__)
    p.add_argument("--model", required=True)
    p.add_argument("--http", default="127.0.0.1:8080", help="HOST:PORT (default loopback only)")
    p.add_argument("--threads", type=int)
    p.add_argument("--max-upload-mb", type=float, default=10.0)
    p.add_argument("--api-token-file", help="file holding the bearer token (or ROADSEG_API_TOKEN)")
    cli.deprecated(p, "--token-file", "--api-token-file", "api_token_file")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    def body():
        from edge_runtime.model.segmenter import TFLiteSegmenter
        host, port = parse_http(args.http)
        seg = TFLiteSegmenter(args.model, threads=args.threads)
        app = create_app(seg, token=load_token(args.api_token_file),
                         max_upload=int(args.max_upload_mb * 1024 * 1024))
        try:
            import uvicorn
        except ImportError as e:
            raise ImportError(f"{e}; install the api extra: pip install '.[api]'") from None
        log.info("serving %s on http://%s:%d", args.model, host, port)
        uvicorn.run(app, host=host, port=port, log_level="info")

    return cli.run("roadseg-serve", body)


if __name__ == "__main__":
    sys.exit(main())
