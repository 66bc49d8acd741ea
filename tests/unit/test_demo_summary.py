"""``demo``: the dead-letter file is kept and named, each dead-lettered sample is shown with its reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from consumer.deadletter import read_dead_letters
from consumer.demo import run_demo


def test_demo_keeps_the_dead_letter_file_and_says_which_sample_got_which_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dead_letters = tmp_path / "dead-letters-demo.jsonl"
    dead_letters.write_text("a previous run's record\n")
    # From the samples file: no broker, so the test needs none.
    assert run_demo(mqtt_url=None, dead_letter_path=dead_letters) == 0
    out = capsys.readouterr().out
    assert f"in {dead_letters}\n" in out
    records = list(read_dead_letters(dead_letters))  # the previous run's line is gone
    assert sorted(record.reason for record in records) == [
        "invalid_json",
        "invalid_type",
        "invalid_value",
        "no_route",
    ]
    table = out.split("Which sample (by topic) got which reason:\n")[1].splitlines()[: len(records)]
    for row, record in zip(table, records, strict=True):
        assert row.split()[:2] == [record.coordinates["topic"], record.reason]
    assert "events/bad" in out and "invalid_value at severity" in out
    assert "unknown/topic" in out
    # 6 events carry images, 3 distinct frames (the DL Streamer Pipeline Server sample brings the
    # third): the summary says why the counts differ.
    assert "Delivered 30 events (6 with images, 3 images uploaded)" in out
    assert "uploads each distinct image once" in out
