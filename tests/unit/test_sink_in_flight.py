"""The oldest delivery in flight: what the stuck-API gauge and readiness reason read."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client import CollectorRegistry

from consumer.app import App
from consumer.cli import main
from consumer.config import ImagesConfig, LocalSinkConfig, RetryConfig, load_settings
from consumer.errors import ConfigError
from consumer.metrics import Metrics
from consumer.model import VisionEvent
from consumer.sinks.cloud import CloudSink
from consumer.sinks.inflight import InFlight
from consumer.sinks.local import LocalSink
from consumer.sources.base import Intake
from tests.support.clock import FakeTime
from tests.support.http_stub import StubServer
from tests.support.messages import message, normalizer

GAUGE = "vision_events_sink_oldest_batch_age_seconds"


def test_the_oldest_of_several_deliveries_is_measured_until_each_ends() -> None:
    time = FakeTime()
    in_flight = InFlight(time.clock)
    assert in_flight.oldest_age() == 0.0
    with in_flight.track():
        time.now = 10.0
        with in_flight.track():
            time.now = 25.0
            assert in_flight.oldest_age() == 25.0
        assert in_flight.oldest_age() == 25.0
    assert in_flight.oldest_age() == 0.0
    time.now = 30.0
    first = in_flight.track()
    first.__enter__()
    time.now = 31.0
    with in_flight.track():
        first.__exit__(None, None, None)
        time.now = 40.0
        assert in_flight.oldest_age() == 9.0, "the first one ended: the second is now the oldest"


def test_a_delivery_that_fails_is_no_longer_in_flight() -> None:
    time = FakeTime()
    in_flight = InFlight(time.clock)

    def cancelled_delivery() -> None:
        with in_flight.track():
            time.now = 5.0
            raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        cancelled_delivery()
    assert in_flight.oldest_age() == 0.0


class _Source:
    name = "test"
    connected = True

    async def run(self, pipeline: Intake, stop: asyncio.Event) -> None:
        await stop.wait()

    async def aclose(self) -> None:
        return None


def _app(tmp_path: Path, stuck_after: float) -> tuple[App, FakeTime]:
    routes = tmp_path / "routes.yaml"
    routes.write_text("routes: [{name: all, match: 'events/#'}]")
    overrides = {"routes": str(routes), "sink.cloud.api_key": "k", "sink.stuck_after_seconds": stuck_after}
    settings = load_settings(None, overrides)
    metrics = Metrics(CollectorRegistry())
    app = App(settings, metrics, serve_ops=False, source=_Source())
    sink = CloudSink(settings.sink.cloud, settings.retry, settings.images, metrics)
    time = FakeTime()
    sink.in_flight = InFlight(time.clock)
    app.sink = sink
    return app, time


def test_readiness_names_a_batch_waiting_past_stuck_after_seconds(tmp_path: Path) -> None:
    app, time = _app(tmp_path, 300)
    assert app.sink is not None and isinstance(app.sink, CloudSink)
    with app.sink.in_flight.track():
        time.now = 300.0
        assert app.readiness() == (True, [])
        time.now = 301.0
        assert app.readiness() == (
            False,
            ["the cloud sink's oldest batch has waited 301s for the API (sink.stuck_after_seconds: 300)"],
        )
    assert app.readiness() == (True, [])


def test_stuck_after_seconds_0_never_reports_a_stuck_api(tmp_path: Path) -> None:
    app, time = _app(tmp_path, 0)
    assert app.sink is not None and isinstance(app.sink, CloudSink)
    with app.sink.in_flight.track():
        time.now = 86_400.0
        assert app.readiness() == (True, [])


def test_stuck_after_seconds_defaults_to_300_and_refuses_negative_values() -> None:
    assert load_settings(None, {"sink.cloud.api_key": "k"}).sink.stuck_after_seconds == 300.0
    with pytest.raises(ConfigError, match="stuck_after_seconds"):
        load_settings(None, {"sink.cloud.api_key": "k", "sink.stuck_after_seconds": -1})


def test_check_config_shows_stuck_after_seconds_and_refuses_a_negative_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    routes = tmp_path / "routes.yaml"
    routes.write_text("routes: [{name: all, match: 'events/#'}]")
    config = tmp_path / "config.yaml"
    settings: dict[str, Any] = {"routes": str(routes), "sink": {"stuck_after_seconds": 120, "type": "jsonl"}}
    config.write_text(yaml.safe_dump(settings))
    assert main(["check-config", "--config", str(config)]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["sink"]["stuck_after_seconds"] == 120.0
    settings["sink"]["stuck_after_seconds"] = -1
    config.write_text(yaml.safe_dump(settings))
    assert main(["check-config", "--config", str(config)]) == 2
    assert "sink.stuck_after_seconds" in capsys.readouterr().err


def test_the_local_sink_exports_its_oldest_delivery_while_a_post_waits() -> None:
    """The Event Store sink counts its deliveries too (``sink="local"``), until the answer comes."""
    metrics = Metrics(CollectorRegistry())

    def age() -> float | None:
        return metrics.registry.get_sample_value(
            "vision_events_sink_oldest_batch_age_seconds", {"sink": "local"}
        )

    async def scenario() -> None:
        answer = asyncio.Event()

        async def event_store(request: httpx.Request) -> httpx.Response:
            await answer.wait()
            return httpx.Response(201, json={"id": 1})

        stub = StubServer(event_store)
        sink = LocalSink(LocalSinkConfig(), RetryConfig(), ImagesConfig(), metrics, stub.session_factory())
        assert age() == 0.0
        payload = {"event_type": "custom", "use_case": "u", "custom_value": "v"}
        event = normalizer("routes: [{name: all, match: 'events/#'}]").normalize(message("events/a", payload))
        assert isinstance(event, VisionEvent)
        delivering = asyncio.get_running_loop().create_task(sink.deliver([event]))
        for _ in range(400):  # bounded: 20 s at most
            if (age() or 0.0) > 0.0:
                break
            await asyncio.sleep(0.05)
        assert (age() or 0.0) > 0.0
        answer.set()
        report = await asyncio.wait_for(delivering, 20)
        assert report.delivered == [event]
        assert age() == 0.0
        await sink.aclose()
        await stub.close()

    asyncio.run(scenario())
