"""The seam between a transport and the pipeline."""

from __future__ import annotations

import asyncio
from typing import Protocol

from consumer.pipeline import Pipeline


class Source(Protocol):
    """Reads messages and submits them to the pipeline in batches until ``stop`` is set or input ends."""

    name: str

    @property
    def connected(self) -> bool:
        """Whether the source can currently receive (readiness)."""
        ...

    async def run(self, pipeline: Pipeline, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set (a broker) or the input is exhausted (a file)."""
        ...
