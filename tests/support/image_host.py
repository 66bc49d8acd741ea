"""A real HTTP image host on loopback: a camera's or an NVR's snapshot API, for ``image_url`` routes."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self


class ImageHost:
    """Serves fixed bytes at fixed paths (``GET /api/events/<id>/snapshot.jpg``), 404 elsewhere.

    Every request path is recorded, so a test can tell which images the consumer fetched.
    """

    def __init__(self, files: Mapping[str, bytes], content_type: str = "image/jpeg") -> None:
        self.files = dict(files)
        self.requests: list[str] = []
        self._lock = threading.Lock()
        host = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with host._lock:
                    host.requests.append(self.path)
                body = host.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - base class signature
                """Quiet: the test reads :attr:`ImageHost.requests` instead."""

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="image-host", daemon=True)

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def requested(self) -> list[str]:
        """The paths requested so far, in order."""
        with self._lock:
            return list(self.requests)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)
