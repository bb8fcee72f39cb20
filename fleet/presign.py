r"""python -m fleet.presign: presigned S3 PUT URLs for the vehicles' kept
frames, so that a fleet pushes to an object store (AWS S3, MinIO, Ceph...)
without holding any S3 credential (issue 30).

    python -m fleet.presign --bucket BUCKET --tokens vehicles.txt [--listen 0.0.0.0:8090] \
        [--endpoint-url https://minio.example:9000] [--prefix kept/] [--expires 900]

A vehicle (``roadseg-run --upload-presign http://HOST:8090/v1/presign``) POSTs
``{"keys": ["<frame>.jpg"]}`` with ``Authorization: Bearer <its token>``;
the answer is ``{"urls": {key: URL}}``, a PUT URL for ``<prefix><vehicle>/<key>``
valid ``--expires`` seconds. The vehicle is the one whose token matched: a
vehicle writes under its own prefix only. ``--tokens``: one ``VEHICLE TOKEN``
pair per line (``#`` comments). The S3 credentials are boto3's usual ones
(environment, ``~/.aws``, an instance role); they never leave this process.

Requests are bounded before they are read (:data:`MAX_BODY` bytes, at most
:data:`MAX_KEYS` keys of kept-frame names). Serve it behind a TLS reverse
proxy on an untrusted network: bearer tokens travel in the clear otherwise.
"""
from __future__ import annotations

import argparse
import hmac
import json
import logging
import re
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

log = logging.getLogger("roadseg.presign")

#: the largest request body read (bytes)
MAX_BODY = 4096
#: keys presigned per request at most
MAX_KEYS = 16
#: a key a vehicle may ask for: a kept frame's JPEG or record (edge_runtime.flywheel.store.NAME + suffix)
KEY = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}\.(jpg|json)$"


class PresignRequest(BaseModel):
    """What a vehicle asks: ``{"keys": [name.jpg | name.json, ...]}`` (1..MAX_KEYS)."""
    model_config = ConfigDict(extra="forbid")
    keys: list[Annotated[str, StringConstraints(pattern=KEY)]] = Field(min_length=1, max_length=MAX_KEYS)


def load_tokens(path: str | Path) -> dict[str, str]:
    """``{vehicle: token}`` from a file of ``VEHICLE TOKEN`` lines. Raises
    ValueError naming the file and line (never a token) for a malformed line, a
    repeated vehicle or token, or no vehicle; OSError when it cannot be read."""
    tokens: dict[str, str] = {}
    from edge_runtime.atomic import read_small_text
    for n, line in enumerate(read_small_text(path, 1 << 20, "the token file").splitlines(), 1):  # regular, size first
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) != 2 or not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", parts[0]) or len(parts[1]) < 16:
            raise ValueError(f"{path}:{n}: expected 'VEHICLE TOKEN' (a device id and a token of 16+ characters)")
        if parts[0] in tokens or parts[1] in tokens.values():
            raise ValueError(f"{path}:{n}: vehicle or token repeated")
        tokens[parts[0]] = parts[1]
    if not tokens:
        raise ValueError(f"{path}: no vehicle")
    return tokens


class PresignService:
    """Answers presign requests for ``bucket`` through ``s3`` (a boto3 S3
    client). ``tokens``: {vehicle: token}; keys land under
    ``<prefix><vehicle>/``; URLs live ``expires_s`` seconds."""

    def __init__(self, s3, bucket: str, tokens: dict[str, str], prefix: str = "kept/", expires_s: int = 900):
        self.s3, self.bucket, self.tokens, self.prefix, self.expires_s = s3, bucket, tokens, prefix, expires_s

    def vehicle_of(self, authorization: str | None) -> str | None:
        """The vehicle whose token the ``Authorization: Bearer`` header holds (compared in constant time)."""
        if not authorization or not authorization.startswith("Bearer "):
            return None
        given = authorization[len("Bearer "):].strip().encode()
        found = None
        for vehicle, token in self.tokens.items():  # every token compared: the time says nothing
            if hmac.compare_digest(given, token.encode()):
                found = vehicle
        return found

    def answer(self, authorization: str | None, body: bytes) -> tuple[int, dict]:
        """``(HTTP status, JSON answer)`` for one request (its body already bounded)."""
        vehicle = self.vehicle_of(authorization)
        if vehicle is None:
            return 401, {"error": "unknown or missing bearer token"}
        try:
            req = PresignRequest.model_validate_json(body)
        except ValidationError as e:
            err = e.errors(include_url=False)[0]
            where = ".".join(str(x) for x in err["loc"])
            return 400, {"error": f"bad request: {where}: {err['msg']}" if where else f"bad request: {err['msg']}"}
        urls = {k: self.s3.generate_presigned_url("put_object", Params={"Bucket": self.bucket,
                                                                       "Key": f"{self.prefix}{vehicle}/{k}"},
                                                  ExpiresIn=self.expires_s, HttpMethod="PUT") for k in req.keys}
        log.info("presigned %d key(s) for %s", len(urls), vehicle)
        return 200, {"urls": urls}

    def serve(self, host: str, port: int) -> ThreadingHTTPServer:
        """Serve ``POST /v1/presign`` on ``host:port`` from a thread; returns the server
        (``shutdown()`` stops it; ``server_address`` has the port when 0 was given)."""
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                if self.path != "/v1/presign":
                    return self._reply(404, {"error": "not found"})
                try:
                    length = int(self.headers.get("Content-Length") or -1)
                except ValueError:
                    length = -1
                if not 0 < length <= MAX_BODY:
                    return self._reply(413 if length > MAX_BODY else 411, {"error": f"a body of 1..{MAX_BODY} bytes"})
                self._reply(*service.answer(self.headers.get("Authorization"), self.rfile.read(length)))

            def _reply(self, status: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, fmt, *args):  # through logging, not stderr
                log.debug("%s " + fmt, self.address_string(), *args)

        server = ThreadingHTTPServer((host, port), Handler)
        threading.Thread(target=server.serve_forever, name="roadseg-presign", daemon=True).start()
        return server


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m fleet.presign``."""
    p = argparse.ArgumentParser(prog="python -m fleet.presign", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bucket", required=True, help="the S3 bucket the frames go to")
    p.add_argument("--tokens", required=True, help="file of 'VEHICLE TOKEN' lines")
    p.add_argument("--listen", default="127.0.0.1:8090", help="HOST:PORT to serve on; default 127.0.0.1:8090")
    p.add_argument("--endpoint-url", help="an S3-compatible server (MinIO, Ceph...); default AWS")
    p.add_argument("--region", help="the bucket's region (default: boto3's configuration)")
    p.add_argument("--prefix", default="kept/", help="key prefix before <vehicle>/; default kept/")
    p.add_argument("--expires", type=int, default=900, help="seconds a presigned URL lives; default 900")
    return p


def main(argv: list[str] | None = None) -> int:
    """Serve until interrupted; returns the exit code (2 for bad input, one line on stderr)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        tokens = load_tokens(args.tokens)
        host, _, port = args.listen.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"--listen {args.listen!r}: use HOST:PORT")
        if not 1 <= args.expires <= 7 * 24 * 3600:
            raise ValueError(f"--expires {args.expires}: 1 s to 7 days (S3's limit)")
    except (OSError, ValueError) as e:
        print(f"python -m fleet.presign: {e}", file=sys.stderr)
        return 2
    try:
        import boto3
    except ImportError:
        print("python -m fleet.presign: needs boto3, which this install lacks: pip install \"roadseg[s3]\"",
              file=sys.stderr)
        return 2
    s3 = boto3.client("s3", endpoint_url=args.endpoint_url, region_name=args.region)
    server = PresignService(s3, args.bucket, tokens, args.prefix, args.expires).serve(host, int(port))
    log.info("presigning PUT URLs for s3://%s/%s<vehicle>/ on http://%s/v1/presign for %d vehicle(s)",
             args.bucket, args.prefix, args.listen, len(tokens))
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
