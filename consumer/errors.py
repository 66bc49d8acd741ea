"""Typed errors: every retry, split and dead-letter decision is taken from these classes.

The tree::

    ConsumerError
    ├── ConfigError                 bad settings or routes file; the process refuses to start
    ├── MessageError                this message can never become an event: dead-letter it
    │   │                           (carries the reason code and the field path)
    │   ├── DecodeError             not JSON, NaN/Infinity, too large, too deep
    │   ├── FormatError             JSON, but no supported model output or envelope shape
    │   ├── RouteError              no route matches the topic (reason ``no_route``)
    │   └── ValidationError         a field breaks a limit or enum of the API contract
    ├── DeliveryError               the sink could not deliver (raised by sinks only)
    │   ├── RetryableDeliveryError  network error, 408/425/429/5xx/529: back off and try again
    │   │   ├── UnexpectedResponseError  a 2xx that is not the contract's answer (HTML, no ids):
    │   │   │                   nothing is known stored, so retried like a 5xx, never acked
    │   │   └── AnswerTooLargeError  an answer larger than any of the API's: not read, retried
    │   ├── DeliveryTimeoutError    retryable failures until the give-up deadline passed
    │   ├── MissingSourceIdError    an image upload's 2xx without a ``sourceId`` (the cause of
    │   │                           an UnexpectedResponseError, for the retry label)
    │   ├── AuthError               401/403: not the events' fault; mark not-ready, retry slowly
    │   └── RejectedError           the API refused the request for good (400/413/422, other 4xx):
    │       │                       split the batch to isolate the bad events
    │       └── ImageRejectedError  one image can never be used; its events carry ``reason``
    ├── DeadLetterError             the dead-letter destination failed: acknowledge nothing
    ├── SpoolFailure                a spool operation failed; ``cause`` names why (readiness)
    └── KafkaSourceError            the Kafka consumer cannot go on (fatal librdkafka error)

Library errors (aiohttp, orjson, pydantic, sqlite3, librdkafka) are translated into this tree once,
at the edge that calls the library.
"""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    """Machine-readable reason codes, used as the ``reason`` label and in dead-letter records."""

    # Decoding
    MESSAGE_TOO_LARGE = "message_too_large"
    INVALID_JSON = "invalid_json"
    NON_FINITE_NUMBER = "non_finite_number"
    TOO_DEEP = "too_deep"
    NOT_AN_OBJECT = "not_an_object"
    # Shape
    UNKNOWN_FORMAT = "unknown_format"
    INVALID_PREDICTIONS = "invalid_predictions"
    # Routing
    NO_ROUTE = "no_route"
    # Validation
    MISSING_FIELD = "missing_field"
    INVALID_TYPE = "invalid_type"
    INVALID_VALUE = "invalid_value"
    TOO_LONG = "too_long"
    TOO_MANY = "too_many"
    TIMESTAMP_OUT_OF_RANGE = "timestamp_out_of_range"
    INVALID_IMAGE = "invalid_image"
    IMAGE_URL_NOT_ALLOWED = "image_url_not_allowed"
    # Delivery (dead-lettered after the API refused an event for good)
    API_REJECTED = "api_rejected"
    IMAGE_REJECTED = "image_rejected"
    IMAGE_FETCH_FAILED = "image_fetch_failed"
    IMAGE_UNAVAILABLE = "image_unavailable"
    DELIVERY_TIMEOUT = "delivery_timeout"
    NOT_ACKNOWLEDGED = "not_acknowledged_by_api"
    UNEXPECTED_RESPONSE = "unexpected_response"


class ConsumerError(Exception):
    """Root of every error this package raises on purpose."""


class ConfigError(ConsumerError):
    """Settings or routes are invalid; the message says which key and why."""


class MessageError(ConsumerError):
    """A message that can never become a Vision Event.

    ``path`` points into the message (``predictions[3].confidence``), or is empty when the whole
    message is at fault.
    """

    def __init__(self, reason: Reason, message: str, path: str = "") -> None:
        super().__init__(message)
        self.reason = reason
        self.path = path
        self.detail = message

    def __str__(self) -> str:
        where = f" at {self.path}" if self.path else ""
        return f"{self.reason}{where}: {self.detail}"


class DecodeError(MessageError):
    """The bytes are not an acceptable JSON document."""


class FormatError(MessageError):
    """The JSON has no shape this consumer understands."""


class RouteError(MessageError):
    """No route matches the message's topic."""


class ValidationError(MessageError):
    """A field breaks a limit or enum of the Vision Events contract."""


class DeliveryError(ConsumerError):
    """The sink could not deliver a request."""

    def __init__(self, message: str, *, status: int | None = None, endpoint: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.endpoint = endpoint


class RetryableDeliveryError(DeliveryError):
    """Transient failure: the same request may succeed later.

    ``retry_after`` is the server's ``Retry-After`` in seconds, when it sent one.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        endpoint: str = "",
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, status=status, endpoint=endpoint)
        self.retry_after = retry_after


class UnexpectedResponseError(RetryableDeliveryError):
    """A success status whose body is not the contract's answer (``Reason.UNEXPECTED_RESPONSE``).

    A captive portal's HTML page, a proxy's ``{"ok": true}``, a 204 or a wrong ``eventIds`` list
    says nothing was stored, so the request is retried like a 5xx and its events are never
    acknowledged on the strength of it. ``body_head`` is the start of the body, secrets redacted.
    """

    reason = Reason.UNEXPECTED_RESPONSE

    def __init__(
        self, message: str, *, status: int | None = None, endpoint: str = "", body_head: str = ""
    ) -> None:
        super().__init__(message, status=status, endpoint=endpoint)
        self.body_head = body_head


class AnswerTooLargeError(RetryableDeliveryError):
    """An answer body over ``limit`` bytes: no answer of the API is that large, so it is not read.

    Nothing is known stored, so the request is retried like a 5xx (bounded by the give-up time).
    """

    def __init__(self, message: str, *, status: int | None = None, endpoint: str = "", limit: int) -> None:
        super().__init__(message, status=status, endpoint=endpoint)
        self.limit = limit


class AuthError(DeliveryError):
    """The API refused our credentials. Events are not at fault and are never dead-lettered for it."""


class RejectedError(DeliveryError):
    """The API refused the request for good; the body's explanation is kept in ``detail``."""

    def __init__(
        self, message: str, *, status: int | None = None, endpoint: str = "", detail: str = ""
    ) -> None:
        super().__init__(message, status=status, endpoint=endpoint)
        self.detail = detail


class DeliveryTimeoutError(DeliveryError):
    """A request kept failing with retryable errors until the give-up deadline passed."""

    def __init__(self, message: str, *, status: int | None, endpoint: str, attempts: int) -> None:
        super().__init__(message, status=status, endpoint=endpoint)
        self.attempts = attempts


class MissingSourceIdError(DeliveryError):
    """The upload endpoint answered 2xx without a usable ``sourceId`` (the cause of a retry)."""


class ImageRejectedError(RejectedError):
    """One image can never be used; the events that carry it are rejected with ``reason``."""

    def __init__(
        self,
        message: str,
        *,
        reason: Reason,
        status: int | None = None,
        endpoint: str = "",
        detail: str = "",
        attempts: int = 1,
    ) -> None:
        super().__init__(message, status=status, endpoint=endpoint, detail=detail or message)
        self.reason = reason
        self.attempts = attempts


class DeadLetterError(ConsumerError):
    """The dead-letter destination could not confirm a write; nothing may be acknowledged."""


class SpoolFailure(ConsumerError):  # noqa: N818 - a state of the store, reported, not a programming error
    """A spool operation failed; ``cause`` is the metric label and the readiness reason."""

    def __init__(self, cause: str, message: str) -> None:
        super().__init__(message)
        self.cause = cause


class KafkaSourceError(ConsumerError):
    """The Kafka consumer cannot go on: a fatal librdkafka error, or the hand-off failed."""
