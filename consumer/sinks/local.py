"""The on-device Event Store sink: one ``POST {url}/v2/events`` per event (contract §1.2, §2.2, §5.2).

- Only 201 with the event's ``id`` [§5.1] is success; any other 2xx (a 200, a 204, an HTML page,
  a body without ``id``) is not the Event Store's answer: ``UnexpectedResponseError``, retried
  like a 5xx and never acknowledged (the blocks treat it as an error too [§5.2]); 529 means
  the device is at capacity and is retried with backoff like any 5xx; the rest per ``status.py``.
- A refused event becomes ``Rejection(Reason.API_REJECTED, detail=<the body's detail>)``.
- Images go inline as base64 (``images.LocalImages``); an image given only as a cloud
  ``source_id`` cannot be sent and rejects its event with ``Reason.INVALID_IMAGE``.
- Headers: ``Content-Type: application/json`` and ``X-API-Key`` only when a key is configured.
- At most ``config.concurrency`` events are posted at once.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Sequence

import orjson

from consumer import wire
from consumer.config import ImagesConfig, LocalSinkConfig, RetryConfig
from consumer.errors import DeliveryTimeoutError, Reason, RejectedError
from consumer.metrics import Metrics
from consumer.model import VisionEvent
from consumer.redaction import expand_secrets
from consumer.sinks.base import DeliveryReport, Rejection
from consumer.sinks.http import HttpSink
from consumer.sinks.images import LocalImages, ResolvedEvent
from consumer.sinks.inflight import tracks_in_flight
from consumer.sinks.retry import Clock, RetryPolicy, Sleep
from consumer.sinks.session import SessionFactory
from consumer.sinks.status import Answer, Target, created_id, send, unexpected_response


class LocalSink(HttpSink):
    """Delivers events to an on-device Event Store, one request per event."""

    name: str = "local"

    def __init__(
        self,
        config: LocalSinkConfig,
        retry: RetryConfig,
        images: ImagesConfig,
        metrics: Metrics,
        session_factory: SessionFactory | None = None,
        *,
        sleep: Sleep | None = None,
        clock: Clock = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self._config = config
        self._metrics = metrics
        super().__init__(session_factory, metrics=metrics)
        self._url = f"{config.url.rstrip('/')}/v2/events"
        self._headers = {"Content-Type": "application/json"}
        api_key = config.api_key.get_secret_value() if config.api_key is not None else ""
        if api_key:
            self._headers["X-API-Key"] = api_key
        self._secrets = expand_secrets([api_key])
        self._semaphore = asyncio.Semaphore(config.concurrency)
        self.policy = RetryPolicy(retry, metrics, self.name, sleep=sleep, clock=clock, rng=rng)
        self.images = LocalImages(
            images, self._sessions.get, self.policy, metrics, concurrency=config.concurrency
        )

    @tracks_in_flight
    async def deliver(self, events: Sequence[VisionEvent]) -> DeliveryReport:
        """Post each event (concurrently, bounded) and report each one's fate."""
        report = DeliveryReport()
        if not events:
            return report
        deadline = self.policy.deadline()
        # Images first, all of them concurrently and each under its own bound (images.fetch_*), so
        # an image host that hangs holds this batch for that bound at most, then its route decides.
        resolved, rejected = await self.images.resolve(events, deadline)
        report.rejected.extend(rejected)
        if resolved:
            async with asyncio.TaskGroup() as group:
                for item in resolved:
                    group.create_task(self._deliver_one(item, deadline, report))
        return report

    async def _post(self, body: bytes) -> Answer:
        response = await send(
            self.session,
            "POST",
            self._url,
            data=body,
            headers=self._headers,
            timeout=self._config.timeout_seconds,
            endpoint="events",
            target=Target.LOCAL,
            metrics=self._metrics,
            secrets=self._secrets,
        )
        # Checked inside the retried call, so an answer that is not the Event Store's is retried.
        if response.status != 201 or created_id(response, "id") is None:
            why = "not 201" if response.status != 201 else "no event id"
            raise unexpected_response(
                response,
                why,
                endpoint="events",
                target=Target.LOCAL,
                metrics=self._metrics,
                secrets=self._secrets,
            )
        return response

    async def _deliver_one(self, item: ResolvedEvent, deadline: float | None, report: DeliveryReport) -> None:
        event = item.event
        try:
            body = orjson.dumps(wire.local_event(event, item.output, item.input))
        except orjson.JSONEncodeError as exc:
            report.rejected.append(Rejection(event, Reason.INVALID_VALUE, f"not serializable as JSON: {exc}"))
            return
        async with self._semaphore:
            try:
                await self.policy.call("events", lambda: self._post(body), deadline=deadline)
            except DeliveryTimeoutError as err:
                report.rejected.append(
                    Rejection(event, Reason.DELIVERY_TIMEOUT, str(err), err.status, err.attempts)
                )
                return
            except RejectedError as err:
                report.rejected.append(Rejection(event, Reason.API_REJECTED, err.detail, err.status))
                return
        report.delivered.append(event)
