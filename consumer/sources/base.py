"""The seam between a transport and the pipeline: what a source needs of it, and what it offers.

Sources see the pipeline only as an :class:`Intake` (``submit`` and ``has_room``), never as the
concrete ``Pipeline``: the import-linter contract in ``pyproject.toml`` forbids
``consumer.sources`` to import ``consumer.pipeline``. Any intake will do (an in-memory one in
tests, the pipeline in the app), and backpressure has one owner.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Protocol

from consumer.model import InboundMessage


class Intake(Protocol):
    """Where a source hands its messages over, a batch at a time (the pipeline, in the app).

    Backpressure is decided here and only here: ``submit`` waits while the in-flight bounds are
    reached, and ``has_room`` tells in advance whether it would. A source that must not block
    (Kafka's consumer thread, MQTT's forced reconnect) asks ``has_room``; it never keeps its own
    count of what is in flight.
    """

    async def submit(self, messages: Sequence[InboundMessage]) -> None:
        """Take ``messages``; returns once they are accepted (waits while there is no room)."""
        ...

    def has_room(self, incoming: int = 1, incoming_bytes: int = 0) -> bool:
        """Whether ``submit`` of ``incoming`` messages of ``incoming_bytes`` would not wait.

        Safe to call from a source's own thread.
        """
        ...


class Source(Protocol):
    """Reads messages and submits them to the pipeline in batches until ``stop`` is set or input ends.

    Shutdown order, kept by the app: ``run`` returns (stop was set, or the input ended); the app
    drains the pipeline, whose acknowledgements still reach the source; then ``aclose`` commits or
    acknowledges what was settled and disconnects.
    """

    name: str

    @property
    def connected(self) -> bool:
        """Whether the source can currently receive (readiness)."""
        ...

    async def run(self, pipeline: Intake, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set (a broker) or the input is exhausted (a file)."""
        ...

    async def aclose(self) -> None:
        """After the pipeline drained: final commit/acknowledgements, then disconnect."""
        ...
