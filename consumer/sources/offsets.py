"""Kafka offset bookkeeping: the committable offset of each partition, from acks in any order.

The pipeline settles messages in any order (batches finish out of order, dead letters settle
early); Kafka commits one offset per partition, meaning "everything before it is done". The
:class:`OffsetBook` keeps one :class:`~consumer.sources.acks.OrderedAcks` lane per
(topic, partition) and releases only the contiguous settled prefix, so a committed offset never
passes a message still in flight.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Sequence
from typing import Any

from consumer.sources.acks import OrderedAcks

Partition = tuple[str, int]


class OffsetBook:
    """The committable offset of each partition, from messages settled in any order.

    Thread-safe: the consumer thread registers messages and takes offsets, the event loop
    settles them through each message's ``ack``. ``on_release`` is called (from the settling
    thread) whenever a settle released something, to wake the consumer thread.
    """

    def __init__(self, on_release: Callable[[], None] | None = None) -> None:
        self._lock = threading.Lock()
        self._acks: OrderedAcks[int] = OrderedAcks()
        self._done: dict[Partition, int] = {}
        self._stored: dict[Partition, int] = {}
        self._last: dict[Partition, int] = {}
        self._on_release = on_release

    def register(self, topic: str, partition: int, offset: int) -> OffsetAck:
        """Record a received message (in receive order); returns the callable that settles it."""
        lane = (topic, partition)
        with self._lock:
            if offset <= self._last.get(lane, -1):
                # A rewind (seek, offset reset): start a new lane so the release order stays the
                # offset order; acks of the old lane's messages release nothing any more.
                self._acks.drop(lane)
            self._last[lane] = offset
            handle = self._acks.register(lane, offset)
        return OffsetAck(self, lane, handle)

    def register_many(self, messages: list[tuple[str, int, int]]) -> list[OffsetAck]:
        """``register`` for each (topic, partition, offset), in receive order, under one lock."""
        items: list[tuple[Partition, int]] = []
        with self._lock:
            last = dict(self._last)
            for topic, partition, offset in messages:
                lane = (topic, partition)
                if offset <= last.get(lane, -1):
                    break  # a rewind: let register handle it, one message at a time
                last[lane] = offset
                items.append((lane, offset))
            else:
                self._last.update(last)
                handles = self._acks.register_many(items)
                return [
                    OffsetAck(self, lane, handle)
                    for (lane, _offset), handle in zip(items, handles, strict=True)
                ]
        return [self.register(topic, partition, offset) for topic, partition, offset in messages]

    def _settle(self, lane: Partition, handle: tuple[Any, Any]) -> None:
        with self._lock:
            released = self._acks.settle(handle)
            if not released:
                return
            committable = released[-1] + 1
            if committable > self._done.get(lane, -1):
                self._done[lane] = committable
        if self._on_release is not None:
            self._on_release()

    def settle_many(self, acks: Sequence[OffsetAck]) -> None:
        """Settle the messages of ``acks`` (all of this book) at once: one lock, one wake-up."""
        with self._lock:
            handles = [ack.handle for ack in acks]
            lanes = {id(ack.handle[0]): ack.lane for ack in acks}
            released = self._acks.settle_many(handles)
            for lane_state, tokens in released:
                lane = lanes[id(lane_state)]
                committable = tokens[-1] + 1
                if committable > self._done.get(lane, -1):
                    self._done[lane] = committable
        if released and self._on_release is not None:
            self._on_release()

    def committable(self, partitions: Collection[Partition] | None = None) -> dict[Partition, int]:
        """The committable offset (last settled in order + 1) of each partition that has one."""
        with self._lock:
            return {
                lane: offset
                for lane, offset in self._done.items()
                if partitions is None or lane in partitions
            }

    def take_unstored(self, partitions: Collection[Partition]) -> dict[Partition, int]:
        """Committable offsets of ``partitions`` that advanced since the last call (to store)."""
        with self._lock:
            fresh = {
                lane: offset
                for lane, offset in self._done.items()
                if lane in partitions and offset > self._stored.get(lane, -1)
            }
            self._stored.update(fresh)
            return fresh

    def in_flight(self, topic: str, partition: int) -> int:
        """Messages of the partition received and not yet released."""
        return self._acks.pending((topic, partition))

    def release(self, partitions: Collection[Partition]) -> dict[Partition, int]:
        """Forget ``partitions`` (revoked or lost); returns their last committable offsets.

        Late acks of their messages do nothing afterwards, even if the partition comes back.
        """
        with self._lock:
            done: dict[Partition, int] = {}
            for lane in partitions:
                self._acks.drop(lane)
                self._last.pop(lane, None)
                self._stored.pop(lane, None)
                offset = self._done.pop(lane, None)
                if offset is not None:
                    done[lane] = offset
            return done


class OffsetAck:
    """The ``ack`` of one Kafka message: settles its offset in its :class:`OffsetBook`.

    Called alone it settles one message; :func:`consumer.model.ack_all` hands a batch's acks of
    one book to :meth:`OffsetBook.settle_many` instead, so the book is advanced once per batch.
    """

    __slots__ = ("batch", "handle", "lane")

    def __init__(self, book: OffsetBook, lane: Partition, handle: tuple[Any, Any]) -> None:
        self.batch = book
        self.lane = lane
        self.handle = handle

    def __call__(self) -> None:
        """Settle this one message."""
        self.batch._settle(self.lane, self.handle)

    def settle_many(self, acks: Sequence[OffsetAck]) -> None:
        """Settle ``acks`` (of this ack's book) together."""
        self.batch.settle_many(acks)
