"""Messages from a JSONL file or standard input: backfill, replay and the demo.

Each line is one of:

- ``{"topic": "...", "payload": <JSON value or string>}``: a message on that topic; a string
  payload is taken as the raw text of the message (so invalid JSON can be replayed as it was);
- ``{"topic": "...", "payload_base64": "..."}``: byte-exact payload;
- a dead-letter record written by this consumer (``payload_base64`` and ``coordinates.topic``);
- anything else: the line itself is the message, on the configured default topic.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import orjson

from consumer.model import InboundMessage
from consumer.sources.base import Intake

_CHUNK_LINES = 500


def parse_line(line: bytes, default_topic: str, received_at: float) -> InboundMessage:
    """Interpret one JSONL line as a message (see the module docstring)."""
    stripped = line.rstrip(b"\r\n")
    record: Any = None
    if stripped.startswith(b"{"):
        try:
            record = orjson.loads(stripped)
        except orjson.JSONDecodeError:
            record = None
    if isinstance(record, dict):
        topic = record.get("topic")
        coordinates = record.get("coordinates")
        if topic is None and isinstance(coordinates, dict):
            topic = coordinates.get("topic")
        payload = _payload_of(record)
        if isinstance(topic, str) and payload is not None:
            key = record.get("key")
            return InboundMessage(
                source="file",
                topic=topic,
                payload=payload,
                received_at=received_at,
                subscription="file",
                key=key.encode() if isinstance(key, str) else None,
            )
    return InboundMessage(
        source="file", topic=default_topic, payload=stripped, received_at=received_at, subscription="file"
    )


def _payload_of(record: dict[str, Any]) -> bytes | None:
    encoded = record.get("payload_base64")
    if isinstance(encoded, str):
        try:
            return base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            return None
    if "payload" not in record:
        return None
    payload = record["payload"]
    if isinstance(payload, str):
        return payload.encode("utf-8")
    return orjson.dumps(payload)


class FileSource:
    """Reads a JSONL file (``-``: stdin) in chunks and submits each chunk as one batch."""

    name = "file"

    def __init__(self, path: str, default_topic: str) -> None:
        self._path = path
        self._default_topic = default_topic
        self._connected = False

    @property
    def connected(self) -> bool:
        """True while the input is open."""
        return self._connected

    async def run(self, pipeline: Intake, stop: asyncio.Event) -> None:
        """Submit every line, then return; ``stop`` ends it early."""
        handle: IO[bytes] = sys.stdin.buffer if self._path == "-" else Path(self._path).open("rb")  # noqa: SIM115
        self._connected = True
        try:
            chunks = _chunks(handle)
            while not stop.is_set():
                lines = await asyncio.to_thread(next, chunks, None)
                if lines is None:
                    break
                now = time.time()
                messages = [parse_line(line, self._default_topic, now) for line in lines if line.strip()]
                await pipeline.submit(messages)
        finally:
            self._connected = False
            if handle is not sys.stdin.buffer:
                handle.close()

    async def aclose(self) -> None:
        """Nothing to commit: a file has no acknowledgements."""


def _chunks(handle: IO[bytes]) -> Iterator[list[bytes]]:
    chunk: list[bytes] = []
    for line in handle:
        chunk.append(line)
        if len(chunk) >= _CHUNK_LINES:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
