"""Dead letters appended to a local JSONL file, fsynced before the messages are acknowledged."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO

import orjson

from consumer.deadletter.base import DeadLetterRecord
from consumer.errors import DeadLetterError


class JsonlDeadLetterWriter:
    """Appends one JSON object per record. The file is opened lazily and kept open."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[bytes] | None = None
        self._lock = asyncio.Lock()

    async def write(self, records: Sequence[DeadLetterRecord]) -> None:
        """Append and fsync, off the event loop (disk latency must not stall deliveries)."""
        if not records:
            return
        data = b"".join(orjson.dumps(r.to_json_dict()) + b"\n" for r in records)
        async with self._lock:
            try:
                await asyncio.to_thread(self._append, data)
            except OSError as exc:
                raise DeadLetterError(f"cannot write dead letters to {self.path}: {exc}") from exc

    def _append(self, data: bytes) -> None:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("ab")
        self._file.write(data)
        self._file.flush()
        os.fsync(self._file.fileno())

    async def aclose(self) -> None:
        """Close the file."""
        async with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


def read_dead_letters(path: Path) -> Iterator[DeadLetterRecord]:
    """Read the records of a JSONL dead-letter file, in order."""
    with path.open("rb") as handle:
        for line in handle:
            if line.strip():
                yield DeadLetterRecord.from_json_dict(orjson.loads(line))
