"""Log throttling: each key at most once per interval, counting what was held back meanwhile."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any


class Throttle:
    """Lets each key through at most once per interval, counting what it held back meanwhile.

    Thread-safe: librdkafka calls back on its own threads and on the consumer's.
    """

    def __init__(self, interval: float) -> None:
        self._interval = interval
        self._lock = threading.Lock()
        self._last: dict[object, float] = {}
        self._held: dict[object, int] = {}

    def allow(self, key: object) -> int | None:
        """None when ``key`` is held back; else how many of it were held back since it last passed."""
        now = time.monotonic()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self._interval:
                self._held[key] = self._held.get(key, 0) + 1
                return None
            self._last[key] = now
            return self._held.pop(key, 0)


class RateLimitedLog:
    """Warnings to ``logger`` keyed by an error code, each code at most once per interval."""

    def __init__(self, logger: logging.Logger, interval: float) -> None:
        self._logger = logger
        self._throttle = Throttle(interval)

    def warning(self, code: str, message: str, **extra: Any) -> None:
        """Log ``message`` unless ``code`` was logged less than an interval ago."""
        suppressed = self._throttle.allow(code)
        if suppressed is not None:
            self._logger.warning(message, extra={**extra, "code": code, "suppressed": suppressed})
