"""The seam between a transport and the pipeline."""

from __future__ import annotations

import asyncio
from typing import Protocol

from consumer.pipeline import Pipeline


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

    async def run(self, pipeline: Pipeline, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set (a broker) or the input is exhausted (a file)."""
        ...

    async def aclose(self) -> None:
        """After the pipeline drained: final commit/acknowledgements, then disconnect."""
        ...
