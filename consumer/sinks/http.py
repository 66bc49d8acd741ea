"""What the HTTP sinks share: their session (``session.py``), and auth state from the retry policy."""

from __future__ import annotations

import aiohttp

from consumer.metrics import Metrics
from consumer.sinks.inflight import InFlight
from consumer.sinks.retry import RetryPolicy
from consumer.sinks.session import SessionFactory, SessionHolder


class HttpSink:
    """Base of the cloud and on-device sinks.

    The sink creates its ``aiohttp.ClientSession`` on its first request (inside the running loop)
    with ``session_factory`` (default :func:`consumer.sinks.session.new_session`; tests pass one
    whose connector reaches a loopback server) and closes it in :meth:`aclose`. Every request
    bounds the whole exchange by the sink's request timeout and never follows redirects (a
    redirect could carry the API key to another host): see ``status.send``.

    ``in_flight`` counts the deliveries in progress (subclasses decorate ``deliver`` with
    ``tracks_in_flight``); given ``metrics``, the age of the oldest is exported per sink (read at
    scrape time) under the subclass's ``name``.
    """

    name: str
    policy: RetryPolicy

    def __init__(self, session_factory: SessionFactory | None, metrics: Metrics | None = None) -> None:
        self.in_flight = InFlight()
        if metrics is not None:
            metrics.sink_oldest_batch_age.labels(sink=self.name).set_function(self.in_flight.oldest_age)
        self._sessions = SessionHolder(session_factory)

    @property
    def session(self) -> aiohttp.ClientSession:
        """The sink's session, created on first use (call it inside the running loop)."""
        return self._sessions.get()

    @property
    def auth_failing(self) -> bool:
        """True while the destination refuses the credentials (401/403)."""
        return self.policy.auth_failing

    @property
    def answers_unexpected(self) -> bool:
        """True while the destination answers success statuses without the contract's answer."""
        return self.policy.answers_unexpected

    async def aclose(self) -> None:
        """Close the sink's session and its connections."""
        await self._sessions.aclose()
