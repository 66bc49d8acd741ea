"""An in-memory :class:`~consumer.sources.base.Intake` for driving a source without a pipeline."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence

from consumer.model import InboundMessage


class RecordingIntake:
    """Keeps every submitted message and acknowledges none of them unless told to.

    Like the pipeline, it has one notion of room: while ``room`` is closed ``has_room`` answers
    False and ``submit`` waits until it opens. It counts what a source did to it, so a test can
    tell a source that asks first (Kafka) from one that waits inside ``submit`` (MQTT, file):

    - ``submits``: calls of ``submit`` (also those still waiting);
    - ``asked``: calls of ``has_room``;
    - ``waiting`` / ``most_waiting``: submits waiting for room now / at most at once.
    """

    def __init__(self, *, room: bool = True) -> None:
        self.messages: list[InboundMessage] = []
        self.submits = 0
        self.asked = 0
        self.waiting = 0
        self.most_waiting = 0
        self._room = asyncio.Event()
        if room:
            self._room.set()

    def open(self) -> None:
        """Make room: waiting submits go through."""
        self._room.set()

    def close(self) -> None:
        """Take the room away: ``has_room`` answers False, ``submit`` waits."""
        self._room.clear()

    def has_room(self, incoming: int = 1, incoming_bytes: int = 0) -> bool:
        """Whether the room is open (sources call it from their own thread; a bool read is safe)."""
        self.asked += 1
        return self._room.is_set()

    async def submit(self, messages: Sequence[InboundMessage]) -> None:
        """Wait for room, then keep ``messages`` (unacknowledged)."""
        self.submits += 1
        self.waiting += 1
        self.most_waiting = max(self.most_waiting, self.waiting)
        try:
            await self._room.wait()
        finally:
            self.waiting -= 1
        self.messages.extend(messages)

    def payloads(self) -> list[bytes]:
        """The payloads taken so far, in submission order."""
        return [message.payload for message in self.messages]

    async def until(self, predicate: Callable[[], bool], what: str, bound: float = 30.0) -> None:
        """Wait until ``predicate`` holds; fail saying ``what`` did not happen after ``bound`` seconds."""
        deadline = time.monotonic() + bound
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {bound}s waiting for {what}")
            await asyncio.sleep(0.02)
