"""When the stand-in accepted each event, and how long after its ``timestamp`` (for benchmarks).

The benchmark puts the publish time in each message; the consumer carries it into the event's
``timestamp``; the stand-in subtracts it from the moment it accepted the event. Kept compactly
(8 bytes per event, accepted counts per 50 ms slot), so a million events cost a few megabytes.
"""

from __future__ import annotations

import threading
import time
from array import array
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, Final

SLOT_SECONDS: Final = 0.05
PERCENTILES: Final = (50.0, 90.0, 99.0, 99.9)


def percentile(ordered: array[float] | list[float], pct: float) -> float:
    """The ``pct`` percentile (nearest rank) of an ascending sequence; NaN when it is empty."""
    if not ordered:
        return float("nan")
    rank = max(0, min(len(ordered) - 1, round(pct / 100.0 * len(ordered) + 0.5) - 1))
    return float(ordered[rank])


class AcceptanceLog:
    """Thread-safe record of accepted events: count, first/last time, latencies, a timeline."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._latencies: array[float] = array("d")
        self._slots: dict[int, int] = {}
        self._count = 0
        self._first: float | None = None
        self._last: float | None = None

    def reset(self) -> None:
        """Forget everything."""
        with self._lock:
            self._latencies = array("d")
            self._slots = {}
            self._count = 0
            self._first = self._last = None

    def record(self, timestamps: Iterable[Any]) -> None:
        """Record events accepted now, given their ``timestamp`` values (ISO texts once validated).

        A value that is no ISO time (only possible when the caller skipped validation) counts as
        accepted without a latency.
        """
        now = self._clock()
        latencies: list[float] = []
        accepted = 0
        for text in timestamps:
            accepted += 1
            try:
                latencies.append(now - datetime.fromisoformat(text).timestamp())
            except (TypeError, ValueError):
                continue
        slot = int(now / SLOT_SECONDS)
        with self._lock:
            self._latencies.extend(latencies)
            self._slots[slot] = self._slots.get(slot, 0) + accepted
            self._count += accepted
            if self._first is None:
                self._first = now
            self._last = now

    def count(self) -> dict[str, Any]:
        """Return the cheap summary: ``{"count", "first", "last"}`` (epoch seconds or null)."""
        with self._lock:
            return {"count": self._count, "first": self._first, "last": self._last}

    def summary(self, *, timeline: bool = True) -> dict[str, Any]:
        """Return count, first/last, latency percentiles (seconds) and the accepted-per-slot timeline."""
        with self._lock:
            ordered = sorted(self._latencies)
            slots = sorted(self._slots.items())
            out: dict[str, Any] = {"count": self._count, "first": self._first, "last": self._last}
        out["latency"] = {
            **{f"p{pct:g}": percentile(ordered, pct) for pct in PERCENTILES},
            "min": ordered[0] if ordered else float("nan"),
            "max": ordered[-1] if ordered else float("nan"),
            "mean": sum(ordered) / len(ordered) if ordered else float("nan"),
        }
        if timeline:
            out["slot_seconds"] = SLOT_SECONDS
            out["timeline"] = [[slot * SLOT_SECONDS, count] for slot, count in slots]
        return out
