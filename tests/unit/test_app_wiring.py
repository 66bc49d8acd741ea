"""The composition root: ``App`` is built whole before it runs, and wires one dead-letter gate."""

from __future__ import annotations

import asyncio
from pathlib import Path

from consumer.app import App
from consumer.config import load_settings
from consumer.pipeline import Pipeline
from consumer.sinks.jsonl import JsonlSink
from consumer.sources.base import Intake

ROUTES = "routes: [{name: all, match: 'events/#'}]"


class _Idle:
    name = "idle"
    connected = True

    async def run(self, pipeline: Intake, stop: asyncio.Event) -> None:
        return None

    async def aclose(self) -> None:
        return None


def _app(tmp_path: Path, **overrides: object) -> App:
    routes = tmp_path / "routes.yaml"
    routes.write_text(ROUTES)
    settings = load_settings(
        None,
        {
            "routes": str(routes),
            "sink.type": "jsonl",
            "sink.jsonl.path": str(tmp_path / "events.jsonl"),
            "dead_letter.jsonl.path": str(tmp_path / "dead.jsonl"),
            **overrides,
        },
    )
    return App(settings, serve_ops=False, source=_Idle())


def test_the_app_is_built_whole_before_it_runs(tmp_path: Path) -> None:
    app = _app(tmp_path)
    assert isinstance(app.pipeline, Pipeline)
    assert isinstance(app.sink, JsonlSink)
    assert app.spool is None and app.forwarder is None
    assert app.readiness() == (True, [])
    # Building opens nothing: no file exists until the app runs and something is written.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["routes.yaml"]


def test_the_pipeline_and_the_forwarder_share_one_dead_letter_gate(tmp_path: Path) -> None:
    app = _app(tmp_path, **{"spool.enabled": True, "spool.path": str(tmp_path / "spool" / "spool.db")})
    assert app.spool is not None and app.forwarder is not None
    assert app.forwarder._dead_letters is app.pipeline._dead_letters
    assert app.readiness() == (True, [])
    assert not (tmp_path / "spool").exists(), "the spool is opened by run, not by building the app"
