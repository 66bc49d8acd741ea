"""The Roboflow Vision Events API sink: upload images, then ``POST /vision-events/batch``.

Decisions (contract references in brackets):

- Success is a 2xx [§1.2; 3xx is not followed, see ``status.py``] whose body is the contract's
  answer, ``{"eventIds": [...]}`` [§5.1]. Anything else with a 2xx (an HTML page from a captive
  portal, a proxy's ``{"ok": true}``, a 204, ids that were not sent) proves nothing was stored: it
  is an ``UnexpectedResponseError``, retried like a 5xx and never acknowledged.
- Batch partial-failure semantics are NOT FOUND [§2.5]. An ``eventIds`` list that misses some of
  the ids sent is read as "those were not stored": they are re-sent, in a smaller batch, after a
  short backoff (events are idempotent by ``eventId`` [§2.1]), and after :data:`MAX_ACK_RESENDS`
  re-sends still missing they are rejected with ``Reason.NOT_ACKNOWLEDGED``.
- A REJECTED status on a batch of n > 1 splits it in halves, delivered concurrently; on one event it
  becomes ``Rejection(Reason.API_REJECTED, detail=<the API's reason>, status=...)``.
- An event with only an input image sends the input's id as both ``sourceId`` and ``inputSourceId``
  (``wire.cloud_event`` does that, §3.3 NOT FOUND).
- Headers [§1.3]: ``extra_headers``, then ``Authorization: Bearer <key>`` with ``setdefault`` so an
  explicit ``Authorization`` in ``extra_headers`` wins; ``Content-Type: application/json`` on the
  batch. Headers are set per request, never on the session, so they never reach an image host.
- Each event is serialized once (orjson) and the batch body is joined from the pieces, so splits
  and re-sends do not serialize again and one unserializable event is rejected on its own.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import orjson
from multidict import CIMultiDict

from consumer import wire
from consumer.config import CloudSinkConfig, ImagesConfig, RetryConfig
from consumer.contract import MAX_BATCH_EVENTS
from consumer.errors import DeliveryTimeoutError, Reason, RejectedError
from consumer.metrics import Metrics
from consumer.model import VisionEvent
from consumer.redaction import expand_secrets
from consumer.sinks.base import DeliveryReport, Rejection
from consumer.sinks.http import HttpSink
from consumer.sinks.images import CloudImages
from consumer.sinks.inflight import tracks_in_flight
from consumer.sinks.retry import Clock, RetryPolicy, Sleep
from consumer.sinks.session import SessionFactory
from consumer.sinks.status import Target, read_batch_answer, send, unexpected_response

logger = logging.getLogger(__name__)

MAX_ACK_RESENDS: Final = 3


@dataclass(frozen=True, slots=True)
class _Part:
    event: VisionEvent
    body: bytes


class CloudSink(HttpSink):
    """Delivers batches to the cloud Vision Events API."""

    name: str = "cloud"

    def __init__(
        self,
        config: CloudSinkConfig,
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
        self._url = f"{config.resolved_base_url()}/vision-events/batch"
        api_key = config.api_key.get_secret_value() if config.api_key is not None else ""
        headers: CIMultiDict[str] = CIMultiDict(config.extra_headers)
        if api_key:
            headers.setdefault("Authorization", f"Bearer {api_key}")
        # Every header value may be a credential (X-Proxy-Auth...): all are redacted, in every form.
        self._secrets = expand_secrets([api_key, *headers.values()])
        upload_headers = headers.copy()
        upload_headers.popall("Content-Type", None)  # aiohttp sets the multipart boundary
        self._headers = headers.copy()
        self._headers["Content-Type"] = "application/json"
        self.policy = RetryPolicy(retry, metrics, self.name, sleep=sleep, clock=clock, rng=rng)
        self.images = CloudImages(
            config,
            images,
            self._sessions.get,
            self.policy,
            metrics,
            headers=upload_headers,
            secrets=self._secrets,
        )

    @tracks_in_flight
    async def deliver(self, events: Sequence[VisionEvent]) -> DeliveryReport:
        """Upload the batch's images, post the events, and report each one's fate."""
        report = DeliveryReport()
        if not events:
            return report
        deadline = self.policy.deadline()
        # Images first, all of them concurrently and each under its own bound (images.fetch_*), so
        # an image host that hangs holds this batch for that bound at most, then its route decides.
        resolved, rejected = await self.images.resolve(events, deadline)
        report.rejected.extend(rejected)
        parts: list[_Part] = []
        for item in resolved:
            try:
                body = orjson.dumps(wire.cloud_event(item.event, item.output, item.input))
            except orjson.JSONEncodeError as exc:
                report.rejected.append(
                    Rejection(item.event, Reason.INVALID_VALUE, f"not serializable as JSON: {exc}")
                )
                continue
            parts.append(_Part(item.event, body))
        if parts:
            async with asyncio.TaskGroup() as group:
                for start in range(0, len(parts), MAX_BATCH_EVENTS):
                    group.create_task(
                        self._send(parts[start : start + MAX_BATCH_EVENTS], deadline, report, 0)
                    )
        return report

    async def _post(self, body: bytes, sent_ids: Sequence[str]) -> tuple[int, frozenset[str]]:
        response = await send(
            self.session,
            "POST",
            self._url,
            data=body,
            headers=self._headers,
            timeout=self._config.timeout_seconds,
            endpoint="batch",
            target=Target.CLOUD,
            metrics=self._metrics,
            secrets=self._secrets,
        )
        # Checked inside the retried call, so an answer that is not the API's is retried like a 5xx.
        answer = read_batch_answer(response, sent_ids)
        if answer.problem is not None:
            raise unexpected_response(
                response,
                answer.problem,
                endpoint="batch",
                target=Target.CLOUD,
                metrics=self._metrics,
                secrets=self._secrets,
            )
        return response.status, answer.ids

    async def _send(
        self, parts: list[_Part], deadline: float | None, report: DeliveryReport, resends: int
    ) -> None:
        body = b'{"events":[' + b",".join(part.body for part in parts) + b"]}"
        sent_ids = [part.event.event_id for part in parts]
        try:
            status, acknowledged = await self.policy.call(
                "batch", lambda: self._post(body, sent_ids), deadline=deadline
            )
        except DeliveryTimeoutError as err:
            report.rejected.extend(
                Rejection(part.event, Reason.DELIVERY_TIMEOUT, str(err), err.status, err.attempts)
                for part in parts
            )
            return
        except RejectedError as err:
            if len(parts) == 1:
                report.rejected.append(Rejection(parts[0].event, Reason.API_REJECTED, err.detail, err.status))
                return
            self._metrics.batch_splits.labels(sink=self.name).inc()
            middle = len(parts) // 2
            async with asyncio.TaskGroup() as group:
                group.create_task(self._send(parts[:middle], deadline, report, resends))
                group.create_task(self._send(parts[middle:], deadline, report, resends))
            return
        missing = [part for part in parts if part.event.event_id not in acknowledged]
        report.delivered.extend(part.event for part in parts if part.event.event_id in acknowledged)
        if not missing:
            return
        if resends >= MAX_ACK_RESENDS:
            logger.error(
                "cloud sink: %d events still missing from the eventIds after %d requests; dead-lettering",
                len(missing),
                resends + 1,
            )
            report.rejected.extend(
                Rejection(
                    part.event,
                    Reason.NOT_ACKNOWLEDGED,
                    f"eventId missing from the API's eventIds after {resends + 1} requests",
                    status,
                    resends + 1,
                )
                for part in missing
            )
            return
        logger.warning(
            "cloud sink: HTTP %d answer did not list %d of %d eventIds; re-sending them",
            status,
            len(missing),
            len(parts),
        )
        await self.policy.pause(resends + 1)
        await self._send(missing, deadline, report, resends + 1)
