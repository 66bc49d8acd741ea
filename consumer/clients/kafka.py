"""librdkafka settings: building the consumer's, telling secrets apart, masking and redacting them.

Shared by the Kafka source, the Kafka dead-letter writer and replay. Secrets never leave this
module in clear text through a log or an error: log :func:`mask_settings` of a settings dict,
pass library error text through :func:`redact_settings` (both use :mod:`consumer.redaction`).
:class:`LibrdkafkaLog` is where librdkafka's own log lines go, rate-limited.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Final

from consumer.clients.throttle import Throttle
from consumer.config import KafkaSourceConfig
from consumer.redaction import MASK, mask_url_credentials, redact

log = logging.getLogger(__name__)

Settings = dict[str, str | int | float | bool]

# librdkafka settings whose values are secrets (masked in logs and reprs, redacted from errors).
_SECRET_SETTING: Final = re.compile(
    r"password|secret|jaas|token|credential|authorization|api[_.-]?key|\.pem|oauthbearer\.config",
    re.IGNORECASE,
)
# librdkafka settings that say how to reach and authenticate to a cluster.
_SECURITY_SETTING: Final = re.compile(r"^(security\.protocol$|sasl\.|ssl\.|ssl_|enable\.ssl\.)")

ERROR_LOG_INTERVAL_SECONDS: Final = 30.0


def is_secret_setting(key: str) -> bool:
    """Whether a librdkafka setting holds a secret."""
    return bool(_SECRET_SETTING.search(key))


def is_security_setting(key: str) -> bool:
    """Whether a librdkafka setting belongs to the connection's security (protocol, SASL, TLS)."""
    return bool(_SECURITY_SETTING.match(key))


def mask_settings(settings: Mapping[str, object]) -> dict[str, object]:
    """A copy safe to log: secret values replaced by ``**********``, URL passwords by ``****``.

    Callbacks are left out.
    """
    return {
        key: MASK if is_secret_setting(key) else _mask_value(value)
        for key, value in settings.items()
        if isinstance(value, str | int | float | bool)
    }


def _mask_value(value: object) -> object:
    return mask_url_credentials(value) if isinstance(value, str) else value


def secret_values(settings: Mapping[str, object]) -> list[str]:
    """The values of the secret settings of ``settings``."""
    return [value for key, value in settings.items() if is_secret_setting(key) and isinstance(value, str)]


def redact_settings(text: str, settings: Mapping[str, object]) -> str:
    """``text`` with every form of every secret value of ``settings`` replaced by ``**********``.

    Raw, URL-encoded and base64 forms (``consumer.redaction``, computed once per secret), and
    URL passwords. Used on error paths only.
    """
    return redact(text, secret_values(settings))


def consumer_settings(config: KafkaSourceConfig) -> Settings:
    """The librdkafka consumer settings: our defaults, then ``config.librdkafka()`` on top.

    Two settings are forced, because the commit design depends on them: offsets are stored by
    the source only after a message settled (``enable.auto.offset.store=false``), and
    committed by it on a timer, on revoke and at shutdown (``enable.auto.commit=false``).
    Secrets included: never log the result, log :func:`mask_settings` of it.
    """
    settings: Settings = {
        "group.id": config.group_id,
        "client.id": "vision-events-consumer",
        "auto.offset.reset": "earliest",
        "statistics.interval.ms": 5000,
        "enable.partition.eof": False,
    }
    passthrough = config.librdkafka()
    # The KIP-848 protocol assigns on the broker and refuses a client-side assignor.
    if str(passthrough.get("group.protocol", "classic")).lower() != "consumer":
        settings["partition.assignment.strategy"] = "cooperative-sticky"
    settings.update(passthrough)
    for key in ("enable.auto.offset.store", "enable.auto.commit"):
        if key in passthrough and passthrough[key] not in (False, "false"):
            log.warning(
                "ignoring %s=%s: this source stores and commits offsets itself", key, passthrough[key]
            )
        settings[key] = False
    return settings


class LibrdkafkaLog:
    """Where librdkafka's own log lines go (its ``logger`` setting): Python logging, rate-limited.

    librdkafka logs every failed reconnect; a broker that is down for an hour must not write
    thousands of identical lines. Each (level, facility) passes at most once per interval.
    """

    def __init__(self, name: str, interval: float = ERROR_LOG_INTERVAL_SECONDS) -> None:
        self._logger = logging.getLogger(name)
        self._throttle = Throttle(interval)

    def log(self, level: int, msg: str, *args: object) -> None:
        """Called by confluent-kafka as ``log(level, "%s [%s] %s", facility, client, text)``."""
        if not self._logger.isEnabledFor(level):
            return
        suppressed = self._throttle.allow((level, args[0] if args else msg))
        if suppressed is not None:
            self._logger.log(level, msg, *args, extra={"suppressed": suppressed} if suppressed else None)
