"""A lean HTTP/1.1 transport for httpx on asyncio streams, and when the sinks use it.

Why it exists: the CPU per request. For a 125 KB batch POST to a nearby server, httpx's default
transport (httpcore's pool over anyio streams: cancel scopes, socket checks on every pool access,
per-request URL and header work) costs about 1 ms of CPU on a 2-core edge-class machine; this one
about 0.4 ms, of which h11 is a quarter. Every batch of events and every image upload is one
request, so that difference is a sizeable share of the CPU spent per event. The sinks keep the
httpx API (``AsyncClient``, ``Request``/``Response``, exceptions, ``MockTransport`` in tests);
only the path to the socket changes.

What it does:

- HTTP/1.1 only, ``http`` and ``https`` (TLS verified as httpx does by default: certifi, or
  ``SSL_CERT_FILE``/``SSL_CERT_DIR``; ``server_hostname`` is the URL's host).
- A pool of keep-alive connections per (scheme, host, port): at most ``max_connections`` open
  at once across all origins (further requests queue in arrival order, bounded by the ``pool``
  timeout), at most ``max_keepalive_connections`` kept idle, each idle at most
  ``keepalive_expiry`` seconds. An idle connection on which anything arrived (the server closed
  it, or sent an unsolicited answer such as a 408) is dropped, never reused.
- The request head is written as httpx prepared it (h11's own serialisation would add tens of
  microseconds); h11 is told only the method and connection intent, which is what it needs to
  read the response. The body goes with its ``Content-Length``, chunked when httpx chose
  chunked, or is read whole first when the request declares neither.
- The response is parsed by h11 (framing by Content-Length, chunked or close; interim 1xx
  skipped; keep-alive decided by h11). A body up to :data:`EAGER_BODY_BYTES` is read with the
  head and the connection goes straight back to the pool; a longer one streams (image fetches
  cap their size while reading), and its connection returns to the pool once the body has been
  read to its end.
- Timeouts are the request's ``timeout`` extension (``connect``/``read``/``write``/``pool``).
- Failures raise httpx's exception types, as httpx's own transport would: ``ConnectError`` /
  ``ConnectTimeout``, ``ReadError`` / ``ReadTimeout``, ``WriteError`` / ``WriteTimeout``,
  ``RemoteProtocolError``, ``LocalProtocolError``, ``PoolTimeout``, ``UnsupportedProtocol``.
  A connection that failed or was cancelled mid-request is closed, never pooled.

What it does not do: proxies (:func:`sink_transport` falls back to httpx's default transport when
the environment configures one), HTTP/2, protocol upgrades, client certificates other than
through a caller's ``ssl_context``, and retries: like httpx's transport it tries once and the
sinks' retry policy decides what happens next.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import ssl
import time
import urllib.request
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Final, SupportsIndex, cast

import h11
import httpx

# (scheme, host, port): the key of the pool.
Origin = tuple[str, str, int]
Connector = Callable[[Origin, float | None], Awaitable["Connection"]]

DEFAULT_PORTS: Final = {"http": 80, "https": 443}
READ_BYTES: Final = 64 * 1024
# API answers are a few KB: read them with the head. Anything longer streams to the caller.
EAGER_BODY_BYTES: Final = 64 * 1024
# Request bytes are joined into writes of about this size (see Connection._write_whole).
FLUSH_BYTES: Final = 256 * 1024
# How long aclose() lets idle TLS connections say goodbye before cutting them.
CLOSE_GRACE_SECONDS: Final = 1.0
# Dual-stack hosts: try the next address after this long, as httpx's default path (anyio) does.
HAPPY_EYEBALLS_DELAY: Final = 0.25


def sink_transport() -> httpx.AsyncBaseTransport | None:
    """The transport a sink's own client should use: the lean one, or None for httpx's default.

    The lean transport does not speak to proxies, so when the environment configures one that
    httpx would honour (``HTTP_PROXY``, ``HTTPS_PROXY``, ``ALL_PROXY``, or the system settings
    ``urllib.request.getproxies`` reads, unless ``NO_PROXY=*``), the client keeps httpx's default
    transport, which applies the proxies and ``NO_PROXY`` per URL exactly as before. A sink's
    client reaches both the API and image hosts, so any configured proxy decides it.
    """
    return None if environment_proxies_configured() else LeanTransport()


def environment_proxies_configured() -> bool:
    """True when httpx (``trust_env``) would send at least some requests through a proxy."""
    proxies = urllib.request.getproxies()
    if any(host.strip() == "*" for host in proxies.get("no", "").split(",")):
        return False
    return any(proxies.get(scheme) for scheme in ("http", "https", "all"))


class LeanTransport(httpx.AsyncBaseTransport):
    """An ``httpx.AsyncBaseTransport`` speaking HTTP/1.1 over pooled asyncio connections.

    ``ssl_context`` replaces the default verification (httpx's: certifi or ``SSL_CERT_FILE``);
    the limits mirror ``httpx.Limits`` and default to its values.
    """

    def __init__(
        self,
        *,
        ssl_context: ssl.SSLContext | None = None,
        max_connections: int = 100,
        max_keepalive_connections: int = 20,
        keepalive_expiry: float = 5.0,
    ) -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self._ssl_context = ssl_context
        self._pool = Pool(
            self._connect,
            max_connections=max_connections,
            max_idle=max_keepalive_connections,
            keepalive_expiry=keepalive_expiry,
        )

    @property
    def pool(self) -> Pool:
        """The connection pool (its counters are what tests and diagnostics look at)."""
        return self._pool

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` on a pooled connection and return the response (body read or streaming)."""
        origin = origin_of(request.url)
        outgoing = await Outgoing.of(request)
        timeouts = request.extensions.get("timeout", {})
        read_timeout: float | None = timeouts.get("read")
        connection = await self._pool.acquire(origin, timeouts.get("pool"), timeouts.get("connect"))
        try:
            await connection.send_request(outgoing, timeouts.get("write"))
            head = await connection.receive_head(read_timeout)
            chunks, complete = await read_eagerly(connection, read_timeout)
        except BaseException:
            self._pool.discard(connection)
            raise
        if complete:
            self._pool.release(connection)
            body = ResponseBody(chunks, self._pool)
        else:
            body = ResponseBody(chunks, self._pool, connection, read_timeout)
        return httpx.Response(
            head.status_code,
            headers=head.headers.raw_items(),
            stream=body,
            extensions={"http_version": b"HTTP/" + head.http_version, "reason_phrase": head.reason},
        )

    async def aclose(self) -> None:
        """Close every idle connection; connections in use are closed when their response ends."""
        await self._pool.aclose()

    def _tls_context(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            context = httpx.create_ssl_context()
            context.set_alpn_protocols(["http/1.1"])
            self._ssl_context = context
        return self._ssl_context

    async def _connect(self, origin: Origin, timeout: float | None) -> Connection:
        context = self._tls_context() if origin[0] == "https" else None
        return await Connection.open(origin, context, timeout)


def origin_of(url: httpx.URL) -> Origin:
    """The pool key of ``url``; UnsupportedProtocol for a scheme other than http/https."""
    scheme = url.scheme
    default = DEFAULT_PORTS.get(scheme)
    if default is None:
        raise httpx.UnsupportedProtocol(f"unsupported URL scheme {scheme!r}: only http and https")
    host = url.raw_host.decode("ascii")
    if not host:
        raise httpx.UnsupportedProtocol(f"no host in the URL {url}")
    return scheme, host, url.port or default


class _Reader(asyncio.StreamReader):
    """A StreamReader that counts the bytes it receives, so unread or unexpected data shows."""

    received = 0

    def feed_data(self, data: Iterable[SupportsIndex]) -> None:
        self.received += len(cast("bytes", data))  # the protocol only ever feeds bytes
        super().feed_data(data)


class Connection:
    """One HTTP/1.1 connection: asyncio streams for the bytes, h11 for the response."""

    __slots__ = ("_consumed", "_h11", "_idle_since", "_reader", "_writer", "origin")

    def __init__(self, origin: Origin, reader: _Reader, writer: asyncio.StreamWriter) -> None:
        self.origin = origin
        self._reader = reader
        self._writer = writer
        self._h11 = h11.Connection(h11.CLIENT)
        self._idle_since = 0.0
        self._consumed = 0

    @classmethod
    async def open(cls, origin: Origin, context: ssl.SSLContext | None, timeout: float | None) -> Connection:
        """Connect (and handshake TLS when ``context`` is given) within ``timeout`` seconds."""
        _, host, port = origin
        loop = asyncio.get_running_loop()
        reader = _Reader(limit=READ_BYTES, loop=loop)
        protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
        try:
            async with asyncio.timeout(timeout):
                transport, _ = await loop.create_connection(
                    lambda: protocol,
                    host,
                    port,
                    ssl=context,
                    server_hostname=host if context is not None else None,
                    happy_eyeballs_delay=HAPPY_EYEBALLS_DELAY,
                )
        except TimeoutError as exc:
            raise httpx.ConnectTimeout(f"connecting to {host}:{port} timed out") from exc
        except OSError as exc:
            raise httpx.ConnectError(f"cannot connect to {host}:{port}: {exc}") from exc
        return cls(origin, reader, asyncio.StreamWriter(transport, protocol, reader, loop))

    # --- request ----------------------------------------------------------------------------

    async def send_request(self, outgoing: Outgoing, timeout: float | None) -> None:
        """Write the request; h11 learns what it needs to read the response."""
        self._send_event(outgoing.intent)
        if outgoing.body is not None:
            await self._write_whole(outgoing.head, outgoing.body, timeout)
        else:
            outgoing.check_length(await self._write_stream(outgoing.head, outgoing.pieces(), timeout))
        self._send_event(h11.EndOfMessage())

    def _send_event(self, event: h11.Request | h11.EndOfMessage) -> None:
        # Only the request's method and connection intent go through h11 (the bytes are written
        # directly): that is what it needs to frame the response and to decide keep-alive.
        try:
            self._h11.send(event)
        except h11.LocalProtocolError as exc:
            raise httpx.LocalProtocolError(str(exc)) from exc

    async def _write_whole(self, head: bytes, body: bytes, timeout: float | None) -> None:
        # One write when it is not huge: on loopback or a LAN each write is a syscall that costs
        # more than joining the head to a body of a few hundred KB.
        if len(body) <= FLUSH_BYTES:
            self._writer.write(head + body)
        else:
            self._writer.write(head)
            self._writer.write(body)
        await self._drain(timeout)

    async def _write_stream(self, head: bytes, pieces: AsyncIterator[bytes], timeout: float | None) -> int:
        """Write ``head`` then ``pieces``, coalesced into writes of about FLUSH_BYTES; the body bytes."""
        pending = [head]
        size = len(head)
        body_bytes = 0
        async for piece in pieces:
            body_bytes += len(piece)
            if pending and size + len(piece) > FLUSH_BYTES:
                self._writer.write(b"".join(pending))
                await self._drain(timeout)
                pending, size = [], 0
            pending.append(piece)
            size += len(piece)
        self._writer.write(b"".join(pending))
        await self._drain(timeout)
        return body_bytes

    async def _drain(self, timeout: float | None) -> None:
        transport = self._writer.transport
        if not transport.get_write_buffer_size() and not transport.is_closing():
            return  # the kernel took every byte: nothing to wait for (and no timer to arm)
        try:
            async with asyncio.timeout(timeout):
                await self._writer.drain()
        except TimeoutError as exc:
            raise httpx.WriteTimeout("writing the request timed out") from exc
        except OSError as exc:
            raise httpx.WriteError(f"writing the request failed: {exc}") from exc

    # --- response ---------------------------------------------------------------------------

    async def receive_head(self, timeout: float | None) -> h11.Response:
        """Read up to the final response's head (interim 1xx answers are skipped)."""
        while True:
            event = await self._next_event(timeout)
            if isinstance(event, h11.Response):
                return event
            if not isinstance(event, h11.InformationalResponse):
                raise httpx.RemoteProtocolError(f"unexpected {type(event).__name__} before the response")

    async def receive_data(self, timeout: float | None) -> bytes | None:
        """The next piece of the response body, or None at its end."""
        event = await self._next_event(timeout)
        if isinstance(event, h11.Data):
            return bytes(event.data)
        if isinstance(event, h11.EndOfMessage):
            return None
        raise httpx.RemoteProtocolError(f"unexpected {type(event).__name__} in the response body")

    async def _next_event(self, timeout: float | None) -> h11.Event:
        connection = self._h11
        try:
            while True:
                event = connection.next_event()
                if isinstance(event, h11.Event):
                    return event
                if event is h11.PAUSED:
                    raise httpx.RemoteProtocolError("the server sent more than one response")
                data = await self._read(timeout)
                if not data and connection.their_state is h11.SEND_RESPONSE:
                    raise httpx.RemoteProtocolError("Server disconnected without sending a response.")
                connection.receive_data(data)
        except h11.RemoteProtocolError as exc:
            raise httpx.RemoteProtocolError(str(exc)) from exc

    async def _read(self, timeout: float | None) -> bytes:
        try:
            async with asyncio.timeout(timeout):
                data = await self._reader.read(READ_BYTES)
        except TimeoutError as exc:
            raise httpx.ReadTimeout("reading the response timed out") from exc
        except OSError as exc:
            raise httpx.ReadError(f"reading the response failed: {exc}") from exc
        self._consumed += len(data)
        return data

    # --- lifecycle --------------------------------------------------------------------------

    def park(self, now: float) -> bool:
        """Ready the connection for its next request; False when it cannot be reused.

        Reusable only when h11 says so and nothing came after the response: bytes beyond it
        (still in h11's buffer or the reader's) would be read as the next request's answer.
        """
        connection = self._h11
        if connection.our_state is not h11.DONE or connection.their_state is not h11.DONE:
            return False
        trailing, closed = connection.trailing_data
        if trailing or closed:
            return False
        connection.start_next_cycle()
        self._idle_since = now
        return self.reusable(now, math.inf)

    def reusable(self, now: float, expiry: float) -> bool:
        """True when the parked connection is fresh and nothing arrived on it while idle."""
        return (
            now - self._idle_since < expiry
            and self._reader.received == self._consumed
            and not self._reader.at_eof()
            and self._reader.exception() is None
            and not self._writer.is_closing()
        )

    def abort(self) -> None:
        """Drop the connection at once (its state is unknown or it is of no further use)."""
        self._writer.transport.abort()

    def close(self) -> None:
        """Start an orderly close (TLS says goodbye); :meth:`wait_closed` waits for it."""
        self._writer.close()

    async def wait_closed(self) -> None:
        """Wait until the connection is closed; errors while closing do not matter."""
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()


def request_head(method: str, target: bytes, fields: list[tuple[bytes, bytes]]) -> bytes:
    """The request line and header ``fields`` as httpx prepared them, ready to send.

    httpx does not reject line breaks in header values, so a value holding one (which would let
    it inject headers) raises LocalProtocolError here, as h11 would.
    """
    head = b"".join(
        [
            method.encode("ascii"),
            b" ",
            target,
            b" HTTP/1.1\r\n",
            *[name + b": " + value + b"\r\n" for name, value in fields],
            b"\r\n",
        ]
    )
    lines = len(fields) + 2
    if head.count(b"\n") != lines or head.count(b"\r") != lines:
        raise httpx.LocalProtocolError("a request header holds a line break")
    return head


@dataclass(slots=True)
class Framing:
    """What a request's headers say about its body and its connection (read in one pass)."""

    host: bytes = b""
    connection: bytes | None = None
    length: bytes | None = None
    chunked: bool = False

    @classmethod
    def of(cls, fields: list[tuple[bytes, bytes]]) -> Framing:
        """Read the framing from raw header ``fields``."""
        framing = cls()
        for name, value in fields:
            key = name.lower()
            if key == b"host":
                framing.host = value
            elif key == b"connection":
                framing.connection = value
            elif key == b"content-length":
                framing.length = value
            elif key == b"transfer-encoding":
                framing.chunked = b"chunked" in value.lower()
        return framing

    def intent(self) -> list[tuple[bytes, bytes]]:
        """The headers h11 needs to know about the request: Host, and Connection if any."""
        intent = [(b"host", self.host)]
        if self.connection is not None:
            intent.append((b"connection", self.connection))
        return intent


@dataclass(slots=True)
class Outgoing:
    """A request ready to go on any connection: its head, and its body in memory or as a stream.

    Prepared before a connection is taken, so a request that cannot be sent (a line break in a
    header, no Host) fails without opening one.
    """

    request: httpx.Request
    head: bytes
    intent: h11.Request
    framing: Framing
    body: bytes | None

    @classmethod
    async def of(cls, request: httpx.Request) -> Outgoing:
        """Prepare ``request``; a streamed body that declares no length is read whole first."""
        fields = request.headers.raw
        framing = Framing.of(fields)
        body = _buffered_body(request)
        unframed = framing.length is None and not framing.chunked
        if body is None and unframed:
            body = b"".join([chunk async for chunk in _body_stream(request)])
        if body and unframed:
            fields.append((b"Content-Length", b"%d" % len(body)))
        if framing.chunked:
            body = None  # written through the chunked framing below
        target = request.url.raw_path
        head = request_head(request.method, target, fields)
        try:
            intent = h11.Request(method=request.method, target=target, headers=framing.intent())
        except h11.LocalProtocolError as exc:
            raise httpx.LocalProtocolError(str(exc)) from exc
        outgoing = cls(request, head, intent, framing, body)
        if body is not None:
            outgoing.check_length(len(body))  # before a byte is sent
        return outgoing

    def pieces(self) -> AsyncIterator[bytes]:
        """The body as it goes on the wire, when it is not sent whole."""
        return _framed(_body_stream(self.request), self.framing.chunked)

    def check_length(self, sent: int) -> None:
        """LocalProtocolError when the body sent disagrees with the Content-Length sent."""
        declared = self.framing.length
        if declared is not None and not self.framing.chunked and declared.strip() != b"%d" % sent:
            raise httpx.LocalProtocolError(f"the body has {sent} bytes, Content-Length says {declared!r}")


def _buffered_body(request: httpx.Request) -> bytes | None:
    """The body when httpx already holds it in memory (``content=``), else None."""
    try:
        return request.content
    except httpx.RequestNotRead:
        return None


async def _body_stream(request: httpx.Request) -> AsyncIterator[bytes]:
    stream = request.stream
    if not isinstance(stream, httpx.AsyncByteStream):
        raise TypeError("an async transport needs an async request body")
    async for chunk in stream:
        yield chunk


async def _framed(pieces: AsyncIterator[bytes], chunked: bool) -> AsyncIterator[bytes]:
    """The body pieces as they go on the wire: as they are, or in chunked framing."""
    async for piece in pieces:
        if piece:
            yield b"%x\r\n%b\r\n" % (len(piece), piece) if chunked else piece
    if chunked:
        yield b"0\r\n\r\n"


async def read_eagerly(connection: Connection, timeout: float | None) -> tuple[list[bytes], bool]:
    """Read up to :data:`EAGER_BODY_BYTES` of the body; the pieces and whether the body ended."""
    chunks: list[bytes] = []
    size = 0
    while size < EAGER_BODY_BYTES:
        data = await connection.receive_data(timeout)
        if data is None:
            return chunks, True
        chunks.append(data)
        size += len(data)
    return chunks, False


class ResponseBody(httpx.AsyncByteStream):
    """A response body: the pieces read with the head, then the rest from ``connection`` if any.

    The connection goes back to ``pool`` when the body has been read to its end, and is closed
    when reading fails or the body is closed before its end.
    """

    def __init__(
        self,
        chunks: list[bytes],
        pool: Pool,
        connection: Connection | None = None,
        read_timeout: float | None = None,
    ) -> None:
        self._chunks = chunks
        self._pool = pool
        self._connection = connection
        self._read_timeout = read_timeout

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self._chunks:
            yield chunk
        while (data := await self._receive()) is not None:
            yield data

    async def _receive(self) -> bytes | None:
        connection = self._connection
        if connection is None:
            return None
        try:
            data = await connection.receive_data(self._read_timeout)
        except BaseException:
            self._connection = None
            self._pool.discard(connection)
            raise
        if data is None:
            self._connection = None
            self._pool.release(connection)
        return data

    async def aclose(self) -> None:
        """Close the body: an unfinished body's connection is closed, not reused."""
        connection, self._connection = self._connection, None
        if connection is not None:
            self._pool.discard(connection)


class Pool:
    """Keep-alive connections per origin, at most ``max_connections`` open, waiters served in order.

    Every open connection (idle, in use or being opened) holds one of the ``max_connections``
    slots. A request that finds no idle connection and no free slot closes an idle connection of
    another origin to take its slot, or else waits: a released connection is handed to the first
    waiter (or, if that waiter wants another origin, closed and its slot handed over).
    ``opened`` counts the connections opened so far.
    """

    def __init__(
        self, connect: Connector, *, max_connections: int, max_idle: int, keepalive_expiry: float
    ) -> None:
        self._connect = connect
        self._max_connections = max_connections
        self._max_idle = max_idle
        self._expiry = keepalive_expiry
        self._idle: dict[Origin, list[Connection]] = {}
        self._idle_count = 0
        self._open = 0
        self._waiters: deque[tuple[Origin, asyncio.Future[Connection | None]]] = deque()
        self._next_sweep = 0.0
        self._closed = False
        self.opened = 0

    @property
    def open_connections(self) -> int:
        """Connections open now: idle, in use or being opened."""
        return self._open

    @property
    def idle_connections(self) -> int:
        """Connections parked for reuse now."""
        return self._idle_count

    async def acquire(
        self, origin: Origin, pool_timeout: float | None, connect_timeout: float | None
    ) -> Connection:
        """A connection to ``origin``: an idle one, a new one, or one handed over after waiting."""
        if self._closed:
            raise RuntimeError("the transport is closed")
        now = time.monotonic()
        if now >= self._next_sweep:
            self._sweep(now)
        connection = self._take_idle(origin, now)
        if connection is not None:
            return connection
        if self._waiters or not self._claim_slot():
            handed = await self._wait(origin, pool_timeout)
            if handed is not None:
                return handed
        try:
            connection = await self._connect(origin, connect_timeout)
        except BaseException:
            self._free_slot()
            raise
        self.opened += 1
        return connection

    def release(self, connection: Connection) -> None:
        """Take back a connection whose response was read to its end: reuse it if h11 allows."""
        if connection.park(time.monotonic()):
            self._offer(connection)
        else:
            self.discard(connection)

    def discard(self, connection: Connection) -> None:
        """Close a connection that must not be reused and free its slot."""
        connection.abort()
        self._free_slot()

    async def aclose(self) -> None:
        """Close the idle connections (gracefully, briefly) and fail the waiters."""
        self._closed = True
        idle = [connection for connections in self._idle.values() for connection in connections]
        self._idle.clear()
        self._idle_count = 0
        self._open -= len(idle)
        while self._waiters:
            _, future = self._waiters.popleft()
            if not future.done():
                future.set_exception(RuntimeError("the transport is closed"))
        for connection in idle:
            connection.close()
        if idle:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CLOSE_GRACE_SECONDS):
                    await asyncio.gather(*(connection.wait_closed() for connection in idle))
            for connection in idle:
                connection.abort()

    def _take_idle(self, origin: Origin, now: float) -> Connection | None:
        idle = self._idle.get(origin)
        while idle:
            connection = idle.pop()
            self._idle_count -= 1
            if connection.reusable(now, self._expiry):
                return connection
            self.discard(connection)
        return None

    def _sweep(self, now: float) -> None:
        """Close idle connections that expired or were closed by their server."""
        self._next_sweep = now + self._expiry
        for connections in self._idle.values():
            stale = [connection for connection in connections if not connection.reusable(now, self._expiry)]
            for connection in stale:
                connections.remove(connection)
                self._idle_count -= 1
                self.discard(connection)

    def _claim_slot(self) -> bool:
        if self._open < self._max_connections:
            self._open += 1
            return True
        for connections in self._idle.values():
            if connections:
                # The slot of an idle connection to another origin is worth more to this request.
                connections.pop(0).abort()
                self._idle_count -= 1
                return True
        return False

    async def _wait(self, origin: Origin, timeout: float | None) -> Connection | None:
        """Wait for a connection (to ``origin``) or a free slot (None) to be handed over."""
        future: asyncio.Future[Connection | None] = asyncio.get_running_loop().create_future()
        entry = (origin, future)
        self._waiters.append(entry)
        try:
            async with asyncio.timeout(timeout):
                return await future
        except BaseException as exc:
            with contextlib.suppress(ValueError):
                self._waiters.remove(entry)
            if future.done() and not future.cancelled() and future.exception() is None:
                self._hand_back(future.result())
            future.cancel()
            if isinstance(exc, TimeoutError):
                raise httpx.PoolTimeout("no connection became free within the pool timeout") from exc
            raise

    def _hand_back(self, handed: Connection | None) -> None:
        """Return what a waiter was handed but cannot use (it timed out or was cancelled)."""
        if handed is None:
            self._free_slot()
        else:
            self._offer(handed)

    def _offer(self, connection: Connection) -> None:
        """Give a parked connection to the first waiter, or keep it idle, or close it."""
        if self._closed:
            self.discard(connection)
            return
        while self._waiters:
            origin, future = self._waiters.popleft()
            if future.done():
                continue
            if origin == connection.origin:
                future.set_result(connection)
            else:
                connection.abort()
                future.set_result(None)
            return
        if self._idle_count < self._max_idle:
            self._idle.setdefault(connection.origin, []).append(connection)
            self._idle_count += 1
            return
        connection.abort()
        self._open -= 1

    def _free_slot(self) -> None:
        """A connection closed: its slot goes to the first waiter, else back to the pool."""
        while self._waiters:
            _, future = self._waiters.popleft()
            if not future.done():
                future.set_result(None)
                return
        self._open -= 1
