"""A real loopback HTTP server whose answers come from httpx-style handlers, and a session reaching it.

The sinks talk to aiohttp over real sockets; the unit tests keep their handlers as they were
(``httpx.Request`` in, ``httpx.Response`` out): :class:`StubServer` serves an ``aiohttp.web``
catch-all app on a loopback port, converts each request to an ``httpx.Request`` and writes the
handler's ``httpx.Response`` back (streamed as the handler's content iterator yields it). A handler
that raises makes the server drop the connection without an answer, which is what the client sees
of a refused, reset or broken exchange.

:meth:`StubServer.session_factory` gives sessions whose resolver sends every host name
(``api.test``, ``img.test``...) to the stub, so test URLs keep their host names; the scheme is
plain ``http``. IP-literal URLs bypass the resolver (aiohttp does not resolve them).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import aiohttp
import httpx
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult

from consumer.sinks.session import SessionFactory, new_session

Handler = Callable[[httpx.Request], httpx.Response | Awaitable[httpx.Response]]

# Framing is the server's own business: it re-frames what the handler's response carries.
_HOP_HEADERS = frozenset({"transfer-encoding", "content-length", "connection"})


class LoopbackResolver(AbstractResolver):
    """Resolves every host name to 127.0.0.1:``port``."""

    def __init__(self, port: int) -> None:
        self._port = port

    async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET) -> list[ResolveResult]:
        """Every name is the stub."""
        return [
            ResolveResult(
                hostname=host,
                host="127.0.0.1",
                port=self._port,
                family=socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
        ]

    async def close(self) -> None:
        """Nothing to release."""


def loopback_session_factory(port: int) -> SessionFactory:
    """Sessions built as the sinks' own (``new_session``), with every host name sent to ``port``."""
    return lambda: new_session(resolver=LoopbackResolver(port))


def _chunks(response: httpx.Response) -> Iterator[bytes] | Any:
    if response.is_stream_consumed:  # built from bytes, text or json: already read
        return iter([response.content])
    if isinstance(response.stream, httpx.AsyncByteStream):
        return response.aiter_raw()
    return response.iter_raw()


class StubServer:
    """``handler`` served on a loopback port; the listening socket exists from construction on.

    The socket is bound and listening at once (so a sink built synchronously knows the port and its
    first connection waits in the backlog); the aiohttp server starts on the first session made
    by :meth:`session_factory` (inside the running loop), or on :meth:`start`.
    """

    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(128)
        self._sock.setblocking(False)
        self.port: int = self._sock.getsockname()[1]
        self._runner: web.AppRunner | None = None
        self._starting: asyncio.Task[None] | None = None

    def session_factory(self) -> SessionFactory:
        """A factory for the sink: starts the server, then builds a session that reaches it."""
        make = loopback_session_factory(self.port)

        def factory() -> aiohttp.ClientSession:
            if self._starting is None:
                self._starting = asyncio.get_running_loop().create_task(self._start())
            return make()

        return factory

    async def start(self) -> None:
        """Start serving now (idempotent)."""
        if self._starting is None:
            self._starting = asyncio.get_running_loop().create_task(self._start())
        await self._starting

    async def _start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._serve)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        await web.SockSite(self._runner, self._sock).start()

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        converted = httpx.Request(
            request.method,
            str(request.url),
            headers=list(request.headers.items()),
            content=await request.read(),
        )
        try:
            result = self._handler(converted)
            response = await result if isinstance(result, Awaitable) else result
        except Exception:
            # No answer at all: the client sees the connection dropped mid-exchange.
            if request.transport is not None:
                request.transport.abort()
            raise web.HTTPInternalServerError() from None
        answer = web.StreamResponse(status=response.status_code, reason=response.reason_phrase or None)
        for name, value in response.headers.multi_items():
            if name.lower() not in _HOP_HEADERS:
                answer.headers.add(name, value)
        length = response.headers.get("Content-Length")
        if length is not None:
            answer.content_length = int(length)
        await answer.prepare(request)
        chunks = _chunks(response)
        if isinstance(chunks, Iterator):
            for chunk in chunks:
                await answer.write(chunk)
        else:
            async for chunk in chunks:
                await answer.write(chunk)
        await answer.write_eof()
        return answer

    async def close(self) -> None:
        """Stop serving and close the socket."""
        if self._starting is not None:
            with contextlib.suppress(Exception):
                await self._starting
        if self._runner is not None:
            await self._runner.cleanup()
        self._sock.close()
