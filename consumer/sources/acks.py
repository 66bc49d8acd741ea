"""Ordered acknowledgement: release only the contiguous prefix of settled messages.

Kafka commits an offset per partition meaning "everything before this is done", and MQTT requires
PUBACKs in the order messages arrived. Both need the same bookkeeping: messages are registered
in receive order, settled in any order, and released in receive order once everything before
them is settled. Thread-safe: transports register from their own thread, the pipeline settles
from the event loop.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

Token = TypeVar("Token")


@dataclass(slots=True)
class _Entry(Generic[Token]):
    token: Token
    done: bool = False


@dataclass(slots=True)
class _Lane(Generic[Token]):
    entries: deque[_Entry[Token]] = field(default_factory=deque)


class OrderedAcks(Generic[Token]):
    """Per-lane (partition, or MQTT connection) ordered release of settled tokens.

    ``register`` returns a handle; ``settle(handle)`` marks it done and returns the tokens that
    became releasable, oldest first. A lane can be dropped (partition revoked, connection lost):
    handles of a dropped lane settle to nothing, so a stale acknowledgement can never release a
    token of a newer lane with the same key.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lanes: dict[Hashable, _Lane[Token]] = {}

    def register(self, lane: Hashable, token: Token) -> tuple[_Lane[Token], _Entry[Token]]:
        """Record a received message; returns the handle to settle it with."""
        with self._lock:
            current = self._lanes.get(lane)
            if current is None:
                current = self._lanes[lane] = _Lane()
            entry = _Entry(token)
            current.entries.append(entry)
            return current, entry

    def register_many(
        self, items: Sequence[tuple[Hashable, Token]]
    ) -> list[tuple[_Lane[Token], _Entry[Token]]]:
        """``register`` for each (lane, token) in order, under one lock; returns the handles."""
        handles: list[tuple[_Lane[Token], _Entry[Token]]] = []
        append = handles.append
        with self._lock:
            lanes = self._lanes
            for lane, token in items:
                current = lanes.get(lane)
                if current is None:
                    current = lanes[lane] = _Lane()
                entry = _Entry(token)
                current.entries.append(entry)
                append((current, entry))
        return handles

    def settle(self, handle: tuple[_Lane[Token], _Entry[Token]]) -> list[Token]:
        """Mark a message settled; returns the tokens now releasable in receive order."""
        lane, entry = handle
        with self._lock:
            entry.done = True
            released: list[Token] = []
            entries = lane.entries
            while entries and entries[0].done:
                released.append(entries.popleft().token)
            return released

    def settle_many(
        self, handles: Sequence[tuple[_Lane[Token], _Entry[Token]]]
    ) -> list[tuple[_Lane[Token], list[Token]]]:
        """``settle`` each handle under one lock; returns each touched lane with its released tokens.

        A lane is drained once, after all its handles are marked: a batch settled together
        releases in one pass what settling one by one would release in many.
        """
        touched: dict[int, _Lane[Token]] = {}
        with self._lock:
            for lane, entry in handles:
                entry.done = True
                touched[id(lane)] = lane
            result: list[tuple[_Lane[Token], list[Token]]] = []
            for lane in touched.values():
                entries = lane.entries
                released: list[Token] = []
                while entries and entries[0].done:
                    released.append(entries.popleft().token)
                if released:
                    result.append((lane, released))
            return result

    def pending(self, lane: Hashable) -> int:
        """Messages of ``lane`` received and not yet released."""
        with self._lock:
            current = self._lanes.get(lane)
            return 0 if current is None else len(current.entries)

    def drop(self, lane: Hashable) -> None:
        """Forget a lane; its outstanding handles will release nothing."""
        with self._lock:
            current = self._lanes.pop(lane, None)
            if current is not None:
                current.entries.clear()

    def drop_all(self) -> None:
        """Forget every lane."""
        with self._lock:
            for lane in self._lanes.values():
                lane.entries.clear()
            self._lanes.clear()
