"""The sinks' aiohttp session on real sockets: TLS from SSL_CERT_FILE, and a proxy with a NO_PROXY bypass.

(No redirects followed: tests/unit/test_cloud_sink.py; the whole-request deadline:
tests/unit/test_request_deadline.py. Both run over real loopback sockets too.)
"""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import aiohttp
import httpx
import pytest
from aiohttp import web
from pydantic import SecretStr

from consumer.config import CloudSinkConfig, ImagesConfig, RetryConfig
from consumer.errors import Reason
from consumer.metrics import Metrics
from consumer.model import ImageSource
from consumer.sinks.cloud import CloudSink
from tests.support.http_stub import StubServer
from tests.support.tls import make_certificates, require_openssl
from tests.unit.test_cloud_sink import PNG, created, make_event, uploaded


def _api(request: httpx.Request) -> httpx.Response:
    if request.url.path == "/vision-events/upload":
        return uploaded("src-1")
    if request.url.path == "/vision-events/batch":
        return created(request)
    return httpx.Response(200, content=PNG)


def test_tls_is_verified_against_ssl_cert_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_certificates(tmp_path, require_openssl())
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(tmp_path / "server.crt", tmp_path / "server.key")

    async def batch(request: web.Request) -> web.Response:
        ids = [event["eventId"] for event in (await request.json())["events"]]
        return web.json_response({"eventIds": ids}, status=201)

    async def deliver(trusted: bool) -> list[Reason]:
        if trusted:
            monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "ca.crt"))
        else:
            monkeypatch.delenv("SSL_CERT_FILE", raising=False)  # certifi's bundle: our CA is unknown
        app = web.Application()
        app.router.add_post("/vision-events/batch", batch)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_tls)
        await site.start()
        port = runner.addresses[0][1]
        sink = CloudSink(
            CloudSinkConfig(base_url=f"https://localhost:{port}/", api_key=SecretStr("k"), timeout_seconds=5),
            RetryConfig(give_up_after_seconds=1.0, initial_backoff_seconds=0.1, max_backoff_seconds=0.2),
            ImagesConfig(),
            Metrics(),
        )
        try:
            report = await sink.deliver([make_event(0)])
        finally:
            await sink.aclose()
            await runner.cleanup()
        assert len(report.delivered) + len(report.rejected) == 1
        return [rejection.reason for rejection in report.rejected]

    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    assert asyncio.run(deliver(trusted=True)) == []
    assert asyncio.run(deliver(trusted=False)) == [Reason.DELIVERY_TIMEOUT]


def test_http_proxy_carries_the_api_requests_and_no_proxy_bypasses_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    proxied: list[str] = []

    async def scenario() -> None:
        stub = StubServer(_api)
        await stub.start()
        upstream = aiohttp.ClientSession()

        async def forward(request: web.Request) -> web.Response:
            # A forward proxy: absolute-form target in, the request re-sent to the stub.
            proxied.append(str(request.url))
            async with upstream.request(
                request.method,
                f"http://127.0.0.1:{stub.port}{request.rel_url}",
                headers={
                    k: v for k, v in request.headers.items() if k.lower() not in ("host", "proxy-connection")
                },
                data=await request.read(),
            ) as answer:
                return web.Response(
                    status=answer.status,
                    body=await answer.read(),
                    headers={"Content-Type": answer.headers.get("Content-Type", "application/octet-stream")},
                )

        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", forward)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        proxy_port = runner.addresses[0][1]
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy_port}")
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        sink = CloudSink(
            CloudSinkConfig(base_url="http://api.test/", api_key=SecretStr("k")),
            RetryConfig(give_up_after_seconds=5.0),
            ImagesConfig(url_allowed_hosts=["127.0.0.1"]),
            Metrics(),
        )
        image = ImageSource(url=f"http://127.0.0.1:{stub.port}/frame.png")
        try:
            report = await sink.deliver([make_event(0, output=image)])
        finally:
            await sink.aclose()
            await upstream.close()
            await runner.cleanup()
            await stub.close()
        assert [e.event_id for e in report.delivered] == ["evt-0"], report.rejected

    asyncio.run(scenario())
    # api.test exists nowhere but behind the proxy; the image host is in NO_PROXY, fetched directly.
    assert proxied == ["http://api.test/vision-events/upload", "http://api.test/vision-events/batch"]
