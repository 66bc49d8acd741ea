"""A mixed corpus of messages with the fate each one must meet, for end-to-end tests.

Valid messages of every input format and event type, invalid ones of many kinds, and unrouted
ones. Every valid payload is unique, so every valid message has its own eventId.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from consumer.identity import event_id_for
from tests.support.images import b64, jpeg_bytes, png_bytes

USE_CASES = ("qc", "inventory", "safety", "custom", "feedback")

ROUTES_TEMPLATE = """
unrouted: dead_letter
routes:
  - name: qc
    {match}: "{qc}"
    event_type: quality_check
    use_case: qc
    fields: {{device_id: "{{line}}", external_id: {{select: inference_id}}}}
    quality_check: {{fail_classes: [defect], min_confidence: 0.5}}
  - name: count
    {match}: "{count}"
    event_type: inventory_count
    use_case: inventory
    fields: {{location: "{{zone}}"}}
    inventory_count: {{item_classes: [box], min_confidence: 0.3}}
  - name: safety
    {match}: "{safety}"
    event_type: safety_alert
    use_case: safety
    fields: {{alert_type: intrusion, severity: high}}
  - name: workflow
    {match}: "{workflow}"
    event_type: custom
    use_case: custom
    fields: {{custom_value: {{select: "outputs[0].label", default: "workflow"}}}}
  - name: envelope
    {match}: "{envelope}"
"""


@dataclass(frozen=True, slots=True)
class Topics:
    """Topic naming: MQTT style (``corpus/line-1/qc``) or Kafka style (``corpus.line-1.qc``)."""

    prefix: str = "corpus"
    sep: str = "/"

    def topic(self, *levels: str) -> str:
        """A concrete topic."""
        return self.sep.join((self.prefix, *levels))

    def unrouted_topic(self) -> str:
        """A topic no route matches (but a prefix subscription still receives)."""
        return f"{self.prefix}-unrouted{self.sep}x"

    def routes_yaml(self) -> str:
        """Routes matching these topics: MQTT filters with '/', full-match regexes otherwise."""
        if self.sep == "/":
            p = self.prefix
            patterns = {
                "match": "match",
                "qc": f"{p}/{{line}}/qc",
                "count": f"{p}/{{zone}}/count",
                "safety": f"{p}/{{camera}}/safety",
                "workflow": f"{p}/{{name}}/workflow",
                "envelope": f"{p}/envelope/#",
            }
        else:
            p = re.escape(self.prefix)
            s = re.escape(self.sep)
            patterns = {
                "match": "match_regex",
                "qc": f"{p}{s}(?P<line>[^.]+){s}qc",
                "count": f"{p}{s}(?P<zone>[^.]+){s}count",
                "safety": f"{p}{s}(?P<camera>[^.]+){s}safety",
                "workflow": f"{p}{s}(?P<name>[^.]+){s}workflow",
                "envelope": f"{p}{s}envelope{s}.*",
            }
        escaped = {k: v.replace("\\", "\\\\") for k, v in patterns.items()}
        return ROUTES_TEMPLATE.format(**escaped)


ROUTES_YAML = Topics().routes_yaml()


@dataclass(frozen=True, slots=True)
class CorpusMessage:
    """One message and what must become of it."""

    topic: str
    payload: bytes
    event_type: str | None  # set: must arrive as an event of this type
    reason: str | None  # set: must be dead-lettered with this reason
    key: bytes | None = None  # the Kafka message key (nvmsgbroker keys by sensor id); MQTT has none

    @property
    def event_id(self) -> str:
        """The eventId the consumer must give it (publisher id, else topic + payload hash)."""
        document = orjson.loads(self.payload)
        own = document.get("event_id") if isinstance(document, dict) else None
        return event_id_for(publisher_id=own, topic=self.topic, payload=self.payload)


def _box(rng: random.Random, name: str) -> dict[str, Any]:
    return {
        "x": round(rng.uniform(10, 600), 2),
        "y": round(rng.uniform(10, 400), 2),
        "width": round(rng.uniform(4, 80), 2),
        "height": round(rng.uniform(4, 80), 2),
        "confidence": round(rng.uniform(0.1, 1.0), 4),
        "class": name,
        "class_id": 0,
        "detection_id": f"d{rng.getrandbits(32):x}",
    }


def _roboflow_od(rng: random.Random, n: int, names: tuple[str, ...]) -> dict[str, Any]:
    return {
        "inference_id": f"inf-{rng.getrandbits(48):x}",
        "time": 0.02,
        "image": {"width": 640, "height": 480},
        "predictions": [_box(rng, rng.choice(names)) for _ in range(n)],
    }


def _seg(rng: random.Random) -> dict[str, Any]:
    box = _box(rng, "person")
    x, y = box["x"], box["y"]
    box["points"] = [
        {"x": x - 5, "y": y - 5},
        {"x": x + 5, "y": y - 5},
        {"x": x + 5, "y": y + 5},
        {"x": x - 5, "y": y + 5},
    ]
    return {"image": {"width": 640, "height": 480}, "predictions": [box]}


def _keypoints(rng: random.Random) -> dict[str, Any]:
    box = _box(rng, "person")
    box["keypoints"] = [
        {"x": box["x"] + i, "y": box["y"] - i, "confidence": 0.9, "class_id": i, "class": f"kp{i}"}
        for i in range(3)
    ]
    return {"image": {"width": 640, "height": 480}, "predictions": [box]}


def _classification(rng: random.Random) -> dict[str, Any]:
    good = round(rng.uniform(0.5, 1.0), 4)
    return {
        "image": {"width": 224, "height": 224},
        "predictions": [
            {"class": "good", "class_id": 0, "confidence": good},
            {"class": "defect", "class_id": 1, "confidence": round(1 - good, 4)},
        ],
        "top": "good",
        "confidence": good,
    }


def _multilabel(rng: random.Random) -> dict[str, Any]:
    return {
        "image": {"width": 224, "height": 224},
        "predictions": {
            "helmet": {"confidence": round(rng.uniform(0.5, 1), 4), "class_id": 0},
            "vest": {"confidence": round(rng.uniform(0, 0.5), 4), "class_id": 1},
        },
        "predicted_classes": ["helmet"],
    }


def _ultralytics(rng: random.Random, n: int) -> list[dict[str, Any]]:
    out = []
    for _ in range(n):
        x1, y1 = rng.uniform(0, 500), rng.uniform(0, 300)
        out.append(
            {
                "name": rng.choice(("box", "pallet")),
                "class": 0,
                "confidence": round(rng.uniform(0.2, 1.0), 4),
                "box": {
                    "x1": round(x1, 2),
                    "y1": round(y1, 2),
                    "x2": round(x1 + 40, 2),
                    "y2": round(y1 + 30, 2),
                },
            }
        )
    return out


class _Builder:
    def __init__(self, seed: int, topics: Topics) -> None:
        self.rng = random.Random(seed)
        self.t = topics.topic
        self.png = b64(png_bytes(8, 6))
        self.jpeg = b64(jpeg_bytes(48, 32))
        self.seq = 0

    def next_id(self) -> str:
        self.seq += 1
        return f"corpus-{self.seq}"

    def envelope(self, **fields: Any) -> dict[str, Any]:
        return {"event_id": self.next_id(), **fields}

    # -- valid ---------------------------------------------------------------------------------------
    def valid(self) -> list[Callable[[], CorpusMessage]]:
        rng = self.rng

        def ok(topic: str, payload: Any, event_type: str) -> CorpusMessage:
            return CorpusMessage(topic, orjson.dumps(payload), event_type, None)

        return [
            lambda: ok(
                self.t(f"line-{rng.randint(1, 3)}", "qc"),
                _roboflow_od(rng, 10, ("defect", "ok")),
                "quality_check",
            ),
            lambda: ok(
                self.t(f"zone-{rng.randint(1, 3)}", "count"),
                _ultralytics(rng, rng.randint(1, 12)),
                "inventory_count",
            ),
            lambda: ok(
                self.t(f"cam-{rng.randint(1, 3)}", "safety"),
                {**_seg(rng), "inference_id": self.next_id()},
                "safety_alert",
            ),
            lambda: ok(
                self.t("dock", "workflow"),
                {"outputs": [{"label": self.next_id(), "detections": _roboflow_od(rng, 3, ("truck",))}]},
                "custom",
            ),
            lambda: ok(
                self.t("envelope", "qc"),
                self.envelope(
                    event_type="quality_check",
                    use_case="qc",
                    qc_result=rng.choice(("pass", "fail")),
                    input_image={"base64": self.jpeg},
                    predictions=_classification(rng),
                ),
                "quality_check",
            ),
            lambda: ok(
                self.t("envelope", "count"),
                self.envelope(
                    event_type="inventory_count",
                    use_case="inventory",
                    item_count=rng.randint(0, 50),
                    location="a",
                    item_type="box",
                ),
                "inventory_count",
            ),
            lambda: ok(
                self.t("envelope", "safety"),
                self.envelope(
                    event_type="safety_alert",
                    use_case="safety",
                    alert_type="no_vest",
                    severity="medium",
                    output_image={"base64": self.png},
                    predictions=_keypoints(rng),
                    timestamp=(datetime.now(UTC) - timedelta(minutes=rng.randint(1, 600))).isoformat(),
                ),
                "safety_alert",
            ),
            lambda: ok(
                self.t("envelope", "custom"),
                self.envelope(
                    event_type="custom",
                    use_case="custom",
                    custom_value="v",
                    input_image={"base64": self.png},
                    predictions=_multilabel(rng),
                    custom_metadata={"line": "A1", "temperature": 21.5, "ok": True, "count": 3},
                ),
                "custom",
            ),
            lambda: ok(
                self.t("envelope", "feedback"),
                self.envelope(
                    event_type="operator_feedback",
                    use_case="feedback",
                    related_event_id="3f1c9a2e-7b4d-4e8a-9c1f-2d5e6a7b8c90",
                    feedback=rng.choice(("correct", "incorrect", "inconclusive")),
                ),
                "operator_feedback",
            ),
        ]

    # -- invalid -------------------------------------------------------------------------------------
    def invalid(self, unrouted_topic: str) -> list[Callable[[], CorpusMessage]]:
        def bad(topic: str, payload: bytes, reason: str) -> CorpusMessage:
            return CorpusMessage(topic, payload, None, reason)

        def env(**fields: Any) -> bytes:
            return orjson.dumps(self.envelope(**fields))

        return [
            lambda: bad(
                self.t("envelope", "x"),
                b'{"event_type": "custom", ' + self.next_id().encode(),
                "invalid_json",
            ),
            lambda: bad(
                self.t("envelope", "x"),
                b'{"event_type": "custom", "use_case": "custom", "n": NaN, "id": "'
                + self.next_id().encode()
                + b'"}',
                "non_finite_number",
            ),
            lambda: bad(self.t("envelope", "x"), env(event_type="party", use_case="custom"), "invalid_value"),
            lambda: bad(
                self.t("envelope", "x"),
                env(event_type="custom", use_case="custom", external_id="x" * 1001),
                "too_long",
            ),
            lambda: bad(
                self.t("envelope", "x"),
                env(event_type="custom", use_case="custom", custom_metadata={"a": [1]}),
                "invalid_type",
            ),
            lambda: bad(
                self.t("envelope", "x"),
                env(event_type="custom", use_case="custom", timestamp="2001-01-01T00:00:00Z"),
                "timestamp_out_of_range",
            ),
            lambda: bad(self.t("envelope", "x"), env(use_case="custom"), "missing_field"),
            lambda: bad(unrouted_topic, env(event_type="custom", use_case="custom"), "no_route"),
            lambda: bad(self.t("line-1", "qc"), orjson.dumps({"surprise": self.next_id()}), "unknown_format"),
        ]


def build_corpus(
    count: int, *, seed: int = 7, invalid_ratio: float = 0.15, topics: Topics | None = None
) -> list[CorpusMessage]:
    """``count`` messages, about ``invalid_ratio`` of them invalid or unrouted, in a random order."""
    naming = topics or Topics()
    builder = _Builder(seed, naming)
    valid, invalid = builder.valid(), builder.invalid(naming.unrouted_topic())
    messages = []
    for index in range(count):
        if builder.rng.random() < invalid_ratio:
            messages.append(invalid[index % len(invalid)]())
        else:
            messages.append(valid[index % len(valid)]())
    return messages
