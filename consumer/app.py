"""The composition root: the one place that builds and wires every component from the settings."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from consumer.config import DeadLetterKind, Settings, SinkKind, SourceKind, masked_settings
from consumer.deadletter import DeadLetterWriter, JsonlDeadLetterWriter
from consumer.deadletter.kafka import KafkaDeadLetterWriter
from consumer.deadletter.mqtt import MqttDeadLetterWriter
from consumer.health import OpsServer
from consumer.metrics import Metrics
from consumer.normalize import Normalizer
from consumer.pipeline import Pipeline, PipelineStats
from consumer.routing import RoutingTable, load_routes
from consumer.sinks.base import Sink
from consumer.sinks.cloud import CloudSink
from consumer.sinks.jsonl import JsonlSink
from consumer.sinks.local import LocalSink
from consumer.sources.base import Source
from consumer.sources.file import FileSource
from consumer.sources.kafka import KafkaSource
from consumer.sources.mqtt import MqttSource

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


def build_dead_letters(settings: Settings, table: RoutingTable) -> DeadLetterWriter:
    """The dead-letter writer the settings name."""
    kind = settings.dead_letter.type
    if kind is DeadLetterKind.KAFKA:
        kafka_source = settings.source.kafka if settings.source.type is SourceKind.KAFKA else None
        return KafkaDeadLetterWriter(settings.dead_letter.kafka, kafka_source)
    if kind is DeadLetterKind.MQTT:
        mqtt_source = settings.source.mqtt
        filters: list[str] = []
        if settings.source.type is SourceKind.MQTT:
            filters = [s.filter for s in mqtt_source.subscriptions] or route_filters(table)
        return MqttDeadLetterWriter(settings.dead_letter.mqtt, mqtt_source, source_filters=filters)
    return JsonlDeadLetterWriter(Path(settings.dead_letter.jsonl.path))


@dataclass(slots=True)
class RunResult:
    """How a run ended."""

    stats: PipelineStats
    drained: bool


class App:
    """One consumer process: a source, the pipeline, a sink, dead letters and the ops server."""

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
        self.pipeline: Pipeline | None = None

    def readiness(self) -> tuple[bool, list[str]]:
        """Ready when the source is connected, the sink's credentials work and dead letters can be written."""
        reasons = []
        if not self.source.connected:
            reasons.append(f"source {self.source.name} not connected")
        if self.pipeline is not None:
            if self.pipeline.sink_auth_failing:
                reasons.append("the API refuses the credentials (401/403)")
            if self.pipeline.dead_letter_failing:
                reasons.append("the dead-letter destination is failing")
        ready = not reasons
        self.metrics.ready.set(1 if ready else 0)
        return ready, reasons

    async def run(self) -> RunResult:
        """Consume until the input ends or SIGTERM/SIGINT, then drain within the deadline."""
        log.info("starting", extra={"config": masked_settings(self.settings)})
        sink = build_sink(self.settings, self.metrics)
        dead_letters = build_dead_letters(self.settings, self.table)
        pipeline = Pipeline(self.normalizer, sink, dead_letters, self.metrics, self.settings.batch)
        self.pipeline = pipeline
        if self._serve_ops:
            self.ops = OpsServer(
                self.settings.http.host, self.settings.http.port, self.metrics.registry, self.readiness
            ).start()
            log.info("serving /metrics, /healthz and /readyz", extra={"port": self.ops.port})
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self._request_stop, sig)
        progress = loop.create_task(self._report_progress(pipeline))
        failure: BaseException | None = None
        try:
            try:
                await self.source.run(pipeline, self.stop)
            except Exception as exc:  # drain what is in flight before reporting the failure
                log.exception("the source failed; draining in-flight work before exiting")
                failure = exc
            drained = await pipeline.close(self.settings.shutdown_deadline_seconds)
            await self.source.aclose()
        finally:
            progress.cancel()
            for sig in (signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.remove_signal_handler(sig)
            await sink.aclose()
            await dead_letters.aclose()
            if self.ops is not None:
                self.ops.stop()
        stats = pipeline.stats
        log.info(
            "finished",
            extra={
                "received": stats.received,
                "delivered": stats.delivered,
                "dead_lettered": stats.dead_lettered,
                "skipped": stats.skipped,
                "drained": drained,
            },
        )
        if failure is not None:
            raise failure
        return RunResult(stats, drained)

    def _request_stop(self, sig: signal.Signals) -> None:
        log.info("stopping: draining in-flight work", extra={"signal": sig.name})
        self.stop.set()

    async def _report_progress(self, pipeline: Pipeline) -> None:
        last = time.monotonic()
        last_received = last_settled = 0
        while True:
            await asyncio.sleep(_PROGRESS_INTERVAL_SECONDS)
            now = time.monotonic()
            stats = pipeline.stats
            elapsed = now - last
            log.info(
                "progress",
                extra={
                    "received_per_s": round((stats.received - last_received) / elapsed, 1),
                    "settled_per_s": round((stats.settled() - last_settled) / elapsed, 1),
                    "delivered": stats.delivered,
                    "dead_lettered": stats.dead_lettered,
                    "in_flight": pipeline.in_flight,
                },
            )
            last, last_received, last_settled = now, stats.received, stats.settled()
