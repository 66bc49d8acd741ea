"""Builders for inbound messages and routing tables used across tests."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson
import yaml

from consumer.config import ImagesConfig, LimitsConfig
from consumer.model import InboundMessage
from consumer.normalize import Normalizer
from consumer.routing import RoutingTable, parse_routes


def message(
    topic: str, payload: Any, *, received_at: float | None = None, source: str = "test"
) -> InboundMessage:
    """An inbound message; dicts and lists are JSON-encoded, bytes and str are taken as they are."""
    if isinstance(payload, bytes):
        data = payload
    elif isinstance(payload, str):
        data = payload.encode()
    else:
        data = orjson.dumps(payload)
    return InboundMessage(
        source=source,
        topic=topic,
        payload=data,
        received_at=time.time() if received_at is None else received_at,
    )


def routes(text: str) -> RoutingTable:
    """A routing table from YAML text."""
    return parse_routes(yaml.safe_load(text), "test-routes")


def normalizer(
    text: str,
    *,
    limits: LimitsConfig | None = None,
    images: ImagesConfig | None = None,
    dropped: list[str] | None = None,
) -> Normalizer:
    """A normalizer over routes given as YAML text."""
    sink = dropped if dropped is not None else []
    return Normalizer(
        routes(text), limits or LimitsConfig(), images or ImagesConfig(), on_annotations_dropped=sink.append
    )


SAMPLES_FILE = Path(__file__).parents[2] / "consumer" / "samples" / "messages.jsonl"


def sample_payloads(*, excluding: tuple[str, ...] = ()) -> list[Any]:
    """The bundled samples' payloads (parsed), without those whose topic starts with ``excluding``."""
    payloads = []
    for line in SAMPLES_FILE.read_bytes().splitlines():
        record = orjson.loads(line)
        if not str(record["topic"]).startswith(excluding) and "payload" in record:
            payloads.append(record["payload"])
    return payloads
