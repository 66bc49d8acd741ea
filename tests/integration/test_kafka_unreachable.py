"""A Kafka consumer whose broker cannot be reached says so, keeps trying, and calls nothing fatal."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.process import ConsumerProcess, free_port, wait_until, write_settings

pytestmark = pytest.mark.integration

ROUTES = Path(__file__).resolve().parents[2] / "examples" / "routes.yaml"


def test_an_unreachable_broker_is_reported_as_transient(tmp_path: Path) -> None:
    closed = free_port()  # nothing listens there: every connection attempt is refused
    config = write_settings(
        tmp_path / "settings.yaml",
        {
            "routes": str(ROUTES),
            "source": {
                "type": "kafka",
                "kafka": {"bootstrap_servers": f"127.0.0.1:{closed}", "topics": ["t"]},
            },
            "sink": {"type": "local", "local": {"api_key": "k"}},
            "dead_letter": {"type": "jsonl", "jsonl": {"path": str(tmp_path / "dead.jsonl")}},
            "http": {"host": "127.0.0.1", "port": free_port()},
            "shutdown_deadline_seconds": 2,
        },
    )
    consumer = ConsumerProcess(config, 0, tmp_path / "consumer.log").start()
    try:
        wait_until(
            lambda: "cannot reach the Kafka broker" in consumer.log_path.read_text(),
            60,
            "the unreachable-broker warning",
        )
        assert consumer.process.poll() is None, consumer.log_tail()
        log = consumer.log_path.read_text()
        assert f"127.0.0.1:{closed}" in log and "keeps trying" in log
        assert '"retriable":false' not in log.replace(" ", "")
        assert "fatal" not in log.lower()
        assert consumer.terminate(30) == 0, consumer.log_tail()
    finally:
        consumer.stop_quietly()
