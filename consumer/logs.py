"""Structured logs: one JSON object per line on standard error.

``extra={...}`` fields of a log call become top-level keys. Configuration secrets are SecretStr
and never reach a log call; the formatter also never renders request headers, which is where an
API key could otherwise leak. As a last line of defence, ``run`` gives the handler a
:class:`~consumer.redaction.Redactor` of every configured secret: a secret echoed back by a server
or a library (raw, URL-encoded, base64) is masked in the rendered line, and so are URL passwords.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any

import orjson

from consumer.redaction import Redactor

_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "taskName",
}


class JsonFormatter(logging.Formatter):
    """Formats a record as a single JSON line with its extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        """Render ``record``."""
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()


class RedactingFormatter(logging.Formatter):
    """Wraps another formatter and masks every secret form in the line it renders."""

    def __init__(self, inner: logging.Formatter, redactor: Redactor) -> None:
        super().__init__()
        self._inner = inner
        self._redactor = redactor

    def format(self, record: logging.LogRecord) -> str:
        """Render ``record`` with the inner formatter, then redact the whole line."""
        return self._redactor(self._inner.format(record))


def configure_logging(level: str = "INFO", fmt: str = "json", redactor: Redactor | None = None) -> None:
    """Send logs to stderr as JSON (or plain text for a terminal), ``redactor`` applied to each line."""
    handler = logging.StreamHandler(sys.stderr)
    formatter: logging.Formatter = (
        JsonFormatter()
        if fmt == "json"
        else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    handler.setFormatter(formatter if redactor is None else RedactingFormatter(formatter, redactor))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiohttp's client logs at DEBUG/INFO (and warns on unclosed sessions): keep only warnings.
    logging.getLogger("aiohttp.client").setLevel(logging.WARNING)
