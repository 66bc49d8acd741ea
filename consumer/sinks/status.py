"""The one table that classifies an HTTP outcome, and its translation into ``consumer.errors``.

Every sink asks :func:`classify` what a status code means for the server it talks to, and turns a
response or a transport exception into a typed error with :func:`error_for_response` /
:func:`error_for_exception`. A response is read whole into an :class:`Answer` (at most
:data:`ANSWER_MAX_BYTES`) by :func:`send`, the one place the sinks talk to aiohttp for the API.
The retry, split and dead-letter decisions are then taken from the error classes alone (see
``consumer/errors.py``).

Why "everything else is REJECTED": a status not listed as success, retryable or auth says the
request *as sent* will not succeed by sending it again. Splitting the batch isolates the events at
fault; when the whole request is at fault (a 404 from a wrong base URL, a 3xx from a proxy), every
event ends up dead-lettered with the status and the server's explanation, so nothing is dropped
silently and ``replay`` re-drives them once the cause is fixed. Retrying such a status forever
would instead stall the partition behind it without any sign of progress. In particular:

- 3xx: redirects are never followed. A client following a redirected POST may replay it as a GET
  or carry the ``Authorization`` header to another host; for image URLs, following would bypass the
  host allow-list. A redirect means the base URL is wrong, which only a human can fix.
- A 2xx is only the status of a success: each sink then checks that the body is the contract's
  answer (``eventIds``, ``sourceId``, a 201 with the event ``id`` from the Event Store) and raises
  ``UnexpectedResponseError`` (retried like a 5xx) when it is not, since a 200 may come from
  something that is not the API at all (a captive portal, a proxy, a wrong base URL).
- 401/403 from an image host are not *our* credentials being refused: the fetch simply fails.

Messages never contain request headers (the API key travels in them); known secrets are also
scrubbed from server-supplied text (``redact``), in case a proxy echoes a header back.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime
from enum import StrEnum
from typing import Any, Final, NamedTuple

import aiohttp
import orjson

from consumer.errors import (
    AnswerTooLargeError,
    AuthError,
    DeliveryError,
    RejectedError,
    RetryableDeliveryError,
    UnexpectedResponseError,
)
from consumer.metrics import Metrics
from consumer.redaction import mask_forms

logger = logging.getLogger(__name__)

DETAIL_MAX_CHARS: Final = 1000
BODY_HEAD_CHARS: Final = 200
UNEXPECTED_LOG_INTERVAL_SECONDS: Final = 30.0
# The API's answers are a few KB; anything this large is not one of them, and is not kept in memory.
ANSWER_MAX_BYTES: Final = 1024 * 1024

# What aiohttp raises for a failed exchange: its own errors, and TimeoutError for the request's
# whole-request bound (``ClientTimeout(total=...)``, whose socket timeouts subclass it too).
NETWORK_ERRORS: Final = (aiohttp.ClientError, TimeoutError)


@dataclass(frozen=True, slots=True)
class Answer:
    """A response read whole: status, headers (case-insensitive lookup) and body."""

    status: int
    headers: Mapping[str, str]
    body: bytes


class Outcome(StrEnum):
    """What an HTTP status means for the request that produced it."""

    SUCCESS = "success"
    RETRYABLE = "retryable"
    AUTH = "auth"
    REJECTED = "rejected"


class Target(StrEnum):
    """Which kind of server answered: the rules differ per column of :data:`STATUS_TABLE`."""

    CLOUD = "cloud"
    LOCAL = "local"
    IMAGE_HOST = "image_host"


@dataclass(frozen=True, slots=True)
class StatusRule:
    """One row of the table: the statuses ``first..last`` (inclusive) and their outcome per target."""

    first: int
    last: int
    cloud: Outcome
    local: Outcome
    image_host: Outcome
    why: str

    def outcome(self, target: Target) -> Outcome:
        """Return this row's outcome for ``target``."""
        if target is Target.CLOUD:
            return self.cloud
        if target is Target.LOCAL:
            return self.local
        return self.image_host


_S, _T, _A, _R = Outcome.SUCCESS, Outcome.RETRYABLE, Outcome.AUTH, Outcome.REJECTED

# Rows are sorted, contiguous and cover 100..599 exactly (a unit test checks it).
STATUS_TABLE: Final[tuple[StatusRule, ...]] = (
    StatusRule(100, 199, _R, _R, _R, "a final 1xx is a broken server or proxy; aiohttp hides interim 1xx"),
    StatusRule(200, 200, _S, _S, _S, "2xx: the sink then checks the body is the contract's answer"),
    StatusRule(201, 201, _S, _S, _S, "created: the documented success of every endpoint"),
    StatusRule(202, 299, _S, _S, _S, "2xx: the sink checks the answer (local: only 201 with an id, §5.2)"),
    StatusRule(300, 399, _R, _R, _R, "not followed: may turn a POST into a GET or bypass the allow-list"),
    StatusRule(400, 400, _R, _R, _R, "bad request: some event breaks the schema; split to find it"),
    StatusRule(401, 401, _A, _A, _R, "credentials refused: not the events' fault (image host: fetch fails)"),
    StatusRule(402, 402, _R, _R, _R, "other 4xx: repeating the same request cannot help"),
    StatusRule(403, 403, _A, _A, _R, "credentials lack the scope: not the events' fault"),
    StatusRule(404, 407, _R, _R, _R, "other 4xx: repeating the same request cannot help"),
    StatusRule(408, 408, _T, _T, _T, "request timeout: transient"),
    StatusRule(409, 412, _R, _R, _R, "other 4xx: repeating the same request cannot help"),
    StatusRule(413, 413, _R, _R, _R, "payload too large: split; a single event too large is rejected"),
    StatusRule(414, 421, _R, _R, _R, "other 4xx: repeating the same request cannot help"),
    StatusRule(422, 422, _R, _R, _R, "unprocessable: some event breaks a rule; split to find it"),
    StatusRule(423, 424, _R, _R, _R, "other 4xx: repeating the same request cannot help"),
    StatusRule(425, 425, _T, _T, _T, "too early: the server asks for a replay later"),
    StatusRule(426, 428, _R, _R, _R, "other 4xx: repeating the same request cannot help"),
    StatusRule(429, 429, _T, _T, _T, "rate limited: back off, honouring Retry-After"),
    StatusRule(430, 499, _R, _R, _R, "other 4xx: repeating the same request cannot help"),
    StatusRule(500, 528, _T, _T, _T, "server error: transient"),
    StatusRule(529, 529, _T, _T, _T, "local Event Store at capacity (§5.1): back off until uploads drain"),
    StatusRule(530, 599, _T, _T, _T, "server error: transient"),
)

_BY_STATUS: Final[dict[int, StatusRule]] = {
    code: rule for rule in STATUS_TABLE for code in range(rule.first, rule.last + 1)
}


def classify(status: int, target: Target) -> Outcome:
    """Return the outcome of ``status`` from ``target``; a code outside 100..599 is REJECTED."""
    rule = _BY_STATUS.get(status)
    return rule.outcome(target) if rule is not None else Outcome.REJECTED


def retry_after_seconds(value: str | None, *, now: float | None = None) -> float | None:
    """Parse a ``Retry-After`` header (delay-seconds or an HTTP-date) into seconds from now.

    Returns None when the header is absent or unreadable; a date in the past gives 0.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


def redact(text: str, secrets: Sequence[str]) -> str:
    """``text`` with every secret form (``consumer.redaction.expand_secrets``) replaced by asterisks."""
    return mask_forms(text, tuple(secrets))


def _truncate(text: str, limit: int = DETAIL_MAX_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return repr(value)


def response_detail(response: Answer, secrets: Sequence[str] = ()) -> str:
    """Return the server's explanation: the body's ``detail``/``error``/``message``, else its text.

    The local Event Store answers ``{"detail": ...}`` (FastAPI, sometimes a list of errors), the
    cloud mocks ``{"error": ...}``; the real cloud shape is NOT FOUND, so the raw text is the
    fallback. Truncated to about 1000 characters; ``secrets`` are scrubbed.
    """
    raw = response.body
    text = raw.decode("utf-8", "replace")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        body = None
    if isinstance(body, dict):
        for key in ("detail", "error", "message"):
            if body.get(key) not in (None, ""):
                text = _as_text(body[key])
                break
    return _truncate(redact(text.strip(), secrets))


def error_for_response(
    response: Answer, *, endpoint: str, target: Target, secrets: Sequence[str] = ()
) -> DeliveryError | None:
    """None when ``response`` is a success for ``target``, else the typed error to raise."""
    status = response.status
    outcome = classify(status, target)
    if outcome is Outcome.SUCCESS:
        return None
    detail = response_detail(response, secrets)
    message = f"{endpoint}: HTTP {status}" + (f": {detail}" if detail else "")
    if outcome is Outcome.RETRYABLE:
        retry_after = retry_after_seconds(response.headers.get("Retry-After"))
        return RetryableDeliveryError(message, status=status, endpoint=endpoint, retry_after=retry_after)
    if outcome is Outcome.AUTH:
        return AuthError(message, status=status, endpoint=endpoint)
    return RejectedError(message, status=status, endpoint=endpoint, detail=detail or f"HTTP {status}")


def error_for_exception(
    exc: aiohttp.ClientError | TimeoutError, *, endpoint: str, secrets: Sequence[str] = ()
) -> RetryableDeliveryError:
    """Translate a network failure (refused, reset, timeout, protocol error): always retryable.

    The request's bound running out is a ``TimeoutError`` (with an empty message: the text says so).

    Raise the result ``from exc``: the retry metrics take the cause label from the original class.
    """
    text = redact(str(exc), secrets)
    if not text and isinstance(exc, TimeoutError):
        text = "the request outlasted its timeout"
    message = f"{endpoint}: {type(exc).__name__}" + (f": {_truncate(text)}" if text else "")
    return RetryableDeliveryError(message, endpoint=endpoint)


async def read_answer(response: aiohttp.ClientResponse, *, endpoint: str) -> Answer:
    """Read ``response`` whole into an :class:`Answer`; AnswerTooLargeError past ANSWER_MAX_BYTES."""
    declared = response.content_length
    if declared is not None and declared <= ANSWER_MAX_BYTES:
        return Answer(response.status, response.headers, await response.read())
    body = bytearray()
    if declared is None or declared <= ANSWER_MAX_BYTES:
        async for chunk in response.content.iter_any():
            body += chunk
            if len(body) > ANSWER_MAX_BYTES:
                break
    if (declared is not None and declared > ANSWER_MAX_BYTES) or len(body) > ANSWER_MAX_BYTES:
        raise AnswerTooLargeError(
            f"{endpoint}: HTTP {response.status} answer over the {ANSWER_MAX_BYTES}-byte cap",
            status=response.status,
            endpoint=endpoint,
            limit=ANSWER_MAX_BYTES,
        )
    return Answer(response.status, response.headers, bytes(body))


async def send(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    timeout: float,
    endpoint: str,
    target: Target,
    metrics: Metrics,
    secrets: Sequence[str] = (),
    data: bytes | aiohttp.FormData | None = None,
    headers: Mapping[str, str] | None = None,
) -> Answer:
    """Send one request, time it into ``api_requests`` and raise the typed error of its outcome.

    ``timeout`` bounds the whole exchange, body included (``ClientTimeout(total=...)``): a server
    trickling its answer ends in a TimeoutError like one that never answers. Redirects are never
    followed (see the module docstring).
    """
    started = time.perf_counter()
    try:
        async with session.request(
            method,
            url,
            data=data,
            headers=headers,
            allow_redirects=False,
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as response:
            answer = await read_answer(response, endpoint=endpoint)
    except NETWORK_ERRORS as exc:
        metrics.api_requests.labels(endpoint=endpoint, status="error").observe(time.perf_counter() - started)
        raise error_for_exception(exc, endpoint=endpoint, secrets=secrets) from exc
    metrics.api_requests.labels(endpoint=endpoint, status=str(answer.status)).observe(
        time.perf_counter() - started
    )
    error = error_for_response(answer, endpoint=endpoint, target=target, secrets=secrets)
    if error is not None:
        raise error
    return answer


def body_head(response: Answer, secrets: Sequence[str] = (), limit: int = BODY_HEAD_CHARS) -> str:
    """The first ``limit`` characters of the body, secrets scrubbed, for logs and errors."""
    raw = response.body
    # Redact before cutting, so a secret straddling the cut cannot leak its first half.
    text = redact(raw.decode("utf-8", "replace"), secrets)
    return _truncate(text, limit)


class LogThrottle:
    """Lets one log line per key through each ``interval`` seconds and counts the ones held back.

    An API answering a portal's page fails every request; one line per sink and endpoint every
    30 s, with the count since the last line, says as much as thousands of lines would.
    """

    def __init__(self, interval: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._interval = interval
        self._clock = clock
        self._lock = threading.Lock()  # sinks of several event loops (spool forwarder) share it
        self._last: dict[tuple[str, str], float] = {}
        self._held: dict[tuple[str, str], int] = {}

    def admit(self, key: tuple[str, str]) -> int | None:
        """The number of occurrences this line stands for (itself included), or None to stay quiet."""
        now = self._clock()
        with self._lock:
            held = self._held.get(key, 0) + 1
            last = self._last.get(key)
            if last is not None and now - last < self._interval:
                self._held[key] = held
                return None
            self._last[key] = now
            self._held[key] = 0
            return held


UNEXPECTED_LOG = LogThrottle(UNEXPECTED_LOG_INTERVAL_SECONDS)


def unexpected_response(
    response: Answer,
    why: str,
    *,
    endpoint: str,
    target: Target,
    metrics: Metrics,
    secrets: Sequence[str] = (),
) -> UnexpectedResponseError:
    """Count and describe a success status whose body is not the contract's answer.

    The message carries the status and the start of the body (secrets redacted), so logs show
    what answered: a portal, a proxy, a wrong URL. A warning is logged at most once per
    :data:`UNEXPECTED_LOG_INTERVAL_SECONDS` per sink and endpoint, with the count since the last one.
    """
    metrics.unexpected_responses.labels(sink=target.value, endpoint=endpoint).inc()
    head = body_head(response, secrets)
    message = f"{endpoint}: HTTP {response.status} is not the API's answer ({why}); body: {head!r}"
    count = UNEXPECTED_LOG.admit((target.value, endpoint))
    if count is not None:
        logger.warning(
            "%s sink: %s answered HTTP %d without the contract's answer (%s), %d time(s) since the last"
            " such line; retrying, nothing acknowledged; body starts: %r",
            target.value,
            endpoint,
            response.status,
            why,
            count,
            head,
            extra={
                "sink": target.value,
                "endpoint": endpoint,
                "status": response.status,
                "count": count,
            },
        )
    return UnexpectedResponseError(message, status=response.status, endpoint=endpoint, body_head=head)


def json_object(response: Answer) -> dict[str, Any] | None:
    """The body parsed as a JSON object, or None (not JSON, or JSON but not an object)."""
    try:
        body = orjson.loads(response.body)
    except orjson.JSONDecodeError:
        return None
    return body if isinstance(body, dict) else None


class BatchAnswer(NamedTuple):
    """A 2xx batch answer read once: the acknowledged ids, or why it is not the contract's answer."""

    ids: frozenset[str]
    problem: str | None


def read_batch_answer(response: Answer, sent_ids: Sequence[str]) -> BatchAnswer:
    """Parse a 2xx batch answer once and check it is the contract's ``201 {"eventIds": [...]}``.

    ``eventIds`` must be a list of strings, without duplicates, each one an id that was sent
    (the API echoes the ``eventId`` each event carries, §5.1). Fewer ids than sent is a partial
    acknowledgement, handled by the sink (the missing ones are re-sent).
    """
    body = json_object(response)
    if body is None:
        return BatchAnswer(frozenset(), "not a JSON object")
    ids = body.get("eventIds")
    if not isinstance(ids, list) or not all(isinstance(item, str) for item in ids):
        return BatchAnswer(frozenset(), "no eventIds list of strings")
    unique = frozenset(ids)
    if len(ids) > len(sent_ids) or len(unique) != len(ids):
        return BatchAnswer(
            frozenset(), f"{len(ids)} eventIds ({len(unique)} distinct) for {len(sent_ids)} sent"
        )
    unknown = unique.difference(sent_ids)
    if unknown:
        return BatchAnswer(frozenset(), f"{len(unknown)} eventIds that were not sent")
    return BatchAnswer(unique, None)


def created_id(response: Answer, key: str) -> str | None:
    """The non-empty string id at ``key`` of a JSON object body (``sourceId``, ``id``), or None."""
    body = json_object(response)
    value = body.get(key) if body is not None else None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)  # the Event Store's id may be a number; the blocks keep str(id) (§5.1)
    return value if isinstance(value, str) and value else None
