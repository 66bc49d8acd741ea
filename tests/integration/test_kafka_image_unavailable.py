"""On a real Kafka broker: a message whose image host never answers no longer holds its partition.

The first record of partition 0 names an image on a loopback host that accepts and never answers;
the records behind it carry no image. The consumer (real KafkaSource, pipeline, cloud sink against
the API stand-in) must dead-letter the stalled one (``image_unavailable``), deliver the others and
commit the partition's offset past all of them. Previously the fetch was retried forever and the
partition never committed again.
"""

from __future__ import annotations

import asyncio

import orjson
import pytest
from prometheus_client import CollectorRegistry

from consumer.config import BatchConfig, CloudSinkConfig, ImagesConfig, LimitsConfig, RetryConfig
from consumer.delivery import DeadLetterGate
from consumer.fakeapi import FakeVisionEventsApi
from consumer.metrics import Metrics
from consumer.normalize import Normalizer
from consumer.pipeline import Pipeline
from consumer.sinks.cloud import CloudSink
from consumer.sources.kafka import KafkaSource
from tests.integration.test_image_unavailable import image_host
from tests.integration.test_kafka_source import (
    Running,
    _committed,
    _create_topics,
    _end_offsets,
    _name,
    _produce,
    _source_config,
)
from tests.support.doubles import MemoryDeadLetters, MemorySink
from tests.support.messages import routes

pytestmark = pytest.mark.integration

API_KEY = "kafka-image-key"
USE_CASE = "kafka-image-uc"
BEHIND = 20
SETTLE_BOUND = 40.0


def _payload(value: str, image_url: str | None = None) -> bytes:
    document: dict[str, object] = {"event_type": "custom", "use_case": USE_CASE, "custom_value": value}
    if image_url is not None:
        document["output_image"] = {"url": image_url}
    return orjson.dumps(document)


def test_the_partition_commits_past_a_message_whose_image_host_never_answers(kafka_bootstrap: str) -> None:
    topic, group = _name("img"), _name("group")
    _create_topics(kafka_bootstrap, topic)
    config = _source_config(kafka_bootstrap, group, topic)
    dead = MemoryDeadLetters()
    sent: list[bytes] = []

    async def scenario(api: FakeVisionEventsApi) -> None:
        async with image_host(hang=True) as host:
            stalled = _payload("stalled", f"http://127.0.0.1:{host.port}/snapshot.jpg")
            sent.append(stalled)
            records = [(0, stalled)] + [(0, _payload(f"v{i}")) for i in range(BEHIND)]
            await asyncio.to_thread(_produce, kafka_bootstrap, topic, records)
            images = ImagesConfig(url_allowed_hosts=["127.0.0.1"], url_timeout_seconds=0.5)
            metrics = Metrics(CollectorRegistry())
            sink = CloudSink(
                CloudSinkConfig(base_url=api.url, api_key=API_KEY),
                RetryConfig(initial_backoff_seconds=0.05, max_backoff_seconds=0.5),  # never gives up
                images,
                metrics,
            )
            normalizer = Normalizer(routes("routes: [{name: all, match: '#'}]"), LimitsConfig(), images)
            pipeline = Pipeline(
                normalizer, sink, DeadLetterGate(dead, metrics), metrics, BatchConfig(linger_ms=20)
            )
            source = KafkaSource(config, metrics)
            running = Running(source, pipeline, MemorySink(), metrics)
            running.task = asyncio.get_running_loop().create_task(source.run(pipeline, running.stop))
            try:
                await running.until(
                    lambda: pipeline.stats.settled() == BEHIND + 1, SETTLE_BOUND, "every record settled"
                )
                assert await running.shutdown()
            finally:
                await sink.aclose()

    with FakeVisionEventsApi(api_keys=(API_KEY,), use_cases=(USE_CASE,)) as api:
        asyncio.run(scenario(api))
        delivered = {event["eventData"]["value"] for event in api.events().values()}
    assert delivered == {f"v{i}" for i in range(BEHIND)}
    (record,) = dead.records
    assert record.reason == "image_unavailable"
    assert record.payload == sent[0]
    assert record.coordinates["partition"] == 0 and record.coordinates["offset"] == 0
    assert (
        _committed(kafka_bootstrap, group, topic)[0] == _end_offsets(kafka_bootstrap, topic)[0] == BEHIND + 1
    )
