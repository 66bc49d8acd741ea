"""Hand messages from a transport's own thread to the pipeline's event loop, a batch at a time.

A transport thread (paho's network loop) calls ``put`` per message; that only appends to a list
under a lock. The loop is woken once per batch, not once per message, and submits everything
that accumulated meanwhile. ``put`` blocks while ``max_buffered`` messages wait, which pushes back
on the transport (MQTT then stops reading; the broker holds the rest).
"""

from __future__ import annotations

import asyncio
import threading

from consumer.model import InboundMessage
from consumer.sources.base import Intake


class BatchHandoff:
    """A bounded, batch-draining bridge from one thread into the pipeline."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, max_buffered: int = 10_000, max_batch: int = 2_000
    ) -> None:
        self._loop = loop
        self._max_buffered = max_buffered
        self._max_batch = max_batch
        self._buffer: list[InboundMessage] = []
        self._condition = threading.Condition()
        self._wake = asyncio.Event()
        self._closed = False

    def put(self, message: InboundMessage, timeout: float | None = None) -> bool:
        """Queue a message (any thread). Returns False if it timed out or the handoff is closed."""
        with self._condition:
            if len(self._buffer) >= self._max_buffered and not self._condition.wait_for(
                lambda: len(self._buffer) < self._max_buffered or self._closed, timeout
            ):
                return False
            if self._closed:
                return False
            first = not self._buffer
            self._buffer.append(message)
        if first:
            self._loop.call_soon_threadsafe(self._wake.set)
        return True

    def close(self) -> None:
        """Refuse further messages and release blocked producers."""
        with self._condition:
            self._closed = True
            self._condition.notify_all()
        self._loop.call_soon_threadsafe(self._wake.set)

    def _take(self) -> list[InboundMessage]:
        with self._condition:
            batch = self._buffer[: self._max_batch]
            del self._buffer[: self._max_batch]
            self._condition.notify_all()
            return batch

    async def run(self, pipeline: Intake, stop: asyncio.Event) -> None:
        """Submit batches until ``stop`` is set or the handoff is closed.

        Messages still buffered then are left unacknowledged; the broker redelivers them.
        """
        stopper = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                batch = self._take()
                if batch:
                    await pipeline.submit(batch)
                    continue
                if self._closed:
                    return
                self._wake.clear()
                with self._condition:
                    if self._buffer:
                        continue
                waker = asyncio.ensure_future(self._wake.wait())
                await asyncio.wait({waker, stopper}, return_when=asyncio.FIRST_COMPLETED)
                waker.cancel()
        finally:
            stopper.cancel()
