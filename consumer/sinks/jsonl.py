"""Dry run: write each event's cloud body as one JSON line, to a file or standard output.

Images are not uploaded (nor URLs fetched); their ids are placeholders that say which image it
was: ``placeholder:sha256:<16 hex>`` for inline images (the hash of the decoded bytes, as used for
upload de-duplication) and ``placeholder:url:<16 hex>`` (a hash of the URL) for URL images. An
image that already has a ``source_id`` keeps it. Every event is delivered, except one whose inline
image does not decode (``Reason.INVALID_IMAGE``) or whose body is not serializable
(``Reason.INVALID_VALUE``), exactly as the cloud sink would refuse them before any request. A failing
write to the file raises ``OSError``: a dry run that cannot write has nothing to report.
"""

from __future__ import annotations

import asyncio
import hashlib
import sys
from collections.abc import Sequence
from typing import BinaryIO

import orjson

from consumer import wire
from consumer.config import JsonlSinkConfig
from consumer.errors import Reason, ValidationError
from consumer.model import ImageSource, VisionEvent
from consumer.sinks.base import DeliveryReport, Rejection

PLACEHOLDER_PREFIX = "placeholder:"


def placeholder_id(image: ImageSource | None) -> str | None:
    """Return a stand-in upload id for ``image`` (its own ``source_id`` when it has one)."""
    if image is None:
        return None
    if image.source_id is not None:
        return image.source_id
    if image.url is not None:
        return f"{PLACEHOLDER_PREFIX}url:{hashlib.sha256(image.url.encode()).hexdigest()[:16]}"
    return PLACEHOLDER_PREFIX + image.content_key()[: len("sha256:") + 16]


class JsonlSink:
    """Writes the cloud body of each event as a JSON line; nothing is sent anywhere."""

    name: str = "jsonl"

    def __init__(self, config: JsonlSinkConfig) -> None:
        self._path = config.path
        self._file: BinaryIO | None = None
        self._lock = asyncio.Lock()

    @property
    def answers_unexpected(self) -> bool:
        """Always False: a file gives no answers to check."""
        return False

    @property
    def auth_failing(self) -> bool:
        """Always False: there are no credentials."""
        return False

    async def aclose(self) -> None:
        """Close the output file (standard output is left open)."""
        if self._file is not None:
            file, self._file = self._file, None
            await asyncio.to_thread(file.close)

    async def deliver(self, events: Sequence[VisionEvent]) -> DeliveryReport:
        """Write one line per event and report them delivered."""
        report = DeliveryReport()
        lines: list[bytes] = []
        for event in events:
            try:
                output, input_ = placeholder_id(event.output_image), placeholder_id(event.input_image)
            except ValidationError as exc:
                report.rejected.append(Rejection(event, Reason.INVALID_IMAGE, exc.detail))
                continue
            try:
                line = orjson.dumps(wire.cloud_event(event, output, input_))
            except orjson.JSONEncodeError as exc:
                report.rejected.append(
                    Rejection(event, Reason.INVALID_VALUE, f"not serializable as JSON: {exc}")
                )
                continue
            lines.append(line + b"\n")
            report.delivered.append(event)
        if lines:
            async with self._lock:
                await self._write(b"".join(lines))
        return report

    async def _write(self, data: bytes) -> None:
        if self._path == "-":
            sys.stdout.write(data.decode("utf-8"))
            sys.stdout.flush()
            return
        if self._file is None:
            self._file = await asyncio.to_thread(open, self._path, "ab")
        file = self._file

        def write() -> None:
            file.write(data)
            file.flush()

        await asyncio.to_thread(write)
