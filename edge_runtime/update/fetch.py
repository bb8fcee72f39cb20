"""The HTTP fetcher the vehicle's TUF client downloads through: python-tuf's
urllib3 fetcher, bounded in time as a whole (a server that trickles a byte a
second defeats a per-read timeout), reporting bytes as they arrive, and
stoppable from another thread.

Lengths are bounded by TUF itself: metadata by the client's configured
maxima, a target by the length its signed metadata gives (python-tuf's
``download_file`` stops one byte past it: the endless-data attack).
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

from tuf.api import exceptions
from tuf.ngclient import Urllib3Fetcher


class BoundedFetcher(Urllib3Fetcher):
    """``socket_timeout``: seconds to connect and between two reads;
    ``deadline``: seconds any one file may take in all; ``on_bytes(n)``: called
    with the size of each chunk received (progress); ``cancel``: an Event that
    stops the download at the next chunk. Raises (through python-tuf)
    ``SlowRetrievalError`` past either time bound, ``DownloadError`` when cancelled
    or when the connection breaks mid-file (a truncated download)."""

    def __init__(self, socket_timeout: float = 15.0, deadline: float = 300.0, chunk_size: int = 64 * 1024,
                 on_bytes: Callable[[int], None] | None = None, cancel: threading.Event | None = None,
                 app_user_agent: str | None = None):
        super().__init__(socket_timeout=socket_timeout, chunk_size=chunk_size, app_user_agent=app_user_agent)
        self.deadline = deadline
        self.on_bytes = on_bytes
        self.cancel = cancel or threading.Event()

    def _fetch(self, url: str) -> Iterator[bytes]:
        start = time.monotonic()
        chunks = super()._fetch(url)
        return self._bounded(chunks, start, url)

    def _bounded(self, chunks: Iterator[bytes], start: float, url: str) -> Iterator[bytes]:
        try:
            for chunk in chunks:
                if self.cancel.is_set():
                    raise exceptions.DownloadError("download cancelled (stopping)")
                if time.monotonic() - start > self.deadline:
                    raise exceptions.SlowRetrievalError(f"download took more than {self.deadline:g} s in all")
                if self.on_bytes is not None:
                    self.on_bytes(len(chunk))
                yield chunk
        except exceptions.DownloadError:
            raise
        except Exception as e:  # urllib3's ProtocolError (a connection closed half way) and the like
            raise exceptions.DownloadError(f"{type(e).__name__} while downloading {url}") from e
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
