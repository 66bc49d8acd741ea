"""Publish one inspection result, as an envelope message, to MQTT and to Kafka.

A camera program would call ``build_message`` once per frame. This one sends one message to each
broker and exits 0 once both brokers acknowledged it (MQTT PUBACK at QoS 1, Kafka acks=all), or
exits 1 with the reason.

Settings come from the environment (defaults suit the project's local brokers):
MQTT_URL, KAFKA_BOOTSTRAP_SERVERS, MQTT_TOPIC, KAFKA_TOPIC, EVENT_ID_PREFIX, IMAGE, SCHEMA.
"""

from __future__ import annotations

import base64
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import paho.mqtt.client as mqtt
from confluent_kafka import KafkaError, KafkaException, Message, Producer
from paho.mqtt.enums import CallbackAPIVersion

HERE = Path(__file__).resolve().parent
TIMEOUT_SECONDS = 30


def setting(name: str, default: str) -> str:
    """An environment variable, or its default."""
    return os.environ.get(name) or default


def build_message(event_id: str, jpeg: bytes) -> dict[str, Any]:
    """A quality-check envelope: one scratch found on a 640x480 frame, the frame itself attached."""
    return {
        "event_type": "quality_check",
        "use_case": "qc",
        "event_id": event_id,
        "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "device_id": "cam-1",
        "qc_result": "fail",
        "custom_metadata": {"publisher": "python"},
        "predictions": {
            "image": {"width": 640, "height": 480},
            "predictions": [
                {
                    "x": 320,
                    "y": 240,
                    "width": 80,
                    "height": 60,
                    "confidence": 0.92,
                    "class": "scratch",
                    "class_id": 1,
                }
            ],
        },
        "input_image": {"base64": base64.b64encode(jpeg).decode("ascii")},
    }


def publish_mqtt(url: str, topic: str, payload: bytes) -> None:
    """Publish at QoS 1 and wait for the broker's PUBACK."""
    parts = urlsplit(url)
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"example-publisher-{os.getpid()}")
    if parts.username:
        client.username_pw_set(parts.username, parts.password)
    client.connect(parts.hostname or "127.0.0.1", parts.port or 1883)
    client.loop_start()
    try:
        info = client.publish(topic, payload, qos=1)
        info.wait_for_publish(TIMEOUT_SECONDS)
        if not info.is_published():
            raise RuntimeError(f"MQTT broker {parts.hostname}:{parts.port} did not acknowledge the message")
    finally:
        client.disconnect()
        client.loop_stop()


def publish_kafka(bootstrap: str, topic: str, key: str, payload: bytes) -> None:
    """Produce with acks=all and wait for the delivery report."""
    errors: list[str] = []

    def report(err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            errors.append(str(err))

    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True})
    producer.produce(topic, payload, key=key, on_delivery=report)
    if producer.flush(TIMEOUT_SECONDS) > 0:
        raise RuntimeError(f"Kafka at {bootstrap} did not acknowledge the record within {TIMEOUT_SECONDS} s")
    if errors:
        raise RuntimeError(f"Kafka refused the record: {errors[0]}")


def main() -> int:
    """Validate one message per broker against the schema, then publish it."""
    schema = json.loads(
        Path(setting("SCHEMA", str(HERE / "../../../schemas/inference-message.schema.json"))).read_text()
    )
    jpeg = Path(setting("IMAGE", str(HERE / "../frame.jpg"))).read_bytes()
    prefix = setting("EVENT_ID_PREFIX", "python-example")
    validator = jsonschema.Draft202012Validator(schema)
    try:
        for transport in ("mqtt", "kafka"):
            message = build_message(f"{prefix}-{transport}", jpeg)
            # Refuse to publish what the consumer would dead-letter.
            validator.validate(message)
            payload = json.dumps(message).encode()
            if transport == "mqtt":
                publish_mqtt(
                    setting("MQTT_URL", "mqtt://127.0.0.1:1883"),
                    setting("MQTT_TOPIC", "factory/python/inspection"),
                    payload,
                )
            else:
                publish_kafka(
                    setting("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
                    setting("KAFKA_TOPIC", "factory.python.inspection"),
                    "cam-1",
                    payload,
                )
            print(f"published {message['event_id']} to {transport}")
    except (jsonschema.ValidationError, RuntimeError, KafkaException, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
