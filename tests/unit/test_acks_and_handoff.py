"""Ordered release of acknowledgements, and the batch handoff from a transport thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

from consumer.model import InboundMessage
from consumer.sources.acks import OrderedAcks
from consumer.sources.handoff import BatchHandoff
from tests.support.messages import message


def test_release_is_the_contiguous_settled_prefix() -> None:
    acks: OrderedAcks[int] = OrderedAcks()
    handles = [acks.register("p0", offset) for offset in range(5)]
    assert acks.settle(handles[2]) == []
    assert acks.settle(handles[1]) == []
    assert acks.settle(handles[0]) == [0, 1, 2]
    assert acks.pending("p0") == 2
    assert acks.settle(handles[4]) == []
    assert acks.settle(handles[3]) == [3, 4]
    assert acks.pending("p0") == 0


def test_settle_many_releases_per_lane_what_settling_one_by_one_releases() -> None:
    acks: OrderedAcks[int] = OrderedAcks()
    p0 = [acks.register("p0", offset) for offset in range(4)]
    p1 = [acks.register("p1", offset) for offset in range(3)]
    released = acks.settle_many([p0[3], p1[0], p0[1], p0[0], p1[2]])
    assert sorted(tokens for _lane, tokens in released) == [[0], [0, 1]]  # p0 stops at 2, p1 at 1
    assert acks.pending("p0") == 2 and acks.pending("p1") == 2
    assert acks.settle_many([p0[2], p1[1]]) != []
    assert acks.pending("p0") == 0 and acks.pending("p1") == 0


def test_settle_many_of_a_dropped_lane_releases_nothing() -> None:
    acks: OrderedAcks[int] = OrderedAcks()
    stale = [acks.register("conn", mid) for mid in range(3)]
    acks.drop("conn")
    fresh = acks.register("conn", 0)
    assert acks.settle_many(stale) == []
    assert acks.pending("conn") == 1
    assert acks.settle_many([fresh]) != []


def test_lanes_are_independent() -> None:
    acks: OrderedAcks[str] = OrderedAcks()
    a = acks.register("a", "a0")
    b = acks.register("b", "b0")
    acks.register("a", "a1")
    assert acks.settle(b) == ["b0"]
    assert acks.settle(a) == ["a0"]
    assert acks.pending("a") == 1


def test_a_dropped_lane_never_releases_stale_handles_into_a_new_lane() -> None:
    acks: OrderedAcks[int] = OrderedAcks()
    stale = acks.register("conn", 7)  # mid 7 on the old connection
    acks.drop("conn")
    fresh = acks.register("conn", 7)  # the same mid on a new connection is another message
    assert acks.settle(stale) == []
    assert acks.pending("conn") == 1
    assert acks.settle(fresh) == [7]


def test_settling_from_many_threads_releases_each_token_once() -> None:
    acks: OrderedAcks[int] = OrderedAcks()
    handles = [acks.register(0, i) for i in range(2000)]
    released: list[int] = []
    lock = threading.Lock()

    def settle(part: Sequence[int]) -> None:
        for i in part:
            out = acks.settle(handles[i])
            with lock:
                released.extend(out)

    threads = [threading.Thread(target=settle, args=(range(k, 2000, 4),)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert released == list(range(2000))


class _RecordingPipeline:
    def __init__(self) -> None:
        self.batches: list[list[InboundMessage]] = []

    async def submit(self, messages: Sequence[InboundMessage]) -> None:
        self.batches.append(list(messages))


def test_handoff_delivers_everything_in_few_batches() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        handoff = BatchHandoff(loop, max_buffered=100, max_batch=50)
        pipeline = _RecordingPipeline()
        stop = asyncio.Event()
        runner = asyncio.create_task(handoff.run(pipeline, stop))  # type: ignore[arg-type]

        def produce() -> None:
            for i in range(1000):
                assert handoff.put(message("t", {"i": i}), timeout=5)

        await asyncio.to_thread(produce)
        while sum(len(b) for b in pipeline.batches) < 1000:
            await asyncio.sleep(0.01)
        stop.set()
        await asyncio.wait_for(runner, 2)
        flat = [m.payload for batch in pipeline.batches for m in batch]
        assert flat == [message("t", {"i": i}).payload for i in range(1000)]
        assert len(pipeline.batches) < 1000  # batched, not one wake per message
        assert max(len(b) for b in pipeline.batches) <= 50

    asyncio.run(scenario())


def test_handoff_put_times_out_when_full_and_refuses_after_close() -> None:
    async def scenario() -> None:
        handoff = BatchHandoff(asyncio.get_running_loop(), max_buffered=2)
        assert handoff.put(message("t", {}), timeout=0.1)
        assert handoff.put(message("t", {}), timeout=0.1)
        assert not await asyncio.to_thread(handoff.put, message("t", {}), 0.1)
        handoff.close()
        assert not handoff.put(message("t", {}), timeout=0.1)

    asyncio.run(scenario())
