"""Resolve the images of a batch: upload them for the cloud, inline them as base64 for a local store.

Cloud (:class:`CloudImages`): every distinct image of a batch (by ``ImageSource.content_key()``) is
uploaded once, at most ``upload_concurrency`` at a time across the sink, with
``POST {base}/vision-events/upload`` (one multipart part ``file``). The returned ``sourceId`` is
kept in a bounded LRU cache keyed by the image's content hash, so a batch that is delivered again
does not upload its images again. Images that arrive with a ``source_id`` need no upload.

URL images (:class:`UrlFetcher`): fetched only from allow-listed hosts (``*.example.com`` matches
any subdomain of example.com, not example.com itself), without following redirects (a redirect
would bypass the allow-list), with the body capped at ``url_max_bytes`` while streaming and each
attempt bounded by ``url_timeout_seconds``. No API credential is ever sent to an image host.
A URL image is cached by the hash of the fetched bytes, not by its URL: a snapshot URL may serve a
new picture on every fetch.

An image fetch has its own bound, not the batch's retry policy: at most ``images.fetch_attempts``
attempts within ``images.fetch_deadline_seconds`` (or the batch's give-up time, if sooner), with a
short backoff between them. The images of a batch are fetched concurrently before its events are
sent, so a host that hangs or answers 5xx holds the events batched with it (and, on Kafka, the
partition's commit) for that bound at most, never longer: then the image is unavailable and its
event's route decides (``image_unavailable``): dead-letter it with ``Reason.IMAGE_UNAVAILABLE``
(the default) or deliver it without that image (``VisionEvent.deliver_without_image``); the
annotations of an event left without any image cannot be sent (the API carries them only inside an
image entry) and are counted in ``annotations_dropped{reason="image_unavailable"}``, as a route's
``predictions_without_image`` default does.

Failures are per image, and reject only the events that carry the image:

=====================================================  ============================================
not allow-listed, fetch 3xx, too large, no image       ``Reason.IMAGE_FETCH_FAILED``
fetch 4xx (but 408/425/429)                            ``Reason.IMAGE_UNAVAILABLE`` (route policy)
fetch network error, timeout, 408/425/429/5xx          retried within the image's bound, then
                                                       ``Reason.IMAGE_UNAVAILABLE`` (route policy)
upload refused (400/413/415/422, any REJECTED status)  ``Reason.IMAGE_REJECTED``
upload network error, 408/425/429/5xx                  retried (endpoint ``upload``)
upload 401/403                                         retried slowly, never rejected
upload 2xx without a ``sourceId``                      retried as ``unexpected_response`` (below)
inline base64 that does not decode or is no image      ``Reason.INVALID_IMAGE``
only a cloud ``source_id``, local sink                 ``Reason.INVALID_IMAGE``
upload retries past ``give_up_after_seconds``          ``Reason.DELIVERY_TIMEOUT``
=====================================================  ============================================

A 2xx upload answer without a ``sourceId`` is treated as retryable: the image is not at fault
(a proxy or a glitching server answered), so dead-lettering the events would lose good data; the
retries are logged with the status and the start of the body, counted (cause
``unexpected_response``, and in ``unexpected_responses_total``), make the consumer not ready
while they last, and are bounded by the give-up time.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, NamedTuple

import aiohttp
from yarl import URL

from consumer.config import CloudSinkConfig, ImagesConfig
from consumer.contract import IMAGE_CONTENT_TYPES, sniff_image_format
from consumer.errors import (
    DeliveryTimeoutError,
    ImageRejectedError,
    MissingSourceIdError,
    Reason,
    RejectedError,
    RetryableDeliveryError,
    ValidationError,
)
from consumer.metrics import Metrics
from consumer.model import ImageSource, VisionEvent
from consumer.sinks.base import Rejection
from consumer.sinks.retry import RetryPolicy, retry_cause
from consumer.sinks.status import (
    NETWORK_ERRORS,
    Answer,
    Outcome,
    Target,
    classify,
    created_id,
    error_for_exception,
    retry_after_seconds,
    send,
    unexpected_response,
)
from consumer.urls import host_allowed

logger = logging.getLogger(__name__)

SOURCE_ID_CACHE_SIZE: Final = 4096
# The pause between fetch attempts is the policy's jittered backoff capped here: a short pause,
# because the whole image has only ``fetch_deadline_seconds`` and the batch waits for it.
FETCH_BACKOFF_CAP_SECONDS: Final = 2.0
_EXTENSIONS: Final = {"jpeg": "jpg"}
# Reading an image: chunks of at most this size, so the size cap is checked as the body arrives.
FETCH_CHUNK_BYTES: Final = 64 * 1024

# The sink's session, created on first use (``session.SessionHolder.get``).
SessionGetter = Callable[[], aiohttp.ClientSession]


class ResolvedEvent(NamedTuple):
    """An event with its images resolved: upload ids (cloud) or base64 text (local), None if absent."""

    event: VisionEvent
    output: str | None
    input: str | None


@dataclass(frozen=True, slots=True)
class _Failure:
    reason: Reason
    detail: str
    status: int | None
    attempts: int


class LruCache:
    """A bounded mapping that forgets the least recently used key first."""

    def __init__(self, maxsize: int = SOURCE_ID_CACHE_SIZE) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self.maxsize = maxsize
        self._data: OrderedDict[str, str] = OrderedDict()

    def get(self, key: str) -> str | None:
        """Return the value for ``key`` (now the most recently used), or None."""
        value = self._data.get(key)
        if value is not None:
            self._data.move_to_end(key)
        return value

    def put(self, key: str, value: str) -> None:
        """Store ``value``, evicting the least recently used entry when full."""
        self._data[key] = value
        self._data.move_to_end(key)
        while len(self._data) > self.maxsize:
            self._data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data


def _safe_url(url: str) -> str:
    """``url`` without user info or query (either may hold a token), for messages."""
    try:
        parsed = URL(url)
        return str(parsed.with_user(None).with_query(None).with_fragment(None))
    except (ValueError, TypeError):
        return "<invalid URL>"


class UrlFetcher:
    """Fetches image URLs under the allow-list, size cap and timeout of ``ImagesConfig``."""

    def __init__(
        self, config: ImagesConfig, session: SessionGetter, policy: RetryPolicy, metrics: Metrics
    ) -> None:
        self._config = config
        self._session = session
        self._policy = policy
        self._metrics = metrics

    def _fail(
        self,
        outcome: str,
        url: str,
        why: str,
        status: int | None = None,
        reason: Reason = Reason.IMAGE_FETCH_FAILED,
    ) -> ImageRejectedError:
        self._metrics.images_fetched.labels(outcome=outcome).inc()
        return ImageRejectedError(
            f"image fetch failed: {why} ({_safe_url(url)})", reason=reason, status=status, endpoint="fetch"
        )

    async def fetch(self, url: str, deadline: float | None = None) -> bytes:
        """Fetch the image bytes at ``url`` within the image's own bound (attempts and deadline).

        ``deadline`` (the batch's give-up time, policy clock) shortens the bound when it is sooner.
        Raises ImageRejectedError: ``Reason.IMAGE_UNAVAILABLE`` when the host answers 4xx or the
        bound runs out on transient failures, ``Reason.IMAGE_FETCH_FAILED`` for an unusable image.
        """
        config = self._config
        if not host_allowed(url, config.url_allowed_hosts):
            raise self._fail("not_allowed", url, "host not in images.url_allowed_hosts")
        bound = self._policy.now() + config.fetch_deadline_seconds
        if deadline is not None:
            bound = min(bound, deadline)
        attempts = 0
        last: RetryableDeliveryError | None = None
        while attempts < config.fetch_attempts:
            remaining = bound - self._policy.now()
            if remaining <= 0:
                break
            attempts += 1
            try:
                # The image's deadline cuts an attempt still running when it passes.
                async with asyncio.timeout(remaining):
                    return await self._fetch_once(url)
            except TimeoutError as exc:
                self._metrics.images_fetched.labels(outcome="error").inc()
                last = RetryableDeliveryError("fetch: the image's deadline passed", endpoint="fetch")
                last.__cause__ = exc
                break
            except RetryableDeliveryError as err:
                last = err
            if attempts >= config.fetch_attempts:
                break
            pause = min(self._policy.backoff(attempts), FETCH_BACKOFF_CAP_SECONDS)
            if last.retry_after is not None:
                pause = max(pause, last.retry_after)
            if self._policy.now() + pause >= bound:
                break  # no time left for another attempt: do not sleep past the bound
            self._metrics.retries.labels(endpoint="fetch", cause=retry_cause(last)).inc()
            logger.warning(
                "image fetch failed (%s), attempt %d of %d; retrying in %.2fs: %s",
                retry_cause(last),
                attempts,
                config.fetch_attempts,
                pause,
                _safe_url(url),
                extra={"endpoint": "fetch", "status": last.status, "attempt": attempts},
            )
            await self._policy.sleep(pause)
        raise self._unavailable(url, last, attempts)

    def _unavailable(
        self, url: str, last: RetryableDeliveryError | None, attempts: int
    ) -> ImageRejectedError:
        """The image's bound ran out: ``Reason.IMAGE_UNAVAILABLE``, for the route's policy to settle."""
        self._metrics.images_fetched.labels(outcome="unavailable").inc()
        cause = "no time left" if last is None else retry_cause(last)
        message = (
            f"image unavailable: {attempts} attempt(s) within "
            f"{self._config.fetch_deadline_seconds:g}s failed, last: {cause} ({_safe_url(url)})"
        )
        logger.warning("%s", message, extra={"endpoint": "fetch", "attempts": attempts})
        return ImageRejectedError(
            message,
            reason=Reason.IMAGE_UNAVAILABLE,
            status=None if last is None else last.status,
            endpoint="fetch",
            attempts=attempts,
        )

    async def _fetch_once(self, url: str) -> bytes:
        limit = self._config.url_max_bytes
        data = bytearray()
        try:
            # ClientTimeout(total=...) bounds the whole attempt, body included: a host trickling
            # the image cannot hold the batch past url_timeout_seconds.
            async with self._session().get(
                url,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=self._config.url_timeout_seconds),
            ) as response:
                status = response.status
                outcome = classify(status, Target.IMAGE_HOST)
                if outcome is Outcome.RETRYABLE:
                    self._metrics.images_fetched.labels(outcome="error").inc()
                    raise RetryableDeliveryError(
                        f"fetch: HTTP {status} from {_safe_url(url)}",
                        status=status,
                        endpoint="fetch",
                        retry_after=retry_after_seconds(response.headers.get("Retry-After")),
                    )
                if outcome is not Outcome.SUCCESS:
                    # A 4xx says the host has no such image (for us): unavailable, the
                    # route decides. A 3xx is refused (a redirect would leave the allow-list).
                    unavailable = 400 <= status < 500
                    reason = Reason.IMAGE_UNAVAILABLE if unavailable else Reason.IMAGE_FETCH_FAILED
                    raise self._fail("rejected", url, f"HTTP {status}", status, reason)
                declared = response.headers.get("Content-Length", "")
                if declared.isdigit() and int(declared) > limit:
                    raise self._fail("too_large", url, f"{declared} bytes, over the {limit}-byte cap")
                async for chunk in response.content.iter_chunked(FETCH_CHUNK_BYTES):
                    data += chunk
                    if len(data) > limit:
                        raise self._fail("too_large", url, f"over the {limit}-byte cap")
        except NETWORK_ERRORS as exc:
            self._metrics.images_fetched.labels(outcome="error").inc()
            raise error_for_exception(exc, endpoint="fetch") from exc
        if sniff_image_format(bytes(data[:16])) is None:
            raise self._fail("not_image", url, "the body is not an accepted image format")
        self._metrics.images_fetched.labels(outcome="ok").inc()
        return bytes(data)


def drops_unavailable_image(event: VisionEvent, reason: Reason) -> bool:
    """Whether ``event`` goes on without an image that failed with ``reason`` (its route's policy)."""
    return reason is Reason.IMAGE_UNAVAILABLE and event.deliver_without_image


def _content_key(image: ImageSource) -> str:
    try:
        return image.content_key()
    except ValidationError:
        return f"invalid:{id(image)}"


async def resolve_batch(
    events: Sequence[VisionEvent],
    work: Callable[[ImageSource], Awaitable[str]],
    key: Callable[[ImageSource], str] = _content_key,
    *,
    metrics: Metrics | None = None,
) -> tuple[list[ResolvedEvent], list[Rejection]]:
    """Run ``work`` once per distinct image (by ``key``) of ``events``, concurrently.

    ``work`` raises ImageRejectedError or DeliveryTimeoutError for an image that cannot be used;
    every event carrying such an image is rejected (or, for an unavailable image and a route that
    says so, resolved without it), the others come back resolved.
    """
    unique: dict[str, ImageSource] = {}
    keys: dict[int, str] = {}
    for event in events:
        for image in (event.output_image, event.input_image):
            if image is not None and id(image) not in keys:
                image_key = key(image)
                keys[id(image)] = image_key
                unique.setdefault(image_key, image)

    results: dict[str, str | _Failure] = {}

    async def run(image_key: str, image: ImageSource) -> None:
        try:
            results[image_key] = await work(image)
        except ImageRejectedError as err:
            results[image_key] = _Failure(err.reason, err.detail, err.status, err.attempts)
        except DeliveryTimeoutError as err:
            results[image_key] = _Failure(Reason.DELIVERY_TIMEOUT, str(err), err.status, err.attempts)

    if unique:
        async with asyncio.TaskGroup() as group:
            for image_key, image in unique.items():
                group.create_task(run(image_key, image))

    resolved: list[ResolvedEvent] = []
    rejected: list[Rejection] = []
    for event in events:
        outcome = _settle(
            event, [None if i is None else results[keys[id(i)]] for i in _images(event)], metrics
        )
        if isinstance(outcome, Rejection):
            rejected.append(outcome)
        else:
            resolved.append(outcome)
    return resolved, rejected


def _images(event: VisionEvent) -> tuple[ImageSource | None, ImageSource | None]:
    return event.output_image, event.input_image


def _settle(
    event: VisionEvent, results: list[str | _Failure | None], metrics: Metrics | None
) -> ResolvedEvent | Rejection:
    """One event from its images' (output, input) results: resolved, or rejected for the first failure."""
    values: list[str | None] = []
    dropped = False
    for result in results:
        if isinstance(result, _Failure):
            if not drops_unavailable_image(event, result.reason):
                return Rejection(event, result.reason, result.detail, result.status, result.attempts)
            dropped = True
            values.append(None)
        else:
            values.append(result)
    if dropped and event.annotations and values == [None, None] and metrics is not None:
        # No image entry is left to carry the predictions (the wire leaves them out).
        metrics.annotations_dropped.labels("image_unavailable").inc()
    return ResolvedEvent(event, values[0], values[1])


def _source_id_of(response: Answer, metrics: Metrics, secrets: Sequence[str]) -> str:
    source_id = created_id(response, "sourceId")
    if source_id is None:
        raise unexpected_response(
            response, "no sourceId", endpoint="upload", target=Target.CLOUD, metrics=metrics, secrets=secrets
        ) from MissingSourceIdError("no sourceId in the upload answer")
    return source_id


class CloudImages:
    """Uploads the images of cloud batches, once per distinct image, and remembers their ids."""

    def __init__(
        self,
        config: CloudSinkConfig,
        images: ImagesConfig,
        session: SessionGetter,
        policy: RetryPolicy,
        metrics: Metrics,
        *,
        headers: Mapping[str, str],
        secrets: Sequence[str] = (),
        cache_size: int = SOURCE_ID_CACHE_SIZE,
    ) -> None:
        self._url = f"{config.resolved_base_url()}/vision-events/upload"
        self._timeout = config.timeout_seconds
        self._session = session
        self._policy = policy
        self._metrics = metrics
        self._headers = headers
        self._secrets = tuple(secrets)
        self._semaphore = asyncio.Semaphore(config.upload_concurrency)
        self._fetcher = UrlFetcher(images, session, policy, metrics)
        self.cache = LruCache(cache_size)

    async def resolve(
        self, events: Sequence[VisionEvent], deadline: float | None = None
    ) -> tuple[list[ResolvedEvent], list[Rejection]]:
        """Each event with its output/input upload ids, or rejected for an image that cannot be used.

        A batch whose images are all upload ids already (frames the publisher uploaded once: the
        common case) needs no work, and skips the per-image bookkeeping of ``resolve_batch``.
        """
        plain: list[ResolvedEvent] = []
        for event in events:
            output, given = event.output_image, event.input_image
            if (output is not None and output.source_id is None) or (
                given is not None and given.source_id is None
            ):
                return await resolve_batch(
                    events, lambda image: self.source_id(image, deadline), metrics=self._metrics
                )
            plain.append(
                ResolvedEvent(
                    event,
                    None if output is None else output.source_id,
                    None if given is None else given.source_id,
                )
            )
        return plain, []

    async def source_id(self, image: ImageSource, deadline: float | None = None) -> str:
        """Return the upload id of ``image``: given, cached, or uploaded now."""
        if image.source_id is not None:
            return image.source_id
        if image.url is not None:
            async with self._semaphore:
                data = await self._fetcher.fetch(image.url, deadline)
            cache_key = "sha256:" + hashlib.sha256(data).hexdigest()
        else:
            try:
                data = image.data()
            except ValidationError as exc:
                raise ImageRejectedError(
                    f"inline image: {exc.detail}", reason=Reason.INVALID_IMAGE, endpoint="upload"
                ) from exc
            cache_key = image.content_key()
        cached = self.cache.get(cache_key)
        if cached is not None:
            return cached
        image_format = sniff_image_format(data)
        if image_format is None:
            raise ImageRejectedError(
                "inline image is not an accepted image format", reason=Reason.INVALID_IMAGE, endpoint="upload"
            )
        async with self._semaphore:
            try:
                source_id = await self._policy.call(
                    "upload", lambda: self._upload_once(data, image_format), deadline=deadline
                )
            except RejectedError as err:
                raise ImageRejectedError(
                    str(err),
                    reason=Reason.IMAGE_REJECTED,
                    status=err.status,
                    endpoint="upload",
                    detail=err.detail,
                ) from err
        self.cache.put(cache_key, source_id)
        return source_id

    async def _upload_once(self, data: bytes, image_format: str) -> str:
        filename = f"image.{_EXTENSIONS.get(image_format, image_format)}"
        # A new form per attempt: aiohttp consumes a FormData when it sends it.
        form = aiohttp.FormData()
        form.add_field("file", data, filename=filename, content_type=IMAGE_CONTENT_TYPES[image_format])
        response = await send(
            self._session(),
            "POST",
            self._url,
            data=form,
            headers=self._headers,
            timeout=self._timeout,
            endpoint="upload",
            target=Target.CLOUD,
            metrics=self._metrics,
            secrets=self._secrets,
        )
        source_id = _source_id_of(response, self._metrics, self._secrets)
        self._metrics.images_uploaded.inc()
        self._metrics.image_upload_bytes.inc(len(data))
        return source_id


def strip_data_prefix(text: str) -> str:
    """Base64 text without a ``data:...;base64,`` prefix: the Event Store takes raw base64 (§3.4)."""
    if text.startswith("data:"):
        return text.partition(",")[2]
    return text


def _local_key(image: ImageSource) -> str:
    # Inline and id-only images need no work; only URL fetches are worth de-duplicating.
    return f"url:{image.url}" if image.url is not None else f"object:{id(image)}"


class LocalImages:
    """Turns the images of local events into base64 text, fetching URL images."""

    def __init__(
        self,
        images: ImagesConfig,
        session: SessionGetter,
        policy: RetryPolicy,
        metrics: Metrics,
        *,
        concurrency: int,
    ) -> None:
        self._fetcher = UrlFetcher(images, session, policy, metrics)
        self._semaphore = asyncio.Semaphore(concurrency)
        self._metrics = metrics

    async def resolve(
        self, events: Sequence[VisionEvent], deadline: float | None = None
    ) -> tuple[list[ResolvedEvent], list[Rejection]]:
        """Each event with its output/input base64 text, or rejected for an image that cannot be used."""
        return await resolve_batch(
            events, lambda image: self.base64_of(image, deadline), key=_local_key, metrics=self._metrics
        )

    async def base64_of(self, image: ImageSource, deadline: float | None = None) -> str:
        """``image`` as base64 text: inline as received, a URL fetched and encoded."""
        if image.base64 is not None:
            return strip_data_prefix(image.base64)
        if image.url is not None:
            async with self._semaphore:
                data = await self._fetcher.fetch(image.url, deadline)
            return base64.b64encode(data).decode("ascii")
        raise ImageRejectedError(
            "an image given only as a cloud sourceId cannot be sent to a local Event Store",
            reason=Reason.INVALID_IMAGE,
        )
