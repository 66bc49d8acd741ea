"""The shared retry policy: backoff, Retry-After, auth, give-up; no real sleeping."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable

import httpx
import pytest

from consumer.config import RetryConfig
from consumer.errors import AuthError, DeliveryTimeoutError, RejectedError, RetryableDeliveryError
from consumer.metrics import Metrics
from consumer.sinks.retry import MAX_RETRY_AFTER_SECONDS, RetryPolicy, retry_cause
from tests.support.clock import FakeTime


class MaxRandom(random.Random):
    """Full jitter always at its ceiling, so backoff steps are deterministic."""

    def uniform(self, a: float, b: float) -> float:
        return b


def make_policy(
    config: RetryConfig | None = None, rng: random.Random | None = None
) -> tuple[RetryPolicy, Metrics, FakeTime]:
    metrics = Metrics()
    fake = FakeTime()
    policy = RetryPolicy(
        config or RetryConfig(), metrics, "cloud", sleep=fake.sleep, clock=fake.clock, rng=rng or MaxRandom()
    )
    return policy, metrics, fake


def failing(errors: list[Exception], result: str = "ok") -> tuple[Callable[[], Awaitable[str]], list[int]]:
    """An operation raising ``errors`` in turn, then returning ``result``; counts its calls."""
    calls: list[int] = []

    async def operation() -> str:
        calls.append(1)
        if len(calls) <= len(errors):
            raise errors[len(calls) - 1]
        return result

    return operation, calls


def retries(metrics: Metrics, cause: str, endpoint: str = "batch") -> float | None:
    return metrics.registry.get_sample_value(
        "vision_events_api_retries_total", {"endpoint": endpoint, "cause": cause}
    )


def retryable(status: int | None = 503, retry_after: float | None = None) -> RetryableDeliveryError:
    return RetryableDeliveryError(f"HTTP {status}", status=status, endpoint="batch", retry_after=retry_after)


def test_retryable_errors_are_retried_with_capped_exponential_backoff() -> None:
    policy, metrics, fake = make_policy(RetryConfig(initial_backoff_seconds=0.5, max_backoff_seconds=3.0))
    operation, calls = failing([retryable() for _ in range(5)])
    assert asyncio.run(policy.call("batch", operation)) == "ok"
    assert len(calls) == 6
    assert fake.sleeps == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert retries(metrics, "503") == 5


def test_full_jitter_stays_within_zero_and_the_ceiling() -> None:
    policy, _, _ = make_policy(
        RetryConfig(initial_backoff_seconds=1.0, max_backoff_seconds=8.0), random.Random(7)
    )
    for attempt in range(1, 40):
        ceiling = min(8.0, 2.0 ** (attempt - 1))
        values = [policy.backoff(attempt) for _ in range(50)]
        assert all(0.0 <= v <= ceiling for v in values)
    assert len({policy.backoff(3) for _ in range(20)}) > 1, "no jitter"
    assert policy.backoff(10_000) <= 8.0


def test_retry_after_is_a_floor() -> None:
    policy, _, fake = make_policy(RetryConfig(initial_backoff_seconds=0.5))
    operation, _ = failing([retryable(429, retry_after=7.0)])
    asyncio.run(policy.call("batch", operation))
    assert fake.sleeps == [7.0]


def test_retry_after_is_capped() -> None:
    policy, _, fake = make_policy()
    operation, _ = failing([retryable(429, retry_after=86_400.0)])
    asyncio.run(policy.call("batch", operation))
    assert fake.sleeps == [MAX_RETRY_AFTER_SECONDS]


def test_rejected_is_not_retried() -> None:
    policy, metrics, fake = make_policy()
    operation, calls = failing([RejectedError("HTTP 400", status=400, detail="bad")])
    with pytest.raises(RejectedError):
        asyncio.run(policy.call("batch", operation))
    assert len(calls) == 1
    assert fake.sleeps == []
    assert retries(metrics, "400") is None


def test_auth_errors_retry_slowly_and_flip_the_flag_until_a_success() -> None:
    policy, metrics, fake = make_policy(RetryConfig(auth_backoff_seconds=45.0))
    seen: list[bool] = []
    errors = [AuthError("HTTP 401", status=401), AuthError("HTTP 403", status=403)]

    async def operation() -> str:
        seen.append(policy.auth_failing)
        if len(seen) <= len(errors):
            raise errors[len(seen) - 1]
        return "ok"

    gauge = "vision_events_sink_auth_failing"
    assert metrics.registry.get_sample_value(gauge, {"sink": "cloud"}) == 0
    assert asyncio.run(policy.call("batch", operation)) == "ok"
    assert seen == [False, True, True]
    assert fake.sleeps == [45.0, 45.0]
    assert policy.auth_failing is False
    assert metrics.registry.get_sample_value(gauge, {"sink": "cloud"}) == 0
    assert retries(metrics, "auth") == 2


def test_auth_flag_and_gauge_are_set_while_waiting() -> None:
    metrics = Metrics()
    flags: list[tuple[bool, float | None]] = []

    async def sleep_and_look(seconds: float) -> None:
        gauge = metrics.registry.get_sample_value("vision_events_sink_auth_failing", {"sink": "local"})
        flags.append((policy.auth_failing, gauge))

    policy = RetryPolicy(RetryConfig(), metrics, "local", sleep=sleep_and_look)
    operation, _ = failing([AuthError("HTTP 401", status=401)])
    asyncio.run(policy.call("events", operation))
    assert flags == [(True, 1.0)]
    assert policy.auth_failing is False


async def _cancel(seconds: float) -> None:
    raise asyncio.CancelledError


def test_only_a_success_of_our_api_clears_the_auth_flag() -> None:
    policy = RetryPolicy(RetryConfig(), Metrics(), "cloud", sleep=_cancel)

    async def refused() -> str:
        raise RejectedError("HTTP 400", status=400)

    async def scenario() -> None:
        operation, _ = failing([AuthError("HTTP 401", status=401)])
        with pytest.raises(asyncio.CancelledError):
            await policy.call("batch", operation)  # cancelled while waiting to retry
        assert policy.auth_failing
        fetched, _ = failing([])
        await policy.call("fetch", fetched, tracks_auth=False)
        assert policy.auth_failing, "an image host's success says nothing about our key"
        with pytest.raises(RejectedError):
            await policy.call("batch", refused)
        assert policy.auth_failing
        succeeded, _ = failing([])
        await policy.call("batch", succeeded)
        assert not policy.auth_failing

    asyncio.run(scenario())


def test_give_up_after_deadline_raises_delivery_timeout() -> None:
    policy, _, fake = make_policy(
        RetryConfig(initial_backoff_seconds=1.0, max_backoff_seconds=4.0, give_up_after_seconds=10)
    )
    operation, calls = failing([retryable(503) for _ in range(100)])

    async def scenario() -> None:
        with pytest.raises(DeliveryTimeoutError) as caught:
            await policy.call("batch", operation, deadline=policy.deadline())
        assert caught.value.status == 503
        assert caught.value.attempts == len(calls)
        assert isinstance(caught.value.__cause__, RetryableDeliveryError)

    asyncio.run(scenario())
    assert 10.0 <= fake.now <= 10.0 + 1e-9, "the last backoff is clipped to the deadline"
    assert sum(fake.sleeps) == pytest.approx(10.0)


def test_no_deadline_retries_forever() -> None:
    policy, _, fake = make_policy(RetryConfig(max_backoff_seconds=1.0))
    operation, calls = failing([retryable(503) for _ in range(200)])
    assert asyncio.run(policy.call("batch", operation, deadline=policy.deadline())) == "ok"
    assert len(calls) == 201
    assert fake.now > 150


def test_auth_errors_never_give_up() -> None:
    policy, _, fake = make_policy(RetryConfig(auth_backoff_seconds=60.0, give_up_after_seconds=5))
    operation, calls = failing([AuthError("HTTP 401", status=401) for _ in range(10)])
    assert asyncio.run(policy.call("batch", operation, deadline=policy.deadline())) == "ok"
    assert len(calls) == 11
    assert fake.now == 600.0


def test_network_error_cause_is_the_exception_class() -> None:
    policy, metrics, _ = make_policy()
    errors: list[Exception] = []
    for exc in (httpx.ConnectError("refused"), httpx.ReadTimeout("slow")):
        error = RetryableDeliveryError(f"batch: {type(exc).__name__}", endpoint="batch")
        error.__cause__ = exc
        errors.append(error)
    operation, _ = failing(errors)
    asyncio.run(policy.call("batch", operation))
    assert retries(metrics, "ConnectError") == 1
    assert retries(metrics, "ReadTimeout") == 1


def test_retry_cause_labels() -> None:
    assert retry_cause(AuthError("x", status=403)) == "auth"
    assert retry_cause(retryable(529)) == "529"
    assert retry_cause(retryable(None)) == "RetryableDeliveryError"


def test_each_retry_is_logged_at_warning(caplog: pytest.LogCaptureFixture) -> None:
    policy, _, _ = make_policy()
    operation, _ = failing([retryable(502), retryable(503)])
    with caplog.at_level(logging.WARNING, logger="consumer.sinks.retry"):
        asyncio.run(policy.call("upload", operation))
    records = [r for r in caplog.records if r.name == "consumer.sinks.retry"]
    assert [r.levelno for r in records] == [logging.WARNING, logging.WARNING]
    assert [getattr(r, "attempt", None) for r in records] == [1, 2]
    assert [getattr(r, "status", None) for r in records] == [502, 503]
    assert all(getattr(r, "endpoint", None) == "upload" for r in records)
    assert "attempt 2" in records[1].getMessage()


def test_cancellation_propagates() -> None:
    policy, _, _ = make_policy()

    async def cancelled() -> str:
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(policy.call("batch", cancelled))
