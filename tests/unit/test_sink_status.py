"""The HTTP outcome table and its translation into consumer.errors."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from email.utils import formatdate
from typing import Any

import aiohttp
import httpx
import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from consumer.errors import (
    AnswerTooLargeError,
    AuthError,
    Reason,
    RejectedError,
    RetryableDeliveryError,
    UnexpectedResponseError,
)
from consumer.metrics import Metrics
from consumer.sinks.status import (
    ANSWER_MAX_BYTES,
    BODY_HEAD_CHARS,
    DETAIL_MAX_CHARS,
    STATUS_TABLE,
    Answer,
    LogThrottle,
    Outcome,
    Target,
    classify,
    error_for_exception,
    error_for_response,
    read_batch_answer,
    response_detail,
    retry_after_seconds,
    send,
    unexpected_response,
)
from tests.support.http_stub import StubServer

KEY = "rf_live_SECRET_key_0123456789"


def requests_seen(metrics: Metrics, endpoint: str, status: str) -> float | None:
    labels = {"endpoint": endpoint, "status": status}
    return metrics.registry.get_sample_value("vision_events_api_request_duration_seconds_count", labels)


def test_table_rows_are_sorted_contiguous_and_cover_100_to_599_exactly() -> None:
    expected_first = 100
    for rule in STATUS_TABLE:
        assert rule.first == expected_first, f"gap or overlap before {rule.first}"
        assert rule.last >= rule.first
        assert rule.why
        expected_first = rule.last + 1
    assert expected_first == 600


def test_every_status_from_100_to_599_has_exactly_one_row_per_target() -> None:
    for status in range(100, 600):
        rows = [rule for rule in STATUS_TABLE if rule.first <= status <= rule.last]
        assert len(rows) == 1, status
        for target in Target:
            assert classify(status, target) is rows[0].outcome(target)


def test_every_2xx_is_a_success_status_whose_body_the_sink_then_checks() -> None:
    for target in (Target.CLOUD, Target.LOCAL):
        successes = {s for s in range(100, 600) if classify(s, target) is Outcome.SUCCESS}
        assert successes == set(range(200, 300))
        assert classify(100, target) is Outcome.REJECTED


@pytest.mark.parametrize("status", [408, 425, 429, 500, 502, 503, 504, 529, 599])
def test_retryable_statuses(status: int) -> None:
    for target in Target:
        assert classify(status, target) is Outcome.RETRYABLE


@pytest.mark.parametrize("status", [401, 403])
def test_auth_statuses_are_auth_for_the_apis_but_a_failed_fetch_for_image_hosts(status: int) -> None:
    assert classify(status, Target.CLOUD) is Outcome.AUTH
    assert classify(status, Target.LOCAL) is Outcome.AUTH
    assert classify(status, Target.IMAGE_HOST) is Outcome.REJECTED


@pytest.mark.parametrize("status", [301, 302, 307, 400, 402, 404, 405, 409, 413, 415, 422, 451, 499])
def test_rejected_statuses(status: int) -> None:
    for target in Target:
        assert classify(status, target) is Outcome.REJECTED


@pytest.mark.parametrize("status", [0, 99, 600, 999])
def test_codes_outside_http_are_rejected(status: int) -> None:
    assert classify(status, Target.CLOUD) is Outcome.REJECTED


def test_retry_after_as_seconds() -> None:
    assert retry_after_seconds("120") == 120.0
    assert retry_after_seconds(" 1.5 ") == 1.5
    assert retry_after_seconds("0") == 0.0


@pytest.mark.parametrize("value", [None, "", "soon", "-3", "inf", "nan", "Mon, 99 Foo 2026"])
def test_retry_after_unreadable_is_none(value: str | None) -> None:
    assert retry_after_seconds(value) is None


def test_retry_after_as_http_date() -> None:
    now = 1_800_000_000.0
    assert retry_after_seconds(formatdate(now + 30, usegmt=True), now=now) == pytest.approx(30.0)
    assert retry_after_seconds(formatdate(now - 30, usegmt=True), now=now) == 0.0


def _response(
    status: int, *, json: object = None, text: str | None = None, headers: dict[str, str] | None = None
) -> Answer:
    # Built the way httpx builds a body from json/text, then read into the sinks' Answer.
    built = (
        httpx.Response(status, json=json, headers=headers)
        if json is not None
        else httpx.Response(status, text=text or "", headers=headers)
    )
    return Answer(status, CIMultiDictProxy(CIMultiDict(built.headers.multi_items())), built.content)


def test_success_gives_no_error() -> None:
    assert error_for_response(_response(201), endpoint="batch", target=Target.LOCAL) is None
    assert error_for_response(_response(200), endpoint="batch", target=Target.CLOUD) is None


def test_429_becomes_retryable_with_retry_after() -> None:
    error = error_for_response(
        _response(429, json={"error": "slow down"}, headers={"Retry-After": "12"}),
        endpoint="batch",
        target=Target.CLOUD,
    )
    assert isinstance(error, RetryableDeliveryError)
    assert error.retry_after == 12.0
    assert error.status == 429
    assert error.endpoint == "batch"
    assert "slow down" in str(error)


def test_401_becomes_auth_error_without_the_request_headers() -> None:
    error = error_for_response(
        _response(401, json={"error": "bad key"}), endpoint="batch", target=Target.CLOUD
    )
    assert isinstance(error, AuthError)
    assert error.status == 401
    assert KEY not in str(error)
    assert "Bearer" not in str(error)


def test_400_becomes_rejected_with_the_bodys_error() -> None:
    error = error_for_response(
        _response(400, json={"error": "eventType invalid"}), endpoint="batch", target=Target.CLOUD
    )
    assert isinstance(error, RejectedError)
    assert error.detail == "eventType invalid"
    assert error.status == 400


def test_a_batch_answer_must_list_only_sent_ids_once() -> None:
    sent = ["a", "b"]
    assert read_batch_answer(_response(201, json={"eventIds": ["a", "b"]}), sent) == (frozenset(sent), None)
    assert read_batch_answer(_response(201, json={"eventIds": ["a"]}), sent) == (frozenset({"a"}), None)
    for bad in ({"ok": True}, {"eventIds": ["a", "a"]}, {"eventIds": ["a", "z"]}, {"eventIds": [1]}, [1]):
        assert read_batch_answer(_response(200, json=bad), sent).problem is not None
    assert read_batch_answer(_response(200, text="<html>"), sent).problem == "not a JSON object"


def test_unexpected_response_carries_the_status_and_a_redacted_head_of_the_body() -> None:
    metrics = Metrics()
    page = f"<html>key {KEY} " + "x" * 5000
    error = unexpected_response(
        _response(200, text=page),
        "why",
        endpoint="batch",
        target=Target.CLOUD,
        metrics=metrics,
        secrets=[KEY],
    )
    assert isinstance(error, UnexpectedResponseError)
    assert error.reason is Reason.UNEXPECTED_RESPONSE
    assert error.status == 200
    assert KEY not in str(error)
    assert len(error.body_head) <= BODY_HEAD_CHARS
    assert error.body_head.startswith("<html>key *")
    labels = {"sink": "cloud", "endpoint": "batch"}
    assert metrics.registry.get_sample_value("vision_events_unexpected_responses_total", labels) == 1


def test_detail_prefers_detail_then_error_then_text() -> None:
    both = _response(529, json={"detail": "Device storage full.", "error": "capacity_blocked"})
    assert response_detail(both) == "Device storage full."
    assert response_detail(_response(400, json={"error": "nope"})) == "nope"
    assert response_detail(_response(400, text="plain failure\n")) == "plain failure"
    listed = response_detail(_response(422, json={"detail": [{"loc": ["body", "x"], "msg": "bad"}]}))
    assert '"msg":"bad"' in listed


def test_detail_is_truncated() -> None:
    detail = response_detail(_response(400, text="x" * 50_000))
    assert len(detail) <= DETAIL_MAX_CHARS
    assert detail.endswith("…")


def test_detail_scrubs_secrets_echoed_by_the_server() -> None:
    echoed = _response(400, json={"error": f"header was Bearer {KEY}"})
    error = error_for_response(echoed, endpoint="batch", target=Target.CLOUD, secrets=[KEY])
    assert isinstance(error, RejectedError)
    assert KEY not in error.detail
    assert KEY not in str(error)
    assert "**********" in error.detail


@pytest.mark.parametrize(
    "exc",
    [
        aiohttp.ClientConnectionError("refused"),
        aiohttp.ServerDisconnectedError(),
        aiohttp.ClientPayloadError("peer closed connection"),
        aiohttp.ClientOSError(104, "reset"),
        TimeoutError(),
    ],
)
def test_network_errors_are_retryable(exc: aiohttp.ClientError | TimeoutError) -> None:
    error = error_for_exception(exc, endpoint="upload")
    assert isinstance(error, RetryableDeliveryError)
    assert error.status is None
    assert type(exc).__name__ in str(error)


def _serve(handler: Callable[[httpx.Request], httpx.Response], body: Callable[[StubServer], Any]) -> None:
    async def scenario() -> None:
        stub = StubServer(handler)
        try:
            await stub.start()
            async with aiohttp.ClientSession() as session:
                await body(stub)(session)
        finally:
            await stub.close()

    asyncio.run(scenario())


def test_send_records_latency_by_status_and_raises_the_typed_error() -> None:
    metrics = Metrics()
    answers = iter([httpx.Response(503), httpx.Response(201, json={})])

    def handler(request: httpx.Request) -> httpx.Response:
        return next(answers)

    def body(stub: StubServer) -> Callable[[aiohttp.ClientSession], Awaitable[None]]:
        async def run(session: aiohttp.ClientSession) -> None:
            url = f"http://127.0.0.1:{stub.port}/x"
            with pytest.raises(RetryableDeliveryError):
                await send(
                    session, "POST", url, timeout=5, endpoint="batch", target=Target.CLOUD, metrics=metrics
                )
            response = await send(
                session, "POST", url, timeout=5, endpoint="batch", target=Target.CLOUD, metrics=metrics
            )
            assert response.status == 201

        return run

    _serve(handler, body)
    assert requests_seen(metrics, "batch", "503") == 1
    assert requests_seen(metrics, "batch", "201") == 1


def test_send_records_network_errors_as_status_error() -> None:
    metrics = Metrics()

    def handler(request: httpx.Request) -> httpx.Response:
        raise ConnectionResetError("dropped")

    def body(stub: StubServer) -> Callable[[aiohttp.ClientSession], Awaitable[None]]:
        async def run(session: aiohttp.ClientSession) -> None:
            with pytest.raises(RetryableDeliveryError) as caught:
                await send(
                    session,
                    "POST",
                    f"http://127.0.0.1:{stub.port}/x",
                    timeout=5,
                    endpoint="upload",
                    target=Target.CLOUD,
                    metrics=metrics,
                )
            assert isinstance(caught.value.__cause__, aiohttp.ServerDisconnectedError)

        return run

    _serve(handler, body)
    assert requests_seen(metrics, "upload", "error") == 1


@pytest.mark.parametrize("declared", [True, False])
def test_an_answer_over_the_cap_is_a_typed_error_naming_the_cap(declared: bool) -> None:
    metrics = Metrics()
    huge = b"x" * (ANSWER_MAX_BYTES + 1)

    def handler(request: httpx.Request) -> httpx.Response:
        if declared:
            return httpx.Response(201, content=huge)
        return httpx.Response(201, content=iter([huge[:1000], huge[1000:]]))  # chunked, no length

    def body(stub: StubServer) -> Callable[[aiohttp.ClientSession], Awaitable[None]]:
        async def run(session: aiohttp.ClientSession) -> None:
            with pytest.raises(AnswerTooLargeError) as caught:
                await send(
                    session,
                    "POST",
                    f"http://127.0.0.1:{stub.port}/x",
                    timeout=5,
                    endpoint="batch",
                    target=Target.CLOUD,
                    metrics=metrics,
                )
            assert str(ANSWER_MAX_BYTES) in str(caught.value)
            assert caught.value.limit == ANSWER_MAX_BYTES

        return run

    _serve(handler, body)


def test_the_log_throttle_lets_one_line_per_key_through_each_interval_with_the_count() -> None:
    now = [100.0]
    throttle = LogThrottle(30.0, clock=lambda: now[0])
    assert throttle.admit(("cloud", "batch")) == 1
    assert throttle.admit(("cloud", "batch")) is None
    assert throttle.admit(("cloud", "upload")) == 1, "each endpoint has its own budget"
    now[0] += 29.9
    assert throttle.admit(("cloud", "batch")) is None
    now[0] += 0.1
    assert throttle.admit(("cloud", "batch")) == 3, "the line stands for the two held back and itself"
    assert throttle.admit(("cloud", "batch")) is None


def test_an_unexpected_answer_is_logged_throttled_with_status_and_redacted_body(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr("consumer.sinks.status.UNEXPECTED_LOG", LogThrottle(30.0, clock=lambda: 0.0))
    metrics = Metrics()
    page = _response(200, text=f"<html><p>Portal login, token {KEY}</p></html>")
    with caplog.at_level(logging.WARNING, logger="consumer.sinks.status"):
        for _ in range(5):
            unexpected_response(
                page,
                "not a JSON object",
                endpoint="batch",
                target=Target.CLOUD,
                metrics=metrics,
                secrets=[KEY],
            )
    (record,) = [r for r in caplog.records if r.name == "consumer.sinks.status"]
    text = record.getMessage()
    assert "HTTP 200" in text
    assert "Portal login" in text
    assert KEY not in text
    assert record.__dict__["count"] == 1
    labels = {"sink": "cloud", "endpoint": "batch"}
    assert metrics.registry.get_sample_value("vision_events_unexpected_responses_total", labels) == 5
