"""The publisher examples in four languages, built with their own toolchains and run against real brokers.

Each example validates an envelope against ``schemas/inference-message.schema.json`` and publishes it
to Mosquitto and to Kafka; two consumer processes (one per broker) deliver to the API stand-in, and
each event is checked by its eventId, with its annotation and its image bytes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from consumer.fakeapi import FakeVisionEventsApi
from consumer.identity import event_id_for
from tests.support.ci import missing
from tests.support.process import ConsumerProcess, free_port, wait_until, write_settings

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "publishers"
API_KEY = "publisher-examples-key"
# Cold builds download their libraries (Go modules, Maven artifacts, npm packages) once.
BUILD_TIMEOUT_SECONDS = 900
RUN_TIMEOUT_SECONDS = 180

ROUTES = """
unrouted: dead_letter
routes:
  - name: mqtt-publishers
    match: "{prefix}/{{language}}/inspection"
    custom_metadata:
      transport: mqtt
  - name: kafka-publishers
    match_regex: "{prefix}\\\\.(?P<language>[a-z]+)\\\\.inspection"
    custom_metadata:
      transport: kafka
"""

LANGUAGES = ("python", "node", "go", "java")


@dataclass(frozen=True)
class Brokers:
    """The stand-in and the topic prefix two running consumers read."""

    api: FakeVisionEventsApi
    prefix: str
    mqtt_url: str
    kafka_bootstrap: str
    consumers: tuple[ConsumerProcess, ...]

    def logs(self) -> str:
        """The end of both consumers' logs, for failure messages."""
        return "\n---\n".join(c.log_tail(20) for c in self.consumers)


def _require(tool: str) -> str:
    """The path of ``tool``; missing, a failure under CI (the examples must run there), else a skip."""
    path = shutil.which(tool)
    if path is None:
        missing(f"{tool} is not installed (the {tool} publisher example needs it)")
    return path


def _run(command: list[str], cwd: Path, timeout: float, env: dict[str, str] | None = None) -> str:
    """Run ``command``; its output on failure names what went wrong."""
    result = subprocess.run(
        command,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, (
        f"{' '.join(command)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    )
    return result.stdout


def _build(language: str, tmp: Path) -> list[str]:
    """Build the example of ``language`` with its own toolchain; the command that runs it."""
    directory = EXAMPLES / language
    if language == "python":
        return [sys.executable, str(directory / "publish.py")]
    if language == "node":
        _require("node")
        _run([_require("npm"), "ci", "--no-audit", "--no-fund"], directory, BUILD_TIMEOUT_SECONDS)
        return ["node", "publish.js"]
    if language == "go":
        binary = tmp / "go-publisher"
        _run([_require("go"), "build", "-o", str(binary), "."], directory, BUILD_TIMEOUT_SECONDS)
        return [str(binary)]
    maven = [_require("mvn"), "-q", "-B", "-Dstyle.color=never"]
    _run([*maven, "compile"], directory, BUILD_TIMEOUT_SECONDS)
    return [*maven, "exec:java"]


def _routes(tmp: Path, prefix: str) -> Path:
    path = tmp / "routes.yaml"
    path.write_text(ROUTES.format(prefix=prefix))
    return path


def _consumer(
    tmp: Path, name: str, api: FakeVisionEventsApi, routes: Path, source: dict[str, Any]
) -> ConsumerProcess:
    port = free_port()
    settings = {
        "routes": str(routes),
        "source": source,
        "dead_letter": {"type": "jsonl", "jsonl": {"path": str(tmp / f"{name}-dead-letters.jsonl")}},
        "sink": {"type": "cloud", "cloud": {"base_url": api.url, "api_key": API_KEY}},
        "batch": {"linger_ms": 50},
        "http": {"host": "127.0.0.1", "port": port},
        "log": {"level": "INFO"},
    }
    config = write_settings(tmp / f"{name}.yaml", settings)
    return ConsumerProcess(config, port, tmp / f"{name}.log").start()


@pytest.fixture(scope="module")
def brokers(
    kafka_bootstrap: str, mqtt_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Brokers]:
    """The stand-in, the Kafka topics of every example, and one consumer per broker, all ready."""
    tmp = tmp_path_factory.mktemp("publishers")
    prefix = f"publishers-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    topics = [NewTopic(f"{prefix}.{language}.inspection", num_partitions=1) for language in LANGUAGES]
    for future in admin.create_topics(topics).values():
        future.result(30)
    routes = _routes(tmp, prefix)
    api = FakeVisionEventsApi(api_keys=(API_KEY,), use_cases=("qc",)).start()
    consumers: list[ConsumerProcess] = []
    try:
        mqtt_source = {
            "type": "mqtt",
            "mqtt": {
                "url": mqtt_url,
                "client_id": f"{prefix}-consumer",
                "subscriptions": [{"filter": f"{prefix}/#", "qos": 1}],
            },
        }
        kafka_source = {
            "type": "kafka",
            "kafka": {
                "bootstrap_servers": kafka_bootstrap,
                "group_id": f"{prefix}-group",
                "topics": [f"^{prefix}\\..*"],
                "settings": {"auto.offset.reset": "earliest"},
            },
        }
        consumers.append(_consumer(tmp, "mqtt", api, routes, mqtt_source))
        consumers.append(_consumer(tmp, "kafka", api, routes, kafka_source))
        for consumer in consumers:
            consumer.wait_ready()
        yield Brokers(api, prefix, mqtt_url, kafka_bootstrap, tuple(consumers))
    finally:
        for consumer in consumers:
            consumer.stop_quietly()
        api.stop()


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_example_publishes_an_event_that_arrives_whole(
    language: str, brokers: Brokers, tmp_path: Path
) -> None:
    """Build, run, and find the example's MQTT and Kafka events at the stand-in, image and box included."""
    command = _build(language, tmp_path)
    id_prefix = f"{language}-{uuid.uuid4().hex[:8]}"
    output = _run(
        command,
        EXAMPLES / language,
        RUN_TIMEOUT_SECONDS,
        env={
            "MQTT_URL": brokers.mqtt_url,
            "KAFKA_BOOTSTRAP_SERVERS": brokers.kafka_bootstrap,
            "MQTT_TOPIC": f"{brokers.prefix}/{language}/inspection",
            "KAFKA_TOPIC": f"{brokers.prefix}.{language}.inspection",
            "EVENT_ID_PREFIX": id_prefix,
        },
    )
    assert f"published {id_prefix}-mqtt to mqtt" in output
    assert f"published {id_prefix}-kafka to kafka" in output

    expected = {
        transport: event_id_for(publisher_id=f"{id_prefix}-{transport}", topic="", payload=b"")
        for transport in ("mqtt", "kafka")
    }
    try:
        wait_until(lambda: set(expected.values()) <= brokers.api.events().keys(), 60, "both events delivered")
    except AssertionError:
        raise AssertionError(f"{language}: events missing\n{brokers.logs()}") from None

    frame = (EXAMPLES / "frame.jpg").read_bytes()
    for transport, event_id in expected.items():
        event = brokers.api.events()[event_id]
        assert event["eventType"] == "quality_check"
        assert event["eventData"]["result"] == "fail"
        assert event["customMetadata"]["publisher"] == language
        assert event["customMetadata"]["transport"] == transport
        (image,) = event["images"]
        (box,) = image["objectDetections"]
        assert box["class"] == "scratch"
        assert brokers.api.uploads()[image["inputSourceId"]] == frame
