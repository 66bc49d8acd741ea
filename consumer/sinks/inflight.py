"""How long a sink's oldest delivery in progress has been waiting for the API.

A delivery is one ``deliver`` call: one batch, from its first request to its final fate, across
retries, backoffs and request timeouts. The age of the oldest one is what tells an operator the API
is stuck: request latencies are only recorded once a request ends (a hanging one shows nowhere),
and a single request's age is cut by the request timeout and starts again on each retry, while the
batch keeps waiting. See ``Metrics.sink_oldest_batch_age``.

The asyncio loop starts and ends deliveries; the ops server's thread reads the age on a scrape or
a probe, hence the lock (held for a dict insert, delete or first-item read: nothing to contend).
"""

from __future__ import annotations

import functools
import itertools
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

from consumer.sinks.retry import Clock


class InFlight:
    """The start times of the deliveries in progress; :meth:`oldest_age` of the oldest one."""

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self._ids = itertools.count()
        # Insertion order is start order (the clock is monotonic): the first entry is the oldest.
        self._starts: dict[int, float] = {}
        self._lock = threading.Lock()

    @contextmanager
    def track(self) -> Iterator[None]:
        """Count the enclosed delivery as in flight until it ends, however it ends."""
        token = next(self._ids)
        with self._lock:
            self._starts[token] = self._clock()
        try:
            yield
        finally:
            with self._lock:
                del self._starts[token]

    def oldest_age(self) -> float:
        """Seconds since the oldest delivery in progress started; 0.0 when none is."""
        with self._lock:
            oldest = next(iter(self._starts.values()), None)
        return 0.0 if oldest is None else max(0.0, self._clock() - oldest)


class Tracked(Protocol):
    """A sink whose deliveries :func:`tracks_in_flight` can count."""

    in_flight: InFlight


S = TypeVar("S", bound=Tracked)
P = ParamSpec("P")
R = TypeVar("R")


def tracks_in_flight(
    deliver: Callable[Concatenate[S, P], Coroutine[Any, Any, R]],
) -> Callable[Concatenate[S, P], Coroutine[Any, Any, R]]:
    """Decorate a sink's ``deliver`` so each call counts in ``self.in_flight`` while it runs."""

    @functools.wraps(deliver)
    async def tracked(self: S, /, *args: P.args, **kwargs: P.kwargs) -> R:
        with self.in_flight.track():
            return await deliver(self, *args, **kwargs)

    return tracked
