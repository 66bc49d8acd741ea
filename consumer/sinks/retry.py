"""The retry policy every sink shares (tenacity ``AsyncRetrying``).

- :class:`~consumer.errors.RetryableDeliveryError` (network, 408/425/429/5xx/529): capped exponential
  backoff with full jitter, ``initial * 2**(n-1)`` capped at ``max_backoff_seconds``; a
  ``Retry-After`` is honoured as a floor (itself capped at :data:`MAX_RETRY_AFTER_SECONDS`).
- :class:`~consumer.errors.AuthError` (401/403): retried every ``auth_backoff_seconds``, forever;
  the policy's ``auth_failing`` flag is set and stays set until the next successful request.
- :class:`~consumer.errors.RejectedError`: never retried, raised to the caller (which splits).
- With ``give_up_after_seconds`` set, a retryable failure after the caller's deadline raises
  :class:`DeliveryTimeoutError`; the caller turns the events into ``Reason.DELIVERY_TIMEOUT``
  rejections. Auth failures never give up: the events are not at fault.

The deadline is checked after each failed attempt, and an attempt running when it passes is cut
there; the backoff before the last attempt is clipped to the time left (a ``Retry-After`` still
wins).
Sleep, clock and random source are injectable so tests neither wait nor flake.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Final, TypeVar

from tenacity import AsyncRetrying, RetryCallState, RetryError, retry_if_exception_type

from consumer.config import RetryConfig
from consumer.errors import (
    AuthError,
    DeliveryError,
    DeliveryTimeoutError,
    RetryableDeliveryError,
    UnexpectedResponseError,
)
from consumer.metrics import Metrics

logger = logging.getLogger(__name__)

T = TypeVar("T")
Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]

MAX_RETRY_AFTER_SECONDS: Final = 300.0
_MAX_EXPONENT: Final = 62


def retry_cause(error: BaseException) -> str:
    """Return the ``cause`` label of the retries metric: status, "auth", or the network error's class."""
    if isinstance(error, AuthError):
        return "auth"
    if isinstance(error, UnexpectedResponseError):
        return str(error.reason)
    if isinstance(error, DeliveryError) and error.status is not None:
        return str(error.status)
    origin = error.__cause__ if error.__cause__ is not None else error
    return type(origin).__name__


async def _asyncio_sleep(seconds: float) -> None:
    await asyncio.sleep(seconds)


class RetryPolicy:
    """Retries one sink's requests; holds the sink's ``auth_failing`` flag."""

    def __init__(
        self,
        config: RetryConfig,
        metrics: Metrics,
        sink: str,
        *,
        sleep: Sleep | None = None,
        clock: Clock = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self._metrics = metrics
        self._sink = sink
        self._sleep: Sleep = sleep if sleep is not None else _asyncio_sleep
        self._clock = clock
        self._rng = rng if rng is not None else random.Random()  # noqa: S311 - jitter, not crypto
        self._auth_failing = False
        # Per endpoint: a good upload answer must not clear a batch endpoint still answering wrongly.
        self._unexpected_endpoints: set[str] = set()
        metrics.sink_auth_failing.labels(sink=sink).set(0)
        metrics.sink_unexpected_responses.labels(sink=sink).set(0)

    @property
    def auth_failing(self) -> bool:
        """True from a 401/403 until the next successful request."""
        return self._auth_failing

    @property
    def answers_unexpected(self) -> bool:
        """True from a 2xx that is not the contract's answer until that endpoint answers as it should."""
        return bool(self._unexpected_endpoints)

    def _set_answers_unexpected(self, endpoint: str, unexpected: bool) -> None:
        before = bool(self._unexpected_endpoints)
        if unexpected:
            self._unexpected_endpoints.add(endpoint)
        else:
            self._unexpected_endpoints.discard(endpoint)
        after = bool(self._unexpected_endpoints)
        if after != before:
            self._metrics.sink_unexpected_responses.labels(sink=self._sink).set(1 if after else 0)
            if not after:
                logger.info("%s sink: the API answers as its contract says again", self._sink)

    def now(self) -> float:
        """Return the policy's clock (monotonic seconds)."""
        return self._clock()

    def deadline(self) -> float | None:
        """Return the give-up deadline for a delivery starting now, or None to retry forever."""
        give_up = self.config.give_up_after_seconds
        return None if give_up is None else self._clock() + give_up

    def backoff(self, attempt: int) -> float:
        """Full-jitter backoff after the ``attempt``-th failure: uniform in [0, capped exponential]."""
        exponent = min(max(attempt, 1) - 1, _MAX_EXPONENT)
        ceiling = min(self.config.max_backoff_seconds, self.config.initial_backoff_seconds * 2.0**exponent)
        return self._rng.uniform(0.0, ceiling)

    async def pause(self, attempt: int) -> None:
        """Sleep one backoff step (used between re-sends that are not failures, e.g. missing acks)."""
        await self._sleep(self.backoff(attempt))

    async def sleep(self, seconds: float) -> None:
        """Sleep ``seconds`` with the policy's (injectable) sleep, for callers pacing their own attempts."""
        await self._sleep(seconds)

    def _set_auth_failing(self, failing: bool) -> None:
        if failing != self._auth_failing:
            self._auth_failing = failing
            self._metrics.sink_auth_failing.labels(sink=self._sink).set(1 if failing else 0)
            if failing:
                logger.error("%s sink: the API refuses the credentials; retrying slowly", self._sink)
            else:
                logger.info("%s sink: the API accepts the credentials again", self._sink)

    async def call(
        self,
        endpoint: str,
        fn: Callable[[], Awaitable[T]],
        *,
        deadline: float | None = None,
        tracks_auth: bool = True,
    ) -> T:
        """Run ``fn`` until it succeeds, retrying per the policy.

        Raises RejectedError (and any other non-retryable error) unchanged, and DeliveryTimeoutError
        once a retryable failure happens at or after ``deadline``. ``tracks_auth=False`` is for
        requests to other servers (image hosts): their success says nothing about our credentials.
        """

        def wait(state: RetryCallState) -> float:
            error = state.outcome.exception() if state.outcome is not None else None
            if isinstance(error, AuthError):
                return self.config.auth_backoff_seconds
            seconds = self.backoff(state.attempt_number)
            if deadline is not None:
                seconds = min(seconds, max(0.0, deadline - self._clock()))
            if isinstance(error, RetryableDeliveryError) and error.retry_after is not None:
                seconds = max(seconds, min(error.retry_after, MAX_RETRY_AFTER_SECONDS))
            return seconds

        def stop(state: RetryCallState) -> bool:
            if deadline is None or state.outcome is None:
                return False
            error = state.outcome.exception()
            return isinstance(error, RetryableDeliveryError) and self._clock() >= deadline

        def before_sleep(state: RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome is not None else None
            if error is None:  # pragma: no cover - tenacity sleeps only after a failure
                return
            cause = retry_cause(error)
            self._metrics.retries.labels(endpoint=endpoint, cause=cause).inc()
            seconds = state.next_action.sleep if state.next_action is not None else 0.0
            logger.warning(
                "%s sink: %s request failed (%s), attempt %d; retrying in %.2fs: %s",
                self._sink,
                endpoint,
                cause,
                state.attempt_number,
                seconds,
                error,
                extra={
                    "sink": self._sink,
                    "endpoint": endpoint,
                    "status": getattr(error, "status", None),
                    "attempt": state.attempt_number,
                },
            )

        async def bounded() -> T:
            # The give-up deadline holds however the time is spent: an attempt still running when
            # it passes is cut there (not only checked after the attempt fails).
            remaining = None if deadline is None else deadline - self._clock()
            if remaining is None or remaining <= 0:
                return await fn()
            try:
                async with asyncio.timeout(remaining):
                    return await fn()
            except TimeoutError as exc:
                raise RetryableDeliveryError(
                    f"{endpoint}: the give-up deadline passed during the attempt", endpoint=endpoint
                ) from exc

        async def attempt() -> T:
            try:
                result = await bounded()
            except AuthError:
                self._set_auth_failing(True)
                raise
            except UnexpectedResponseError:
                self._set_answers_unexpected(endpoint, True)
                raise
            if tracks_auth:
                self._set_auth_failing(False)
                self._set_answers_unexpected(endpoint, False)
            return result

        retrying = AsyncRetrying(
            sleep=self._sleep,
            retry=retry_if_exception_type((RetryableDeliveryError, AuthError)),
            stop=stop,
            wait=wait,
            before_sleep=before_sleep,
        )
        try:
            async for attempt_manager in retrying:
                with attempt_manager:
                    return await attempt()
        except RetryError as exc:
            last = exc.last_attempt.exception()
            status = last.status if isinstance(last, DeliveryError) else None
            attempts = exc.last_attempt.attempt_number
            raise DeliveryTimeoutError(
                f"{endpoint}: still failing after {attempts} attempts, gave up: {last}",
                status=status,
                endpoint=endpoint,
                attempts=attempts,
            ) from last
        raise AssertionError("unreachable: tenacity either returns or raises")  # pragma: no cover
