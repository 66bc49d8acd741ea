"""The sink contract (sink_contract.py) run against MemorySink and the real stand-in over loopback.

The cloud sink and the local ``/v2/events`` sink are built from their configs pointing at a
:class:`~consumer.fakeapi.FakeVisionEventsApi` served on a loopback socket, exactly as the app
builds them: no HTTP client or transport is injected. Faults are the stand-in's own.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry

from consumer.config import CloudSinkConfig, ImagesConfig, LocalSinkConfig, RetryConfig
from consumer.fakeapi import FakeVisionEventsApi
from consumer.metrics import Metrics
from consumer.sinks.cloud import CloudSink
from consumer.sinks.local import LocalSink
from tests.contract.sink_contract import (
    USE_CASE,
    Fault,
    SinkCapabilities,
    SinkContract,
    SinkHarness,
    is_refused,
)
from tests.support.doubles import MemorySink

API_KEY = "contract-cloud-key"
LOCAL_KEY = "contract-local-key"
# Short waits between attempts: the tests see several attempts, never a speed claim.
RETRY = RetryConfig(initial_backoff_seconds=0.05, max_backoff_seconds=0.2, auth_backoff_seconds=0.1)


class MemoryHarness(SinkHarness):
    """The in-memory double, refusing what the contract refuses; its destination never fails."""

    capabilities = SinkCapabilities(faults=False)

    def __init__(self) -> None:
        self.memory = MemorySink(refuse=is_refused)
        self.sink = self.memory

    def stored(self) -> int:
        """The events it delivered."""
        return len(self.memory.events)


class StandInHarness(SinkHarness):
    """A real sink posting to the stand-in; faults answer every request of ``path``."""

    capabilities = SinkCapabilities(faults=True)

    def __init__(self, api: FakeVisionEventsApi, kind: str) -> None:
        self.api = api
        self.kind = kind
        metrics = Metrics(CollectorRegistry())
        if kind == "cloud":
            self.path = "/vision-events"
            cloud = CloudSinkConfig.model_validate({"base_url": api.url, "api_key": API_KEY})
            self.sink = CloudSink(cloud, RETRY, ImagesConfig(), metrics)
        else:
            self.path = "/v2/events"
            local = LocalSinkConfig.model_validate({"url": api.url, "api_key": LOCAL_KEY})
            self.sink = LocalSink(local, RETRY, ImagesConfig(), metrics)

    def stored(self) -> int:
        """Events the stand-in holds for this sink's endpoint."""
        return len(self.api.events()) if self.kind == "cloud" else len(self.api.local_events())

    def requests(self) -> int:
        """Requests the stand-in answered on this sink's endpoint."""
        return sum(1 for _method, path, _status in self.api.request_log() if path.startswith(self.path))

    def inject(self, fault: Fault) -> None:
        """Every request of this sink's endpoint fails with ``fault`` until cleared."""
        if fault is Fault.AUTH:
            self.api.add_fault(self.path, (401,), fail_ratio=1.0)
        elif fault is Fault.UNEXPECTED:
            self.api.add_fault(self.path, fail_ratio=1.0, answer="html")
        else:
            self.api.add_fault(self.path, (500,), fail_ratio=1.0)

    def clear(self) -> None:
        """Answer normally again."""
        self.api.clear_faults()


@pytest.fixture
def api() -> Iterator[FakeVisionEventsApi]:
    """The stand-in on a free loopback port."""
    with FakeVisionEventsApi(api_keys=(API_KEY,), use_cases=(USE_CASE,), local_api_key=LOCAL_KEY) as served:
        yield served


class TestMemorySink(SinkContract):
    """The contract against the in-memory double the pipeline tests use."""

    @pytest.fixture
    def harness(self) -> SinkHarness:
        """A fresh double."""
        return MemoryHarness()


@pytest.mark.integration
class TestCloudSink(SinkContract):
    """The contract against :class:`CloudSink` and the stand-in's cloud API."""

    @pytest.fixture
    def harness(self, api: FakeVisionEventsApi) -> SinkHarness:
        """A cloud sink whose base URL is the stand-in."""
        return StandInHarness(api, "cloud")


@pytest.mark.integration
class TestLocalSink(SinkContract):
    """The contract against :class:`LocalSink` and the stand-in's Event Store (``/v2/events``)."""

    @pytest.fixture
    def harness(self, api: FakeVisionEventsApi) -> SinkHarness:
        """A local sink whose URL is the stand-in."""
        return StandInHarness(api, "local")
