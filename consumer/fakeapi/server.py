"""The fake API over real sockets, served by aiohttp's low-level web server, and its controls.

aiohttp parses HTTP/1.1 (keep-alive, Content-Length and chunked bodies, ``multipart/form-data``
through :mod:`consumer.fakeapi.forms`); this module only turns its requests into
:class:`~consumer.fakeapi.messages.Request` values for :class:`FakeApp` and its answers back into
responses. The app runs on a thread pool, not on the event loop: its latency faults sleep, and a
delayed request must not hold up the others (each connection had its own thread before, and tests
rely on concurrent requests overlapping). The loop runs on a background thread of its own, so the
Python API stays synchronous and thread-safe. No per-request logging unless ``verbose``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from http import HTTPStatus
from types import FrameType, TracebackType
from typing import Any, Final, Self

import orjson
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from consumer.fakeapi.app import MIB, FakeApp, Limits
from consumer.fakeapi.faults import FaultPlan, make_rule
from consumer.fakeapi.forms import is_form_data, parse_form
from consumer.fakeapi.messages import Request, Response
from consumer.fakeapi.state import FakeState

# An oversized body up to this size is read and thrown away so the connection stays usable and
# the client reads the 413; beyond it the connection is closed instead.
_DRAIN_MAX_BYTES: Final = 64 * MIB
_EXTRA_PHRASES: Final = {529: "Site Overloaded"}
_WILDCARD_HOSTS: Final = frozenset({"", "0.0.0.0", "::"})  # noqa: S104 - only compared against
_SERVER_HEADER: Final = "fake-vision-events/1"
# Threads for the app: one per request in progress, as the threading server had one per
# connection; created only when that many requests overlap (latency faults, many clients).
_APP_THREADS: Final = 64
# How long start() waits for the socket to be bound, and stop() for open requests to finish.
_START_TIMEOUT_SECONDS: Final = 10.0
_SHUTDOWN_GRACE_SECONDS: Final = 0.1
_LOG: Final = logging.getLogger("consumer.fakeapi")


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return _EXTRA_PHRASES.get(status, "Unknown")


def _utc_now() -> datetime:
    return datetime.now(UTC)


class _ClientGoneError(Exception):
    """The client closed the connection before its whole body arrived."""


class _FramingError(Exception):
    """The request body cannot be delimited (aiohttp's parser refused its chunked framing)."""


async def _read_body(request: web.BaseRequest, limit: int) -> tuple[bytes, bool, bool]:
    """Return the body, whether it was over ``limit`` (then empty) and whether to close after.

    A body over the limit is read and dropped up to :data:`_DRAIN_MAX_BYTES`, so the client gets
    its 413 on a connection that stays usable; a larger one is not read at all and the
    connection closes after the answer.
    """
    declared = request.content_length
    try:
        if declared is not None and declared <= limit:
            return await request.content.read(), False, False
        if declared is not None and declared > _DRAIN_MAX_BYTES:
            return b"", True, True
        # Chunked (length unknown) or over the limit: read piece by piece, keep up to the limit.
        chunks: list[bytes] = []
        total = 0
        while chunk := await request.content.readany():
            total += len(chunk)
            if total > _DRAIN_MAX_BYTES:
                return b"", True, True
            if total <= limit:
                chunks.append(chunk)
    except ConnectionError as exc:  # aiohttp's "Connection lost" for a body cut short
        raise _ClientGoneError from exc
    except HttpProcessingError as exc:
        raise _FramingError(exc.message) from exc
    if total > limit:
        return b"", True, False
    return b"".join(chunks), False, False


class _Serving:
    """The aiohttp server of one :class:`FakeVisionEventsApi`: its loop, thread, runner and pool."""

    def __init__(self, app: FakeApp, *, verbose: bool) -> None:
        self.app = app
        self.verbose = verbose
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._executor = ThreadPoolExecutor(_APP_THREADS, thread_name_prefix="fakeapi-request")
        self._runner: web.ServerRunner | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, name="fakeapi-server", daemon=True)

    def start(self, host: str, port: int) -> None:
        """Bind ``host:port`` and serve; raises what binding raised (e.g. the port is taken)."""
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._start(host, port), self._loop)
        try:
            self.port = future.result(_START_TIMEOUT_SECONDS)
        except BaseException:
            self.stop(_START_TIMEOUT_SECONDS)
            raise

    async def _start(self, host: str, port: int) -> int:
        server = web.Server(
            self._handle,
            # A gzip body is not JSON: the stand-in must refuse it as the contract would, not inflate it.
            auto_decompress=False,
            # _read_body drains what may be drained; a body left unread (over _DRAIN_MAX_BYTES)
            # means: close right after the answer, not linger reading it.
            lingering_time=0,
            access_log=_LOG if self.verbose else None,
        )
        self._runner = web.ServerRunner(server, shutdown_timeout=_SHUTDOWN_GRACE_SECONDS)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        for address in self._runner.addresses:
            return int(address[1])
        raise RuntimeError("the server has no bound address")

    def stop(self, timeout: float) -> None:
        """Close the listener and every connection, then end the loop and its thread."""
        if self._runner is not None and self._loop.is_running():
            future = asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop)
            with contextlib.suppress(Exception):  # shutting down: a failure here changes nothing
                future.result(timeout)
        self._runner = None
        if self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout)
        if not self._thread.is_alive():
            self._loop.close()
        # Requests still sleeping in a latency fault end on their own; nothing waits for them.
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def _handle(self, http: web.BaseRequest) -> web.StreamResponse:
        path, _, query = http.raw_path.partition("?")
        app = self.app
        try:
            body, too_large, close = await _read_body(http, app.body_limit(path))
        except _ClientGoneError:
            return self._drop(http)
        except _FramingError as exc:
            return self._answer(Response(400, orjson.dumps({"error": str(exc)}), close=True))
        headers = http.headers
        content_type = headers.get("Content-Type")
        form = None
        if not too_large and is_form_data(content_type) and content_type is not None:
            form = await parse_form(content_type, body)
        request = Request(
            method=http.method,
            path=path,
            query=query,
            body=body,
            authorization=headers.get("Authorization"),
            api_key=headers.get("X-API-Key"),
            content_type=content_type,
            host=headers.get("Host"),
            too_large=too_large,
            form=form,
        )
        try:
            response = await asyncio.get_running_loop().run_in_executor(self._executor, app.handle, request)
        except Exception as exc:  # noqa: BLE001 - a bug in the fake must not look like a network fault
            traceback.print_exc()
            response = Response(500, orjson.dumps({"error": f"fake API bug: {exc!r}"}))
        if response is None:  # an injected dropped connection: no response at all
            return self._drop(http)
        return self._answer(response, close=close)

    @staticmethod
    def _answer(response: Response, *, close: bool = False) -> web.Response:
        answer = web.Response(
            status=response.status,
            reason=_phrase(response.status),
            body=response.body,
            headers={
                "Server": _SERVER_HEADER,
                "Content-Type": response.content_type,
                **dict(response.headers),
            },
        )
        if response.close or close:
            answer.force_close()
        return answer

    @staticmethod
    def _drop(http: web.BaseRequest) -> web.StreamResponse:
        """Close the connection without answering; the returned response is never written."""
        http.protocol.force_close()
        return web.Response()


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
        self._serving: _Serving | None = None

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> Self:
        """Bind and serve on a background thread; returns self. Port 0 picks a free port."""
        if self._serving is not None:
            raise RuntimeError("already started")
        serving = _Serving(self._app, verbose=self._verbose)
        serving.start(self._host, self._port)
        self._serving = serving
        self._port = serving.port
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop accepting, close open connections, release the port. Safe to call twice."""
        serving, self._serving = self._serving, None
        if serving is not None:
            serving.stop(timeout)

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
        if self._serving is None:
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
    if verbose:  # the access log of every request, on stderr
        logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")

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
