"""Replay: dead letters go through the pipeline again once the cause is fixed, with the same ids."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest
import yaml

from consumer.cli import main
from consumer.deadletter import read_dead_letters
from consumer.fakeapi import FakeVisionEventsApi
from consumer.replay import RateLimiter
from tests.support.corpus import ROUTES_YAML, USE_CASES, build_corpus

pytestmark = pytest.mark.e2e


def _settings(tmp_path: Path, api_url: str, source: Path, dead: Path) -> Path:
    routes = tmp_path / "routes.yaml"
    routes.write_text(ROUTES_YAML)
    config = tmp_path / "settings.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "routes": str(routes),
                "source": {"file": {"path": str(source)}},
                "sink": {"cloud": {"base_url": api_url, "api_key": "k"}},
                "dead_letter": {"jsonl": {"path": str(dead)}},
                "batch": {"linger_ms": 10},
                "http": {"host": "127.0.0.1", "port": 0},
                "log": {"level": "WARNING"},
            }
        )
    )
    return config


def test_replay_after_the_cause_is_fixed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    corpus = [m for m in build_corpus(300, seed=3) if m.event_type is not None]
    source = tmp_path / "in.jsonl"
    source.write_bytes(
        b"".join(orjson.dumps({"topic": m.topic, "payload": m.payload.decode()}) + b"\n" for m in corpus)
    )
    dead = tmp_path / "dead.jsonl"
    # The "inventory" use case does not exist yet: its events are refused and dead-lettered.
    missing = "inventory"
    with FakeVisionEventsApi(api_keys=("k",), use_cases=[u for u in USE_CASES if u != missing]) as api:
        config = _settings(tmp_path, api.url, source, dead)
        assert main(["run", "--config", str(config)]) == 0
        first = api.events()
    refused = [m for m in corpus if m.event_type == "inventory_count"]
    assert refused
    records = list(read_dead_letters(dead))
    assert {r.reason for r in records} == {"api_rejected"}
    assert len(records) == len(refused)
    assert all("useCaseId" in r.detail or "use case" in r.detail.lower() for r in records)

    # Dry run: says what would happen, sends nothing.
    assert main(["replay", "--config", str(config), "--from", f"jsonl:{dead}", "--dry-run"]) == 0
    lines = [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == len(refused)
    assert {line["result"] for line in lines} == {"event"}

    with FakeVisionEventsApi(api_keys=("k",), use_cases=USE_CASES) as fixed:
        config = _settings(tmp_path, fixed.url, source, dead)
        assert (
            main(
                ["replay", "--config", str(config), "--from", f"jsonl:{dead}", "--reason", "nothing_like_it"]
            )
            == 0
        )
        assert fixed.events() == {}
        assert (
            main(["replay", "--config", str(config), "--from", f"jsonl:{dead}", "--reason", "api_rejected"])
            == 0
        )
        replayed = fixed.events()
    assert set(replayed) == {m.event_id for m in refused}
    assert not set(replayed) & set(first)
    assert len(list(read_dead_letters(dead))) == len(refused)  # nothing dead-lettered again


def test_rate_limiter_spaces_out_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [0.0]
    slept: list[float] = []

    async def scenario() -> None:
        limiter = RateLimiter(100, clock=lambda: now[0])
        real_sleep = asyncio.sleep

        async def fake_sleep(seconds: float) -> None:
            slept.append(seconds)
            now[0] += seconds
            await real_sleep(0)

        monkeypatch.setattr(asyncio, "sleep", fake_sleep)
        await limiter.take(50)
        await limiter.take(50)
        await limiter.take(100)

    asyncio.run(scenario())
    assert slept == pytest.approx([0.5, 0.5, 1.0])
