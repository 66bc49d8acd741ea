"""The lean HTTP/1.1 transport over real sockets: scripted asyncio servers, TLS, and the stand-in.

Each scripted server counts the connections it accepts, so keep-alive and connection replacement
are checked from the server's side, not from the transport's own counters alone.
"""

from __future__ import annotations

import asyncio
import base64
import socket
import ssl
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx
import orjson
import pytest
from prometheus_client import CollectorRegistry

from consumer.config import CloudSinkConfig, ImagesConfig, RetryConfig
from consumer.contract import EventType
from consumer.fakeapi import FakeVisionEventsApi
from consumer.metrics import Metrics
from consumer.model import ImageSource, InboundMessage, VisionEvent
from consumer.sinks.cloud import CloudSink
from consumer.sinks.transport import LeanTransport
from tests.support.images import jpeg_bytes
from tests.support.tls import make_certificates, require_openssl

API_KEY = "transport-key"
USE_CASE = "transport-uc"

Handler = Callable[["Exchange"], Awaitable[None]]


class Exchange:
    """One accepted connection as the scripted server sees it."""

    def __init__(self, index: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.index = index
        self.reader = reader
        self.writer = writer

    async def request(self) -> tuple[bytes, dict[bytes, bytes], bytes] | None:
        """The next request (line, lower-cased headers, body), or None when the client closed."""
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            return None
        line, *fields = head[:-4].split(b"\r\n")
        headers = {name.strip().lower(): value.strip() for name, value in (f.split(b":", 1) for f in fields)}
        if headers.get(b"transfer-encoding") == b"chunked":
            return line, headers, await self._chunked_body()
        return line, headers, await self.reader.readexactly(int(headers.get(b"content-length", b"0")))

    async def _chunked_body(self) -> bytes:
        body = b""
        while size := int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16):
            body += await self.reader.readexactly(size)
            await self.reader.readexactly(2)
        await self.reader.readuntil(b"\r\n")  # the end of the (empty) trailer
        return body

    async def respond(self, status: int = 200, body: bytes = b"", headers: tuple[str, ...] = ()) -> None:
        """Send a response with a Content-Length."""
        lines = [f"HTTP/1.1 {status} X", f"Content-Length: {len(body)}", *headers]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        await self.writer.drain()


class Server:
    """A scripted HTTP/1.1 server on loopback (optionally TLS) that counts accepted connections."""

    def __init__(self, handler: Handler, tls: ssl.SSLContext | None = None) -> None:
        self.handler = handler
        self.tls = tls
        self.connections = 0
        self.closed = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> Server:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.tls)
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._server is not None
        self._server.close()

    @property
    def port(self) -> int:
        assert self._server is not None
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    @property
    def url(self) -> str:
        scheme = "https" if self.tls is not None else "http"
        host = "localhost" if self.tls is not None else "127.0.0.1"
        return f"{scheme}://{host}:{self.port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.handler(Exchange(self.connections, reader, writer))
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()
            self.closed += 1


async def echo_length(exchange: Exchange) -> None:
    """Answer every request on the connection with the length of its body, keeping it alive."""
    while (request := await exchange.request()) is not None:
        _, headers, body = request
        framing = "chunked" if b"transfer-encoding" in headers else "length"
        await exchange.respond(200, f'{{"received": {len(body)}, "framing": "{framing}"}}'.encode())


def client(transport: LeanTransport, timeout: float | httpx.Timeout = 5.0) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=transport, timeout=timeout, follow_redirects=False)


async def wait_for(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    async with asyncio.timeout(seconds):
        while not condition():
            await asyncio.sleep(0.01)


# --- round trips and keep-alive -----------------------------------------------------------------


def test_json_post_round_trip_reuses_one_connection() -> None:
    body = b'{"events": [' + b",".join(b'{"n": %d}' % n for n in range(5000)) + b"]}"

    async def scenario() -> None:
        async with Server(echo_length) as server, client(LeanTransport()) as http:
            answers = [
                await http.post(
                    f"{server.url}/batch", content=body, headers={"Content-Type": "application/json"}
                )
                for _ in range(3)
            ]
            assert [a.json() for a in answers] == [{"received": len(body), "framing": "length"}] * 3
            assert answers[0].http_version == "HTTP/1.1"
            assert server.connections == 1

    asyncio.run(scenario())


def test_an_idle_connection_the_server_closed_is_replaced() -> None:
    async def answer_once_then_close(exchange: Exchange) -> None:
        if await exchange.request() is not None:
            await exchange.respond(200, b"ok")

    async def scenario() -> None:
        transport = LeanTransport()
        async with Server(answer_once_then_close) as server, client(transport) as http:
            assert (await http.get(server.url)).text == "ok"
            await wait_for(lambda: server.closed == 1)
            await asyncio.sleep(0.05)  # let the client's loop see the FIN
            assert (await http.get(server.url)).text == "ok"
            assert server.connections == 2
            assert transport.pool.opened == 2

    asyncio.run(scenario())


def test_an_unsolicited_answer_on_an_idle_connection_drops_it() -> None:
    sent = asyncio.Event()

    async def answer_then_time_out(exchange: Exchange) -> None:
        if await exchange.request() is not None:
            await exchange.respond(200, b"first")
            await exchange.respond(408, b"idle too long")
            sent.set()
        while await exchange.request() is not None:  # whatever comes next would read the 408
            await exchange.respond(200, b"later")

    async def scenario() -> None:
        async with Server(answer_then_time_out) as server, client(LeanTransport()) as http:
            assert (await http.get(server.url)).text == "first"
            await sent.wait()
            await asyncio.sleep(0.05)  # let the 408 reach the client
            second = await http.get(server.url)
            assert (second.status_code, second.text) == (200, "first")
            assert server.connections == 2

    asyncio.run(scenario())


def test_connection_close_answer_is_not_reused() -> None:
    async def close_each(exchange: Exchange) -> None:
        if await exchange.request() is not None:
            await exchange.respond(200, b"bye", ("Connection: close",))
            await exchange.reader.read()  # the client closes its side

    async def scenario() -> None:
        transport = LeanTransport()
        async with Server(close_each) as server, client(transport) as http:
            first = await http.get(server.url)
            assert transport.pool.idle_connections == 0
            second = await http.get(server.url)
            assert first.text == second.text == "bye"
            assert server.connections == 2
            await wait_for(lambda: server.closed == 2)

    asyncio.run(scenario())


def test_chunked_answer_is_read_whole_and_the_connection_kept() -> None:
    async def chunked(exchange: Exchange) -> None:
        while await exchange.request() is not None:
            exchange.writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            for piece in (b"hello ", b"chunked ", b"world"):
                exchange.writer.write(b"%x\r\n%b\r\n" % (len(piece), piece))
                await exchange.writer.drain()
                await asyncio.sleep(0.01)
            exchange.writer.write(b"0\r\n\r\n")

    async def scenario() -> None:
        async with Server(chunked) as server, client(LeanTransport()) as http:
            texts = [(await http.get(server.url)).text for _ in range(2)]
            assert texts == ["hello chunked world"] * 2
            assert server.connections == 1

    asyncio.run(scenario())


def test_content_length_answer_larger_than_the_eager_read_streams() -> None:
    payload = bytes(range(256)) * 4096  # 1 MiB

    async def big(exchange: Exchange) -> None:
        while await exchange.request() is not None:
            await exchange.respond(200, payload)

    async def scenario() -> None:
        transport = LeanTransport()
        async with Server(big) as server, client(transport) as http:
            assert (await http.get(server.url)).content == payload
            async with http.stream("GET", server.url) as response:
                assert int(response.headers["content-length"]) == len(payload)
                first = await anext(response.aiter_raw())
                assert 0 < len(first) < len(payload)
            # Abandoned half-read: that connection must be closed, not pooled.
            assert (transport.pool.open_connections, transport.pool.idle_connections) == (0, 0)
            assert (await http.get(server.url)).content == payload
            assert server.connections == 2

    asyncio.run(scenario())


def test_head_answer_has_no_body_and_keeps_the_connection() -> None:
    async def head(exchange: Exchange) -> None:
        while await exchange.request() is not None:
            exchange.writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n")

    async def scenario() -> None:
        async with Server(head) as server, client(LeanTransport()) as http:
            answers = [await http.head(server.url) for _ in range(2)]
            assert [(a.status_code, a.content) for a in answers] == [(200, b"")] * 2
            assert server.connections == 1

    asyncio.run(scenario())


def test_streamed_request_bodies_are_chunked_or_measured() -> None:
    async def pieces() -> AsyncIterator[bytes]:
        for n in range(20):
            yield b"piece-%d;" % n

    class Unframed(httpx.AsyncByteStream):
        async def __aiter__(self) -> AsyncIterator[bytes]:
            async for piece in pieces():
                yield piece

    async def scenario() -> None:
        expected = sum(len(b"piece-%d;" % n) for n in range(20))
        async with Server(echo_length) as server, client(LeanTransport()) as http:
            chunked = await http.post(server.url, content=pieces())
            assert chunked.json() == {"received": expected, "framing": "chunked"}
            host = {"Host": f"127.0.0.1:{server.port}"}
            request = httpx.Request("POST", server.url, headers=host, stream=Unframed())
            assert "content-length" not in request.headers
            measured = await http.send(request)
            assert measured.json() == {"received": expected, "framing": "length"}
            assert server.connections == 1

    asyncio.run(scenario())


def test_a_header_value_with_a_line_break_is_refused_before_connecting() -> None:
    async def scenario() -> None:
        transport = LeanTransport()
        async with Server(echo_length) as server, client(transport) as http:
            with pytest.raises(httpx.LocalProtocolError, match="line break"):
                await http.get(server.url, headers={"X-Note": "a\r\nX-Injected: yes"})
            await asyncio.sleep(0.05)
            assert (server.connections, transport.pool.opened) == (0, 0)

    asyncio.run(scenario())


# --- failures -----------------------------------------------------------------------------------


def test_server_closing_mid_answer_is_a_remote_protocol_error() -> None:
    async def truncated(exchange: Exchange) -> None:
        if await exchange.request() is not None:
            exchange.writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b")
            await exchange.writer.drain()

    async def scenario() -> None:
        transport = LeanTransport()
        async with Server(truncated) as server, client(transport) as http:
            with pytest.raises(httpx.RemoteProtocolError):
                await http.get(server.url)
            assert transport.pool.open_connections == 0

    asyncio.run(scenario())


def test_server_closing_without_an_answer_is_a_remote_protocol_error() -> None:
    async def silent(exchange: Exchange) -> None:
        await exchange.request()

    async def scenario() -> None:
        async with Server(silent) as server, client(LeanTransport()) as http:
            with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
                await http.post(server.url, content=b"x")

    asyncio.run(scenario())


def test_connection_reset_while_reading_is_a_read_error() -> None:
    async def reset(exchange: Exchange) -> None:
        if await exchange.request() is not None:
            sock = exchange.writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            exchange.writer.transport.abort()

    async def scenario() -> None:
        async with Server(reset) as server, client(LeanTransport()) as http:
            with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)) as caught:
                await http.get(server.url)
            assert isinstance(caught.value, httpx.ReadError), repr(caught.value)

    asyncio.run(scenario())


def test_refused_connection_is_a_connect_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    async def scenario() -> None:
        transport = LeanTransport()
        async with client(transport) as http:
            with pytest.raises(httpx.ConnectError):
                await http.get(f"http://127.0.0.1:{port}/")
            assert transport.pool.open_connections == 0

    asyncio.run(scenario())


def test_silent_server_is_a_read_timeout() -> None:
    async def never_answers(exchange: Exchange) -> None:
        await exchange.request()
        await exchange.reader.read()

    async def scenario() -> None:
        transport = LeanTransport()
        async with Server(never_answers) as server, client(transport, httpx.Timeout(5.0, read=0.2)) as http:
            with pytest.raises(httpx.ReadTimeout):
                await http.get(server.url)
            assert transport.pool.open_connections == 0
            await wait_for(lambda: server.closed == 1)

    asyncio.run(scenario())


def test_server_not_reading_a_large_body_is_a_write_timeout() -> None:
    async def never_reads(exchange: Exchange) -> None:
        await exchange.reader.readuntil(b"\r\n\r\n")
        await asyncio.sleep(10)

    async def scenario() -> None:
        async with (
            Server(never_reads) as server,
            client(LeanTransport(), httpx.Timeout(5.0, write=0.3)) as http,
        ):
            with pytest.raises(httpx.WriteTimeout):
                await http.post(server.url, content=b"x" * (64 * 1024 * 1024))

    asyncio.run(scenario())


def test_exhausted_pool_is_a_pool_timeout_and_frees_up_afterwards() -> None:
    release = asyncio.Event()

    async def slow(exchange: Exchange) -> None:
        while await exchange.request() is not None:
            await release.wait()
            await exchange.respond(200, b"done")

    async def scenario() -> None:
        transport = LeanTransport(max_connections=1)
        async with Server(slow) as server, client(transport, httpx.Timeout(5.0, pool=0.2)) as http:
            first = asyncio.create_task(http.get(server.url))
            await wait_for(lambda: server.connections == 1)
            with pytest.raises(httpx.PoolTimeout):
                await http.get(server.url)
            waiting = asyncio.create_task(http.get(server.url, timeout=5.0))
            await asyncio.sleep(0.05)
            release.set()
            assert (await first).text == (await waiting).text == "done"
            assert server.connections == 1  # the waiter got the connection the first request freed

    asyncio.run(scenario())


def test_cancelled_request_does_not_return_its_connection() -> None:
    seen = asyncio.Event()

    async def first_never_answers(exchange: Exchange) -> None:
        while await exchange.request() is not None:
            seen.set()
            if exchange.index == 1:
                await exchange.reader.read()  # until the client hangs up
                return
            await exchange.respond(200, b"fresh")

    async def scenario() -> None:
        transport = LeanTransport()
        async with Server(first_never_answers) as server, client(transport) as http:
            task = asyncio.create_task(http.get(server.url))
            await seen.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert (transport.pool.open_connections, transport.pool.idle_connections) == (0, 0)
            await wait_for(lambda: server.closed == 1)  # the server saw the hang-up
            assert (await http.get(server.url)).text == "fresh"
            assert server.connections == 2

    asyncio.run(scenario())


# --- TLS ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private CA and a server certificate it signed, for localhost and 127.0.0.1."""
    openssl = require_openssl()
    directory = tmp_path_factory.mktemp("transport-tls")
    make_certificates(directory, openssl)
    return directory


def _server_context(directory: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(directory / "server.crt", directory / "server.key")
    return context


def test_tls_round_trip_with_a_trusted_private_ca(certificates: Path) -> None:
    async def scenario() -> None:
        trusted = ssl.create_default_context(cafile=str(certificates / "ca.crt"))
        async with (
            Server(echo_length, tls=_server_context(certificates)) as server,
            client(LeanTransport(ssl_context=trusted)) as http,
        ):
            answers = [
                (await http.post(f"{server.url}/x", content=b"secret" * 1000)).json() for _ in range(2)
            ]
            assert answers == [{"received": 6000, "framing": "length"}] * 2
            assert server.connections == 1

    asyncio.run(scenario())


def test_tls_verifies_by_default(certificates: Path) -> None:
    async def scenario() -> None:
        async with (
            Server(echo_length, tls=_server_context(certificates)) as server,
            client(LeanTransport()) as http,
        ):
            with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                await http.get(server.url)

    asyncio.run(scenario())


# --- the sinks ----------------------------------------------------------------------------------


def _event(n: int, image: ImageSource | None = None) -> VisionEvent:
    message = InboundMessage(source="test", topic="cams/1", payload=b"{}", received_at=0.0)
    return VisionEvent(
        event_id=f"00000000-0000-4000-8000-{n:012d}",
        event_type=EventType.CUSTOM,
        use_case_id=USE_CASE,
        timestamp=datetime.now(UTC),
        message=message,
        event_data={"value": f"v{n}"},
        output_image=image,
    )


def _cloud_sink(base_url: str, metrics: Metrics | None = None) -> CloudSink:
    return CloudSink(
        CloudSinkConfig(base_url=base_url, api_key=API_KEY),
        RetryConfig(initial_backoff_seconds=0.01, max_backoff_seconds=0.05, give_up_after_seconds=5),
        ImagesConfig(),
        metrics or Metrics(CollectorRegistry()),
    )


def _without_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


def test_cloud_sink_uploads_and_posts_through_the_lean_transport(monkeypatch: pytest.MonkeyPatch) -> None:
    _without_proxies(monkeypatch)
    image = jpeg_bytes()
    events = [
        _event(1, ImageSource(base64=base64.b64encode(image).decode())),
        *(_event(n) for n in range(2, 150)),
    ]

    async def scenario(url: str) -> None:
        sink = _cloud_sink(url)
        assert isinstance(sink._client._transport, LeanTransport)
        try:
            report = await sink.deliver(events)
        finally:
            await sink.aclose()
        assert (len(report.delivered), report.rejected) == (len(events), [])

    with FakeVisionEventsApi(api_keys=(API_KEY,), use_cases=(USE_CASE,)) as api:
        asyncio.run(scenario(api.url))
        assert set(api.events()) == {event.event_id for event in events}
        assert list(api.uploads().values()) == [image]
        counts = api.request_counts()
    assert counts[("POST", "/vision-events/upload", 201)] == 1
    assert counts[("POST", "/vision-events/batch", 201)] == 2  # 149 events: batches of 100 and 49


def test_cloud_sink_retries_a_dropped_connection_from_the_stand_in(monkeypatch: pytest.MonkeyPatch) -> None:
    _without_proxies(monkeypatch)

    metrics = Metrics(CollectorRegistry())

    async def scenario(url: str) -> None:
        sink = _cloud_sink(url, metrics)
        try:
            report = await sink.deliver([_event(1)])
        finally:
            await sink.aclose()
        assert [event.event_id for event in report.delivered] == [_event(1).event_id]

    with FakeVisionEventsApi(api_keys=(API_KEY,), use_cases=(USE_CASE,)) as api:
        api.add_fault("/vision-events/batch", statuses=(), drop_connection=True, times=1)
        asyncio.run(scenario(api.url))
        assert api.request_counts()[("POST", "/vision-events/batch", 0)] == 1
    labels = {"endpoint": "batch", "cause": "RemoteProtocolError"}
    assert metrics.registry.get_sample_value("vision_events_api_retries_total", labels) == 1


def test_with_a_proxy_in_the_environment_the_sink_goes_through_it(monkeypatch: pytest.MonkeyPatch) -> None:
    _without_proxies(monkeypatch)
    seen: list[bytes] = []

    async def proxy(exchange: Exchange) -> None:
        while (request := await exchange.request()) is not None:
            seen.append(request[0])
            # The contract's answer: the batch's eventIds (a bare 2xx is not delivery).
            answer = orjson.dumps({"eventIds": [_event(1).event_id]})
            await exchange.respond(201, answer, ("Content-Type: application/json",))

    async def scenario() -> None:
        async with Server(proxy) as server:
            monkeypatch.setenv("HTTP_PROXY", server.url)
            sink = _cloud_sink("http://api.invalid")
            assert not isinstance(sink._client._transport, LeanTransport)
            try:
                report = await sink.deliver([_event(1)])
            finally:
                await sink.aclose()
            assert len(report.delivered) == 1

    asyncio.run(scenario())
    # A proxied request names the whole URL, which the lean transport never does.
    assert seen == [b"POST http://api.invalid/vision-events/batch HTTP/1.1"]
