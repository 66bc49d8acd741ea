"""/metrics, /healthz and /readyz over a real socket."""

from __future__ import annotations

import httpx
from prometheus_client import CollectorRegistry

from consumer.health import OpsServer
from consumer.metrics import Metrics


def test_probes_and_metrics() -> None:
    metrics = Metrics(CollectorRegistry())
    metrics.dead_letters.labels("no_route").inc(3)
    state = {"ready": False}

    def readiness() -> tuple[bool, list[str]]:
        metrics.ready.set(1 if state["ready"] else 0)  # as App.readiness does
        return state["ready"], [] if state["ready"] else ["source mqtt not connected"]

    server = OpsServer("127.0.0.1", 0, metrics.registry, readiness).start()
    try:
        base = f"http://127.0.0.1:{server.port}"
        with httpx.Client(base_url=base, timeout=5) as client:
            assert client.get("/healthz").status_code == 200
            not_ready = client.get("/readyz")
            assert not_ready.status_code == 503
            assert not_ready.json() == {"ready": False, "reasons": ["source mqtt not connected"]}
            assert "vision_events_ready 0.0" in client.get("/metrics").text
            state["ready"] = True
            # A scrape alone refreshes the gauge, without anyone calling /readyz.
            assert "vision_events_ready 1.0" in client.get("/metrics").text
            assert client.get("/readyz").json() == {"ready": True, "reasons": []}
            scraped = client.get("/metrics")
            assert scraped.status_code == 200
            assert scraped.headers["content-type"].startswith("text/plain")
            assert 'vision_events_dead_letters_total{reason="no_route"} 3.0' in scraped.text
            assert client.get("/nope").status_code == 404
    finally:
        server.stop()
