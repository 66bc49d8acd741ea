"""Dead letters appended to a local JSONL file, fsynced before the messages are acknowledged."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO

import orjson

from consumer.deadletter_record import DeadLetterRecord
from consumer.errors import DeadLetterError

log = logging.getLogger(__name__)

# Exceptions a damaged line can raise while being read as a record.
_UNREADABLE = (orjson.JSONDecodeError, AttributeError, KeyError, TypeError, ValueError)


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
            if _torn_tail(self.path):
                # A kill mid-append left a partial last line. Terminating it keeps every byte and
                # lets the next record start on its own line instead of being glued to the wreck.
                log.warning(
                    "dead-letter file %s ends with a partial record (interrupted write); "
                    "it is kept as an unreadable line and new records start on the next line",
                    self.path,
                )
                data = b"\n" + data
        self._file.write(data)
        self._file.flush()
        os.fsync(self._file.fileno())

    async def aclose(self) -> None:
        """Close the file."""
        async with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


def _torn_tail(path: Path) -> bool:
    """Whether a non-empty file's last byte is not a newline."""
    with path.open("rb") as handle:
        handle.seek(0, os.SEEK_END)
        if handle.tell() == 0:
            return False
        handle.seek(-1, os.SEEK_END)
        return handle.read(1) != b"\n"


def parse_dead_letter_line(path: Path, number: int, line: bytes) -> DeadLetterRecord | None:
    """The record on line ``number``; None, with a warning, when the line is unreadable (torn)."""
    try:
        return DeadLetterRecord.from_json_dict(orjson.loads(line))
    except _UNREADABLE as exc:
        log.warning(
            "dead-letter file %s line %d is unreadable (%d bytes, likely an interrupted write), skipped: %s",
            path,
            number,
            len(line),
            type(exc).__name__,
        )
        return None


def read_dead_letters(path: Path) -> Iterator[DeadLetterRecord]:
    """Read the records of a JSONL dead-letter file, in order, skipping unreadable lines."""
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip() and (record := parse_dead_letter_line(path, number, line)) is not None:
                yield record
