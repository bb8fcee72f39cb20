"""The device's HTTP API (FastAPI): segment an uploaded image, stats, the signed live view.

Rooms: :mod:`~edge_runtime.api.app` (routes), :mod:`~edge_runtime.api.auth`
(bearer token, signed URLs), :mod:`~edge_runtime.api.uploads` (byte, type and
pixel bounds before decoding), :mod:`~edge_runtime.api.live` (the live view's
frames and viewer slots), :mod:`~edge_runtime.api.server` (uvicorn with
timeouts and limits). The command line is :mod:`edge_runtime.commands.serve`.

The names below are imported on first use, so ``parse_http`` or
``load_token`` cost no FastAPI import.
"""
from __future__ import annotations

import importlib

_HOMES = {"create_app": "app", "LiveState": "live", "ViewerSlots": "live", "serve_in_thread": "server",
          "serve_forever": "server", "ServerLimits": "server", "parse_http": "server", "load_token": "auth",
          "Authenticator": "auth", "image_dimensions": "uploads", "check_image": "uploads"}

__all__ = sorted(_HOMES)


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module 'edge_runtime.api' has no attribute {name!r}")
    return getattr(importlib.import_module(f"edge_runtime.api.{_HOMES[name]}"), name)
