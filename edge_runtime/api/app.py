"""The device HTTP API (FastAPI): segment an uploaded image, watch the live
overlay as MJPEG, read stats.

Routes: ``POST /v1/segment`` (``?format=json|png``, ``&view=overlay|mask``),
``GET /v1/stream.mjpg``, ``POST /v1/live-url``, ``POST /v1/docs-url``,
``GET /v1/stats``, ``GET /healthz``, ``/openapi.json`` and ``/docs`` (Swagger
UI served from the ``fastapi-offline`` package: it renders without
internet). With a token, everything but ``/healthz`` needs it
(:mod:`~edge_runtime.api.auth`), checked before a body is read; bodies are
bounded in bytes and time (:mod:`~edge_runtime.api.uploads`); the server
bounds connections and slow clients (:mod:`~edge_runtime.api.server`).
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from fastapi import Depends, FastAPI, File, Query, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPBearer
from fastapi.staticfiles import StaticFiles

from edge_runtime.api.auth import Authenticator, AuthMiddleware
from edge_runtime.api.live import DEFAULT_MAX_VIEWERS, LiveState, ViewerSlots, mjpeg_response
from edge_runtime.api.uploads import (
    BODY_MIN_RATE,
    BODY_TIMEOUT,
    DEFAULT_MAX_PIXELS,
    DEFAULT_MAX_UPLOAD,
    MULTIPART_OVERHEAD,
    BodyLimitMiddleware,
    UploadRejected,
    check_image,
)

log = logging.getLogger("roadseg.api")

DEFAULT_MAX_INFLIGHT = 2
DOCS_ASSETS = "/docs-assets"
#: seconds a /docs page opened with the bearer header (not a signed URL) may fetch the schema
DOCS_TTL_S = 300


@dataclass
class _Device:
    """What the routes share: the upload segmenter, the live view, limits, counters."""
    segmenter: object
    live: LiveState | None
    auth: Authenticator
    max_upload: int
    max_pixels: int
    max_inflight: int
    viewers: ViewerSlots
    lock: threading.Lock = field(default_factory=threading.Lock)  # one interpreter: one inference at a time
    counters: dict = field(default_factory=lambda: {"requests": 0, "segmented": 0, "busy": 0,
                                                    "started": time.monotonic()})

    def __post_init__(self):
        self.uploads = threading.BoundedSemaphore(self.max_inflight)


def create_app(segmenter, live: LiveState | None = None, token: str | None = None,
               max_upload: int = DEFAULT_MAX_UPLOAD, max_pixels: int = DEFAULT_MAX_PIXELS,
               max_inflight: int = DEFAULT_MAX_INFLIGHT, max_viewers: int = DEFAULT_MAX_VIEWERS,
               body_timeout: float = BODY_TIMEOUT, device_id: str = ""):
    """The API as a FastAPI app, for :func:`~edge_runtime.api.server.serve_in_thread`.

    ``segmenter`` (a DeviceSegmenter) segments uploads, ``live`` (filled by
    the run loop) feeds the MJPEG view and /v1/stats. ``token`` (None: no
    authentication) guards every route but /healthz. ``max_upload`` bytes,
    ``max_pixels`` pixels (from the header, before decoding) and
    ``max_inflight`` uploads at once (503 beyond) bound uploads;
    ``max_viewers`` live viewers at once (503 beyond); a request body must
    arrive within ``body_timeout`` s plus 1 s per 500 bytes (408). ``device_id``
    is in every signed URL's signature (a URL of one vehicle opens no other)."""

    auth = Authenticator(token, device_id)
    device = _Device(segmenter, live, auth, max_upload, max_pixels, max_inflight, ViewerSlots(max_viewers))
    app = FastAPI(title="roadseg device API", version="1", docs_url=None, redoc_url=None,
                  swagger_ui_oauth2_redirect_url=None,
                  description="Segment images with the vehicle's model and watch the live overlay."
                  + (" Authenticate with the bearer token (Authorize)." if token else ""))
    app.state.device = device
    app.add_middleware(BodyLimitMiddleware, caps={"/v1/segment": max_upload + MULTIPART_OVERHEAD},
                       timeout=body_timeout, min_rate=BODY_MIN_RATE)
    app.add_middleware(AuthMiddleware, authenticator=auth)  # added last: runs first, before any body is read

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):
        """A bug, not bad input: logged in one line, never a traceback to the client."""
        log.error("%s %s failed: %s: %s", request.method, request.url.path, type(exc).__name__, exc)
        return JSONResponse({"detail": f"internal error: {type(exc).__name__}"}, status_code=500)

    @app.get("/healthz")
    def healthz():
        """Liveness, open without a token. Without a live loop (``roadseg-serve``): 200
        ``{"status": "ok", "model": NAME}``. With one (``roadseg-run --http``), the loop's own
        liveness, measured on frames as the systemd watchdog is
        (:meth:`edge_runtime.loop.Runner.liveness`): 200 while frames arrive (``"ok"``) or while
        the camera is announced lost and being reopened (``"camera_lost"``); 503 before the
        first frame (``"starting"``) and when the loop has stopped beating (``"stalled"``); the
        body also carries ``last_frame_s``, seconds since the last frame."""
        live = device.live
        if live is None:  # roadseg-serve: no loop, the server's own liveness
            return {"status": "ok", "model": segmenter.describe()["name"]}
        model = (live.describe_fn or segmenter.describe)()["name"]  # the loop's model once it runs
        if live.liveness_fn is None:  # roadseg-run whose loop is not built yet (source, broker)
            return JSONResponse({"status": "starting", "model": model, "last_frame_s": None}, status_code=503)
        state = live.liveness_fn()
        body = {"status": state["status"], "model": model, "last_frame_s": state["last_frame_s"]}
        return body if state["alive"] else JSONResponse(body, status_code=503)

    _add_docs(app, device)
    _add_segment(app, device)
    _add_live(app, device)
    _add_stats(app, device)
    return app


def _bearer(device: _Device):
    """The routes' dependency: counts requests and, with a token set, declares
    the bearer scheme in the OpenAPI schema (so /docs has an Authorize button
    and padlocks; without a token it has neither: nothing to authorize). The
    token itself is checked earlier, by :class:`AuthMiddleware`."""

    def count() -> None:
        """Count the request (the token was checked before the body was read)."""
        device.counters["requests"] += 1

    if not device.auth.enabled:
        return Depends(count)
    scheme = HTTPBearer(auto_error=False, description="the device's API token (ROADSEG_API_TOKEN)")

    def counted(_=Depends(scheme)) -> None:
        count()

    return Depends(counted)


def swagger_assets() -> str:
    """The folder of Swagger UI's JavaScript and CSS, from the fastapi-offline
    package. Raises ImportError naming the extra when it is missing."""
    from importlib.resources import files
    try:
        return str(files("fastapi_offline") / "static")
    except ModuleNotFoundError:
        raise ImportError("the API docs need fastapi-offline: pip install '.[api]'") from None


def _add_docs(app, device: _Device) -> None:
    """``/docs`` from local assets; with a token, opened with the bearer header
    or a signed URL from ``POST /v1/docs-url``, and it fetches the schema with
    a signature of the same lifetime."""

    auth = device.auth
    app.mount(DOCS_ASSETS, StaticFiles(directory=swagger_assets()), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    def docs(request: Request):
        """Swagger UI, from local assets; its schema URL is signed like the page's."""
        expires = auth.signed_expiry("/docs", request.scope.get("query_string", b"")) or int(auth.now()) + DOCS_TTL_S
        return get_swagger_ui_html(openapi_url=auth.sign("/openapi.json", expires), title=f"{app.title} - docs",
                                   swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
                                   swagger_favicon_url=f"{DOCS_ASSETS}/favicon.png",
                                   swagger_ui_parameters={"validatorUrl": None})

    @app.post("/v1/docs-url", dependencies=[_bearer(device)])
    def docs_url(ttl: int = Query(900, ge=10, le=3600, description="seconds the URL stays valid")):
        """A URL of ``/docs`` that a browser opens without the header."""
        expires = int(auth.now()) + ttl
        return {"url": auth.sign("/docs", expires), "expires": expires if auth.enabled else None}


def _segment_bytes(device: _Device, data: bytes, format: str, view: str):
    """Decode, segment and answer one checked upload (runs on a worker thread)."""
    import cv2
    import numpy as np

    from edge_runtime.contract import payloads
    from edge_runtime.contract.coverage import CoverageAggregator
    from edge_runtime.contract.labels import colorize
    from edge_runtime.contract.preprocessing import resize_mask
    from edge_runtime.io.overlay import draw_overlay

    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        return JSONResponse({"detail": "the upload is not a decodable JPEG or PNG image"}, status_code=422)
    seg = device.segmenter
    with device.lock:
        t0 = time.perf_counter()
        classes = seg.segment(img, "bgr").copy()
        timing = seg.timing
        total = (time.perf_counter() - t0) * 1e3
    device.counters["segmented"] += 1
    if format == "png":
        if view == "mask":
            out = cv2.cvtColor(colorize(resize_mask(classes, img.shape[:2])), cv2.COLOR_RGB2BGR)
        else:
            out = draw_overlay(cv2.cvtColor(img, cv2.COLOR_BGR2RGB), classes)
        return Response(cv2.imencode(".png", out)[1].tobytes(), media_type="image/png")
    agg = CoverageAggregator()
    agg.add(classes, timing.invoke_ms, total)
    return payloads.segment_result(img.shape[1], img.shape[0], agg.summary(), timing.invoke_ms, total, seg.describe())


def _add_segment(app, device: _Device) -> None:
    """``POST /v1/segment``: checked (type, bytes, pixels) before decoding,
    segmented on a worker thread, at most ``max_inflight`` at once."""

    @app.post("/v1/segment", responses={200: {"content": {"image/png": {}}}, 408: {}, 413: {}, 415: {}, 422: {},
                                        503: {}}, dependencies=[_bearer(device)])
    async def segment(file: UploadFile = File(..., description="a JPEG or PNG image"),
                      format: str = Query("json", pattern="^(json|png)$"),
                      view: str = Query("overlay", pattern="^(overlay|mask)$")):
        """Segment one JPEG or PNG. The part's content type may be missing or
        ``application/octet-stream`` (the bytes are checked either way)."""
        data = await file.read(device.max_upload + 1)
        try:
            check_image(data, file.content_type, device.max_upload, device.max_pixels)
        except UploadRejected as e:
            return JSONResponse({"detail": str(e)}, status_code=e.status)
        if not device.uploads.acquire(blocking=False):
            device.counters["busy"] += 1
            return JSONResponse({"detail": f"busy: {device.max_inflight} uploads in flight; retry shortly"},
                                status_code=503, headers={"Retry-After": "1"})
        try:
            return await run_in_threadpool(_segment_bytes, device, data, format, view)
        finally:
            device.uploads.release()


def _add_live(app, device: _Device) -> None:
    """``GET /v1/stream.mjpg`` and ``POST /v1/live-url`` (its signed URL)."""

    @app.post("/v1/live-url", dependencies=[_bearer(device)])
    def live_url(ttl: int = Query(300, ge=10, le=3600, description="seconds the URL stays valid")):
        """A URL of the live view that works without the header (for a browser's ``<img>``)."""
        expires = int(device.auth.now()) + ttl
        return {"url": device.auth.sign("/v1/stream.mjpg", expires), "expires": expires if device.auth.enabled
                else None}

    @app.get("/v1/stream.mjpg", dependencies=[_bearer(device)],
             responses={404: {"description": "no live view here (roadseg-serve)"},
                        503: {"description": "too many viewers"}})
    def stream():
        """The live overlay as MJPEG (``multipart/x-mixed-replace``); 404 on ``roadseg-serve``,
        which has no camera loop; 503 with ``Retry-After`` while every viewer's place is taken."""
        if device.live is None:  # not busy, never coming: 404, so no client retries
            return JSONResponse({"detail": "no live view on roadseg-serve: it segments uploads only; the live "
                                           "view is on roadseg-run --http"}, status_code=404)
        if not device.viewers.try_acquire():
            return JSONResponse({"detail": f"{device.viewers.limit} viewers already watching"}, status_code=503,
                                headers={"Retry-After": "5"})
        return mjpeg_response(device.live, device.viewers)


def _add_stats(app, device: _Device) -> None:
    """``GET /v1/stats``: the model of the live loop (else of the uploads),
    the API's counters and, beside the loop, the loop's stats payload."""

    @app.get("/v1/stats", dependencies=[_bearer(device)])
    def stats():
        """The live loop's model (else the uploads'), the API's counters and the loop's stats."""
        live = device.live
        upload_model = device.segmenter.describe()
        counters = device.counters
        body = {"model": live.describe_fn() if live is not None and live.describe_fn else upload_model,
                "api": {"requests": counters["requests"], "segmented": counters["segmented"],
                        "busy": counters["busy"], "viewers": device.viewers.in_use,
                        "upload_threads": upload_model["threads"],
                        "uptime_s": round(time.monotonic() - counters["started"], 1)}}
        if live is not None and live.stats_fn is not None:
            body["live"] = live.stats_fn()
        return body
