"""JsonlSink: the dry run writes cloud bodies, one per line, with placeholder image ids."""

from __future__ import annotations

import asyncio
import base64
import hashlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from consumer.config import JsonlSinkConfig
from consumer.contract import EventType
from consumer.errors import Reason
from consumer.model import ImageSource, InboundMessage, VisionEvent
from consumer.sinks.base import DeliveryReport, Sink
from consumer.sinks.jsonl import JsonlSink, placeholder_id

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
PNG_HASH = hashlib.sha256(PNG).hexdigest()


def make_event(
    n: int, *, output: ImageSource | None = None, input_: ImageSource | None = None
) -> VisionEvent:
    message = InboundMessage(source="test", topic="t", payload=b"{}", received_at=0.0)
    return VisionEvent(
        event_id=f"evt-{n}",
        event_type=EventType.INVENTORY_COUNT,
        use_case_id="uc",
        timestamp=datetime(2026, 8, 21, tzinfo=UTC),
        message=message,
        event_data={"itemCount": n},
        output_image=output,
        input_image=input_,
    )


def inline(data: bytes) -> ImageSource:
    return ImageSource(base64=base64.b64encode(data).decode())


def deliver(sink: JsonlSink, *batches: list[VisionEvent]) -> list[DeliveryReport]:
    async def scenario() -> list[DeliveryReport]:
        try:
            return [await sink.deliver(batch) for batch in batches]
        finally:
            await sink.aclose()

    return asyncio.run(scenario())


def lines(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def test_protocol_and_no_credentials() -> None:
    sink: Sink = JsonlSink(JsonlSinkConfig(path="-"))
    assert sink.name == "jsonl"
    assert sink.auth_failing is False


def test_writes_one_cloud_body_per_line_and_appends_across_batches(tmp_path: Path) -> None:
    target = tmp_path / "out.jsonl"
    target.write_bytes(b'{"earlier": true}\n')
    reports = deliver(
        JsonlSink(JsonlSinkConfig(path=str(target))), [make_event(0), make_event(1)], [make_event(2)]
    )
    assert [len(r.delivered) for r in reports] == [2, 1]
    assert all(r.rejected == [] for r in reports)
    written = lines(target)
    assert written[0] == {"earlier": True}
    assert [w["eventId"] for w in written[1:]] == ["evt-0", "evt-1", "evt-2"]
    assert written[1] == {
        "eventId": "evt-0",
        "eventType": "inventory_count",
        "useCaseId": "uc",
        "timestamp": "2026-08-21T00:00:00+00:00",
        "images": [],
        "eventData": {"itemCount": 0},
    }


def test_images_become_placeholders(tmp_path: Path) -> None:
    target = tmp_path / "out.jsonl"
    events = [
        make_event(0, output=inline(PNG), input_=ImageSource(url="https://cam.test/a.jpg")),
        make_event(1, input_=inline(PNG)),
        make_event(2, output=ImageSource(source_id="ve-img-7")),
    ]
    (report,) = deliver(JsonlSink(JsonlSinkConfig(path=str(target))), events)
    assert len(report.delivered) == 3
    first, second, third = (w["images"][0] for w in lines(target))
    assert first["sourceId"] == f"placeholder:sha256:{PNG_HASH[:16]}"
    url_hash = hashlib.sha256(b"https://cam.test/a.jpg").hexdigest()[:16]
    assert first["inputSourceId"] == f"placeholder:url:{url_hash}"
    assert second["sourceId"] == second["inputSourceId"] == f"placeholder:sha256:{PNG_HASH[:16]}"
    assert third["sourceId"] == "ve-img-7"
    assert placeholder_id(None) is None


def test_undecodable_inline_image_is_rejected(tmp_path: Path) -> None:
    target = tmp_path / "out.jsonl"
    (report,) = deliver(
        JsonlSink(JsonlSinkConfig(path=str(target))),
        [make_event(0, output=ImageSource(base64="@@@")), make_event(1)],
    )
    assert [e.event_id for e in report.delivered] == ["evt-1"]
    assert [r.reason for r in report.rejected] == [Reason.INVALID_IMAGE]
    assert [w["eventId"] for w in lines(target)] == ["evt-1"]


def test_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    (report,) = deliver(JsonlSink(JsonlSinkConfig(path="-")), [make_event(0), make_event(1)])
    assert len(report.delivered) == 2
    out = capsys.readouterr().out.splitlines()
    assert [orjson.loads(line)["eventId"] for line in out] == ["evt-0", "evt-1"]


def test_empty_batch_writes_nothing(tmp_path: Path) -> None:
    target = tmp_path / "out.jsonl"
    (report,) = deliver(JsonlSink(JsonlSinkConfig(path=str(target))), [])
    assert report == DeliveryReport()
    assert not target.exists()
