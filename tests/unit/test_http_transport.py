"""The lean transport's pieces without sockets: proxy decision, request head, origins, pool rules."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from consumer.sinks.http import HttpSink
from consumer.sinks.transport import (
    Connection,
    Framing,
    LeanTransport,
    Origin,
    Pool,
    environment_proxies_configured,
    origin_of,
    request_head,
    sink_transport,
)

A: Origin = ("http", "a.test", 80)
B: Origin = ("http", "b.test", 80)
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


@pytest.fixture
def no_proxies(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    return monkeypatch


# --- which transport ----------------------------------------------------------------------------


def test_without_proxies_the_lean_transport_is_used(no_proxies: pytest.MonkeyPatch) -> None:
    assert not environment_proxies_configured()
    assert isinstance(sink_transport(), LeanTransport)


@pytest.mark.parametrize("variable", ["HTTP_PROXY", "https_proxy", "ALL_PROXY"])
def test_a_proxy_variable_falls_back_to_httpx(no_proxies: pytest.MonkeyPatch, variable: str) -> None:
    no_proxies.setenv(variable, "http://proxy.test:3128")
    no_proxies.setenv("NO_PROXY", "localhost,.internal.test")
    assert environment_proxies_configured()
    assert sink_transport() is None


def test_no_proxy_star_disables_the_proxies(no_proxies: pytest.MonkeyPatch) -> None:
    no_proxies.setenv("HTTPS_PROXY", "http://proxy.test:3128")
    no_proxies.setenv("NO_PROXY", "example.com, *")
    assert not environment_proxies_configured()
    assert isinstance(sink_transport(), LeanTransport)


@pytest.mark.parametrize("proxied", [False, True])
def test_http_sink_client_keeps_its_settings_on_either_transport(
    no_proxies: pytest.MonkeyPatch, proxied: bool
) -> None:
    if proxied:
        no_proxies.setenv("HTTPS_PROXY", "http://proxy.test:3128")

    async def scenario() -> None:
        sink = HttpSink(None, 7.5)
        assert sink._client.timeout == httpx.Timeout(7.5)
        assert sink._client.follow_redirects is False
        assert isinstance(sink._client._transport, LeanTransport) is not proxied
        await sink.aclose()
        assert sink._client.is_closed

    asyncio.run(scenario())


def test_a_borrowed_client_is_not_closed() -> None:
    async def scenario() -> None:
        borrowed = httpx.AsyncClient(transport=httpx.MockTransport(lambda _: httpx.Response(200)))
        sink = HttpSink(borrowed, 1.0)
        await sink.aclose()
        assert not borrowed.is_closed
        await borrowed.aclose()

    asyncio.run(scenario())


# --- request head and origin --------------------------------------------------------------------


def test_request_head_is_the_request_line_and_headers_as_prepared() -> None:
    request = httpx.Request("POST", "http://a.test:8080/v1/x?q=1", content=b"{}", headers={"X-Key": "k"})
    head = request_head(request.method, request.url.raw_path, request.headers.raw)
    assert head == (b"POST /v1/x?q=1 HTTP/1.1\r\nHost: a.test:8080\r\nX-Key: k\r\nContent-Length: 2\r\n\r\n")


@pytest.mark.parametrize("value", [b"a\r\nX-Injected: 1", b"a\nb", b"a\rb"])
def test_request_head_refuses_line_breaks_in_a_value(value: bytes) -> None:
    with pytest.raises(httpx.LocalProtocolError):
        request_head("GET", b"/", [(b"Host", b"a.test"), (b"X-Note", value)])


def test_framing_reads_the_headers_once() -> None:
    framing = Framing.of(
        [(b"HOST", b"a.test"), (b"Transfer-Encoding", b"Chunked"), (b"connection", b"close")]
    )
    assert (framing.host, framing.connection, framing.length, framing.chunked) == (
        b"a.test",
        b"close",
        None,
        True,
    )
    assert framing.intent() == [(b"host", b"a.test"), (b"connection", b"close")]


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        ("http://a.test/x", ("http", "a.test", 80)),
        ("https://a.test/x", ("https", "a.test", 443)),
        ("https://a.test:8443/", ("https", "a.test", 8443)),
        ("http://[::1]:9000/", ("http", "::1", 9000)),
        ("https://bücher.test/", ("https", "xn--bcher-kva.test", 443)),
    ],
)
def test_origin_of(url: str, origin: Origin) -> None:
    assert origin_of(httpx.URL(url)) == origin


def test_other_schemes_are_unsupported() -> None:
    with pytest.raises(httpx.UnsupportedProtocol):
        origin_of(httpx.URL("ftp://a.test/file"))


# --- pool rules, with stand-in connections -----------------------------------------------------


class FakeConnection(Connection):
    """A connection without a socket: it records being aborted or closed."""

    def __init__(self, origin: Origin) -> None:
        self.origin = origin
        self.aborted = False
        self.closed = False
        self.fresh = True

    def park(self, now: float) -> bool:
        return not self.aborted

    def reusable(self, now: float, expiry: float) -> bool:
        return self.fresh and not self.aborted

    def abort(self) -> None:
        self.aborted = True

    def close(self) -> None:
        self.closed = True

    async def wait_closed(self) -> None:
        return None


class Opener:
    def __init__(self) -> None:
        self.opened: list[FakeConnection] = []

    async def __call__(self, origin: Origin, timeout: float | None) -> Connection:
        connection = FakeConnection(origin)
        self.opened.append(connection)
        return connection


def pool(opener: Opener, max_connections: int = 1, max_idle: int = 20) -> Pool:
    return Pool(opener, max_connections=max_connections, max_idle=max_idle, keepalive_expiry=5.0)


def test_released_connection_is_reused_for_its_origin() -> None:
    async def scenario() -> None:
        opener = Opener()
        connections = pool(opener)
        first = await connections.acquire(A, None, None)
        connections.release(first)
        assert await connections.acquire(A, None, None) is first
        assert len(opener.opened) == 1

    asyncio.run(scenario())


def test_a_full_pool_closes_an_idle_connection_of_another_origin() -> None:
    async def scenario() -> None:
        opener = Opener()
        connections = pool(opener)
        first = await connections.acquire(A, None, None)
        connections.release(first)
        second = await connections.acquire(B, 0.1, None)
        assert second.origin == B
        assert opener.opened[0].aborted
        assert connections.open_connections == 1

    asyncio.run(scenario())


def test_a_waiter_for_another_origin_gets_the_freed_slot() -> None:
    async def scenario() -> None:
        opener = Opener()
        connections = pool(opener)
        first = await connections.acquire(A, None, None)
        waiting = asyncio.create_task(connections.acquire(B, 1.0, None))
        await asyncio.sleep(0)
        assert not waiting.done()
        connections.release(first)
        second = await waiting
        assert (second.origin, opener.opened[0].aborted, connections.open_connections) == (B, True, 1)

    asyncio.run(scenario())


def test_waiters_are_served_in_arrival_order() -> None:
    async def scenario() -> None:
        connections = pool(Opener())
        held = await connections.acquire(A, None, None)
        served: list[str] = []

        async def wait(name: str) -> None:
            connection = await connections.acquire(A, 1.0, None)
            served.append(name)
            connections.release(connection)

        tasks = [asyncio.create_task(wait(name)) for name in ("first", "second", "third")]
        await asyncio.sleep(0)
        connections.release(held)
        await asyncio.gather(*tasks)
        assert served == ["first", "second", "third"]

    asyncio.run(scenario())


def test_pool_timeout_leaves_no_waiter_behind() -> None:
    async def scenario() -> None:
        opener = Opener()
        connections = pool(opener)
        held = await connections.acquire(A, None, None)
        with pytest.raises(httpx.PoolTimeout):
            await connections.acquire(A, 0.01, None)
        connections.release(held)
        assert (connections.idle_connections, connections.open_connections) == (1, 1)

    asyncio.run(scenario())


def test_idle_connections_beyond_the_keepalive_limit_are_closed() -> None:
    async def scenario() -> None:
        opener = Opener()
        connections = pool(opener, max_connections=5, max_idle=1)
        first, second = [await connections.acquire(A, None, None) for _ in range(2)]
        connections.release(first)
        connections.release(second)
        assert (connections.idle_connections, connections.open_connections) == (1, 1)
        assert [c.aborted for c in opener.opened] == [False, True]

    asyncio.run(scenario())


def test_a_stale_idle_connection_is_replaced() -> None:
    async def scenario() -> None:
        opener = Opener()
        connections = pool(opener)
        first = await connections.acquire(A, None, None)
        connections.release(first)
        opener.opened[0].fresh = False
        second = await connections.acquire(A, None, None)
        assert second is not first
        assert opener.opened[0].aborted
        assert connections.open_connections == 1

    asyncio.run(scenario())


def test_a_failed_connect_frees_its_slot() -> None:
    async def refuse(origin: Origin, timeout: float | None) -> Connection:
        raise httpx.ConnectError("refused")

    async def scenario() -> None:
        connections = Pool(refuse, max_connections=1, max_idle=1, keepalive_expiry=5.0)
        for _ in range(3):
            with pytest.raises(httpx.ConnectError):
                await connections.acquire(A, 0.01, None)
        assert connections.open_connections == 0

    asyncio.run(scenario())


def test_aclose_closes_idle_connections_gracefully() -> None:
    async def scenario() -> None:
        opener = Opener()
        connections = pool(opener)
        connections.release(await connections.acquire(A, None, None))
        await connections.aclose()
        assert (opener.opened[0].closed, connections.open_connections) == (True, 0)
        with pytest.raises(RuntimeError):
            await connections.acquire(A, None, None)

    asyncio.run(scenario())


def test_aclose_fails_waiters_and_closes_connections_released_later() -> None:
    async def scenario() -> None:
        opener = Opener()
        connections = pool(opener)
        held = await connections.acquire(A, None, None)
        waiting = asyncio.create_task(connections.acquire(B, None, None))
        await asyncio.sleep(0)
        await connections.aclose()
        with pytest.raises(RuntimeError):
            await waiting
        connections.release(held)
        assert (opener.opened[0].aborted, connections.open_connections) == (True, 0)

    asyncio.run(scenario())
