"""Dead-letter records round-trip byte-exact; the file source reads every line form."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import orjson

from consumer.deadletter import DeadLetterRecord, JsonlDeadLetterWriter, read_dead_letters
from consumer.sources.file import parse_line
from tests.support.messages import message


def test_jsonl_dead_letters_round_trip_original_bytes(tmp_path: Path) -> None:
    raw = b"\xff\xfe not utf-8 \x00 and not json"
    msg = message("a/b", raw)
    msg.partition, msg.offset, msg.headers = 3, 42, (("trace", b"\x01\x02"),)
    record = DeadLetterRecord.for_message(
        msg, reason="invalid_json", detail="bad", now=123.0, path="x", attempts=2
    )
    writer = JsonlDeadLetterWriter(tmp_path / "sub" / "dlq.jsonl")

    async def write() -> None:
        await writer.write([record, record])
        await writer.aclose()

    asyncio.run(write())
    records = list(read_dead_letters(tmp_path / "sub" / "dlq.jsonl"))
    assert records == [record, record]
    assert records[0].payload == raw
    assert records[0].coordinates == {"source": "test", "topic": "a/b", "partition": 3, "offset": 42}


def test_a_cut_record_keeps_its_markers_in_json_and_a_whole_one_has_none() -> None:
    raw = bytes(range(256)) * 4
    record = DeadLetterRecord.for_message(message("a/b", raw), reason="message_too_large", detail="", now=1.0)
    cut = record.cut(10)
    data = cut.to_json_dict()
    assert data["payload_truncated"] is True
    assert data["original_size"] == len(raw)
    assert data["original_sha256"] == hashlib.sha256(raw).hexdigest()
    assert DeadLetterRecord.from_json_dict(orjson.loads(orjson.dumps(data))) == cut
    assert "payload_truncated" not in record.to_json_dict()
    assert not DeadLetterRecord.from_json_dict(record.to_json_dict()).payload_truncated


def test_file_source_line_forms() -> None:
    plain = parse_line(b'{"event_type": "custom"}\n', "default/topic", 1.0)
    assert (plain.topic, plain.payload) == ("default/topic", b'{"event_type": "custom"}')
    wrapped = parse_line(b'{"topic": "t/1", "payload": {"a": 1}, "key": "k"}', "d", 1.0)
    assert (wrapped.topic, orjson.loads(wrapped.payload), wrapped.key) == ("t/1", {"a": 1}, b"k")
    text = parse_line(b'{"topic": "t/2", "payload": "{broken"}', "d", 1.0)
    assert text.payload == b"{broken"
    record = DeadLetterRecord.for_message(message("t/3", b"\x00raw"), reason="r", detail="d", now=1.0)
    replayed = parse_line(orjson.dumps(record.to_json_dict()), "d", 1.0)
    assert (replayed.topic, replayed.payload) == ("t/3", b"\x00raw")
    garbage = parse_line(b"not json at all", "d", 1.0)
    assert (garbage.topic, garbage.payload) == ("d", b"not json at all")
