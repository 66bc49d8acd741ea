"""A kill mid-append tears the JSONL dead-letter file: the writer and replay must cope with it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from consumer.cli import main
from consumer.fakeapi import FakeVisionEventsApi
from tests.e2e.test_replay import _settings
from tests.support.corpus import USE_CASES, CorpusMessage, build_corpus

pytestmark = pytest.mark.e2e


def _input(path: Path, messages: list[CorpusMessage]) -> Path:
    path.write_bytes(
        b"".join(orjson.dumps({"topic": m.topic, "payload": m.payload.decode()}) + b"\n" for m in messages)
    )
    return path


def test_torn_tail_is_set_aside_and_replay_skips_it(tmp_path: Path) -> None:
    corpus = [m for m in build_corpus(300, seed=3) if m.event_type is not None]
    refused = [m for m in corpus if m.event_type == "inventory_count"]
    assert len(refused) >= 4
    first, second = refused[: len(refused) // 2], refused[len(refused) // 2 :]
    dead = tmp_path / "dead.jsonl"
    broken = [u for u in USE_CASES if u != "inventory"]
    with FakeVisionEventsApi(api_keys=("k",), use_cases=broken) as api:
        config = _settings(tmp_path, api.url, _input(tmp_path / "a.jsonl", first), dead)
        assert main(["run", "--config", str(config)]) == 0
    # What a SIGKILL mid-append leaves: the last record cut partway, without its newline.
    whole = dead.read_bytes()
    last_start = whole.rstrip(b"\n").rfind(b"\n") + 1
    torn = whole[: last_start + (len(whole) - last_start) // 2]
    dead.write_bytes(torn)
    with FakeVisionEventsApi(api_keys=("k",), use_cases=broken) as api:
        config = _settings(tmp_path, api.url, _input(tmp_path / "b.jsonl", second), dead)
        assert main(["run", "--config", str(config)]) == 0
    after = dead.read_bytes()
    assert after.startswith(torn)  # no byte destroyed
    assert after[len(torn) : len(torn) + 1] == b"\n"  # the next record starts on its own line

    with FakeVisionEventsApi(api_keys=("k",), use_cases=USE_CASES) as fixed:
        config = _settings(tmp_path, fixed.url, tmp_path / "a.jsonl", dead)
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
        done = subprocess.run(
            [sys.executable, "-m", "consumer", "replay", "--config", str(config), "--from", f"jsonl:{dead}"],
            capture_output=True,
            env=env,
            timeout=120,
            check=False,
        )
        stderr = done.stderr.decode()
        assert done.returncode == 0, stderr
        assert "Traceback" not in stderr
        assert "unreadable 1" in stderr
        assert f"line {len(first)} is unreadable" in stderr
        replayed = set(fixed.events())
    # Every record but the torn one replays, including all those appended after it.
    # (dead-letter order need not follow input order, so the torn one is whichever is missing)
    assert replayed <= {m.event_id for m in refused}
    assert len(replayed) == len(refused) - 1
    assert {m.event_id for m in second} <= replayed
