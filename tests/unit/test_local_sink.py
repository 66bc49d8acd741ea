"""LocalSink against a loopback stub server (tests/support/http_stub.py).

Only 201 succeeds, 529 backs off, images go inline.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import pytest
from pydantic import SecretStr

from consumer.config import ImagesConfig, LocalSinkConfig, RetryConfig
from consumer.contract import EventType
from consumer.errors import Reason
from consumer.metrics import Metrics
from consumer.model import ImageSource, InboundMessage, VisionEvent
from consumer.sinks.base import DeliveryReport, Sink
from consumer.sinks.local import LocalSink
from tests.support.clock import FakeTime
from tests.support.http_stub import StubServer

KEY = "local_SECRET_ingest_key_42"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
Handler = Callable[[httpx.Request], httpx.Response | Awaitable[httpx.Response]]


def make_event(
    n: int, *, output: ImageSource | None = None, input_: ImageSource | None = None
) -> VisionEvent:
    message = InboundMessage(source="test", topic="cams/1", payload=b"{}", received_at=0.0)
    return VisionEvent(
        event_id=f"evt-{n}",
        event_type=EventType.QUALITY_CHECK,
        use_case_id="uc-1",
        timestamp=datetime(2026, 8, 21, 18, 0, tzinfo=UTC),
        message=message,
        event_data={"result": "pass", "externalId": f"x-{n}"},
        output_image=output,
        input_image=input_,
    )


class Harness:
    def __init__(
        self,
        handler: Handler,
        *,
        local: dict[str, Any] | None = None,
        retry: RetryConfig | None = None,
        images: ImagesConfig | None = None,
    ) -> None:
        self.requests: list[httpx.Request] = []

        async def record(request: httpx.Request) -> httpx.Response:
            self.requests.append(request)
            result = handler(request)
            return await result if isinstance(result, Awaitable) else result

        settings: dict[str, Any] = {"url": "http://device.test:8001/"}
        settings.update(local or {})
        self.metrics = Metrics()
        self.time = FakeTime()
        self.stub = StubServer(record)
        self.sink = LocalSink(
            LocalSinkConfig(**settings),
            retry or RetryConfig(),
            images or ImagesConfig(),
            self.metrics,
            self.stub.session_factory(),
            sleep=self.time.sleep,
            clock=self.time.clock,
        )

    def posts(self) -> list[httpx.Request]:
        return [r for r in self.requests if r.url.path == "/v2/events"]

    def sample(self, name: str, labels: dict[str, str] | None = None) -> float:
        value = self.metrics.registry.get_sample_value(name, labels or {})
        return 0.0 if value is None else value

    async def close(self) -> None:
        await self.sink.aclose()
        await self.stub.close()


def run(factory: Callable[[], Harness], events: Sequence[VisionEvent]) -> tuple[Harness, DeliveryReport]:
    async def scenario() -> tuple[Harness, DeliveryReport]:
        harness = factory()
        try:
            return harness, await harness.sink.deliver(events)
        finally:
            await harness.close()

    return asyncio.run(scenario())


def stored(request: httpx.Request) -> httpx.Response:
    return httpx.Response(201, json={"id": 17})


def ids(events: Sequence[VisionEvent]) -> set[str]:
    return {e.event_id for e in events}


def external_id(request: httpx.Request) -> str:
    value: str = orjson.loads(request.content)["event_data"]["externalId"]
    return value


def test_the_sink_satisfies_the_protocol() -> None:
    async def scenario() -> None:
        harness = Harness(stored)
        sink: Sink = harness.sink
        assert sink.name == "local"
        assert not sink.auth_failing
        await harness.close()

    asyncio.run(scenario())


def test_201_delivers_one_post_per_event_with_the_local_body() -> None:
    harness, report = run(lambda: Harness(stored), [make_event(0), make_event(1)])
    assert ids(report.delivered) == {"evt-0", "evt-1"}
    assert report.rejected == []
    assert len(harness.requests) == 2
    request = harness.requests[0]
    assert str(request.url) == "http://device.test:8001/v2/events"
    assert request.headers["Content-Type"] == "application/json"
    assert "X-API-Key" not in request.headers
    assert "Authorization" not in request.headers
    body = orjson.loads(request.content)
    assert body["event_schema"] == "quality_check"
    assert body["solution"] == "uc-1"
    assert body["images"] == []
    assert "eventId" not in body
    labels = {"endpoint": "events", "status": "201"}
    assert harness.sample("vision_events_api_request_duration_seconds_count", labels) == 2


def test_x_api_key_is_sent_when_configured() -> None:
    harness, report = run(lambda: Harness(stored, local={"api_key": SecretStr(KEY)}), [make_event(0)])
    assert len(report.delivered) == 1
    assert harness.requests[0].headers["X-API-Key"] == KEY


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(200, json={"id": "evt-store-1"}),
        httpx.Response(204),
        httpx.Response(201, json={"ok": True}),
        httpx.Response(201, text="<html>portal</html>"),
    ],
    ids=["200-with-id", "204", "201-without-id", "201-html"],
)
def test_anything_but_201_with_an_id_is_an_unexpected_response_and_retried(answer: httpx.Response) -> None:
    answers = iter([answer])
    harness, report = run(lambda: Harness(lambda r: next(answers, None) or stored(r)), [make_event(0)])
    assert ids(report.delivered) == {"evt-0"}
    assert report.rejected == []
    assert len(harness.requests) == 2, "retried, not dead-lettered"
    counted = {"sink": "local", "endpoint": "events"}
    assert harness.sample("vision_events_unexpected_responses_total", counted) == 1
    labels = {"endpoint": "events", "cause": "unexpected_response"}
    assert harness.sample("vision_events_api_retries_total", labels) == 1


def test_529_backs_off_and_retries() -> None:
    answers = iter(
        [
            httpx.Response(529, json={"detail": "Device storage full.", "error": "capacity_blocked"}),
            httpx.Response(529, headers={"Retry-After": "20"}),
        ]
    )
    harness, report = run(lambda: Harness(lambda r: next(answers, None) or stored(r)), [make_event(0)])
    assert ids(report.delivered) == {"evt-0"}
    assert len(harness.requests) == 3
    assert harness.time.sleeps[1] == 20.0
    assert harness.sample("vision_events_api_retries_total", {"endpoint": "events", "cause": "529"}) == 2


def test_500_then_201_is_retried() -> None:
    answers = iter([httpx.Response(500)])
    harness, report = run(lambda: Harness(lambda r: next(answers, None) or stored(r)), [make_event(0)])
    assert ids(report.delivered) == {"evt-0"}
    assert harness.sample("vision_events_api_retries_total", {"endpoint": "events", "cause": "500"}) == 1


def test_network_errors_are_retried() -> None:
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionResetError("gone")  # the stub drops the connection unanswered
        return stored(request)

    harness, report = run(lambda: Harness(handler), [make_event(0)])
    assert ids(report.delivered) == {"evt-0"}
    assert (
        harness.sample(
            "vision_events_api_retries_total", {"endpoint": "events", "cause": "ServerDisconnectedError"}
        )
        == 1
    )


@pytest.mark.parametrize("status", [400, 404, 422])
def test_a_refused_event_is_rejected_with_the_bodys_detail_and_others_go(status: int) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if external_id(request) == "x-1":
            return httpx.Response(status, json={"detail": "event_data: extra fields not permitted"})
        return stored(request)

    harness, report = run(lambda: Harness(handler), [make_event(0), make_event(1), make_event(2)])
    assert len(harness.requests) == 3, "a refusal is not retried"
    assert ids(report.delivered) == {"evt-0", "evt-2"}
    (rejection,) = report.rejected
    assert rejection.event.event_id == "evt-1"
    assert rejection.reason is Reason.API_REJECTED
    assert rejection.detail == "event_data: extra fields not permitted"
    assert rejection.status == status


@pytest.mark.parametrize("status", [401, 403])
def test_auth_errors_are_retried_slowly_and_never_rejected(status: int) -> None:
    seen: list[bool] = []
    holder: list[Harness] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(holder[0].sink.auth_failing)
        return httpx.Response(status, json={"detail": "bad key"}) if len(seen) <= 2 else stored(request)

    def factory() -> Harness:
        holder.append(Harness(handler, retry=RetryConfig(auth_backoff_seconds=30)))
        return holder[0]

    harness, report = run(factory, [make_event(0)])
    assert ids(report.delivered) == {"evt-0"}
    assert report.rejected == []
    assert seen == [False, True, True]
    assert harness.time.sleeps == [30.0, 30.0]
    assert harness.sink.auth_failing is False


def test_give_up_after_seconds_rejects_with_delivery_timeout() -> None:
    retry = RetryConfig(give_up_after_seconds=12)
    harness, report = run(
        lambda: Harness(lambda r: httpx.Response(529), retry=retry), [make_event(0), make_event(1)]
    )
    assert report.delivered == []
    assert {(r.reason, r.status) for r in report.rejected} == {(Reason.DELIVERY_TIMEOUT, 529)}
    assert len(report.rejected) == 2
    assert harness.time.now >= 12


def test_posts_are_bounded_by_concurrency() -> None:
    active = [0]
    peak = [0]

    async def handler(request: httpx.Request) -> httpx.Response:
        active[0] += 1
        peak[0] = max(peak[0], active[0])
        for _ in range(5):
            await asyncio.sleep(0)
        active[0] -= 1
        return stored(request)

    _, report = run(lambda: Harness(handler, local={"concurrency": 2}), [make_event(n) for n in range(7)])
    assert len(report.delivered) == 7
    assert peak[0] == 2


def test_inline_images_go_as_base64_as_received() -> None:
    encoded = base64.b64encode(PNG).decode()
    event = make_event(
        0, output=ImageSource(base64=encoded), input_=ImageSource(base64="data:image/png;base64," + encoded)
    )
    event.annotations = {"classifications": [{"class": "ok", "confidence": 0.9}]}
    harness, report = run(lambda: Harness(stored), [event])
    assert ids(report.delivered) == {"evt-0"}
    body = orjson.loads(harness.requests[0].content)
    assert body["images"] == [
        {
            "base64Image": encoded,
            "inputBase64Image": encoded,
            "label": "workflow",
            "classifications": [{"class": "ok", "confidence": 0.9}],
        }
    ]
    assert body["displayImagePosition"] == 0


def test_url_images_are_fetched_once_and_inlined() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "img.test":
            assert "X-API-Key" not in request.headers
            return httpx.Response(200, content=PNG)
        return stored(request)

    image_url = "http://img.test/frame.png"
    events = [
        make_event(0, output=ImageSource(url=image_url)),
        make_event(1, input_=ImageSource(url=image_url)),
    ]
    images = ImagesConfig(url_allowed_hosts=["img.test"])
    harness, report = run(lambda: Harness(handler, images=images, local={"api_key": SecretStr(KEY)}), events)
    assert ids(report.delivered) == {"evt-0", "evt-1"}
    assert len([r for r in harness.requests if r.url.host == "img.test"]) == 1
    bodies = [orjson.loads(r.content) for r in harness.posts()]
    encoded = base64.b64encode(PNG).decode()
    assert sorted(next(iter(b["images"][0].values())) for b in bodies) == [encoded, encoded]


def test_url_image_not_allow_listed_is_rejected() -> None:
    event = make_event(0, output=ImageSource(url="http://other.test/frame.png"))
    harness, report = run(
        lambda: Harness(stored, images=ImagesConfig(url_allowed_hosts=["img.test"])), [event]
    )
    assert [r.reason for r in report.rejected] == [Reason.IMAGE_FETCH_FAILED]
    assert harness.requests == []


def test_an_unavailable_url_image_follows_the_route_policy_locally() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503) if request.url.host == "img.test" else stored(request)

    without = make_event(0, output=ImageSource(url="http://img.test/a.png"))
    without.deliver_without_image = True
    strict = make_event(1, output=ImageSource(url="http://img.test/a.png"))
    images = ImagesConfig(url_allowed_hosts=["img.test"], fetch_attempts=2)
    harness, report = run(lambda: Harness(handler, images=images), [without, strict])
    assert ids(report.delivered) == {"evt-0"}
    assert [(r.event.event_id, r.reason, r.attempts) for r in report.rejected] == [
        ("evt-1", Reason.IMAGE_UNAVAILABLE, 2)
    ]
    # One image, fetched once for both events: two attempts in all.
    assert len([r for r in harness.requests if r.url.host == "img.test"]) == 2
    (body,) = [orjson.loads(r.content) for r in harness.posts()]
    assert body["images"] == []


def test_an_image_given_only_as_a_cloud_source_id_is_invalid_locally() -> None:
    events = [make_event(0, output=ImageSource(source_id="ve-img-1")), make_event(1)]
    harness, report = run(lambda: Harness(stored), events)
    assert ids(report.delivered) == {"evt-1"}
    (rejection,) = report.rejected
    assert rejection.reason is Reason.INVALID_IMAGE
    assert "sourceId" in rejection.detail
    assert len(harness.requests) == 1


def test_the_api_key_never_appears_in_errors_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        echoed = f"key {request.headers.get('X-API-Key')} refused"
        if len(calls) == 1:
            return httpx.Response(503, json={"detail": echoed})
        return httpx.Response(422, json={"detail": echoed})

    with caplog.at_level(logging.DEBUG):
        _, report = run(lambda: Harness(handler, local={"api_key": SecretStr(KEY)}), [make_event(0)])
    (rejection,) = report.rejected
    assert "refused" in rejection.detail
    assert KEY not in rejection.detail
    assert caplog.records, "the retry was logged"
    for record in caplog.records:
        assert KEY not in record.getMessage()
        assert KEY not in str(record.__dict__)
