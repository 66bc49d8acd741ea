"""CloudSink against a loopback stub server (tests/support/http_stub.py).

Statuses, splitting, acks, images, headers, secrets.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import pytest
from pydantic import SecretStr

from consumer.config import CloudSinkConfig, ImagesConfig, RetryConfig
from consumer.contract import EventType
from consumer.errors import Reason
from consumer.metrics import Metrics
from consumer.model import ImageSource, InboundMessage, VisionEvent
from consumer.sinks.base import DeliveryReport, Sink
from consumer.sinks.cloud import MAX_ACK_RESENDS, CloudSink
from consumer.sinks.images import FETCH_BACKOFF_CAP_SECONDS
from consumer.urls import host_allowed
from tests.support.clock import FakeTime
from tests.support.http_stub import StubServer

KEY = "rf_SECRET_api_key_abc123"
BASE = "http://api.test"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
JPEG = b"\xff\xd8\xff\xe0" + b"\x01" * 32
Handler = Callable[[httpx.Request], httpx.Response | Awaitable[httpx.Response]]


def make_event(
    n: int, *, output: ImageSource | None = None, input_: ImageSource | None = None
) -> VisionEvent:
    message = InboundMessage(source="test", topic="cams/1", payload=b"{}", received_at=0.0)
    return VisionEvent(
        event_id=f"evt-{n}",
        event_type=EventType.CUSTOM,
        use_case_id="uc-1",
        timestamp=datetime(2026, 8, 21, 18, 0, tzinfo=UTC),
        message=message,
        event_data={"value": f"v{n}"},
        output_image=output,
        input_image=input_,
    )


def inline(data: bytes) -> ImageSource:
    return ImageSource(base64=base64.b64encode(data).decode())


class Harness:
    """A CloudSink wired to a loopback stub server, a fresh registry and a fake clock."""

    def __init__(
        self,
        handler: Handler,
        *,
        cloud: dict[str, Any] | None = None,
        retry: RetryConfig | None = None,
        images: ImagesConfig | None = None,
    ) -> None:
        self.requests: list[httpx.Request] = []

        async def record(request: httpx.Request) -> httpx.Response:
            self.requests.append(request)
            result = handler(request)
            return await result if isinstance(result, Awaitable) else result

        settings: dict[str, Any] = {"base_url": BASE + "/", "api_key": SecretStr(KEY)}
        settings.update(cloud or {})
        self.metrics = Metrics()
        self.time = FakeTime()
        self.stub = StubServer(record)
        self.sink = CloudSink(
            CloudSinkConfig(**settings),
            retry or RetryConfig(),
            images or ImagesConfig(),
            self.metrics,
            self.stub.session_factory(),
            sleep=self.time.sleep,
            clock=self.time.clock,
        )

    def batches(self) -> list[list[str]]:
        return [
            [e["eventId"] for e in orjson.loads(r.content)["events"]]
            for r in self.requests
            if r.url.path == "/vision-events/batch"
        ]

    def uploads(self) -> list[httpx.Request]:
        return [r for r in self.requests if r.url.path == "/vision-events/upload"]

    def sample(self, name: str, labels: dict[str, str] | None = None) -> float:
        value = self.metrics.registry.get_sample_value(name, labels or {})
        return 0.0 if value is None else value

    async def deliver(self, events: Sequence[VisionEvent]) -> DeliveryReport:
        return await self.sink.deliver(events)

    async def close(self) -> None:
        await self.sink.aclose()
        await self.stub.close()


def run(
    harness_factory: Callable[[], Harness], events: Sequence[VisionEvent]
) -> tuple[Harness, DeliveryReport]:
    async def scenario() -> tuple[Harness, DeliveryReport]:
        harness = harness_factory()
        try:
            return harness, await harness.deliver(events)
        finally:
            await harness.close()

    return asyncio.run(scenario())


def events_of(request: httpx.Request) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = orjson.loads(request.content)["events"]
    return events


def created(request: httpx.Request, status: int = 201) -> httpx.Response:
    ids = [e["eventId"] for e in events_of(request)]
    return httpx.Response(status, json={"created": len(ids), "eventIds": ids})


def uploaded(source_id: str = "src-1") -> httpx.Response:
    return httpx.Response(201, json={"success": True, "sourceId": source_id, "url": "https://x/y.jpg"})


def ids(events: Iterable[VisionEvent]) -> set[str]:
    return {e.event_id for e in events}


def test_the_sink_satisfies_the_protocol() -> None:
    async def scenario() -> None:
        harness = Harness(created)
        sink: Sink = harness.sink
        assert sink.name == "cloud"
        assert sink.auth_failing is False
        await harness.close()

    asyncio.run(scenario())


def test_201_delivers_the_batch_with_the_documented_body_and_headers() -> None:
    events = [make_event(0), make_event(1)]
    harness, report = run(lambda: Harness(created), events)
    assert ids(report.delivered) == {"evt-0", "evt-1"}
    assert report.rejected == []
    (request,) = harness.requests
    assert str(request.url) == "http://api.test/vision-events/batch"
    assert request.method == "POST"
    assert request.headers["Authorization"] == f"Bearer {KEY}"
    assert request.headers["Content-Type"] == "application/json"
    body = orjson.loads(request.content)
    assert list(body) == ["events"]
    assert body["events"][0] == {
        "eventId": "evt-0",
        "eventType": "custom",
        "useCaseId": "uc-1",
        "timestamp": "2026-08-21T18:00:00+00:00",
        "images": [],
        "eventData": {"value": "v0"},
    }
    assert (
        harness.sample(
            "vision_events_api_request_duration_seconds_count", {"endpoint": "batch", "status": "201"}
        )
        == 1
    )


def test_200_on_cloud_is_delivered() -> None:
    harness, report = run(lambda: Harness(lambda r: created(r, 200)), [make_event(0)])
    assert ids(report.delivered) == {"evt-0"}
    assert len(harness.requests) == 1


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(204),
        httpx.Response(200, json={"ok": True}),
        httpx.Response(200, text="<html><body>Welcome to the hotel wifi</body></html>"),
        httpx.Response(201, json={"eventIds": ["evt-0", "evt-0"]}),
        httpx.Response(201, json={"eventIds": ["evt-0", "someone-else"]}),
    ],
    ids=["204", "ok-true", "html", "duplicate-ids", "unknown-id"],
)
def test_a_2xx_that_is_not_the_contracts_answer_is_retried_never_delivered(answer: httpx.Response) -> None:
    answers = iter([answer])
    harness, report = run(
        lambda: Harness(lambda r: next(answers, None) or created(r)), [make_event(0), make_event(1)]
    )
    assert ids(report.delivered) == {"evt-0", "evt-1"}
    assert harness.batches() == [["evt-0", "evt-1"], ["evt-0", "evt-1"]], "the same events were re-sent"
    labels = {"endpoint": "batch", "cause": "unexpected_response"}
    assert harness.sample("vision_events_api_retries_total", labels) == 1
    counted = {"sink": "cloud", "endpoint": "batch"}
    assert harness.sample("vision_events_unexpected_responses_total", counted) == 1
    assert not harness.sink.answers_unexpected, "a contract answer clears the flag"


def test_unexpected_answers_until_the_give_up_time_are_never_delivered() -> None:
    retry = RetryConfig(give_up_after_seconds=60)
    harness, report = run(
        lambda: Harness(lambda r: httpx.Response(200, json={"ok": True}), retry=retry), [make_event(0)]
    )
    assert report.delivered == []
    (rejection,) = report.rejected
    assert rejection.reason is Reason.DELIVERY_TIMEOUT
    assert "not the API's answer" in rejection.detail
    assert harness.sink.answers_unexpected
    assert harness.sample("vision_events_sink_unexpected_responses", {"sink": "cloud"}) == 1


def test_500_then_201_is_retried_and_counted() -> None:
    answers = iter([httpx.Response(500, text="boom")])
    harness, report = run(lambda: Harness(lambda r: next(answers, None) or created(r)), [make_event(0)])
    assert ids(report.delivered) == {"evt-0"}
    assert len(harness.requests) == 2
    assert harness.sample("vision_events_api_retries_total", {"endpoint": "batch", "cause": "500"}) == 1
    assert len(harness.time.sleeps) == 1


def test_429_retry_after_is_waited_at_least() -> None:
    answers = iter([httpx.Response(429, headers={"Retry-After": "17"})])
    harness, report = run(lambda: Harness(lambda r: next(answers, None) or created(r)), [make_event(0)])
    assert ids(report.delivered) == {"evt-0"}
    assert harness.time.sleeps == [17.0]


@pytest.mark.parametrize("status", [408, 425, 502, 503, 529])
def test_transient_statuses_are_retried(status: int) -> None:
    answers = iter([httpx.Response(status), httpx.Response(status)])
    harness, report = run(lambda: Harness(lambda r: next(answers, None) or created(r)), [make_event(0)])
    assert ids(report.delivered) == {"evt-0"}
    assert report.rejected == []
    assert len(harness.requests) == 3
    assert harness.sample("vision_events_api_retries_total", {"endpoint": "batch", "cause": str(status)}) == 2


def test_network_errors_are_retried() -> None:
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionResetError("dropped")  # the stub drops the connection unanswered
        return created(request)

    harness, report = run(lambda: Harness(handler), [make_event(0)])
    assert ids(report.delivered) == {"evt-0"}
    assert (
        harness.sample(
            "vision_events_api_retries_total", {"endpoint": "batch", "cause": "ServerDisconnectedError"}
        )
        == 1
    )
    labels = {"endpoint": "batch", "status": "error"}
    assert harness.sample("vision_events_api_request_duration_seconds_count", labels) == 1


@pytest.mark.parametrize("status", [401, 403])
def test_auth_errors_are_retried_slowly_and_never_rejected(status: int) -> None:
    seen: list[bool] = []
    holder: list[Harness] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(holder[0].sink.auth_failing)
        if len(seen) <= 3:
            return httpx.Response(status, json={"error": "Invalid API key"})
        return created(request)

    def factory() -> Harness:
        holder.append(Harness(handler, retry=RetryConfig(auth_backoff_seconds=90, give_up_after_seconds=1)))
        return holder[0]

    harness, report = run(factory, [make_event(0), make_event(1)])
    assert report.rejected == []
    assert ids(report.delivered) == {"evt-0", "evt-1"}
    assert seen == [False, True, True, True]
    assert harness.time.sleeps == [90.0, 90.0, 90.0]
    assert harness.sink.auth_failing is False
    assert harness.sample("vision_events_sink_auth_failing", {"sink": "cloud"}) == 0
    assert harness.sample("vision_events_api_retries_total", {"endpoint": "batch", "cause": "auth"}) == 3


def rejecting(bad: str, status: int, reason: str) -> Handler:
    """A server refusing any batch that contains the event ``bad``."""

    def handler(request: httpx.Request) -> httpx.Response:
        if any(e["eventId"] == bad for e in events_of(request)):
            return httpx.Response(status, json={"error": reason})
        return created(request)

    return handler


@pytest.mark.parametrize("status", [400, 413, 422])
def test_rejected_batch_is_split_to_isolate_the_bad_event(status: int) -> None:
    events = [make_event(n) for n in range(4)]
    harness, report = run(lambda: Harness(rejecting("evt-2", status, "eventData.value too long")), events)
    assert ids(report.delivered) == {"evt-0", "evt-1", "evt-3"}
    (rejection,) = report.rejected
    assert rejection.event.event_id == "evt-2"
    assert rejection.reason is Reason.API_REJECTED
    assert rejection.detail == "eventData.value too long"
    assert rejection.status == status
    # 4 -> [0,1] ok + [2,3] refused -> [2] refused + [3] ok
    assert harness.sample("vision_events_batch_splits_total", {"sink": "cloud"}) == 2
    assert sorted(map(tuple, harness.batches())) == sorted(
        [("evt-0", "evt-1", "evt-2", "evt-3"), ("evt-0", "evt-1"), ("evt-2", "evt-3"), ("evt-2",), ("evt-3",)]
    )
    assert harness.time.sleeps == [], "a refusal is not retried"


def test_every_event_refused_is_rejected_individually() -> None:
    events = [make_event(n) for n in range(3)]
    harness, report = run(lambda: Harness(lambda r: httpx.Response(400, text="no")), events)
    assert report.delivered == []
    assert ids(e.event for e in report.rejected) == {"evt-0", "evt-1", "evt-2"}
    assert harness.sample("vision_events_batch_splits_total", {"sink": "cloud"}) == 2  # [0,1,2] -> [0] [1,2]
    assert {r.detail for r in report.rejected} == {"no"}


def test_404_on_a_single_event_is_rejected() -> None:
    harness, report = run(
        lambda: Harness(lambda r: httpx.Response(404, json={"error": "use case not found"})), [make_event(0)]
    )
    assert report.delivered == []
    (rejection,) = report.rejected
    assert (rejection.reason, rejection.status, rejection.detail) == (
        Reason.API_REJECTED,
        404,
        "use case not found",
    )
    assert len(harness.requests) == 1
    assert harness.sample("vision_events_batch_splits_total", {"sink": "cloud"}) == 0


def test_redirect_is_not_followed_and_rejects() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(302, headers={"Location": "https://elsewhere.test/"})

    harness, report = run(lambda: Harness(handler), [make_event(0)])
    assert [r.status for r in report.rejected] == [302]
    assert {r.url.host for r in harness.requests} == {"api.test"}


def test_give_up_after_seconds_rejects_with_delivery_timeout() -> None:
    retry = RetryConfig(initial_backoff_seconds=1, max_backoff_seconds=5, give_up_after_seconds=30)
    harness, report = run(
        lambda: Harness(lambda r: httpx.Response(503), retry=retry), [make_event(0), make_event(1)]
    )
    assert report.delivered == []
    assert ids(r.event for r in report.rejected) == {"evt-0", "evt-1"}
    assert {r.reason for r in report.rejected} == {Reason.DELIVERY_TIMEOUT}
    assert {r.status for r in report.rejected} == {503}
    assert all(r.attempts == len(harness.requests) for r in report.rejected)
    assert 30.0 <= harness.time.now < 36.0


def test_event_ids_missing_from_the_answer_are_re_sent() -> None:
    answers = iter([httpx.Response(201, json={"created": 1, "eventIds": ["evt-0", "evt-2"]})])
    events = [make_event(n) for n in range(3)]
    harness, report = run(lambda: Harness(lambda r: next(answers, None) or created(r)), events)
    assert ids(report.delivered) == {"evt-0", "evt-1", "evt-2"}
    assert report.rejected == []
    assert harness.batches() == [["evt-0", "evt-1", "evt-2"], ["evt-1"]]


def test_event_ids_never_acknowledged_are_rejected() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        # A well-formed answer that keeps leaving evt-1 out (an empty list once only evt-1 is sent).
        acked = [e["eventId"] for e in events_of(request) if e["eventId"] != "evt-1"]
        return httpx.Response(201, json={"created": len(acked), "eventIds": acked})

    harness, report = run(lambda: Harness(handler), [make_event(0), make_event(1)])
    assert ids(report.delivered) == {"evt-0"}
    (rejection,) = report.rejected
    assert rejection.event.event_id == "evt-1"
    assert rejection.reason is Reason.NOT_ACKNOWLEDGED
    assert rejection.attempts == MAX_ACK_RESENDS + 1
    assert harness.batches() == [["evt-0", "evt-1"]] + [["evt-1"]] * MAX_ACK_RESENDS
    assert (
        harness.sample("vision_events_unexpected_responses_total", {"sink": "cloud", "endpoint": "batch"})
        == 0
    )


def test_more_than_100_events_go_in_several_requests() -> None:
    harness, report = run(lambda: Harness(created), [make_event(n) for n in range(150)])
    assert len(report.delivered) == 150
    assert sorted(len(b) for b in harness.batches()) == [50, 100]


def test_empty_batch_sends_nothing() -> None:
    harness, report = run(lambda: Harness(created), [])
    assert report == DeliveryReport()
    assert harness.requests == []


# ---------------------------------------------------------------- images


def image_server(
    *, upload: Callable[[httpx.Request, int], httpx.Response] | None = None, fetch: Handler | None = None
) -> Handler:
    """Uploads answer src-<n> in order (or ``upload``); batches are created; other hosts go to ``fetch``."""
    counter: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response | Awaitable[httpx.Response]:
        if request.url.host != "api.test":
            assert fetch is not None, f"unexpected request to {request.url}"
            return fetch(request)
        if request.url.path == "/vision-events/upload":
            counter.append(1)
            if upload is not None:
                return upload(request, len(counter))
            return uploaded(f"src-{len(counter)}")
        return created(request)

    return handler


def sent_images(harness: Harness) -> dict[str, list[dict[str, Any]]]:
    """eventId -> its images entry, from the last batch that carried it."""
    found: dict[str, list[dict[str, Any]]] = {}
    for request in harness.requests:
        if request.url.path == "/vision-events/batch":
            for event in events_of(request):
                found[event["eventId"]] = event["images"]
    return found


def test_output_and_input_images_are_uploaded_and_referenced() -> None:
    event = make_event(0, output=inline(PNG), input_=inline(JPEG))
    event.annotations = {
        "objectDetections": [{"class": "a", "x": 1.0, "y": 1.0, "width": 2.0, "height": 2.0}]
    }
    harness, report = run(lambda: Harness(image_server()), [event])
    assert ids(report.delivered) == {"evt-0"}
    uploads = harness.uploads()
    assert len(uploads) == 2
    assert all(u.headers["Authorization"] == f"Bearer {KEY}" for u in uploads)
    assert all(u.headers["Content-Type"].startswith("multipart/form-data; boundary=") for u in uploads)
    bodies = b"".join(u.content for u in uploads)
    assert b'name="file"; filename="image.png"' in bodies
    assert b'name="file"; filename="image.jpg"' in bodies
    assert b"Content-Type: image/png" in bodies
    assert b"Content-Type: image/jpeg" in bodies
    (entry,) = sent_images(harness)["evt-0"]
    assert {entry["sourceId"], entry["inputSourceId"]} == {"src-1", "src-2"}
    assert entry["label"] == "workflow"
    assert entry["objectDetections"][0]["class"] == "a"
    assert harness.sample("vision_events_images_uploaded_total") == 2
    assert harness.sample("vision_events_image_upload_bytes_total") == len(PNG) + len(JPEG)
    labels = {"endpoint": "upload", "status": "201"}
    assert harness.sample("vision_events_api_request_duration_seconds_count", labels) == 2


def test_input_only_image_is_sent_as_both_ids() -> None:
    harness, report = run(lambda: Harness(image_server()), [make_event(0, input_=inline(JPEG))])
    assert ids(report.delivered) == {"evt-0"}
    (entry,) = sent_images(harness)["evt-0"]
    assert entry["sourceId"] == entry["inputSourceId"] == "src-1"


def test_a_shared_image_is_uploaded_once_per_batch() -> None:
    events = [
        make_event(0, output=inline(PNG)),
        make_event(1, output=inline(PNG)),
        make_event(2, input_=inline(PNG)),
    ]
    harness, report = run(lambda: Harness(image_server()), events)
    assert len(report.delivered) == 3
    assert len(harness.uploads()) == 1
    images = sent_images(harness)
    assert images["evt-0"][0]["sourceId"] == images["evt-1"][0]["sourceId"] == "src-1"
    assert images["evt-2"][0]["inputSourceId"] == "src-1"


def test_the_lru_cache_avoids_re_uploading_across_deliveries() -> None:
    async def scenario() -> Harness:
        harness = Harness(image_server())
        first = await harness.deliver([make_event(0, output=inline(PNG))])
        second = await harness.deliver(
            [make_event(1, output=inline(PNG)), make_event(2, output=inline(JPEG))]
        )
        assert len(first.delivered) + len(second.delivered) == 3
        await harness.close()
        return harness

    harness = asyncio.run(scenario())
    assert len(harness.uploads()) == 2
    images = sent_images(harness)
    assert images["evt-0"][0]["sourceId"] == images["evt-1"][0]["sourceId"] == "src-1"
    assert images["evt-2"][0]["sourceId"] == "src-2"
    assert len(harness.sink.images.cache) == 2


def test_images_with_a_source_id_need_no_upload() -> None:
    harness, report = run(
        lambda: Harness(image_server()), [make_event(0, output=ImageSource(source_id="ve-img-9"))]
    )
    assert ids(report.delivered) == {"evt-0"}
    assert harness.uploads() == []
    assert sent_images(harness)["evt-0"][0]["sourceId"] == "ve-img-9"


def test_upload_ids_and_inline_images_in_one_batch_keep_their_ids_and_order() -> None:
    given = ImageSource(source_id="ve-img-given")
    only_ids = [make_event(0, input_=given), make_event(1), make_event(2, output=given, input_=given)]
    mixed = [make_event(3, input_=given), make_event(4, output=inline(PNG), input_=given), make_event(5)]
    harness, report = run(lambda: Harness(image_server()), [*only_ids, *mixed])
    assert [e.event_id for e in report.delivered] == [f"evt-{n}" for n in range(6)]
    assert len(harness.uploads()) == 1
    images = sent_images(harness)
    assert images["evt-0"] == [
        {"sourceId": "ve-img-given", "inputSourceId": "ve-img-given", "label": "workflow"}
    ]
    assert images["evt-1"] == []
    assert images["evt-2"][0]["sourceId"] == images["evt-2"][0]["inputSourceId"] == "ve-img-given"
    assert images["evt-4"][0]["sourceId"] == "src-1"
    assert images["evt-4"][0]["inputSourceId"] == "ve-img-given"

    async def ids_only() -> list[tuple[str, str | None, str | None]]:
        harness = Harness(image_server())
        try:
            resolved, rejected = await harness.sink.images.resolve(only_ids)
        finally:
            await harness.close()
        assert rejected == []
        return [(item.event.event_id, item.output, item.input) for item in resolved]

    assert asyncio.run(ids_only()) == [
        ("evt-0", None, "ve-img-given"),
        ("evt-1", None, None),
        ("evt-2", "ve-img-given", "ve-img-given"),
    ]


@pytest.mark.parametrize("status", [400, 413, 415, 422])
def test_a_refused_upload_rejects_only_the_events_using_that_image(status: int) -> None:
    def upload(request: httpx.Request, n: int) -> httpx.Response:
        if b"image/jpeg" in request.content:
            return httpx.Response(status, json={"error": "unsupported image"})
        return uploaded("src-png")

    events = [make_event(0, output=inline(PNG)), make_event(1, output=inline(JPEG)), make_event(2)]
    events.append(make_event(3, output=inline(PNG), input_=inline(JPEG)))
    harness, report = run(lambda: Harness(image_server(upload=upload)), events)
    assert ids(report.delivered) == {"evt-0", "evt-2"}
    assert ids(r.event for r in report.rejected) == {"evt-1", "evt-3"}
    assert {(r.reason, r.status, r.detail) for r in report.rejected} == {
        (Reason.IMAGE_REJECTED, status, "unsupported image")
    }
    assert harness.batches() == [["evt-0", "evt-2"]]


def test_an_upload_answer_without_source_id_is_an_unexpected_response_and_retried() -> None:
    def upload(request: httpx.Request, n: int) -> httpx.Response:
        return httpx.Response(201, json={"success": True}) if n == 1 else uploaded("src-ok")

    harness, report = run(lambda: Harness(image_server(upload=upload)), [make_event(0, output=inline(PNG))])
    assert ids(report.delivered) == {"evt-0"}
    assert len(harness.uploads()) == 2
    assert sent_images(harness)["evt-0"][0]["sourceId"] == "src-ok"
    labels = {"endpoint": "upload", "cause": "unexpected_response"}
    assert harness.sample("vision_events_api_retries_total", labels) == 1
    counted = {"sink": "cloud", "endpoint": "upload"}
    assert harness.sample("vision_events_unexpected_responses_total", counted) == 1


def test_upload_5xx_is_retried() -> None:
    def upload(request: httpx.Request, n: int) -> httpx.Response:
        return httpx.Response(503) if n == 1 else uploaded("src-ok")

    harness, report = run(lambda: Harness(image_server(upload=upload)), [make_event(0, output=inline(PNG))])
    assert ids(report.delivered) == {"evt-0"}
    assert harness.sample("vision_events_api_retries_total", {"endpoint": "upload", "cause": "503"}) == 1


def test_inline_bytes_that_are_no_image_are_rejected_without_upload() -> None:
    events = [
        make_event(0, output=inline(b"just some text")),
        make_event(1, output=ImageSource(base64="@@@")),
    ]
    harness, report = run(lambda: Harness(image_server()), events)
    assert {r.reason for r in report.rejected} == {Reason.INVALID_IMAGE}
    assert len(report.rejected) == 2
    assert harness.requests == []


def test_uploads_are_bounded_by_upload_concurrency() -> None:
    active: list[int] = [0]
    peak: list[int] = [0]

    async def upload_slowly(request: httpx.Request) -> httpx.Response:
        active[0] += 1
        peak[0] = max(peak[0], active[0])
        for _ in range(5):
            await asyncio.sleep(0)
        active[0] -= 1
        return uploaded(f"src-{request.content[-80:].hex()}")

    def handler(request: httpx.Request) -> httpx.Response | Awaitable[httpx.Response]:
        if request.url.path == "/vision-events/upload":
            return upload_slowly(request)
        return created(request)

    events = [make_event(n, output=inline(PNG + bytes([n]))) for n in range(10)]
    harness, report = run(lambda: Harness(handler, cloud={"upload_concurrency": 3}), events)
    assert len(report.delivered) == 10
    assert len(harness.uploads()) == 10
    assert peak[0] == 3


# ------------------------------------------------------------ URL images


def test_url_image_not_allow_listed_is_rejected_without_fetching() -> None:
    event = make_event(0, output=ImageSource(url="https://evil.test/cat.png"))
    images = ImagesConfig(url_allowed_hosts=["*.cams.test", "snap.example.test"])
    harness, report = run(lambda: Harness(image_server(), images=images), [event, make_event(1)])
    assert ids(report.delivered) == {"evt-1"}
    (rejection,) = report.rejected
    assert rejection.reason is Reason.IMAGE_FETCH_FAILED
    assert "evil.test" in rejection.detail
    assert {r.url.host for r in harness.requests} == {"api.test"}
    assert harness.sample("vision_events_images_fetched_total", {"outcome": "not_allowed"}) == 1


def test_allow_listed_url_image_is_fetched_without_credentials_and_uploaded() -> None:
    def fetch(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=JPEG, headers={"Content-Type": "image/jpeg"})

    images = ImagesConfig(url_allowed_hosts=["*.cams.test"])
    event = make_event(0, output=ImageSource(url="http://cam7.site.cams.test/snap.jpg?token=abc"))
    harness, report = run(lambda: Harness(image_server(fetch=fetch), images=images), [event])
    assert ids(report.delivered) == {"evt-0"}
    (fetched,) = [r for r in harness.requests if r.url.host.endswith("cams.test")]
    assert "Authorization" not in fetched.headers
    assert KEY not in str(fetched.headers)
    assert len(harness.uploads()) == 1
    assert JPEG in harness.uploads()[0].content
    assert harness.sample("vision_events_images_fetched_total", {"outcome": "ok"}) == 1


@pytest.mark.parametrize(
    ("answer", "outcome", "reason"),
    [
        (httpx.Response(404), "rejected", Reason.IMAGE_UNAVAILABLE),
        (httpx.Response(403), "rejected", Reason.IMAGE_UNAVAILABLE),
        (
            httpx.Response(301, headers={"Location": "https://evil.test/"}),
            "rejected",
            Reason.IMAGE_FETCH_FAILED,
        ),
        (httpx.Response(200, content=b"<html>not an image</html>"), "not_image", Reason.IMAGE_FETCH_FAILED),
        (httpx.Response(200, content=PNG + b"\x00" * 5000), "too_large", Reason.IMAGE_FETCH_FAILED),
    ],
)
def test_url_fetch_failures_are_rejected_without_retry(
    answer: httpx.Response, outcome: str, reason: Reason
) -> None:
    images = ImagesConfig(url_allowed_hosts=["img.test"], url_max_bytes=4096)
    event = make_event(0, output=ImageSource(url="http://img.test/a.png"))
    harness, report = run(lambda: Harness(image_server(fetch=lambda r: answer), images=images), [event])
    assert [r.reason for r in report.rejected] == [reason]
    assert harness.uploads() == []
    assert harness.sample("vision_events_images_fetched_total", {"outcome": outcome}) == 1
    assert {r.url.host for r in harness.requests} == {"img.test"}


def test_url_body_is_capped_while_streaming() -> None:
    async def chunks() -> Any:
        yield PNG
        for _ in range(100):
            yield b"\x00" * 1024

    images = ImagesConfig(url_allowed_hosts=["img.test"], url_max_bytes=8192)
    event = make_event(0, output=ImageSource(url="http://img.test/a.png"))

    def fetch(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=chunks())

    harness, report = run(lambda: Harness(image_server(fetch=fetch), images=images), [event])
    assert [r.reason for r in report.rejected] == [Reason.IMAGE_FETCH_FAILED]
    assert "cap" in report.rejected[0].detail
    assert harness.sample("vision_events_images_fetched_total", {"outcome": "too_large"}) == 1


def test_url_fetch_5xx_and_network_errors_are_retried() -> None:
    # Dropped twice: aiohttp itself re-sends an idempotent GET once when its connection drops,
    # so only the second drop reaches the fetcher as a network error.
    answers: list[httpx.Response | Exception] = [
        httpx.Response(502),
        ConnectionResetError("dropped"),
        ConnectionResetError("dropped"),
    ]

    def fetch(request: httpx.Request) -> httpx.Response:
        if answers:
            answer = answers.pop(0)
            if isinstance(answer, Exception):
                raise answer
            return answer
        return httpx.Response(200, content=PNG)

    images = ImagesConfig(url_allowed_hosts=["img.test"])
    event = make_event(0, output=ImageSource(url="http://img.test/a.png"))
    harness, report = run(lambda: Harness(image_server(fetch=fetch), images=images), [event])
    assert ids(report.delivered) == {"evt-0"}
    assert harness.sample("vision_events_api_retries_total", {"endpoint": "fetch", "cause": "502"}) == 1
    assert (
        harness.sample(
            "vision_events_api_retries_total", {"endpoint": "fetch", "cause": "ServerDisconnectedError"}
        )
        == 1
    )
    assert harness.sample("vision_events_images_fetched_total", {"outcome": "error"}) == 2


def test_a_fetch_that_outlives_its_timeout_is_retried() -> None:
    calls: list[int] = []

    async def slow(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        if len(calls) == 1:
            await asyncio.sleep(5)
        return httpx.Response(200, content=PNG)

    images = ImagesConfig(url_allowed_hosts=["img.test"], url_timeout_seconds=0.05)
    event = make_event(0, output=ImageSource(url="http://img.test/a.png"))
    harness, report = run(lambda: Harness(image_server(fetch=slow), images=images), [event])
    assert ids(report.delivered) == {"evt-0"}
    assert (
        harness.sample("vision_events_api_retries_total", {"endpoint": "fetch", "cause": "TimeoutError"}) == 1
    )


def test_a_url_image_gets_its_own_attempts_then_is_unavailable_and_its_batch_mates_go() -> None:
    def fetch(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503)

    images = ImagesConfig(url_allowed_hosts=["img.test"], fetch_attempts=4)
    stalled = make_event(0, output=ImageSource(url="http://img.test/a.png"))
    harness, report = run(
        lambda: Harness(image_server(fetch=fetch), images=images), [stalled, make_event(1), make_event(2)]
    )
    (rejection,) = report.rejected
    assert rejection.event is stalled
    assert rejection.reason is Reason.IMAGE_UNAVAILABLE
    assert rejection.status == 503 and rejection.attempts == 4
    assert "http://img.test/a.png" in rejection.detail
    assert ids(report.delivered) == {"evt-1", "evt-2"}
    assert len([r for r in harness.requests if r.url.host == "img.test"]) == 4
    # Short pauses between the attempts, not the batch's backoff.
    assert len(harness.time.sleeps) == 3
    assert all(0 <= pause <= FETCH_BACKOFF_CAP_SECONDS for pause in harness.time.sleeps)
    assert harness.sample("vision_events_images_fetched_total", {"outcome": "unavailable"}) == 1


def test_the_image_deadline_bounds_all_attempts_and_their_pauses() -> None:
    def fetch(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, headers={"Retry-After": "2"})

    images = ImagesConfig(url_allowed_hosts=["img.test"], fetch_attempts=10, fetch_deadline_seconds=3)
    event = make_event(0, output=ImageSource(url="http://img.test/a.png"))
    harness, report = run(lambda: Harness(image_server(fetch=fetch), images=images), [event])
    (rejection,) = report.rejected
    assert rejection.reason is Reason.IMAGE_UNAVAILABLE
    # Attempt at 0 s, Retry-After 2 s, attempt at 2 s; a second pause would pass the 3 s deadline.
    assert rejection.attempts == 2
    assert harness.time.sleeps == [2.0]
    assert harness.time.now <= 3.0


def test_the_batch_give_up_time_shortens_the_image_bound() -> None:
    def fetch(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, headers={"Retry-After": "2"})

    images = ImagesConfig(url_allowed_hosts=["img.test"], fetch_attempts=10)
    event = make_event(0, output=ImageSource(url="http://img.test/a.png"))
    retry = RetryConfig(give_up_after_seconds=3)
    harness, report = run(lambda: Harness(image_server(fetch=fetch), images=images, retry=retry), [event])
    assert [r.reason for r in report.rejected] == [Reason.IMAGE_UNAVAILABLE]
    assert harness.time.now <= 3.0


def test_an_unavailable_image_is_left_out_when_the_route_says_deliver_without_image() -> None:
    def fetch(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404 if request.url.path == "/gone.png" else 200, content=PNG)

    images = ImagesConfig(url_allowed_hosts=["img.test"])
    alone = make_event(0, output=ImageSource(url="http://img.test/gone.png"))
    alone.annotations = {"objectDetections": [{"class": "person", "x": 1, "y": 1, "width": 2, "height": 2}]}
    alone.deliver_without_image = True
    with_input = make_event(
        1,
        output=ImageSource(url="http://img.test/gone.png"),
        input_=ImageSource(url="http://img.test/ok.png"),
    )
    with_input.deliver_without_image = True
    strict = make_event(2, output=ImageSource(url="http://img.test/gone.png"))
    harness, report = run(
        lambda: Harness(image_server(fetch=fetch), images=images), [alone, with_input, strict]
    )
    assert ids(report.delivered) == {"evt-0", "evt-1"}
    assert [(r.event.event_id, r.reason) for r in report.rejected] == [("evt-2", Reason.IMAGE_UNAVAILABLE)]
    sent = sent_images(harness)
    assert sent["evt-0"] == []
    assert [(entry.get("sourceId"), entry.get("inputSourceId")) for entry in sent["evt-1"]] == [
        ("src-1", "src-1")
    ]
    assert harness.sample("vision_events_annotations_dropped_total", {"reason": "image_unavailable"}) == 1


# ---------------------------------------------------------------- headers and secrets


def test_extra_headers_are_sent_and_an_explicit_authorization_wins() -> None:
    cloud = {
        "extra_headers": {"authorization": "Bearer gateway-token", "X-Roboflow-Inference-Version": "1.0"}
    }
    harness, report = run(lambda: Harness(image_server(), cloud=cloud), [make_event(0, output=inline(PNG))])
    assert ids(report.delivered) == {"evt-0"}
    assert len(harness.requests) == 2
    for request in harness.requests:
        assert request.headers.get_list("Authorization") == ["Bearer gateway-token"]
        assert request.headers["X-Roboflow-Inference-Version"] == "1.0"
    assert KEY not in str(harness.requests[0].headers)


def test_no_key_no_authorization_header() -> None:
    harness, _ = run(lambda: Harness(created, cloud={"api_key": None}), [make_event(0)])
    assert "Authorization" not in harness.requests[0].headers


def test_the_api_key_never_appears_in_errors_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        echoed = f"you sent {request.headers.get('Authorization')} from {request.url}"
        if len(calls) == 1:
            return httpx.Response(401, text=echoed)
        if len(calls) == 2:
            raise ConnectionResetError(f"failed with {request.headers.get('Authorization')}")
        if len(calls) == 3:
            return httpx.Response(503, json={"error": echoed})
        return httpx.Response(400, json={"detail": echoed})

    with caplog.at_level(logging.DEBUG):
        harness, report = run(lambda: Harness(handler), [make_event(0)])
    assert len(harness.requests) == 4
    (rejection,) = report.rejected
    assert rejection.reason is Reason.API_REJECTED
    assert "you sent" in rejection.detail
    assert KEY not in rejection.detail
    messages = [record.getMessage() for record in caplog.records]
    assert any("attempt" in m for m in messages), "the retries were logged"
    for record in caplog.records:
        assert KEY not in record.getMessage()
        assert KEY not in str(record.__dict__)


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://cam.example.com/a.jpg", True),
        ("http://a.b.example.com:8080/a.jpg", True),
        ("https://example.com/a.jpg", False),  # the wildcard covers subdomains only
        ("https://badexample.com/a.jpg", False),
        ("https://EXACT.test/a.jpg", True),
        ("https://exact.test.evil.test/a.jpg", False),
        ("https://exact.test@evil.test/a.jpg", False),  # user info is not the host
        ("ftp://exact.test/a.jpg", False),
        ("file:///etc/passwd", False),
        ("not a url", False),
    ],
)
def test_host_allow_list(url: str, allowed: bool) -> None:
    assert host_allowed(url, ["*.example.com", "exact.test"]) is allowed
    assert host_allowed(url, []) is False
