"""The oldest delivery in flight: what the stuck-API gauge and readiness reason read."""

from __future__ import annotations

import asyncio

import pytest

from consumer.sinks.inflight import InFlight
from tests.support.clock import FakeTime


def test_the_oldest_of_several_deliveries_is_measured_until_each_ends() -> None:
    time = FakeTime()
    in_flight = InFlight(time.clock)
    assert in_flight.oldest_age() == 0.0
    with in_flight.track():
        time.now = 10.0
        with in_flight.track():
            time.now = 25.0
            assert in_flight.oldest_age() == 25.0
        assert in_flight.oldest_age() == 25.0
    assert in_flight.oldest_age() == 0.0
    time.now = 30.0
    first = in_flight.track()
    first.__enter__()
    time.now = 31.0
    with in_flight.track():
        first.__exit__(None, None, None)
        time.now = 40.0
        assert in_flight.oldest_age() == 9.0, "the first one ended: the second is now the oldest"


def test_a_delivery_that_fails_is_no_longer_in_flight() -> None:
    time = FakeTime()
    in_flight = InFlight(time.clock)

    def cancelled_delivery() -> None:
        with in_flight.track():
            time.now = 5.0
            raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        cancelled_delivery()
    assert in_flight.oldest_age() == 0.0
