"""mqtts:// with mutual TLS against a private Mosquitto started by this module.

The module runs its own Mosquitto (the Debian binary that ``scripts/brokers.sh`` installs) with a
TLS listener that requires client certificates, on a free port, with certificates made by the
``openssl`` command. Outside CI the tests are skipped when either program is missing.
"""

from __future__ import annotations

import asyncio
import getpass
import shutil
import socket
import ssl
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from prometheus_client import CollectorRegistry

from consumer.config import BatchConfig, MqttDeadLetterConfig, MqttSourceConfig, TlsConfig
from consumer.deadletter.mqtt import MqttDeadLetterWriter, record_from_mqtt_payload
from consumer.delivery import DeadLetterGate
from consumer.metrics import Metrics
from consumer.pipeline import Pipeline
from consumer.sources.mqtt import MqttSource
from tests.integration.test_mqtt_source import wait_until
from tests.support import brokers
from tests.support.doubles import MemorySink
from tests.support.messages import normalizer
from tests.support.tls import make_certificates

pytestmark = pytest.mark.integration

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
OPENSSL = shutil.which("openssl")


@dataclass(frozen=True)
class TlsBroker:
    port: int
    ca: Path
    client_cert: Path
    client_key: Path

    @property
    def url(self) -> str:
        return f"mqtts://localhost:{self.port}"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsBroker]:
    if OPENSSL is None or not Path(MOSQUITTO).exists():
        brokers.unavailable("A TLS Mosquitto (needs the mosquitto and openssl programs)")
    assert OPENSSL is not None
    directory = tmp_path_factory.mktemp("mqtt-tls")
    make_certificates(directory, OPENSSL)
    port = _free_port()
    (directory / "mosquitto.conf").write_text(
        "\n".join(
            [
                f"user {getpass.getuser()}",
                f"listener {port} 127.0.0.1",
                "allow_anonymous true",
                "persistence false",
                f"cafile {directory / 'ca.crt'}",
                f"certfile {directory / 'server.crt'}",
                f"keyfile {directory / 'server.key'}",
                "require_certificate true",
                "log_dest stderr",
                "",
            ]
        ),
        encoding="utf-8",
    )
    log = (directory / "mosquitto.log").open("wb")
    process = subprocess.Popen(
        [MOSQUITTO, "-c", str(directory / "mosquitto.conf")], stdout=log, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert process.poll() is None, (directory / "mosquitto.log").read_text(errors="replace")
            assert time.monotonic() < deadline, "the TLS Mosquitto did not start"
            time.sleep(0.1)
        yield TlsBroker(port, directory / "ca.crt", directory / "client.crt", directory / "client.key")
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        log.close()


def _tls_publisher(broker: TlsBroker) -> paho.Client:
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"tls-pub-{uuid.uuid4().hex[:8]}")
    context = ssl.create_default_context(cafile=str(broker.ca))
    context.load_cert_chain(str(broker.client_cert), str(broker.client_key))
    client.tls_set_context(context)
    client.connect("localhost", broker.port)
    client.loop_start()
    return client


def _source_config(broker: TlsBroker, *, client_cert: bool = True) -> MqttSourceConfig:
    return MqttSourceConfig(
        url=broker.url,
        client_id=f"tls-src-{uuid.uuid4().hex[:8]}",
        tls=TlsConfig(
            ca_file=str(broker.ca),
            cert_file=str(broker.client_cert) if client_cert else None,
            key_file=str(broker.client_key) if client_cert else None,
        ),
        reconnect_min_seconds=1,
        reconnect_max_seconds=1,
    )


def test_mutual_tls_delivers_and_dead_letters(tls_broker: TlsBroker) -> None:
    prefix, dlq_topic = f"tls-{uuid.uuid4().hex[:8]}", "tls-dlq"
    config = _source_config(tls_broker)
    valid = [
        orjson.dumps({"event_type": "custom", "use_case": "u", "custom_value": f"v{i}"}) for i in range(5)
    ]

    async def scenario() -> None:
        metrics = Metrics(CollectorRegistry())
        source = MqttSource(config, [f"{prefix}/#"], metrics)
        sink = MemorySink()
        writer = MqttDeadLetterWriter(MqttDeadLetterConfig(topic=dlq_topic, timeout_seconds=10), config)
        pipeline = Pipeline(
            normalizer(f"routes: [{{name: all, match: '{prefix}/#'}}]"),
            sink,
            DeadLetterGate(writer, metrics),
            metrics,
            BatchConfig(linger_ms=10),
        )
        dead: list[bytes] = []
        reader = _tls_publisher(tls_broker)
        reader.on_message = lambda _c, _u, msg: dead.append(record_from_mqtt_payload(msg.payload).payload)
        subscribed: list[int] = []
        reader.on_subscribe = lambda _c, _u, mid, _r, _p: subscribed.append(mid)
        reader.subscribe(dlq_topic, qos=1)
        await wait_until(lambda: bool(subscribed), "the dead-letter subscription")
        publisher = _tls_publisher(tls_broker)
        stop = asyncio.Event()
        task = asyncio.get_running_loop().create_task(source.run(pipeline, stop))
        try:
            await wait_until(lambda: source.connected, "the TLS connection")
            for payload in [*valid, b"not json"]:
                publisher.publish(f"{prefix}/cam", payload, qos=1).wait_for_publish(10)
            await wait_until(lambda: len(sink.events) == len(valid) and dead == [b"not json"], "delivery")
            await wait_until(lambda: source.stats.acks_sent == len(valid) + 1, "every PUBACK")
        finally:
            stop.set()
            await task
            await pipeline.close(5)
            await source.aclose()
            await writer.aclose()
            for client in (publisher, reader):
                client.disconnect()
                client.loop_stop()
        assert sorted(e.message.payload for e in sink.events) == sorted(valid)

    asyncio.run(scenario())


def test_without_a_client_certificate_the_source_stays_not_ready(tls_broker: TlsBroker) -> None:
    async def scenario() -> None:
        metrics = Metrics(CollectorRegistry())
        source = MqttSource(_source_config(tls_broker, client_cert=False), ["x/#"], metrics)

        class _Idle:
            def has_room(self, incoming: int = 1) -> bool:
                return True

        stop = asyncio.Event()
        task = asyncio.get_running_loop().create_task(source.run(_Idle(), stop))  # type: ignore[arg-type]
        await asyncio.sleep(2.5)
        assert not source.connected
        assert metrics.registry.get_sample_value("vision_events_source_connected", {"source": "mqtt"}) == 0
        stop.set()
        await task
        started = time.monotonic()
        await source.aclose()
        assert time.monotonic() - started < 8

    asyncio.run(scenario())
