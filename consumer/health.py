"""The operations HTTP server: ``/metrics``, ``/healthz`` (liveness) and ``/readyz`` (readiness)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

# Returns (ready, reasons it is not).
ReadinessCheck = Callable[[], tuple[bool, list[str]]]


class OpsServer:
    """Serves metrics and probes from a daemon thread."""

    def __init__(self, host: str, port: int, registry: CollectorRegistry, readiness: ReadinessCheck) -> None:
        registry_ref, readiness_ref = registry, readiness

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    # Refresh the ready gauge on every scrape: without probes (or with them off)
                    # it would otherwise keep whatever value the last /readyz call left.
                    readiness_ref()
                    self._send(200, generate_latest(registry_ref), CONTENT_TYPE_LATEST)
                elif path == "/healthz":
                    self._send(200, b'{"status":"ok"}', "application/json")
                elif path == "/readyz":
                    ready, reasons = readiness_ref()
                    body = orjson.dumps({"ready": ready, "reasons": reasons})
                    self._send(200 if ready else 503, body, "application/json")
                else:
                    self._send(404, b'{"error":"not found"}', "application/json")

            def _send(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
                """Probes every few seconds would flood the logs."""

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="ops-http", daemon=True)

    @property
    def port(self) -> int:
        """The bound port (useful with port 0)."""
        return int(self._server.server_address[1])

    def start(self) -> OpsServer:
        """Start serving."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
