"""What the HTTP sinks share: owning (or borrowing) the client, and auth state from the retry policy."""

from __future__ import annotations

import httpx

from consumer.metrics import Metrics
from consumer.sinks.deadline import DeadlineClient
from consumer.sinks.inflight import InFlight
from consumer.sinks.retry import RetryPolicy
from consumer.sinks.transport import sink_transport


class HttpSink:
    """Base of the cloud and on-device sinks.

    A sink given a client (tests inject a mock transport) borrows it; otherwise it creates one,
    never following redirects (a redirect could carry the API key to another host), and closes it.
    The client it creates sends over the lean transport of ``transport.py`` (a fraction of the CPU
    per request), or over httpx's default transport when the environment configures a proxy;
    either way the request timeout bounds the whole request (see ``deadline.py``).

    ``in_flight`` counts the deliveries in progress (subclasses decorate ``deliver`` with
    ``tracks_in_flight``); given ``metrics``, the age of the oldest is exported per sink (read at
    scrape time) under the subclass's ``name``.
    """

    name: str
    policy: RetryPolicy

    def __init__(
        self, client: httpx.AsyncClient | None, timeout_seconds: float, metrics: Metrics | None = None
    ) -> None:
        self.in_flight = InFlight()
        if metrics is not None:
            metrics.sink_oldest_batch_age.labels(sink=self.name).set_function(self.in_flight.oldest_age)
        self._owns_client = client is None
        self._client = (
            client
            if client is not None
            else DeadlineClient(timeout=timeout_seconds, follow_redirects=False, transport=sink_transport())
        )

    @property
    def auth_failing(self) -> bool:
        """True while the destination refuses the credentials (401/403)."""
        return self.policy.auth_failing

    @property
    def answers_unexpected(self) -> bool:
        """True while the destination answers success statuses without the contract's answer."""
        return self.policy.answers_unexpected

    async def aclose(self) -> None:
        """Close the HTTP client if this sink created it."""
        if self._owns_client:
            await self._client.aclose()
