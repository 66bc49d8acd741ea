"""The three realistic message kinds the benchmark publishes, and the routes that read them.

- ``od``: a raw Roboflow inference-server response for object detection with 10 boxes, as an edge
  script publishes it, plus two publisher fields: ``published_at`` (epoch seconds, the publish time)
  and ``frame`` (the frame, already uploaded: ``{"source_id": ...}``). No publisher id: the eventId
  is the UUIDv5 of topic + sha256(payload).
- ``cls``: an envelope with a Roboflow classification response as ``predictions``, its own
  ``event_id`` and an ISO ``timestamp`` (the publish time).
- ``jpeg``: an envelope carrying a ~50 KB JPEG inline (base64), unique per message so every message
  uploads its own image, with a 2-box detection response and an ISO ``timestamp``.

Every payload is unique (a sequence number and the publish time are in it), so every message gets
its own eventId. The publish time is what the stand-in subtracts from its acceptance time.
"""

from __future__ import annotations

import base64
import io
import random
import struct
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import orjson
from PIL import Image

from consumer.model import InboundMessage
from consumer.routing import RoutingTable, load_routes

KINDS: Final = ("od", "cls", "jpeg")
USE_CASES: Final = ("bench-qc", "bench-safety")
JPEG_TARGET_BYTES: Final = 50_000
_CLASSES: Final = ("bottle", "cap", "label", "defect", "scratch")


@dataclass(frozen=True, slots=True)
class Naming:
    """Topic names of one run: MQTT (``bench/<run>/cam-1/od``) or Kafka (``bench-<run>.od``)."""

    run: str
    transport: str  # "mqtt" | "kafka"

    def topic(self, kind: str, camera: int = 1) -> str:
        """The topic a message of ``kind`` is published to."""
        if self.transport == "mqtt":
            return f"bench/{self.run}/cam-{camera}/{kind}"
        return f"bench-{self.run}.{kind}"

    def mqtt_filter(self, kind: str) -> str:
        """The subscription that receives ``kind`` (MQTT)."""
        return f"bench/{self.run}/+/{kind}"

    def routes_yaml(self) -> str:
        """Routes for the three kinds on this transport."""
        if self.transport == "mqtt":
            match = {k: f'match: "bench/{self.run}/{{camera}}/{k}"' for k in KINDS}
            camera = '"{camera}"'
        else:
            match = {k: f'match_regex: "bench-{self.run}\\\\.{k}"' for k in KINDS}
            camera = '"kafka"'
        return f"""
unrouted: dead_letter
routes:
  - name: od
    {match["od"]}
    format: roboflow
    event_type: quality_check
    use_case: bench-qc
    fields:
      timestamp: {{select: published_at}}
      device_id: {camera}
      external_id: {{select: inference_id}}
      input_image: {{select: frame}}
    quality_check: {{fail_classes: [defect, scratch], min_confidence: 0.5}}
  - name: cls
    {match["cls"]}
    quality_check: {{fail_classes: [defect], min_confidence: 0.5}}
  - name: jpeg
    {match["jpeg"]}
"""


# -- images -----------------------------------------------------------------------------------------


def jpeg_of_size(target: int = JPEG_TARGET_BYTES) -> bytes:
    """A real JPEG (Pillow) of about ``target`` bytes: a noisy gradient frame, sized by bisection."""
    low, high = 64, 2048
    best = b""
    while low <= high:
        side = (low + high) // 2
        size = (side * 4 // 3, side)
        gradient = Image.linear_gradient("L").resize(size)
        noise = Image.effect_noise(size, 24)
        frame = Image.merge("RGB", (gradient, noise, gradient.transpose(Image.Transpose.FLIP_LEFT_RIGHT)))
        buffer = io.BytesIO()
        frame.save(buffer, "JPEG", quality=75)
        best = buffer.getvalue()
        if abs(len(best) - target) < target * 0.03:
            break
        if len(best) < target:
            low = side + 1
        else:
            high = side - 1
    return best


class UniqueJpeg:
    """Base64 JPEGs that differ per message, cheaply: a 24-byte prefix (SOI + COM segment) varies.

    24 is a multiple of 3, so base64(prefix + rest) == base64(prefix) + base64(rest): the 50 KB tail
    is encoded once.
    """

    def __init__(self, jpeg: bytes) -> None:
        if not jpeg.startswith(b"\xff\xd8"):
            raise ValueError("not a JPEG")
        self.size = len(jpeg) + 22
        self._tail = base64.b64encode(jpeg[2:]).decode("ascii")
        if (len(jpeg) - 2) % 3:
            # Pad the tail to a whole number of groups with a trailing COM-free filler after EOI.
            pad = 3 - (len(jpeg) - 2) % 3
            self._tail = base64.b64encode(jpeg[2:] + b"\x00" * pad).decode("ascii")
            self.size += pad

    def b64(self, number: int) -> str:
        """The base64 text of a JPEG whose comment carries ``number``."""
        comment = f"{number:018d}".encode()[-18:]
        prefix = b"\xff\xd8\xff\xfe" + struct.pack(">H", len(comment) + 2) + comment
        return base64.b64encode(prefix).decode("ascii") + self._tail


# -- payloads ---------------------------------------------------------------------------------------


def _box(rng: random.Random) -> dict[str, Any]:
    return {
        "x": round(rng.uniform(20, 1260), 1),
        "y": round(rng.uniform(20, 700), 1),
        "width": round(rng.uniform(8, 200), 1),
        "height": round(rng.uniform(8, 200), 1),
        "confidence": round(rng.uniform(0.3, 0.99), 4),
        "class": rng.choice(_CLASSES),
        "class_id": rng.randrange(len(_CLASSES)),
        "detection_id": f"{rng.getrandbits(128):032x}",
    }


def iso(epoch: float) -> str:
    """ISO 8601 with microseconds and offset, as publishers send it."""
    return datetime.fromtimestamp(epoch, UTC).isoformat()


class Payloads:
    """Builds payloads of each kind; ``make(kind, seq, published_at)`` -> bytes.

    A small pool of prediction sets is prepared up front so building a message costs one
    ``orjson.dumps``; uniqueness comes from the sequence number and the publish time.
    """

    def __init__(self, run: str, source_id: str, *, seed: int = 11, pool: int = 64) -> None:
        rng = random.Random(seed)
        self.run = run
        self.source_id = source_id
        self._frame = {"source_id": source_id}
        self._od = [[_box(rng) for _ in range(10)] for _ in range(pool)]
        self._cls = []
        for _ in range(pool):
            good = round(rng.uniform(0.4, 0.99), 4)
            rest = round((1 - good) / 2, 4)
            self._cls.append(
                [
                    {"class": "good", "class_id": 0, "confidence": good},
                    {"class": "defect", "class_id": 1, "confidence": rest},
                    {"class": "scratch", "class_id": 2, "confidence": rest},
                ]
            )
        self._det2 = [[_box(rng) for _ in range(2)] for _ in range(pool)]
        self._jpeg: UniqueJpeg | None = None
        self._builders: dict[str, Callable[[int, float], bytes]] = {
            "od": self._make_od,
            "cls": self._make_cls,
            "jpeg": self._make_jpeg,
        }

    def make(self, kind: str, seq: int, published_at: float) -> bytes:
        """One payload of ``kind``."""
        return self._builders[kind](seq, published_at)

    def _make_od(self, seq: int, published_at: float) -> bytes:
        return orjson.dumps(
            {
                "inference_id": f"{self.run}-od-{seq}",
                "time": 0.0213,
                "image": {"width": 1280, "height": 720},
                "predictions": self._od[seq % len(self._od)],
                "published_at": published_at,
                "frame": self._frame,
            }
        )

    def _make_cls(self, seq: int, published_at: float) -> bytes:
        predictions = self._cls[seq % len(self._cls)]
        return orjson.dumps(
            {
                "event_id": f"{self.run}-cls-{seq}",
                "event_type": "quality_check",
                "use_case": "bench-qc",
                "timestamp": iso(published_at),
                "device_id": f"cam-{seq % 8}",
                "input_image": self._frame,
                "predictions": {
                    "inference_id": f"{self.run}-cls-{seq}",
                    "time": 0.004,
                    "image": {"width": 224, "height": 224},
                    "predictions": predictions,
                    "top": "good",
                    "confidence": predictions[0]["confidence"],
                },
            }
        )

    def _make_jpeg(self, seq: int, published_at: float) -> bytes:
        if self._jpeg is None:
            self._jpeg = UniqueJpeg(jpeg_of_size())
        return orjson.dumps(
            {
                "event_type": "safety_alert",
                "use_case": "bench-safety",
                "timestamp": iso(published_at),
                "device_id": f"cam-{seq % 8}",
                "alert_type": "no_helmet",
                "severity": "high",
                "input_image": {"base64": self._jpeg.b64(seq)},
                "predictions": {
                    "image": {"width": 1280, "height": 720},
                    "predictions": self._det2[seq % len(self._det2)],
                },
            }
        )


def routing_table(naming: Naming) -> RoutingTable:
    """The loaded routes of :meth:`Naming.routes_yaml`, for measuring in one process."""
    with tempfile.TemporaryDirectory() as tmp:
        routes = Path(tmp) / "routes.yaml"
        routes.write_text(naming.routes_yaml())
        return load_routes(routes)


def inbound_messages(
    naming: Naming, payloads: Payloads, kind: str, count: int, ack: Callable[[], None] | None = None
) -> list[InboundMessage]:
    """``count`` messages of ``kind`` as a source hands them over (cameras 1-4), received now."""
    now = time.time()
    extra: dict[str, Any] = {} if ack is None else {"ack": ack}
    return [
        InboundMessage(
            source=naming.transport,
            topic=naming.topic(kind, 1 + seq % 4),
            payload=payloads.make(kind, seq, now),
            received_at=now,
            subscription=naming.topic(kind),
            **extra,
        )
        for seq in range(count)
    ]
