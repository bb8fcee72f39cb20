"""The vehicle's half of the data flywheel (off by default): score every
frame by how much it would teach (:mod:`.score`), keep the best in a bounded
folder (:mod:`.store`, :mod:`.keep`), push them to the workstation within a
byte budget per 24 hours (:mod:`.upload`, its journal :mod:`.journal`). The
workstation's half labels them with the teacher
(``python -m distill.commands.pseudolabel``).

Kept frames are full camera frames: they hold faces and number plates.
"""
from __future__ import annotations

import contextlib
import os

#: environment variable holding the upload password / token when no file is given
TOKEN_ENV = "ROADSEG_UPLOAD_TOKEN"


def upload_token(token_file: str | None) -> str:
    """The upload credential: the first line of ``token_file``, else ``$ROADSEG_UPLOAD_TOKEN``.
    Raises ValueError (naming the file, never its content) when there is none."""
    if token_file:
        from edge_runtime.atomic import read_small_text
        token = read_small_text(token_file, 4096, "--upload-token-file").strip().splitlines()  # regular, size first
        if token and token[0].strip():
            return token[0].strip()
        raise ValueError(f"--upload-token-file {token_file} is empty")
    token = os.environ.get(TOKEN_ENV, "").strip()
    if not token:
        raise ValueError(f"uploads need a credential: --upload-token-file FILE or {TOKEN_ENV}")
    return token


def compose(settings, segmenter, stack: contextlib.ExitStack):
    """roadseg-run's flywheel from its settings (``keep_frames``, ``keep_max_mb``,
    ``keep_per_hour``, ``upload_url`` / ``upload_presign``, ``upload_token_file``,
    ``upload_mb_per_day``, ``device_id``): the KeepFrames view (closed by
    ``stack``) and, when a target is set, the uploader thread (stopped by
    ``stack`` first). Raises ValueError for a bad URL or a missing credential.
    A folder that cannot be made or written (read-only or full card) raises
    nothing: the vehicle starts, and the view's ``disk_faults`` (the kept
    frames' and the upload journal's) say so until the disk recovers."""
    from edge_runtime.flywheel.keep import KeepFrames, KeepPolicy
    from edge_runtime.flywheel.store import FrameStore
    from edge_runtime.flywheel.upload import PresignedTarget, Uploader, WebDavTarget
    store = FrameStore(settings.keep_frames, int(settings.keep_max_mb * 2 ** 20))
    target = None
    if settings.upload_url:
        target = WebDavTarget(settings.upload_url, settings.device_id, upload_token(settings.upload_token_file))
    elif settings.upload_presign:
        target = PresignedTarget(settings.upload_presign, upload_token(settings.upload_token_file))
    keep = KeepFrames(store, segmenter, settings.device_id, KeepPolicy(per_hour=settings.keep_per_hour))
    stack.callback(keep.close)
    if target is not None:
        uploader = Uploader(store, target, int(settings.upload_mb_per_day * 2 ** 20)).start()
        stack.callback(uploader.stop)
        keep.uploader = uploader
    return keep
