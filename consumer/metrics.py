"""Every Prometheus metric the consumer exports, in one object over an injected registry.

Tests build a fresh ``CollectorRegistry`` each, so counts never leak between them. Label values
are bounded: ``topic`` is the subscription (an MQTT filter or a Kafka topic), never a concrete MQTT
topic with ids in it; ``reason`` comes from :class:`consumer.errors.Reason`.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter as Tally
from collections.abc import Sequence
from math import isnan

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
    900.0,
    3600.0,
)
_BATCH_EVENT_BUCKETS = (1, 2, 5, 10, 20, 50, 75, 100)
_BATCH_BYTE_BUCKETS = (1e3, 1e4, 1e5, 5e5, 1e6, 2e6, 4e6, 8e6, 16e6)
_SPOOL_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)


class Metrics:
    """The consumer's metrics. Names follow Prometheus conventions and pass ``promtool check metrics``."""

    def __init__(self, registry: CollectorRegistry | None = None, namespace: str = "vision_events") -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r, ns = self.registry, namespace
        self.messages_received = Counter(
            "messages_received",
            "Messages received from a source.",
            ["source", "topic"],
            namespace=ns,
            registry=r,
        )
        self.message_bytes = Counter(
            "message_received_bytes",
            "Payload bytes received from a source.",
            ["source"],
            namespace=ns,
            registry=r,
        )
        self.messages_normalized = Counter(
            "messages_normalized",
            "Messages by normalization outcome "
            "(event, suppressed, filtered, filtered_when, invalid, unrouted).",
            ["route", "outcome"],
            namespace=ns,
            registry=r,
        )
        self.events_delivered = Counter(
            "events_delivered", "Events the API accepted.", ["sink", "event_type"], namespace=ns, registry=r
        )
        self.batches = Counter(
            "batches",
            "Batches handed to the sink, by final outcome.",
            ["sink", "outcome"],
            namespace=ns,
            registry=r,
        )
        self.batch_events = Histogram(
            "batch_size_events",
            "Events per batch.",
            ["sink"],
            buckets=_BATCH_EVENT_BUCKETS,
            namespace=ns,
            registry=r,
        )
        self.batch_bytes = Histogram(
            "batch_size_bytes",
            "Approximate bytes per batch.",
            ["sink"],
            buckets=_BATCH_BYTE_BUCKETS,
            namespace=ns,
            registry=r,
        )
        self.api_requests = Histogram(
            "api_request_duration_seconds",
            "API request latency by endpoint and HTTP status (status 'error' for network failures).",
            ["endpoint", "status"],
            buckets=_LATENCY_BUCKETS,
            namespace=ns,
            registry=r,
        )
        self.retries = Counter(
            "api_retries",
            "Requests retried, by endpoint and cause.",
            ["endpoint", "cause"],
            namespace=ns,
            registry=r,
        )
        self.unexpected_responses = Counter(
            "unexpected_responses",
            "Success statuses whose body was not the API contract's answer (retried, never acknowledged).",
            ["sink", "endpoint"],
            namespace=ns,
            registry=r,
        )
        self.sink_unexpected_responses = Gauge(
            "sink_unexpected_responses",
            "1 while the API's last answer was a success status without the contract's answer.",
            ["sink"],
            namespace=ns,
            registry=r,
        )
        self.batch_splits = Counter(
            "batch_splits",
            "Batches split in two to isolate rejected events.",
            ["sink"],
            namespace=ns,
            registry=r,
        )
        self.dead_letters = Counter(
            "dead_letters",
            "Messages written to the dead-letter destination, by reason.",
            ["reason"],
            namespace=ns,
            registry=r,
        )
        self.dead_letters_truncated = Counter(
            "dead_letters_truncated",
            "Dead letters written with their payload cut: the destination refused them whole as too large.",
            ["destination"],
            namespace=ns,
            registry=r,
        )
        self.dead_letter_failures = Counter(
            "dead_letter_write_failures",
            "Failed writes to the dead-letter destination.",
            namespace=ns,
            registry=r,
        )
        self.annotations_dropped = Counter(
            "annotations_dropped",
            "Events delivered without their predictions, by reason (no_image: nothing to attach them to; "
            "image_unavailable: their image URL could not be fetched).",
            ["reason"],
            namespace=ns,
            registry=r,
        )
        self.images_uploaded = Counter("images_uploaded", "Images uploaded.", namespace=ns, registry=r)
        self.image_upload_bytes = Counter(
            "image_upload_bytes", "Bytes of images uploaded.", namespace=ns, registry=r
        )
        self.images_fetched = Counter(
            "images_fetched",
            "Image URL fetch attempts by outcome; unavailable: an image given up after its bound.",
            ["outcome"],
            namespace=ns,
            registry=r,
        )
        self.in_flight_events = Gauge(
            "in_flight_events",
            "Events received and not yet delivered or dead-lettered.",
            namespace=ns,
            registry=r,
        )
        self.in_flight_bytes = Gauge(
            "in_flight_bytes",
            "Payload bytes of the messages received and not yet delivered or dead-lettered.",
            namespace=ns,
            registry=r,
        )
        self.end_to_end_latency = Histogram(
            "end_to_end_latency_seconds",
            "From the event's capture time to the API accepting it.",
            buckets=_LATENCY_BUCKETS,
            namespace=ns,
            registry=r,
        )
        self.delivery_latency = Histogram(
            "delivery_latency_seconds",
            "From the consumer receiving the message to the API accepting its event.",
            buckets=_LATENCY_BUCKETS,
            namespace=ns,
            registry=r,
        )
        self.last_delivery = Gauge(
            "last_delivery_timestamp_seconds",
            "Unix time of the last accepted event.",
            namespace=ns,
            registry=r,
        )
        self.sink_auth_failing = Gauge(
            "sink_auth_failing",
            "1 while the API refuses the credentials (401/403).",
            ["sink"],
            namespace=ns,
            registry=r,
        )
        # The stuck-API signal an operator reads best: it grows while a batch waits, across request
        # timeouts and retries, and a hang shows here at once, whereas the request histogram only
        # records requests once they end and the last-delivery time also ages on a quiet site.
        self.sink_oldest_batch_age = Gauge(
            "sink_oldest_batch_age_seconds",
            "Seconds the oldest batch the sink is delivering has been waiting for the API, across retries "
            "(0 when none is in flight); read at scrape time.",
            ["sink"],
            namespace=ns,
            registry=r,
        )
        self.ready = Gauge("ready", "1 when the consumer reports ready on /readyz.", namespace=ns, registry=r)
        self.source_connected = Gauge(
            "source_connected",
            "1 while the source is connected to its broker.",
            ["source"],
            namespace=ns,
            registry=r,
        )
        self.messages_dropped = Counter(
            "messages_dropped",
            "Messages a source let go unacknowledged for the broker to redeliver (redelivery), or lost "
            "for good (qos0_overflow: QoS 0 has no redelivery).",
            ["source", "reason"],
            namespace=ns,
            registry=r,
        )
        self.source_reconnects = Counter(
            "source_reconnects",
            "Connections re-established after a loss.",
            ["source"],
            namespace=ns,
            registry=r,
        )
        self.kafka_lag = Gauge(
            "kafka_consumer_lag",
            "Messages between the committed offset and the partition's end.",
            ["topic", "partition"],
            namespace=ns,
            registry=r,
        )
        self.kafka_rebalances = Counter(
            "kafka_rebalances", "Partition assignments and revocations.", ["kind"], namespace=ns, registry=r
        )
        self.kafka_paused_partitions = Gauge(
            "kafka_paused_partitions", "Partitions paused for backpressure.", namespace=ns, registry=r
        )
        self.kafka_commits = Counter(
            "kafka_commits", "Offset commits, by outcome.", ["outcome"], namespace=ns, registry=r
        )
        # -- the durable spool (docs/spool.md) --------------------------------------------------------
        self.spool_events = Gauge(
            "spool_events", "Events in the durable spool, waiting for the API.", namespace=ns, registry=r
        )
        self.spool_bytes = Gauge(
            "spool_bytes",
            "Bytes of the spool file in use (its pages minus the free ones): events, messages, images.",
            namespace=ns,
            registry=r,
        )
        self.spool_oldest_age = Gauge(
            "spool_oldest_event_age_seconds",
            "Seconds since the oldest event still in the spool was written to it (0 when empty).",
            namespace=ns,
            registry=r,
        )
        self.spool_capacity_events = Gauge(
            "spool_capacity_events",
            "The spool's bound in events (spool.max_events).",
            namespace=ns,
            registry=r,
        )
        self.spool_capacity_bytes = Gauge(
            "spool_capacity_bytes", "The spool's bound in bytes (spool.max_bytes).", namespace=ns, registry=r
        )
        self.spool_spooled = Counter(
            "spool_spooled", "Events committed to the spool.", namespace=ns, registry=r
        )
        self.spool_drained = Counter(
            "spool_drained",
            "Events removed from the spool, by outcome (delivered: the API accepted it; dead_lettered).",
            ["outcome"],
            namespace=ns,
            registry=r,
        )
        self.spool_full = Gauge(
            "spool_full",
            "1 while writes wait for room in the spool (backpressure: nothing more is acknowledged).",
            namespace=ns,
            registry=r,
        )
        self.spool_failing = Gauge(
            "spool_failing",
            "1 while the spool cannot be written (disk full, I/O error, unusable file): not ready.",
            namespace=ns,
            registry=r,
        )
        self.spool_errors = Counter(
            "spool_errors",
            "Failed spool operations, by operation and cause (disk_full, corrupt, io_error, locked, error).",
            ["operation", "cause"],
            namespace=ns,
            registry=r,
        )
        self.spool_quarantined = Counter(
            "spool_quarantined_files",
            "Corrupt spool files moved aside (renamed, kept for recovery) and replaced by a fresh spool.",
            namespace=ns,
            registry=r,
        )
        self.spool_transaction = Histogram(
            "spool_transaction_duration_seconds",
            "Duration of spool transactions, by operation (write, claim, delete).",
            ["operation"],
            buckets=_SPOOL_BUCKETS,
            namespace=ns,
            registry=r,
        )
        self.kafka_errors = Counter(
            "kafka_errors",
            "Non-fatal Kafka client errors, by librdkafka error name.",
            ["code"],
            namespace=ns,
            registry=r,
        )


def observe_many(histogram: Histogram, amounts: Sequence[float]) -> None:
    """``histogram.observe(a)`` for each of ``amounts``, with one increment per bucket touched.

    A batch's latencies land in a handful of buckets: counting them first turns a hundred locked
    increments into a few. The buckets are prometheus_client's own (its ``observe`` finds the first
    bound ``>= amount``, which is ``bisect_left``); should a release rename them, or an amount be
    NaN (which ``bisect`` would place in the first bucket), this falls back to ``observe`` each.
    """
    if not amounts:
        return
    bounds = getattr(histogram, "_upper_bounds", None)
    buckets = getattr(histogram, "_buckets", None)
    total_value = getattr(histogram, "_sum", None)
    total = sum(amounts)
    if bounds is None or buckets is None or total_value is None or isnan(total):
        for amount in amounts:
            histogram.observe(amount)
        return
    for index, count in Tally(bisect_left(bounds, amount) for amount in amounts).items():
        buckets[index].inc(count)
    total_value.inc(total)
