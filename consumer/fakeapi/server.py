"""The fake API over real sockets: a threading HTTP/1.1 server with keep-alive, and its controls.

One thread per connection (``ThreadingHTTPServer``), one ``sendall`` per response with
TCP_NODELAY, and no per-request logging unless ``verbose``: enough for thousands of requests a
second from a benchmark on the same machine.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import socketserver
import sys
import threading
import traceback
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType, TracebackType
from typing import Any, Final, Self

import orjson

from consumer.fakeapi.app import MIB, FakeApp, Limits
from consumer.fakeapi.faults import FaultPlan, make_rule
from consumer.fakeapi.messages import Request, Response
from consumer.fakeapi.state import FakeState

# An oversized body up to this size is read and thrown away so the connection stays usable and
# the client reads the 413; beyond it the connection is closed instead.
_DRAIN_MAX_BYTES: Final = 64 * MIB
_READ_CHUNK_BYTES: Final = MIB
_EXTRA_PHRASES: Final = {529: "Site Overloaded"}
_WILDCARD_HOSTS: Final = frozenset({"", "0.0.0.0", "::"})  # noqa: S104 - only compared against


class _FramingError(Exception):
    """The request body cannot be delimited (bad Content-Length or chunked encoding)."""


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return _EXTRA_PHRASES.get(status, "Unknown")


def _utc_now() -> datetime:
    return datetime.now(UTC)


class _Handler(BaseHTTPRequestHandler):
    """Reads one request at a time off a keep-alive connection and hands it to the app."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server_version = "fake-vision-events/1"
    sys_version = ""
    server: _Server

    # http.server dispatches each request to do_<METHOD>.
    def do_GET(self) -> None:
        """Handle GET."""
        self._dispatch()

    def do_POST(self) -> None:
        """Handle POST."""
        self._dispatch()

    def do_PUT(self) -> None:
        """Handle PUT."""
        self._dispatch()

    def do_DELETE(self) -> None:
        """Handle DELETE."""
        self._dispatch()

    def do_PATCH(self) -> None:
        """Handle PATCH."""
        self._dispatch()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - base class signature
        """Log only in verbose mode: per-request logging would dominate a benchmark."""
        if self.server.verbose:
            super().log_message(format, *args)

    def _dispatch(self) -> None:
        path, _, query = self.path.partition("?")
        app = self.server.app
        try:
            body, too_large = self._read_body(app.body_limit(path))
        except _FramingError as exc:
            self._write(Response(400, orjson.dumps({"error": str(exc)}), close=True))
            return
        if body is None:  # the client went away in the middle of the body
            self.close_connection = True
            return
        headers = self.headers
        request = Request(
            method=self.command,
            path=path,
            query=query,
            body=body,
            authorization=headers.get("Authorization"),
            api_key=headers.get("X-API-Key"),
            content_type=headers.get("Content-Type"),
            host=headers.get("Host"),
            too_large=too_large,
        )
        try:
            response = app.handle(request)
        except Exception as exc:  # noqa: BLE001 - a bug in the fake must not look like a network fault
            traceback.print_exc()
            response = Response(500, orjson.dumps({"error": f"fake API bug: {exc!r}"}))
        if response is None:  # an injected dropped connection: no response at all
            self.close_connection = True
            return
        self._write(response)

    def _read_body(self, limit: int) -> tuple[bytes | None, bool]:
        """Return the body (None if the client hung up) and whether it was over ``limit``."""
        encoding = self.headers.get("Transfer-Encoding")
        if encoding is not None:
            if encoding.strip().lower() != "chunked":
                raise _FramingError(f"unsupported Transfer-Encoding {encoding!r}")
            return self._read_chunked(limit)
        length_text = (self.headers.get("Content-Length") or "0").strip()
        if not (length_text.isascii() and length_text.isdigit()):
            raise _FramingError("invalid Content-Length")
        length = int(length_text)
        if length > limit:
            self._discard(length)
            return b"", True
        body = self.rfile.read(length)
        return (body if len(body) == length else None), False

    def _discard(self, length: int) -> None:
        if length > _DRAIN_MAX_BYTES:
            self.close_connection = True
            return
        remaining = length
        while remaining > 0:
            chunk = self.rfile.read(min(remaining, _READ_CHUNK_BYTES))
            if not chunk:
                self.close_connection = True
                return
            remaining -= len(chunk)

    def _read_chunked(self, limit: int) -> tuple[bytes | None, bool]:
        chunks: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(1024)
            if not line:
                return None, False
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError as exc:
                raise _FramingError("invalid chunk size") from exc
            if size == 0:
                break
            total += size
            if total > _DRAIN_MAX_BYTES:
                self.close_connection = True
                return b"", True
            data = self.rfile.read(size)
            if len(data) < size:
                return None, False
            if self.rfile.read(2) != b"\r\n":
                raise _FramingError("chunk data not followed by CRLF")
            if total <= limit:
                chunks.append(data)
        while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
            pass  # trailer fields are ignored
        if total > limit:
            return b"", True
        return b"".join(chunks), False

    def _write(self, response: Response) -> None:
        close = response.close or self.close_connection
        lines = [
            f"HTTP/1.1 {response.status} {_phrase(response.status)}",
            f"Server: {self.server_version}",
            f"Date: {self.date_time_string()}",
            f"Content-Type: {response.content_type}",
            f"Content-Length: {len(response.body)}",
        ]
        lines.extend(f"{name}: {value}" for name, value in response.headers)
        if close:
            lines.append("Connection: close")
            self.close_connection = True
        # One write: headers and body in the same segment, so no Nagle/delayed-ACK stall.
        self.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + response.body)
        if self.server.verbose:
            self.log_request(response.status, len(response.body))


class _Server(ThreadingHTTPServer):
    """ThreadingHTTPServer that knows its app and can close idle keep-alive connections."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], app: FakeApp, *, verbose: bool) -> None:
        self.app = app
        self.verbose = verbose
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self._connections: dict[socket.socket, threading.Thread] = {}
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        """Bind without HTTPServer's reverse DNS lookup of the host (slow on some networks)."""
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def process_request(self, request: Any, client_address: Any) -> None:
        """Serve a connection on its own daemon thread, remembered until it closes."""
        thread = threading.Thread(
            target=self.process_request_thread,
            args=(request, client_address),
            name="fakeapi-connection",
            daemon=True,
        )
        with self._connections_lock:
            self._connections[request] = thread
        thread.start()

    def shutdown_request(self, request: Any) -> None:
        """Forget the connection, then close it."""
        with self._connections_lock:
            self._connections.pop(request, None)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Ignore socket errors (clients hanging up, or stop()); print anything else."""
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)

    def close_connections(self, timeout: float) -> None:
        """Wake every connection thread by shutting its socket down, then wait for it."""
        with self._connections_lock:
            connections = list(self._connections.items())
        for sock, _ in connections:
            with contextlib.suppress(OSError):  # already closed by the peer
                sock.shutdown(socket.SHUT_RDWR)
        for _, thread in connections:
            thread.join(timeout)


class FakeVisionEventsApi:
    """A local stand-in of the Vision Events API (cloud) and the on-device Event Store.

    It validates every body strictly against the contract, so a request it accepts is one the
    real API would accept. Start it with :meth:`start` or as a context manager; inspect what it
    received with :meth:`events`, :meth:`local_events`, :meth:`uploads`, :meth:`request_log`,
    :meth:`stats`; make it misbehave with :meth:`add_fault`, :meth:`set_latency`,
    :meth:`set_auth_broken`, :meth:`set_local_capacity`. All methods are thread-safe.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        api_keys: Sequence[str] = ("test-key",),
        read_only_keys: Sequence[str] = (),
        use_cases: Sequence[str] = ("demo-use-case",),
        local_api_key: str | None = None,
        inactive_use_cases: Sequence[str] = (),
        local_capacity: int | None = None,
        max_upload_bytes: int = 20 * MIB,
        max_body_bytes: int = 10 * MIB,
        max_local_body_bytes: int = 32 * MIB,
        fault_seed: int = 0,
        request_log_limit: int = 100_000,
        clock: Callable[[], datetime] = _utc_now,
        verbose: bool = False,
        retain: bool = True,
    ) -> None:
        """``retain=False`` is the fast mode: bodies and image bytes are validated, not kept."""
        self._host = host
        self._port = port
        self._verbose = verbose
        self._state = FakeState(
            use_cases, inactive_use_cases, local_capacity, request_log_limit, retain=retain
        )
        self._faults = FaultPlan(fault_seed)
        self._app = FakeApp(
            state=self._state,
            faults=self._faults,
            api_keys=frozenset(api_keys),
            read_only_keys=frozenset(read_only_keys),
            local_api_key=local_api_key,
            limits=Limits(max_upload_bytes, max_body_bytes, max_local_body_bytes),
            clock=clock,
            default_host=self._netloc,
        )
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> Self:
        """Bind and serve on a background thread; returns self. Port 0 picks a free port."""
        if self._server is not None:
            raise RuntimeError("already started")
        self._server = _Server((self._host, self._port), self._app, verbose=self._verbose)
        self._port = self._server.server_port
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.02},
            name="fakeapi-server",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop accepting, close open connections, release the port. Safe to call twice."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        self._server = self._thread = None
        server.shutdown()
        server.close_connections(timeout)
        server.server_close()
        thread.join(timeout)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _netloc(self) -> str:
        # A wildcard bind is reached on loopback from this machine.
        host = "127.0.0.1" if self._host in _WILDCARD_HOSTS else self._host
        if ":" in host:
            host = f"[{host}]"
        return f"{host}:{self._port}"

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:54321`` (valid once started)."""
        if self._server is None:
            raise RuntimeError("not started")
        return f"http://{self._netloc()}"

    @property
    def port(self) -> int:
        """The bound port (the chosen one when constructed with port 0 and started)."""
        return self._port

    # --- inspection ---------------------------------------------------------------------------

    def events(self) -> dict[str, dict[str, Any]]:
        """Cloud events received, eventId -> the last body stored for it."""
        return self._state.events()

    def local_events(self) -> list[dict[str, Any]]:
        """``/v2/events`` bodies accepted, oldest first."""
        return self._state.local_events()

    def uploads(self) -> dict[str, bytes]:
        """Return the uploaded images, sourceId -> bytes."""
        return self._state.uploads()

    def request_log(self) -> list[tuple[str, str, int]]:
        """Return (method, path, status) of recent API requests (not control routes); 0 = dropped."""
        return self._state.request_log()

    def request_counts(self) -> dict[tuple[str, str, int], int]:
        """Return (method, endpoint, status) -> count, e.g. ``("POST", "/vision-events/batch", 201)``."""
        return self._state.request_counts()

    def stats(self) -> dict[str, Any]:
        """Return the ``GET /_fake/stats`` document: counts by endpoint/status, overwrites, types."""
        return self._state.stats()

    def acceptance(self, *, timeline: bool = True) -> dict[str, Any]:
        """Return the ``GET /_fake/acceptance`` document: accepted count, latency percentiles, timeline."""
        return self._state.acceptance.summary(timeline=timeline)

    @property
    def overwrites(self) -> int:
        """How many accepted cloud events replaced an earlier one with the same eventId."""
        return self._state.overwrites

    def reset(self) -> None:
        """Forget everything received and remove all faults (configuration is kept)."""
        self._state.reset()
        self._faults.reset()

    # --- faults -------------------------------------------------------------------------------

    def add_fault(
        self,
        path_prefix: str,
        statuses: Sequence[int] = (500, 500),
        *,
        retry_after: int | str | None = None,
        latency_s: float = 0.0,
        drop_connection: bool = False,
        times: int | None = None,
        fail_ratio: float | None = None,
        answer: str | None = None,
    ) -> None:
        """Queue a fault rule for requests whose path starts with ``path_prefix``.

        Sequence mode: the next ``times`` matching requests (default ``len(statuses)``) are
        answered with ``statuses`` in order, then requests fall through to normal handling.
        ``retry_after`` adds a ``Retry-After`` header (seconds, or a string sent verbatim).
        ``latency_s`` delays each faulted request; with ``statuses=()`` the request is then
        handled normally (and the rule is unlimited unless ``times`` is given).
        ``drop_connection`` closes the socket without any response instead of a status.
        Ratio mode (``fail_ratio``): each matching request fails with that probability, its
        status drawn from ``statuses`` by the RNG seeded with ``fault_seed``; unlimited unless
        ``times`` is given. ``answer`` (``html``, ``ok_true``, ``empty``, ``wrong_ids``,
        ``duplicate_ids``) answers a 2xx whose body is not the contract's answer, storing nothing.
        """
        self._faults.add(
            make_rule(
                path_prefix,
                statuses,
                retry_after=retry_after,
                latency_s=latency_s,
                drop_connection=drop_connection,
                times=times,
                fail_ratio=fail_ratio,
                answer=answer,
            )
        )

    def clear_faults(self) -> int:
        """Remove all fault rules; return how many there were."""
        return self._faults.clear()

    def set_latency(self, seconds: float) -> None:
        """Delay every API request (not control routes) by ``seconds``."""
        if seconds < 0:
            raise ValueError("seconds must be >= 0")
        self._faults.latency_s = seconds

    def set_auth_broken(self, broken: bool) -> None:
        """While True, every cloud request gets 401, whatever its key."""
        self._faults.auth_broken = broken

    def set_local_capacity(self, capacity: int | None) -> None:
        """Answer ``/v2/events`` with 529 once this many events are stored (None: no limit)."""
        self._state.local_capacity = capacity


def serve(
    host: str,
    port: int,
    api_keys: Sequence[str],
    use_cases: Sequence[str],
    local_api_key: str | None,
    *,
    read_only_keys: Sequence[str] = (),
    local_capacity: int | None = None,
    max_upload_bytes: int = 20 * MIB,
    fault_seed: int = 0,
    verbose: bool = False,
    fast: bool = False,
) -> None:
    """Run the fake API in the foreground until SIGINT or SIGTERM.

    ``fast`` keeps no event bodies or image bytes (see :class:`FakeState`); validation is the same.

    Prints one line with the URL once it accepts connections (a wrapper script can wait for it).
    """
    stopping = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    api = FakeVisionEventsApi(
        host,
        port,
        api_keys=api_keys,
        read_only_keys=read_only_keys,
        use_cases=use_cases,
        local_api_key=local_api_key,
        local_capacity=local_capacity,
        max_upload_bytes=max_upload_bytes,
        fault_seed=fault_seed,
        verbose=verbose,
        retain=not fast,
    )
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = (
        {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        if in_main_thread
        else {}
    )
    try:
        with api:
            print(f"fake Vision Events API listening on {api.url}", flush=True)
            while not stopping.wait(0.5):
                pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
