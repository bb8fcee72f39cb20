"""What an upload must pass before it is decoded: bytes, type, pixels.

Three bounds, each checked before the next allocation:

1. **Bytes on the wire**, by :class:`BodyLimitMiddleware`: a ``Content-Length``
   over the cap is answered 413 before the body is read; a body without one
   (chunked) is counted while it is read and cut off at the cap; a body that
   arrives too slowly is answered 408.
2. **Type**: the bytes must start with a PNG or JPEG signature; a declared
   content type other than JPEG/PNG is refused (415), a missing or generic
   one (``requests``' default multipart part has none) is accepted because the
   bytes are checked anyway (:func:`check_image`).
3. **Pixels**, from the image header (:func:`image_dimensions`), before a
   pixel is decoded: a 30 KB PNG can claim 20000x20000.
"""
from __future__ import annotations

import struct
import time

#: content types accepted as declared (the bytes are checked too)
IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/jpg", "image/pjpeg"})
#: content types that say nothing about the bytes: the signature decides
GENERIC_TYPES = frozenset({"", "application/octet-stream", "binary/octet-stream"})
DEFAULT_MAX_UPLOAD = 10 * 1024 * 1024
DEFAULT_MAX_PIXELS = 12_000_000  # a 4000x3000 photo; about 36 MB decoded: fits beside the loop on a 1 GB Pi
#: room for the multipart framing around the file (boundaries, part headers) in the body cap
MULTIPART_OVERHEAD = 16 * 1024
#: bodies of routes that take no upload (``POST /v1/live-url`` has none)
SMALL_BODY = 16 * 1024
#: a body must arrive within BODY_TIMEOUT s plus 1 s per BODY_MIN_RATE bytes received: Apache
#: mod_reqtimeout's default ``body=20,MinRate=500`` (httpd.apache.org/docs/2.4/mod/mod_reqtimeout.html)
BODY_TIMEOUT = 20.0
BODY_MIN_RATE = 500.0


class UploadRejected(ValueError):
    """An upload refused before decoding; ``status`` is the HTTP status
    (413 too large, 415 wrong type, 422 not an image) and the message the detail."""

    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status = status


def image_dimensions(data: bytes) -> tuple[str, int, int]:
    """``(format, width, height)`` from a PNG or JPEG header, without decoding
    a pixel: the decompression-bomb check runs before any allocation.
    Raises ValueError (truncated or corrupt header, neither signature)."""
    try:
        if data[:8] == b"\x89PNG\r\n\x1a\n":
            if len(data) < 24 or data[12:16] != b"IHDR":
                raise ValueError("truncated PNG header")
            w, h = struct.unpack(">II", data[16:24])
            return "png", w, h
        if data[:2] == b"\xff\xd8":
            w, h = _jpeg_frame_size(data)
            return "jpeg", w, h
    except struct.error as e:
        raise ValueError(f"truncated header ({e})") from None
    raise ValueError("neither a PNG nor a JPEG signature")


def _jpeg_frame_size(data: bytes) -> tuple[int, int]:
    """Width and height from the first start-of-frame marker (ITU-T T.81 B.2.2)."""
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            raise ValueError("corrupt JPEG marker")
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:  # markers without a length
            i += 2
            continue
        (length,) = struct.unpack(">H", data[i + 2:i + 4])
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # SOFn, not DHT/JPG/DAC
            if i + 9 > len(data):
                break
            h, w = struct.unpack(">HH", data[i + 5:i + 9])
            return w, h
        i += 2 + length
    raise ValueError("JPEG without a frame header")


def check_image(data: bytes, content_type: str | None, max_upload: int, max_pixels: int) -> tuple[str, int, int]:
    """``(format, width, height)`` of an upload that may be decoded. Raises
    :class:`UploadRejected`: 415 for a declared type that is not JPEG/PNG,
    413 over ``max_upload`` bytes or ``max_pixels`` pixels, 422 empty or not
    a PNG/JPEG."""
    declared = (content_type or "").split(";")[0].strip().lower()
    if declared not in IMAGE_TYPES and declared not in GENERIC_TYPES:
        raise UploadRejected(415, f"unsupported content type {content_type!r}: send image/jpeg or image/png")
    if len(data) > max_upload:
        raise UploadRejected(413, f"upload larger than {max_upload} bytes (--max-upload-mb)")
    if not data:
        raise UploadRejected(422, "empty upload: send a JPEG or PNG image")
    try:
        fmt, w, h = image_dimensions(data)
    except ValueError as e:
        raise UploadRejected(422, f"the upload is not a decodable JPEG or PNG image ({e})") from None
    if w * h > max_pixels or w == 0 or h == 0:
        raise UploadRejected(413, f"image of {w}x{h} = {w * h} pixels: the limit is {max_pixels} (--max-pixels)")
    return fmt, w, h


class _BodyGuard:
    """One request's body: counts bytes against ``cap`` and time against the
    deadline; on a breach answers itself (413/408, ``Connection: close``) and
    tells the application the client went away."""

    def __init__(self, scope, receive, send, cap: int, timeout: float, min_rate: float):
        self.scope, self._receive, self._send = scope, receive, send
        self.cap, self.timeout, self.min_rate = cap, timeout, min_rate
        self.received, self.done, self.answered, self.started = 0, False, False, time.monotonic()

    async def receive(self):
        """The next ASGI message, or ``http.disconnect`` once this guard answered."""
        import anyio
        if self.answered:
            return {"type": "http.disconnect"}
        if self.done:  # the body is in: what follows is only the disconnect, whenever it comes
            return await self._receive()
        remaining = self.started + self.timeout + self.received / self.min_rate - time.monotonic()
        message = None
        with anyio.move_on_after(max(remaining, 0.0)):
            message = await self._receive()
        if message is None:
            return await self.refuse(408, f"the request body did not arrive within {self.timeout:g} s "
                                          f"(+1 s per {self.min_rate:g} bytes)")
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            self.done = not message.get("more_body", False)
            if self.received > self.cap:
                return await self.refuse(413, f"request body larger than {self.cap} bytes (--max-upload-mb)")
        return message

    async def send(self, message):
        """Pass the application's message on, unless this guard answered already."""
        if not self.answered:  # after our own answer the application's is dropped
            await self._send(message)

    async def refuse(self, status: int, detail: str):
        """Answer ``status`` with ``{"detail": ...}`` and close; returns the disconnect the app sees."""
        from starlette.responses import JSONResponse
        self.answered = True
        await JSONResponse({"detail": detail}, status_code=status, headers={"Connection": "close"})(
            self.scope, self._receive, self._send)
        return {"type": "http.disconnect"}


class BodyLimitMiddleware:
    """ASGI middleware bounding every request body in bytes and time.

    ``caps`` maps a path to its largest body in bytes (others get
    :data:`SMALL_BODY`). A declared ``Content-Length`` over the cap is
    answered 413 before the body is read; otherwise the body is counted as it
    arrives (chunked too) and cut off at the cap with 413; a body slower than
    ``timeout`` s plus 1 s per ``min_rate`` bytes is answered 408."""

    def __init__(self, app, caps: dict[str, int], timeout: float = BODY_TIMEOUT, min_rate: float = BODY_MIN_RATE):
        self.app, self.caps, self.timeout, self.min_rate = app, caps, timeout, min_rate

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        cap = self.caps.get(scope["path"], SMALL_BODY)
        guard = _BodyGuard(scope, receive, send, cap, self.timeout, self.min_rate)
        length = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if length is not None and (not length.isdigit() or int(length) > cap):
            await guard.refuse(413, f"request body of {length.decode('latin-1')[:20]} bytes: the limit is {cap} "
                                    "(--max-upload-mb)")
            return
        await self.app(scope, guard.receive, guard.send)
