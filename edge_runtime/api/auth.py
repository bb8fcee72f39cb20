"""Who may call the device API: the bearer token, and signed URLs for browsers.

With a token (``ROADSEG_API_TOKEN`` or ``--api-token-file``) every route but
``/healthz`` and the documentation's static assets needs ``Authorization:
Bearer <token>``. A browser cannot send that header from an ``<img>`` or a
link, so ``POST /v1/live-url`` and ``POST /v1/docs-url`` hand out URLs of the
live view and of ``/docs`` that carry ``?expires=<unix s>&sig=<hex>``: an
HMAC-SHA256 (RFC 2104) over ``device|path|expires`` keyed by a hash of the
token, so the token itself never goes into a URL and a signature opens one
path of one device only (also where two vehicles were given one token; the
deploy guide gives each vehicle its own).

Expiry is judged on the process's own clock (:meth:`Authenticator.now`): the
wall clock read once at start, then advanced by the monotonic clock. A wall
clock stepped back (NTP, a Pi without a battery-backed clock) never makes a URL
live longer than the lifetime it was issued with.

:class:`AuthMiddleware` decides from the request line and headers alone,
before a byte of the body is read: an unauthenticated 300 MB upload is
answered 401 without being received or spooled.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import re
import time
from urllib.parse import parse_qs

#: paths a signed URL may open (each signature names one of them)
SIGNABLE_PATHS = frozenset({"/v1/stream.mjpg", "/docs", "/openapi.json"})
#: paths open without a token: the health check and the documentation's static files (from a package)
PUBLIC_PATHS = frozenset({"/healthz"})
PUBLIC_PREFIXES = ("/docs-assets/",)

_EXPIRES = re.compile(r"[0-9]{1,12}")   # unix seconds, ASCII digits only ("²".isdigit() is True)
_SIG = re.compile(r"[0-9a-f]{64}")      # a hex SHA-256 digest


def load_token(token_file: str | None = None) -> str | None:
    """The API token: the first line of ``token_file`` (stripped), else
    ``ROADSEG_API_TOKEN``; None (no authentication) when neither is set or
    empty. Raises ValueError (one line naming the file, never its content)
    when the file is missing, not a regular file (a FIFO, a link to
    ``/dev/zero``), over 4 KiB or not UTF-8."""
    if token_file:
        from edge_runtime.atomic import read_small_text
        from edge_runtime.io.credentials import MAX_SECRET_FILE_BYTES
        return read_small_text(token_file, MAX_SECRET_FILE_BYTES, "token file").strip() or None
    return os.environ.get("ROADSEG_API_TOKEN") or None


def signature(token: str, path: str, expires: int, device_id: str = "") -> str:
    """Hex HMAC-SHA256 of ``"{device_id}|{path}|{expires}"`` keyed by
    SHA-256(``"roadseg-live-url:" + token``): the token itself never signs,
    so a leaked URL does not reveal it, and a URL of one device opens no other."""
    key = hashlib.sha256(b"roadseg-live-url:" + token.encode()).digest()
    return hmac.new(key, f"{device_id}|{path}|{expires}".encode(), hashlib.sha256).hexdigest()


def bearer_credentials(authorization: bytes | None) -> bytes | None:
    """The credentials of an ``Authorization: Bearer X`` header value (raw
    bytes, as on the wire; the scheme is case-insensitive, RFC 7235 2.1),
    or None when the header is missing or of another scheme."""
    if not authorization:
        return None
    scheme, _, credentials = authorization.strip().partition(b" ")
    if scheme.lower() != b"bearer" or not credentials.strip():
        return None
    return credentials.strip()


class Authenticator:
    """Checks requests against one token (None: everything is allowed) and
    signs URLs for browsers. Never raises on any header or query content:
    odd bytes, Unicode digits or over-long values are simply not valid."""

    def __init__(self, token: str | None, device_id: str = ""):
        self.token, self.device_id = token, device_id
        self._wall0, self._mono0 = time.time(), time.monotonic()

    def now(self) -> float:
        """Unix seconds on this process's clock: the wall clock at start plus the
        monotonic time since, so a step of the wall clock changes no lifetime."""
        return self._wall0 + (time.monotonic() - self._mono0)

    @property
    def enabled(self) -> bool:
        """True when a token is set."""
        return bool(self.token)

    def sign(self, path: str, expires: int) -> str:
        """``path?expires=E&sig=S``, valid until unix time ``expires`` (s).
        Raises ValueError for a path not in :data:`SIGNABLE_PATHS`."""
        if path not in SIGNABLE_PATHS:
            raise ValueError(f"{path} cannot be opened from a signed URL")
        if not self.token:
            return path
        return f"{path}?expires={expires}&sig={signature(self.token, path, expires, self.device_id)}"

    def signed_expiry(self, path: str, query_string: bytes) -> int | None:
        """The ``expires`` of a valid, unexpired signature for ``path`` in the
        raw query string, else None."""
        if not self.token or path not in SIGNABLE_PATHS:
            return None
        try:
            query = parse_qs(query_string.decode("latin-1"), max_num_fields=16)
        except ValueError:  # more than 16 fields: not a signed URL of ours
            return None
        exp, sig = query.get("expires", [""])[0], query.get("sig", [""])[0]
        if not (_EXPIRES.fullmatch(exp) and _SIG.fullmatch(sig)) or int(exp) < self.now():
            return None
        return int(exp) if hmac.compare_digest(sig, signature(self.token, path, int(exp), self.device_id)) else None

    def _token_bytes(self) -> list[bytes]:
        """The token as a client may put it on the wire: UTF-8, or Latin-1
        (what ``requests`` and HTTP/1.1 header decoding use) where it fits."""
        out = [self.token.encode("utf-8")]
        try:
            out.append(self.token.encode("latin-1"))
        except UnicodeEncodeError:
            pass
        return out

    def allows(self, path: str, authorization: bytes | None, query_string: bytes = b"") -> bool:
        """Whether a request for ``path`` with this ``Authorization`` header
        value and raw query string may proceed."""
        if not self.token or path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES):
            return True
        given = bearer_credentials(authorization)
        if given is not None and any(hmac.compare_digest(given, t) for t in self._token_bytes()):
            return True
        return self.signed_expiry(path, query_string) is not None


class AuthMiddleware:
    """ASGI middleware: answers 401 (``WWW-Authenticate: Bearer``,
    ``Connection: close``) from the request line and headers, before the
    application, FastAPI's form parsing or the body are touched."""

    def __init__(self, app, authenticator: Authenticator):
        self.app = app
        self.auth = authenticator

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not self.auth.enabled:
            return await self.app(scope, receive, send)
        authorization = next((v for k, v in scope["headers"] if k == b"authorization"), None)
        if self.auth.allows(scope["path"], authorization, scope.get("query_string", b"")):
            return await self.app(scope, receive, send)
        from starlette.responses import JSONResponse
        refusal = JSONResponse({"detail": "missing or wrong bearer token"}, status_code=401,
                               headers={"WWW-Authenticate": "Bearer", "Connection": "close"})
        await refusal(scope, receive, send)
