"""SIGTERM while the API is down: a deliberate shutdown exits 0 and says what it left unsettled."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support.process import wait_until
from tests.support.stack import open_stack
from tests.support.transports import MqttTransport

pytestmark = pytest.mark.e2e

DRAIN_DEADLINE = 1.0


def test_sigterm_with_the_api_down_exits_0_and_logs_the_unsettled_count(
    mqtt_url: str, tmp_path: Path
) -> None:
    with open_stack(MqttTransport(mqtt_url), tmp_path, drain_deadline=DRAIN_DEADLINE) as stack:
        stack.api_down()  # every batch answered 503: nothing can settle before the deadline
        corpus = [m for m in stack.corpus(40, seed=7) if m.event_type is not None][:10]
        consumer = stack.consumer("stopped").start()
        consumer.wait_ready()
        stack.transport.publish(corpus)
        wait_until(
            lambda: consumer.metric_total("vision_events_messages_received_total") == len(corpus),
            60,
            "every message received",
        )
        code = consumer.terminate(60)
        log = consumer.log_path.read_text()
        assert code == 0, log[-3000:]
        match = re.search(r"stopped by signal with (\d+) messages unsettled", log)
        assert match is not None, log[-3000:]
        assert int(match.group(1)) == len(corpus)
        assert not stack.api.events()
