"""The pipeline's sink when the spool is on: an event is "delivered" once it is committed to the spool.

The pipeline acknowledges a message when its sink reports the event delivered; with this sink that
is when the event, its image bytes and the original message are durable in the spool (one
transaction per batch, shared with concurrent batches). The forwarder delivers it to the API later.

Images are stored as bytes: inline base64 decoded, URL images fetched now (allow-list, size cap,
timeout and retries as for the API sinks: a snapshot URL may serve another picture later, a signed
URL may expire), each distinct image once. An image given as an uploaded ``source_id`` is kept as
that id. As the API sinks would, this sink refuses (for the pipeline to dead-letter) an event whose
URL image cannot be fetched or whose fields are not serializable; it never refuses for the spool's
sake: a full or failing spool makes ``deliver`` wait, so nothing is acknowledged meanwhile. An
unavailable URL image (``Reason.IMAGE_UNAVAILABLE``) of an event whose route says
``deliver_without_image`` is left out of the spooled event instead (see ``sinks.images``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass

import orjson

from consumer.config import ImagesConfig, RetryConfig
from consumer.errors import DeliveryTimeoutError, ImageRejectedError, Reason, ValidationError
from consumer.metrics import Metrics
from consumer.model import ImageSource, VisionEvent
from consumer.sinks.base import DeliveryReport, Rejection
from consumer.sinks.images import UrlFetcher, drops_unavailable_image
from consumer.sinks.retry import RetryPolicy
from consumer.sinks.session import SessionFactory, SessionHolder
from consumer.spool.codec import NewRow, encode_event, image_key
from consumer.spool.store import SpoolStore

_FETCH_CONCURRENCY = 8


@dataclass(frozen=True, slots=True)
class _Failure:
    reason: Reason
    detail: str
    status: int | None = None
    attempts: int = 1


class SpoolSink:
    """Writes batches to the durable spool."""

    name: str = "spool"

    def __init__(
        self,
        store: SpoolStore,
        retry: RetryConfig,
        images: ImagesConfig,
        metrics: Metrics,
        session_factory: SessionFactory | None = None,
    ) -> None:
        self._store = store
        self._images = images
        self._metrics = metrics
        self._sessions = SessionHolder(session_factory)
        self._policy = RetryPolicy(retry, metrics, self.name, clock=time.monotonic)
        self._fetcher: UrlFetcher | None = None
        self._fetch_slots = asyncio.Semaphore(_FETCH_CONCURRENCY)

    @property
    def answers_unexpected(self) -> bool:
        """Always False: the spool is local (the forwarder's sink reports the API's answers)."""
        return False

    @property
    def auth_failing(self) -> bool:
        """Always False: the spool has no credentials (the forwarder's sink reports the API's)."""
        return False

    async def aclose(self) -> None:
        """Close the HTTP session used for URL images, if one was opened."""
        await self._sessions.aclose()

    def _url_fetcher(self) -> UrlFetcher:
        if self._fetcher is None:
            # The session itself is opened on the first fetch (UrlFetcher calls the getter then).
            self._fetcher = UrlFetcher(self._images, self._sessions.get, self._policy, self._metrics)
        return self._fetcher

    async def _fetch(self, url: str, deadline: float | None) -> bytes | _Failure:
        async with self._fetch_slots:
            try:
                return await self._url_fetcher().fetch(url, deadline)
            except ImageRejectedError as err:
                return _Failure(err.reason, err.detail, err.status, err.attempts)
            except DeliveryTimeoutError as err:
                return _Failure(Reason.DELIVERY_TIMEOUT, str(err), err.status, err.attempts)

    async def _resolve(
        self, events: Sequence[VisionEvent]
    ) -> tuple[dict[int, str | _Failure], dict[str, bytes]]:
        """Image object id -> the key its bytes are stored under (or why it cannot be used); the bytes."""
        resolved: dict[int, str | _Failure] = {}
        stored: dict[str, bytes] = {}
        urls: dict[str, list[ImageSource]] = {}
        for event in events:
            for image in (event.output_image, event.input_image):
                if image is None or image.source_id is not None or id(image) in resolved:
                    continue
                if image.url is not None:
                    urls.setdefault(image.url, []).append(image)
                    continue
                try:
                    data = image.data()
                except ValidationError as exc:
                    resolved[id(image)] = _Failure(Reason.INVALID_IMAGE, f"inline image: {exc.detail}")
                    continue
                key = image_key(data)
                stored[key] = data
                resolved[id(image)] = key
        if urls:
            deadline = self._policy.deadline()
            results = await asyncio.gather(*(self._fetch(url, deadline) for url in urls))
            for (_, images), result in zip(urls.items(), results, strict=True):
                value: str | _Failure
                if isinstance(result, _Failure):
                    value = result
                else:
                    value = image_key(result)
                    stored[value] = result
                for image in images:
                    resolved[id(image)] = value
        return resolved, stored

    def _without(self, event: VisionEvent, dropped: list[str]) -> VisionEvent:
        """``event`` without its unavailable images (a copy: the caller's event is left as received)."""
        if not dropped:
            return event
        kept = dataclasses.replace(
            event,
            output_image=None if "output_image" in dropped else event.output_image,
            input_image=None if "input_image" in dropped else event.input_image,
        )
        if kept.annotations and kept.output_image is None and kept.input_image is None:
            # Nothing is left to carry the predictions: they cannot be sent (the API's rule).
            self._metrics.annotations_dropped.labels("image_unavailable").inc()
            kept.annotations = {}
        return kept

    async def deliver(self, events: Sequence[VisionEvent]) -> DeliveryReport:
        """Commit the batch to the spool; report each event delivered (spooled) or refused."""
        report = DeliveryReport()
        if not events:
            return report
        resolved, images = await self._resolve(events)
        rows: list[NewRow] = []
        spooled: list[VisionEvent] = []
        used: dict[str, bytes] = {}
        for event in events:
            keys: list[str | None] = []
            failure: _Failure | None = None
            dropped: list[str] = []
            for name, image in (("output_image", event.output_image), ("input_image", event.input_image)):
                value = None if image is None or image.source_id is not None else resolved[id(image)]
                if isinstance(value, _Failure):
                    if drops_unavailable_image(event, value.reason):
                        dropped.append(name)
                    else:
                        failure = failure or value
                    value = None
                keys.append(value)
            if failure is not None:
                report.rejected.append(
                    Rejection(event, failure.reason, failure.detail, failure.status, failure.attempts)
                )
                continue
            try:
                row = encode_event(self._without(event, dropped), keys[0], keys[1])
            except orjson.JSONEncodeError as exc:
                report.rejected.append(
                    Rejection(event, Reason.INVALID_VALUE, f"not serializable as JSON: {exc}")
                )
                continue
            for key in keys:
                if key is not None:
                    used[key] = images[key]
            rows.append(row)
            spooled.append(event)
        await self._store.write(rows, used)
        report.delivered.extend(spooled)
        return report
