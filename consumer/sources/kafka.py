"""Messages from Kafka (confluent-kafka 2 / librdkafka), at least once, with ordered offset commits.

Threading
    One dedicated thread owns the ``confluent_kafka.Consumer``: it creates it, subscribes,
    calls ``consume()`` in batches, stores and commits offsets, pauses and resumes partitions,
    and closes it. librdkafka serves every callback (rebalance, errors, statistics, commit
    results, logs) from inside ``consume()``, so they all run on that thread too. The event
    loop never touches the consumer. Each consumed batch reaches the pipeline in one hop,
    ``asyncio.run_coroutine_threadsafe(pipeline.submit(batch), loop)``.

Offsets
    Every message is registered, in receive order, in an
    :class:`~consumer.sources.offsets.OffsetBook` lane per
    (topic, partition). Its ``ack`` (an :class:`~consumer.sources.offsets.OffsetAck`, which the
    pipeline settles on the event loop once the message was delivered or dead-lettered, a batch's
    acks together in one ``OffsetBook.settle_many``) settles it; the book releases the contiguous
    settled prefix of the lane, so the committable offset of a partition (last released + 1) never passes a
    message still in flight. The thread stores those offsets and commits them asynchronously
    every ``commit_interval_seconds``; it commits synchronously when partitions are revoked
    (only theirs) and at the end. A revoked or lost partition's lane is dropped: acks of its
    old messages do nothing, and the new owner redelivers them (event ids are idempotent).

Backpressure
    Before handing a batch over the thread asks ``pipeline.has_room(n, bytes)``. When there is no
    room (or a hand-off has not finished) for ``pause_after_seconds``, it pauses every assigned
    partition and keeps calling ``consume()``, which fetches nothing but keeps the group
    membership and ``max.poll.interval.ms`` alive, until there is room for a full batch again
    (as many bytes as the last batch handed over).
    Between two ``consume()`` calls the thread waits at most ``consume_timeout_seconds`` or
    ``pause_after_seconds`` (a synchronous commit or ``close()`` aside), far below
    ``max.poll.interval.ms``.

Settings (defaults, forced offset handling, masking, redaction) and librdkafka's rate-limited
log come from :mod:`consumer.clients.kafka`; this module is the source itself.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Collection, Mapping
from typing import Any, Final

import orjson
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from consumer.clients.kafka import (
    ERROR_LOG_INTERVAL_SECONDS,
    LibrdkafkaLog,
    consumer_settings,
    mask_settings,
    redact_settings,
)
from consumer.clients.throttle import RateLimitedLog
from consumer.config import KafkaSourceConfig
from consumer.errors import ConfigError, ConsumerError, KafkaSourceError
from consumer.metrics import Metrics
from consumer.model import InboundMessage
from consumer.sources.base import Intake
from consumer.sources.offsets import OffsetBook, Partition

log = logging.getLogger(__name__)

Settings = dict[str, str | int | float | bool]

_IDLE_WAIT_SECONDS: Final = 0.1
_CLOSE_TIMEOUT_SECONDS: Final = 60.0
# Transient transport states: librdkafka reconnects by itself, so they are reported as "cannot
# reach the broker, still trying", never as an error that stops anything.
_CONNECTION_ERRORS: Final = frozenset(
    {KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT, KafkaError._RESOLVE}
)


# -- the source ----------------------------------------------------------------------------------------


class KafkaSource:
    """Consumes Kafka topics into the pipeline, committing only settled offsets, in order.

    Shutdown order (the app must follow it, or the last offsets are not committed):

    1. set ``stop``: :meth:`run` stops handing over batches, pauses every partition and
       returns promptly (it waits at most ``submit_grace_seconds`` for a hand-off in progress).
       The consumer thread keeps polling, paused, so the group membership stays alive;
    2. ``await pipeline.close(deadline)``: in-flight messages settle and their acks advance
       the committable offsets (periodic commits keep running meanwhile);
    3. ``await source.aclose()``: the thread commits every committable offset synchronously,
       closes the consumer (leaving the group) and ends.

    What is not settled by step 3 is not committed, and is redelivered.
    """

    name = "kafka"

    def __init__(
        self,
        config: KafkaSourceConfig,
        metrics: Metrics,
        *,
        pause_after_seconds: float = 0.5,
        submit_grace_seconds: float = 5.0,
        consumer_factory: Callable[[dict[str, Any]], Consumer] = Consumer,
    ) -> None:
        if not config.topics:
            raise ConfigError("source.kafka.topics is empty: name at least one topic or '^regex'")
        self._config = config
        self._metrics = metrics
        self._settings = consumer_settings(config)
        self._pause_after = pause_after_seconds
        self._submit_grace = submit_grace_seconds
        self._consumer_factory = consumer_factory
        self._wake = threading.Event()
        self._book = OffsetBook(on_release=self._wake_up)
        self._errors = RateLimitedLog(log, ERROR_LOG_INTERVAL_SECONDS)
        self._unreachable = False  # a transport error since the last connection
        # Set from the event loop, read by the consumer thread.
        self._stopping = threading.Event()
        self._finishing = threading.Event()
        self._control = threading.Lock()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pipeline: Intake | None = None
        self._exited: asyncio.Event | None = None
        self._failure: BaseException | None = None
        # Owned by the consumer thread (callbacks run on it too).
        self._fatal: KafkaSourceError | None = None
        self._assigned: frozenset[Partition] = frozenset()
        self._new_partitions: set[Partition] = set()
        self._paused: set[Partition] = set()
        self._want_paused = False
        self._pending: list[InboundMessage] = []
        self._last_batch_bytes = 0
        self._submission: concurrent.futures.Future[None] | None = None
        self._stored_uncommitted = False
        self._sync_committed: dict[Partition, int] = {}
        self._connected = False
        self._was_connected = False

    def __repr__(self) -> str:
        return (
            f"KafkaSource(topics={self._config.topics!r}, group={self._config.group_id!r}, "
            f"settings={mask_settings(self._settings)!r})"
        )

    # -- state ----------------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """True while at least one broker is up (librdkafka statistics) or after an assignment."""
        return self._connected

    @property
    def assignment(self) -> frozenset[Partition]:
        """The (topic, partition) pairs currently assigned to this member."""
        return self._assigned

    def _wake_up(self) -> None:
        """Wake the consumer thread (called on every ack that releases an offset: cheap when awake)."""
        if not self._wake.is_set():
            self._wake.set()

    # -- the event loop side --------------------------------------------------------------------------

    async def run(self, pipeline: Intake, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set, then return; the consumer stays open until :meth:`aclose`.

        Raises :class:`KafkaSourceError` (or :class:`ConfigError` for unusable settings) when
        the consumer failed for good.
        """
        if self._thread is not None:
            raise RuntimeError("KafkaSource.run() may be called once")
        self._loop = asyncio.get_running_loop()
        self._pipeline = pipeline
        self._exited = asyncio.Event()
        self._thread = threading.Thread(target=self._main, name="kafka-consumer", daemon=True)
        self._thread.start()
        stopper = asyncio.ensure_future(stop.wait())
        exited = asyncio.ensure_future(self._exited.wait())
        try:
            await asyncio.wait({stopper, exited}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
            exited.cancel()
            with self._control:
                self._stopping.set()
                submission = self._submission
            self._wake.set()
        if self._failure is not None:
            raise self._failure
        if submission is not None:
            await self._finish_submission(submission)

    async def _finish_submission(self, submission: concurrent.futures.Future[None]) -> None:
        """Give a hand-off in progress a short grace, then cancel it (its messages stay unacked)."""
        waiter = asyncio.wrap_future(submission)
        done, _ = await asyncio.wait({waiter}, timeout=self._submit_grace)
        if not done:
            log.warning("a batch hand-off did not finish after stop; cancelling it (it will be redelivered)")
            waiter.cancel()
            with contextlib.suppress(BaseException):
                await waiter

    async def aclose(self) -> None:
        """Commit every settled offset synchronously, close the consumer and end the thread.

        Call it after ``pipeline.close()``, so the drained messages' offsets are committed.
        """
        self._stopping.set()
        self._finishing.set()
        self._wake.set()
        thread = self._thread
        if thread is None:
            return
        await asyncio.to_thread(thread.join, _CLOSE_TIMEOUT_SECONDS)
        if thread.is_alive():
            log.error("the Kafka consumer did not close in time; uncommitted offsets will be redelivered")

    # -- the consumer thread --------------------------------------------------------------------------

    def _main(self) -> None:
        consumer: Consumer | None = None
        try:
            consumer = self._create_consumer()
            consumer.subscribe(
                list(self._config.topics),
                on_assign=self._on_assign,
                on_revoke=self._on_revoke,
                on_lost=self._on_lost,
            )
            log.info(
                "kafka source subscribed",
                extra={"topics": list(self._config.topics), "settings": mask_settings(self._settings)},
            )
            self._consume_until_finished(consumer)
            self._commit_sync(consumer, self._book.committable(self._assigned), "shutdown")
        except ConsumerError as exc:
            self._failure = exc
            log.error("kafka source failed", extra={"error": str(exc)})  # noqa: TRY400 - the message says it all
        except BaseException as exc:
            self._failure = KafkaSourceError(f"Kafka consumer failed: {type(exc).__name__}: {exc}")
            log.exception("kafka source failed unexpectedly")
        finally:
            if consumer is not None:
                self._close(consumer)
            self._set_connected(False, quiet=True)
            self._notify_exited()

    def _create_consumer(self) -> Consumer:
        config: dict[str, Any] = {
            **self._settings,
            "error_cb": self._on_error,
            "stats_cb": self._on_stats,
            "on_commit": self._on_commit,
            "logger": LibrdkafkaLog(f"{__name__}.librdkafka"),
        }
        try:
            return self._consumer_factory(config)
        except (KafkaException, ValueError, TypeError) as exc:
            problem = redact_settings(str(exc), self._settings)
        # Raised outside the except block: the original, unredacted error is not chained.
        raise ConfigError(f"invalid Kafka consumer settings: {problem}")

    def _close(self, consumer: Consumer) -> None:
        try:
            consumer.close()  # revokes the assignment (our on_revoke commits) and leaves the group
        except (KafkaException, RuntimeError) as exc:
            problem = redact_settings(str(exc), self._settings)
            log.warning("closing the Kafka consumer failed", extra={"error": problem})
        self._assigned = frozenset()
        self._paused.clear()
        self._metrics.kafka_paused_partitions.set(0)

    def _notify_exited(self) -> None:
        loop, exited = self._loop, self._exited
        if loop is not None and exited is not None:
            with contextlib.suppress(RuntimeError):  # the loop is already closed
                loop.call_soon_threadsafe(exited.set)

    def _consume_until_finished(self, consumer: Consumer) -> None:
        next_commit = time.monotonic() + self._config.commit_interval_seconds
        while not self._finishing.is_set():
            if self._fatal is not None:
                raise self._fatal
            if time.monotonic() >= next_commit:
                self._commit_progress(consumer)
                next_commit = time.monotonic() + self._config.commit_interval_seconds
            self._settle_new_partitions(consumer)
            if self._stopping.is_set():
                if self._pending:
                    log.info("stopping: %d consumed message(s) not handed over", len(self._pending))
                    self._pending = []  # registered and never settled: their offsets stay uncommitted
                self._pause_all(consumer)
                self._idle(consumer)
            else:
                self._step(consumer)

    def _step(self, consumer: Consumer) -> None:
        if self._pending:
            if self._wait_until(self._can_submit, 0.0 if self._want_paused else self._pause_after):
                self._submit()
            else:
                self._pause_all(consumer)
                self._idle(consumer)
            return
        if self._want_paused:
            # Resume only with room for a whole batch, so a full pipeline does not make us flap.
            if not (
                self._hand_off_done()
                and self._has_room(self._config.consume_batch_size, self._last_batch_bytes)
            ):
                self._idle(consumer)
                return
            self._resume_all(consumer)
        self._pending = self._convert(self._consume(consumer, self._config.consume_timeout_seconds))

    def _consume(self, consumer: Consumer, timeout: float) -> list[Message]:
        try:
            return consumer.consume(num_messages=self._config.consume_batch_size, timeout=timeout)
        except KafkaException as exc:
            error = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
            if error is None or error.fatal():
                raise KafkaSourceError(
                    f"consuming from Kafka failed: {redact_settings(str(exc), self._settings)}"
                ) from None
            self._record_error(error)
            time.sleep(_IDLE_WAIT_SECONDS)
            return []

    def _idle(self, consumer: Consumer) -> None:
        """Poll without fetching (everything is paused): callbacks run, the membership stays alive."""
        messages = self._consume(consumer, 0)
        if self._stopping.is_set():
            for message in messages:
                error = message.error()
                if error is not None:
                    self._on_message_error(error)
        else:
            # Fetched just before the pause took effect: keep them, in order.
            self._pending.extend(self._convert(messages))
        self._wake.wait(_IDLE_WAIT_SECONDS)
        self._wake.clear()

    def _wait_until(self, condition: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not condition():
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._stopping.is_set() or self._finishing.is_set() or self._fatal:
                return False
            self._wake.wait(min(remaining, _IDLE_WAIT_SECONDS))
            self._wake.clear()
        return True

    # -- hand-off -------------------------------------------------------------------------------------

    def _has_room(self, incoming: int, incoming_bytes: int) -> bool:
        pipeline = self._pipeline
        return pipeline is not None and pipeline.has_room(incoming, incoming_bytes)

    def _hand_off_done(self) -> bool:
        """Whether no hand-off is in progress; raises if the last one failed."""
        submission = self._submission
        if submission is None:
            return True
        if not submission.done():
            return False
        self._submission = None
        if not submission.cancelled() and (error := submission.exception()) is not None:
            raise KafkaSourceError(f"the pipeline did not take a batch: {type(error).__name__}: {error}")
        return True

    def _can_submit(self) -> bool:
        if not self._hand_off_done():
            return False
        return self._has_room(len(self._pending), sum(len(m.payload) for m in self._pending))

    def _submit(self) -> None:
        batch, self._pending = self._pending, []
        self._last_batch_bytes = sum(len(m.payload) for m in batch)
        loop, pipeline = self._loop, self._pipeline
        if loop is None or pipeline is None:
            return
        with self._control:
            if self._stopping.is_set() or loop.is_closed():
                return  # not handed over: never acked, redelivered
            submission = asyncio.run_coroutine_threadsafe(pipeline.submit(batch), loop)
            self._submission = submission
        submission.add_done_callback(lambda _done: self._wake.set())

    def _convert(self, messages: list[Message]) -> list[InboundMessage]:
        batch: list[InboundMessage] = []
        coordinates: list[tuple[str, int, int]] = []
        assigned = self._assigned
        now = time.time()
        for message in messages:
            error = message.error()
            if error is not None:
                self._on_message_error(error)
                continue
            topic, partition, offset = message.topic(), message.partition(), message.offset()
            if topic is None or partition is None or offset is None or (topic, partition) not in assigned:
                continue  # fetched before its partition was revoked in this same consume() call
            inbound = InboundMessage(
                source="kafka",
                topic=topic,
                payload=message.value() or b"",  # a tombstone is an empty message: dead-lettered, visible
                received_at=now,
                subscription=topic,
                key=message.key(),
                headers=_headers_of(message),
                partition=partition,
                offset=offset,
            )
            coordinates.append((topic, partition, offset))
            batch.append(inbound)
        if batch:
            for inbound, ack in zip(batch, self._book.register_many(coordinates), strict=True):
                inbound.ack = ack
        return batch

    # -- pause and resume -----------------------------------------------------------------------------

    def _pause_all(self, consumer: Consumer) -> None:
        self._want_paused = True
        todo = sorted(self._assigned - self._paused)
        if not todo:
            return
        try:
            consumer.pause([TopicPartition(topic, partition) for topic, partition in todo])
        except KafkaException as exc:
            self._errors.warning("pause", "pausing partitions failed", error=str(exc))
            return
        self._paused.update(todo)
        self._metrics.kafka_paused_partitions.set(len(self._paused))
        log.debug("paused %d partition(s)", len(todo))

    def _resume_all(self, consumer: Consumer) -> None:
        self._want_paused = False
        todo = sorted(self._paused & self._assigned)
        if todo:
            try:
                consumer.resume([TopicPartition(topic, partition) for topic, partition in todo])
            except KafkaException as exc:
                self._want_paused = True
                self._errors.warning("resume", "resuming partitions failed", error=str(exc))
                return
            log.debug("resumed %d partition(s)", len(todo))
        self._paused.clear()
        self._metrics.kafka_paused_partitions.set(0)

    def _settle_new_partitions(self, consumer: Consumer) -> None:
        """Give partitions assigned meanwhile the pause state of the rest."""
        if not self._new_partitions:
            return
        fresh = sorted(self._new_partitions & self._assigned)
        self._new_partitions.clear()
        if self._want_paused or self._stopping.is_set():
            self._pause_all(consumer)
        elif fresh:
            # A partition this member paused, lost and got back may still carry the pause.
            with contextlib.suppress(KafkaException):
                consumer.resume([TopicPartition(topic, partition) for topic, partition in fresh])

    # -- commits --------------------------------------------------------------------------------------

    def _commit_progress(self, consumer: Consumer) -> None:
        """Store the offsets that advanced and commit the stored ones asynchronously."""
        fresh = self._book.take_unstored(self._assigned)
        if fresh:
            try:
                consumer.store_offsets(offsets=_topic_partitions(fresh))
            except KafkaException as exc:
                self._errors.warning("store_offsets", "storing offsets failed", error=str(exc))
            else:
                self._stored_uncommitted = True
        if self._stored_uncommitted:
            self._stored_uncommitted = False
            try:
                consumer.commit(asynchronous=True)
            except KafkaException as exc:
                self._metrics.kafka_commits.labels("failed").inc()
                self._errors.warning("commit", "committing offsets failed", error=str(exc))

    def _commit_sync(self, consumer: Consumer, offsets: Mapping[Partition, int], why: str) -> None:
        todo = {lane: offset for lane, offset in offsets.items() if self._sync_committed.get(lane) != offset}
        if not todo:
            return
        try:
            result = consumer.commit(offsets=_topic_partitions(todo), asynchronous=False)
        except KafkaException as exc:
            self._metrics.kafka_commits.labels("failed").inc()
            log.warning(
                "synchronous commit failed; those messages will be redelivered",
                extra={"why": why, "error": str(exc), "offsets": _describe(todo)},
            )
            return
        failed = [tp for tp in result or [] if tp.error is not None]
        self._metrics.kafka_commits.labels("failed" if failed else "ok").inc()
        for tp in result or []:
            if tp.error is None and tp.topic is not None:
                self._sync_committed[(tp.topic, tp.partition)] = tp.offset
        if failed:
            log.warning(
                "synchronous commit failed for some partitions",
                extra={"why": why, "failed": [f"{tp.topic}[{tp.partition}]: {tp.error}" for tp in failed]},
            )
        else:
            log.info("committed offsets", extra={"why": why, "offsets": _describe(todo)})

    def _on_commit(self, error: KafkaError | None, partitions: list[TopicPartition]) -> None:
        """Result of an asynchronous commit (librdkafka does not report synchronous ones here)."""
        try:
            if error is None:
                failed = [tp for tp in partitions if tp.error is not None]
            elif error.code() == KafkaError._NO_OFFSET:
                return
            else:
                failed = partitions
            self._metrics.kafka_commits.labels("failed" if failed else "ok").inc()
            if failed:
                self._errors.warning(
                    "commit", "asynchronous commit failed; retried at the next interval", error=str(error)
                )
                self._stored_uncommitted = True
        except Exception:  # an exception in a callback would surface from consume()
            log.exception("handling a commit result failed")

    # -- rebalance callbacks (on the consumer thread, inside consume()/close()) -----------------------

    def _on_assign(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        try:
            lanes = {(tp.topic, tp.partition) for tp in partitions if tp.topic is not None}
            self._set_connected(True)  # a member of the group, even when a cooperative round adds nothing
            if not lanes:
                return
            self._metrics.kafka_rebalances.labels("assign").inc()
            self._assigned = self._assigned | lanes
            self._new_partitions.update(lanes)
            log.info(
                "partitions assigned",
                extra={"partitions": _describe_lanes(lanes), "assignment": len(self._assigned)},
            )
        except Exception:  # an exception in a callback would surface from consume()
            log.exception("handling a partition assignment failed")

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        try:
            lanes = {(tp.topic, tp.partition) for tp in partitions if tp.topic is not None}
            if not lanes:
                return
            self._metrics.kafka_rebalances.labels("revoke").inc()
            done = self._forget(lanes)
            # Still the owner during this callback: commit what is settled before the next owner starts.
            self._commit_sync(consumer, done, "revoke")
            for lane in lanes:
                self._sync_committed.pop(lane, None)
            log.info("partitions revoked", extra={"partitions": _describe_lanes(lanes)})
        except Exception:  # an exception in a callback would surface from consume()
            log.exception("handling a partition revocation failed")

    def _on_lost(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        try:
            lanes = {(tp.topic, tp.partition) for tp in partitions if tp.topic is not None}
            if not lanes:
                return
            self._metrics.kafka_rebalances.labels("lost").inc()
            self._forget(lanes)  # another member may own them already: no commit
            for lane in lanes:
                self._sync_committed.pop(lane, None)
            log.warning(
                "partitions lost; their in-flight messages will be redelivered",
                extra={"partitions": _describe_lanes(lanes)},
            )
        except Exception:  # an exception in a callback would surface from consume()
            log.exception("handling lost partitions failed")

    def _forget(self, lanes: set[Partition]) -> dict[Partition, int]:
        """Drop everything about partitions this member no longer owns; returns their committable offsets."""
        done = self._book.release(lanes)
        self._assigned = self._assigned - lanes
        self._new_partitions -= lanes
        self._paused -= lanes
        self._metrics.kafka_paused_partitions.set(len(self._paused))
        self._pending = [m for m in self._pending if (m.topic, m.partition) not in lanes]
        for topic, partition in lanes:
            with contextlib.suppress(KeyError):
                self._metrics.kafka_lag.remove(topic, str(partition))
        return done

    # -- errors, statistics, connection state ---------------------------------------------------------

    def _on_error(self, error: KafkaError) -> None:
        try:
            self._record_error(error)
            if error.code() in _CONNECTION_ERRORS:
                self._set_connected(False)
        except Exception:  # an exception in a callback would surface from consume()
            log.exception("handling a Kafka error failed")

    def _on_message_error(self, error: KafkaError) -> None:
        if error.code() == KafkaError._PARTITION_EOF:
            return
        self._record_error(error)

    def _record_error(self, error: KafkaError) -> None:
        text = redact_settings(str(error), self._settings)
        if error.fatal():
            self._fatal = KafkaSourceError(f"fatal Kafka error {error.name()}: {text}")
            return
        self._metrics.kafka_errors.labels(error.name()).inc()
        if error.code() in _CONNECTION_ERRORS:
            self._unreachable = True
            self._warn_unreachable(text)
            return
        self._errors.warning(error.name(), "kafka error", error=text, retriable=error.retriable())

    def _warn_unreachable(self, detail: str | None) -> None:
        # One key for every transport state, so the warning repeats once per interval while the
        # broker stays away (the statistics callback calls this too, as librdkafka goes quiet).
        self._errors.warning(
            "unreachable",
            f"cannot reach the Kafka broker ({self._config.bootstrap_servers}); the consumer keeps trying",
            detail=detail,
        )

    def _on_stats(self, raw: str) -> None:
        try:
            stats = orjson.loads(raw)
            brokers = stats.get("brokers") or {}
            self._set_connected(any(b.get("state") == "UP" for b in brokers.values()))
            if self._unreachable and not self._connected:
                self._warn_unreachable(None)
            assigned = self._assigned
            for topic, topic_stats in (stats.get("topics") or {}).items():
                for key, partition_stats in (topic_stats.get("partitions") or {}).items():
                    partition = int(key)
                    if (topic, partition) not in assigned:
                        continue
                    # Committed-based lag (what a restart would redo); the stored one before a first commit.
                    lag = partition_stats.get("consumer_lag", -1)
                    if lag < 0:
                        lag = partition_stats.get("consumer_lag_stored", -1)
                    if lag >= 0:
                        self._metrics.kafka_lag.labels(topic, str(partition)).set(lag)
        except Exception:  # an exception in a callback would surface from consume()
            log.exception("reading librdkafka statistics failed")

    def _set_connected(self, connected: bool, *, quiet: bool = False) -> None:
        if connected:
            self._unreachable = False
        if connected and not self._connected:
            if self._was_connected:
                self._metrics.source_reconnects.labels(self.name).inc()
                log.info("kafka connection re-established")
            self._was_connected = True
        elif not connected and self._connected and not quiet:
            log.warning("kafka connection lost")
        self._connected = connected
        self._metrics.source_connected.labels(self.name).set(1 if connected else 0)


def _headers_of(message: Message) -> tuple[tuple[str, bytes], ...]:
    headers = message.headers()
    if not headers:
        return ()
    items = headers.items() if isinstance(headers, dict) else headers
    return tuple((key, value.encode() if isinstance(value, str) else (value or b"")) for key, value in items)


def _topic_partitions(offsets: Mapping[Partition, int]) -> list[TopicPartition]:
    return [
        TopicPartition(topic, partition, offset) for (topic, partition), offset in sorted(offsets.items())
    ]


def _describe(offsets: Mapping[Partition, int]) -> dict[str, int]:
    return {f"{topic}[{partition}]": offset for (topic, partition), offset in sorted(offsets.items())}


def _describe_lanes(lanes: Collection[Partition]) -> list[str]:
    return [f"{topic}[{partition}]" for topic, partition in sorted(lanes)]
