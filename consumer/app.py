"""The composition root: the one place that builds and wires every component from the settings."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from consumer.config import DeadLetterKind, Settings, SinkKind, SourceKind, masked_settings
from consumer.deadletter import DeadLetterWriter, JsonlDeadLetterWriter
from consumer.deadletter.kafka import KafkaDeadLetterWriter, producer_settings
from consumer.deadletter.mqtt import MqttDeadLetterWriter
from consumer.delivery import DeadLetterGate
from consumer.errors import ConfigError
from consumer.health import OpsServer
from consumer.metrics import Metrics
from consumer.normalize import Normalizer
from consumer.pipeline import Pipeline, PipelineStats
from consumer.routing import RoutingTable, load_routes
from consumer.sinks.base import Sink
from consumer.sinks.cloud import CloudSink
from consumer.sinks.http import HttpSink
from consumer.sinks.jsonl import JsonlSink
from consumer.sinks.local import LocalSink
from consumer.sources.base import Source
from consumer.sources.file import FileSource
from consumer.sources.kafka import KafkaSource
from consumer.sources.mqtt import MqttSource
from consumer.spool import Forwarder, ForwarderStats, SpoolSink, SpoolStore
from consumer.urls import host_allowed

log = logging.getLogger(__name__)

_PROGRESS_INTERVAL_SECONDS = 10.0


def build_sink(settings: Settings, metrics: Metrics) -> Sink:
    """The sink the settings name."""
    kind = settings.sink.type
    if kind is SinkKind.CLOUD:
        return CloudSink(settings.sink.cloud, settings.retry, settings.images, metrics)
    if kind is SinkKind.LOCAL:
        return LocalSink(settings.sink.local, settings.retry, settings.images, metrics)
    return JsonlSink(settings.sink.jsonl)


def route_filters(table: RoutingTable) -> list[str]:
    """The MQTT filters the routes match, the default subscriptions."""
    return [r.pattern.mqtt_filter for r in table.routes if r.pattern.mqtt_filter is not None]


def build_source(settings: Settings, table: RoutingTable, metrics: Metrics) -> Source:
    """The source the settings name."""
    kind = settings.source.type
    if kind is SourceKind.MQTT:
        return MqttSource(settings.source.mqtt, route_filters(table), metrics)
    if kind is SourceKind.KAFKA:
        return KafkaSource(settings.source.kafka, metrics)
    return FileSource(settings.source.file.path, settings.source.file.default_topic)


def check_runnable(settings: Settings, table: RoutingTable) -> None:
    """Raise ConfigError for what ``run`` would refuse at start-up, without connecting anywhere.

    ``check-config`` and ``run`` share this, so a configuration the first accepts the second runs.
    Building the source (not starting it) is the check: its constructor validates its settings
    (Kafka topics and client settings, MQTT URL and subscriptions) and opens no connection.
    """
    build_source(settings, table, Metrics())
    check_image_url_hosts(table, settings.images.url_allowed_hosts)
    if settings.dead_letter.type is DeadLetterKind.KAFKA:
        kafka_source = settings.source.kafka if settings.source.type is SourceKind.KAFKA else None
        producer_settings(settings.dead_letter.kafka, kafka_source)


def check_image_url_hosts(table: RoutingTable, allowed_hosts: Sequence[str]) -> None:
    """Refuse a route whose ``image_url`` names a fixed host off the allow-list: every fetch would fail."""
    for route in table.routes:
        template = route.image_url
        if template is None:
            continue
        # The host is fixed when no placeholder comes before the path; then it can be checked now.
        scheme_end = template.text.index("://") + 3
        authority = template.text[scheme_end:].split("/", 1)[0]
        if "{" in authority:
            continue
        if not host_allowed(template.text[: scheme_end + len(authority)] + "/", allowed_hosts):
            host = authority.rpartition("@")[2]  # never the user:password in front of it
            raise ConfigError(
                f"route {route.name}: image_url host {host!r} is not in images.url_allowed_hosts"
            )


def build_dead_letters(
    settings: Settings, table: RoutingTable, metrics: Metrics | None = None
) -> DeadLetterWriter:
    """The dead-letter writer the settings name (``metrics`` counts the records it had to cut)."""
    kind = settings.dead_letter.type
    if kind is DeadLetterKind.KAFKA:
        kafka_source = settings.source.kafka if settings.source.type is SourceKind.KAFKA else None
        return KafkaDeadLetterWriter(
            settings.dead_letter.kafka, kafka_source, settings.limits.max_message_bytes, metrics=metrics
        )
    if kind is DeadLetterKind.MQTT:
        mqtt_source = settings.source.mqtt
        filters: list[str] = []
        if settings.source.type is SourceKind.MQTT:
            filters = [s.filter for s in mqtt_source.subscriptions] or route_filters(table)
        return MqttDeadLetterWriter(
            settings.dead_letter.mqtt, mqtt_source, source_filters=filters, metrics=metrics
        )
    return JsonlDeadLetterWriter(Path(settings.dead_letter.jsonl.path))


@dataclass(slots=True)
class _Spool:
    """The spool's parts: the store, the pipeline's sink into it, the forwarder out of it.

    Built whole with the app; ``open`` opens the file and starts the forwarder once a loop runs.
    """

    store: SpoolStore
    sink: SpoolSink
    forwarder: Forwarder

    @classmethod
    def build(cls, settings: Settings, sink: Sink, gate: DeadLetterGate, metrics: Metrics) -> _Spool:
        """The store, the sink into it, and the forwarder draining it into ``sink`` through ``gate``."""
        # The pipeline acknowledges once an event is in the spool; the forwarder delivers it.
        store = SpoolStore(settings.spool, metrics)
        return cls(
            store,
            SpoolSink(store, settings.retry, settings.images, metrics),
            Forwarder(store, sink, gate, metrics, settings.batch),
        )

    async def open(self) -> None:
        """Open the spool file and start draining it."""
        await self.store.open()  # a failure is logged, makes us not ready, and is retried
        self.forwarder.start()

    async def finish(self, stop: asyncio.Event, input_ended: bool, deadline: float, since: float) -> None:
        """After the pipeline drained: stop the forwarder within what is left of the deadline.

        When the input ended by itself (a file), first deliver everything spooled, unless told to stop.
        """
        if input_ended:
            log.info("input ended; waiting for the spool to drain", extra={"events": self.store.events})
            await self.forwarder.wait_until_empty(stop)
            since = time.monotonic()
        await self.forwarder.stop(deadline - (time.monotonic() - since))

    async def close(self) -> None:
        """Stop the forwarder (if still running) and close the spool file."""
        await self.forwarder.stop(0)
        await self.sink.aclose()
        await self.store.close()

    def summary(self, stats: PipelineStats) -> dict[str, object]:
        """The spool's part of the end-of-run log line."""
        forwarded = self.forwarder.stats
        return {
            "spooled": stats.spooled,
            "forwarded": forwarded.delivered,
            "forward_dead_lettered": forwarded.dead_lettered,
            "left_in_spool": self.store.events,
        }


def tune_garbage_collector() -> None:
    """Fewer, cheaper collections on the message path (measured: about -20 % CPU per MQTT event).

    Every message allocates a few dozen short-lived containers; with the default thresholds the
    collector runs every few messages and rescans everything loaded at start. Freezing moves the
    start-up objects out of its sight; a higher first threshold collects young objects in bulk.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


@dataclass(slots=True)
class RunResult:
    """How a run ended. ``forwarded``: what the spool's forwarder delivered (None without a spool).

    ``stopped``: SIGTERM/SIGINT asked for the stop (a deliberate shutdown, not a failure even when
    work was left unsettled: that work is unacknowledged and redelivered by design).
    ``unsettled``: messages neither delivered nor dead-lettered when the deadline passed.
    """

    stats: PipelineStats
    drained: bool
    forwarded: ForwarderStats | None = None
    stopped: bool = False
    unsettled: int = 0

    @property
    def clean(self) -> bool:
        """True when the run ended as intended: everything settled, or a signal's bounded drain."""
        return self.drained or self.stopped


class App:
    """One consumer process: a source, the pipeline, a sink, dead letters and the ops server.

    Built whole by the constructor, before anything runs: every part exists (nothing is ``None``
    until ``run``), so ``readiness`` can ask any of them at any time. Building opens no connection
    and no file; ``run`` opens the spool, starts the ops server and the forwarder, then consumes.
    Only the spool, its forwarder and the ops server are optional: they exist when configured.
    """

    def __init__(
        self,
        settings: Settings,
        metrics: Metrics | None = None,
        *,
        serve_ops: bool = True,
        source: Source | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics()
        table = load_routes(settings.routes)
        check_image_url_hosts(table, settings.images.url_allowed_hosts)
        self.table = table
        self.normalizer = Normalizer(
            table,
            settings.limits,
            settings.images,
            on_annotations_dropped=lambda reason: self.metrics.annotations_dropped.labels(reason).inc(),
        )
        self.source = source if source is not None else build_source(settings, table, self.metrics)
        self._serve_ops = serve_ops
        self.stop = asyncio.Event()
        self.ops: OpsServer | None = None
        self.sink = build_sink(settings, self.metrics)
        self.dead_letters = build_dead_letters(settings, table, self.metrics)
        # One gate for both stages: they count and report a failing destination the same way.
        gate = DeadLetterGate(self.dead_letters, self.metrics)
        self._spool = (
            _Spool.build(settings, self.sink, gate, self.metrics) if settings.spool.enabled else None
        )
        self.spool = self._spool.store if self._spool is not None else None
        self.forwarder = self._spool.forwarder if self._spool is not None else None
        self.pipeline = Pipeline(
            self.normalizer,
            self._spool.sink if self._spool is not None else self.sink,
            gate,
            self.metrics,
            settings.batch,
            final_sink=self._spool is None,
        )

    def readiness(self) -> tuple[bool, list[str]]:
        """Ready when the source is connected, the sink's credentials work and dead letters can be written.

        Not ready either while the API looks stuck (see ``_stuck_reason``): a batch that waits that
        long needs an operator, and /readyz (with the alert on ``ready``) is where one looks.

        With the spool on, also when the spool can be written (disk full, a failing volume: not ready).
        """
        reasons = []
        if not self.source.connected:
            reasons.append(f"source {self.source.name} not connected")
        # The real sink, also with the spool on (the pipeline's sink is then the spool's).
        if self.sink.auth_failing:
            reasons.append("the API refuses the credentials (401/403)")
        if self.sink.answers_unexpected:
            reasons.append("the API answers success without the contract's answer (unexpected_response)")
        if self.pipeline.dead_letter_failing:
            reasons.append("the dead-letter destination is failing")
        stuck = self._stuck_reason()
        if stuck is not None:
            reasons.append(stuck)
        if self.spool is not None and self.spool.failing:
            reasons.extend(self.spool.problems())
        ready = not reasons
        self.metrics.ready.set(1 if ready else 0)
        return ready, reasons

    def _stuck_reason(self) -> str | None:
        """Why the API looks stuck: the sink's oldest batch has waited past ``sink.stuck_after_seconds``."""
        limit = self.settings.sink.stuck_after_seconds
        if not limit or not isinstance(self.sink, HttpSink):
            return None
        age = self.sink.in_flight.oldest_age()
        if age <= limit:
            return None
        return (
            f"the {self.sink.name} sink's oldest batch has waited {age:.0f}s for the API"
            f" (sink.stuck_after_seconds: {limit:g})"
        )

    async def run(self) -> RunResult:
        """Consume until the input ends or SIGTERM/SIGINT, then drain within the deadline."""
        log.info("starting", extra={"config": masked_settings(self.settings)})
        pipeline, sink, dead_letters, spool = self.pipeline, self.sink, self.dead_letters, self._spool
        if spool is not None:
            await spool.open()
        if self._serve_ops:
            self.ops = OpsServer(
                self.settings.http.host, self.settings.http.port, self.metrics.registry, self.readiness
            ).start()
            log.info("serving /metrics, /healthz and /readyz", extra={"port": self.ops.port})
        loop = asyncio.get_running_loop()
        self._handle_signals(loop, install=True)
        progress = loop.create_task(self._report_progress(pipeline))
        failure: BaseException | None = None
        deadline = self.settings.shutdown_deadline_seconds
        try:
            try:
                tune_garbage_collector()
                await self.source.run(pipeline, self.stop)
            except Exception as exc:  # drain what is in flight before reporting the failure
                log.exception("the source failed; draining in-flight work before exiting")
                failure = exc
            stopping_since = time.monotonic()
            drained = await pipeline.close(deadline)
            # Cancelled deliveries never settle, so what is still counted in flight was left behind.
            unsettled = pipeline.in_flight
            await self.source.aclose()
            if spool is not None:
                input_ended = failure is None and not self.stop.is_set()
                await spool.finish(self.stop, input_ended, deadline, stopping_since)
        finally:
            progress.cancel()
            self._handle_signals(loop, install=False)
            if spool is not None:
                await spool.close()
            await sink.aclose()
            await dead_letters.aclose()
            if self.ops is not None:
                self.ops.stop()
        stopped = self.stop.is_set() and failure is None
        self._log_finished(pipeline.stats, spool, drained=drained, unsettled=unsettled, stopped=stopped)
        if failure is not None:
            raise failure
        forwarded = self.forwarder.stats if self.forwarder is not None else None
        return RunResult(pipeline.stats, drained, forwarded, stopped=stopped, unsettled=unsettled)

    @staticmethod
    def _log_finished(
        stats: PipelineStats, spool: _Spool | None, *, drained: bool, unsettled: int, stopped: bool
    ) -> None:
        """Log the run's summary, and what a signal's bounded drain left for redelivery."""
        summary: dict[str, object] = {
            "received": stats.received,
            "delivered": stats.delivered,
            "dead_lettered": stats.dead_lettered,
            "skipped": stats.skipped,
            "drained": drained,
            "unsettled": unsettled,
        }
        if spool is not None:
            summary |= spool.summary(stats)
        log.info("finished", extra=summary)
        if stopped and unsettled:
            log.info(
                "stopped by signal with %d messages unsettled; they were not acknowledged and will be"
                " redelivered",
                unsettled,
                extra={"unsettled": unsettled},
            )

    def _handle_signals(self, loop: asyncio.AbstractEventLoop, *, install: bool) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                if install:
                    loop.add_signal_handler(sig, self._request_stop, sig)
                else:
                    loop.remove_signal_handler(sig)

    def _request_stop(self, sig: signal.Signals) -> None:
        log.info("stopping: draining in-flight work", extra={"signal": sig.name})
        self.stop.set()

    async def _report_progress(self, pipeline: Pipeline) -> None:
        last = time.monotonic()
        last_received = last_settled = last_forwarded = 0
        while True:
            await asyncio.sleep(_PROGRESS_INTERVAL_SECONDS)
            now = time.monotonic()
            stats = pipeline.stats
            elapsed = now - last
            fields: dict[str, object] = {
                "received_per_s": round((stats.received - last_received) / elapsed, 1),
                "settled_per_s": round((stats.settled() - last_settled) / elapsed, 1),
                "delivered": stats.delivered,
                "dead_lettered": stats.dead_lettered,
                "in_flight": pipeline.in_flight,
            }
            if self.spool is not None and self.forwarder is not None:
                forwarded = self.forwarder.stats.delivered + self.forwarder.stats.dead_lettered
                fields |= {
                    "spooled": stats.spooled,
                    "forwarded_per_s": round((forwarded - last_forwarded) / elapsed, 1),
                    "forwarded": self.forwarder.stats.delivered,
                    "spool_events": self.spool.events,
                    "spool_bytes": self.spool.bytes,
                    "spool_oldest_age_s": round(self.spool.oldest_age(), 1),
                }
                last_forwarded = forwarded
            log.info("progress", extra=fields)
            last, last_received, last_settled = now, stats.received, stats.settled()
