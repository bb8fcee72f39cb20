"""roadseg-serve: the device API alone, without a camera loop.

    roadseg-serve [--model dist/X.tflite] [--http 127.0.0.1:8080] [--api-token-file F]

Routes: POST /v1/segment, GET /v1/stats, GET /healthz, /docs (works
offline). Binds to loopback unless told otherwise. With a token
(ROADSEG_API_TOKEN or --api-token-file) every route but /healthz needs
``Authorization: Bearer <token>``; POST /v1/docs-url gives a signed /docs
URL for a browser. Uploads are bounded in bytes (--max-upload-mb, checked
before the body is read), pixels (--max-pixels, from the header before
decoding) and number in flight (--max-inflight, 503 beyond); slow clients
are timed out. Beside a live loop, use roadseg-run --http instead.
"""
from __future__ import annotations

import logging
import sys

from edge_runtime.commands import cli

log = logging.getLogger("roadseg.serve")

#: the defaults, repeated here so --help needs no FastAPI import (tests check they agree)
DEFAULT_MAX_UPLOAD_MB = 10.0
DEFAULT_MAX_PIXELS = 12_000_000
DEFAULT_MAX_INFLIGHT = 2


def add_api_limits(p) -> None:
    """The upload flags ``roadseg-serve`` and ``roadseg-run --http`` share;
    defaults None, so a TOML/env value of ``roadseg-run`` can fill them."""
    p.add_argument("--max-upload-mb", type=float,
                   help=f"largest upload in MiB, refused before it is read; default {DEFAULT_MAX_UPLOAD_MB:g}")
    p.add_argument("--max-pixels", type=int, help=f"largest image decoded, in pixels; default {DEFAULT_MAX_PIXELS}")
    p.add_argument("--max-inflight", type=int,
                   help=f"uploads segmented at once (more get 503); default {DEFAULT_MAX_INFLIGHT}")


def build_parser():
    """roadseg-serve's argparse parser."""
    p = cli.parser("roadseg-serve", __doc__)
    p.add_argument("--model", help=cli.MODEL_HELP)
    p.add_argument("--http", default="127.0.0.1:8080", help="HOST:PORT (default loopback only)")
    p.add_argument("--threads", type=int, help="interpreter threads (default: all cores)")
    p.add_argument("--size", type=cli.size_arg, metavar="HxW",
                   help="input size for a model whose input height and width are dynamic (default: its sidecar's)")
    add_api_limits(p)
    p.add_argument("--api-token-file", help="file holding the bearer token (or ROADSEG_API_TOKEN)")
    cli.deprecated(p, "--token-file", "--api-token-file", "api_token_file")
    return p


def upload_limits(max_upload_mb: float | None, max_pixels: int | None, max_inflight: int | None) -> dict:
    """``create_app`` keyword arguments from the flags (None: the default).
    Raises ValueError naming the flag when a value is not positive."""
    mb = DEFAULT_MAX_UPLOAD_MB if max_upload_mb is None else max_upload_mb
    pixels = DEFAULT_MAX_PIXELS if max_pixels is None else max_pixels
    inflight = DEFAULT_MAX_INFLIGHT if max_inflight is None else max_inflight
    for flag, value in (("--max-upload-mb", mb), ("--max-pixels", pixels), ("--max-inflight", inflight)):
        if not value > 0:
            raise ValueError(f"{flag} must be positive, got {value}")
    return {"max_upload": int(mb * 1024 * 1024), "max_pixels": pixels, "max_inflight": inflight}


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``roadseg-serve``; returns the exit code (cli convention)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    def body():
        """Load the model, check the flags, serve until a signal (cli.run maps errors to exit codes)."""
        try:
            from edge_runtime.api import create_app, load_token, parse_http, serve_forever
            import uvicorn  # noqa: F401
        except ImportError as e:
            raise ImportError(f"{e}; install the api extra: pip install '.[api]'") from None
        from edge_runtime.model.segmenter import DeviceSegmenter
        host, port = parse_http(args.http)
        seg = DeviceSegmenter(args.model or cli.shipped_model(), threads=args.threads, size=args.size)
        limits = upload_limits(args.max_upload_mb, args.max_pixels, args.max_inflight)
        token = load_token(args.api_token_file)
        d = seg.describe()
        log.info("serving %s (%s, input %dx%d, %s, %s threads) on http://%s:%d, token %s",
                 d["name"], d["precision"], *d["input_size"], d["interpreter"], d["threads"] or "all", host, port,
                 "required" if token else "off")
        serve_forever(create_app(seg, token=token, **limits), host, port)

    return cli.run("roadseg-serve", body)


if __name__ == "__main__":
    sys.exit(main())
