"""The bench's table compares the consumer with its peers on CPU per event (bench/report.py)."""

from __future__ import annotations

from typing import Any

from bench.report import table, targets


def _results() -> dict[str, Any]:
    scenario = {
        "transport": "kafka",
        "kind": "od",
        "count": 5000,
        "rate": 20000.0,
        "rate_steady": 21000.0,
        "raw_rate": 400000.0,
        "raw_count": 5000,
        "raw_cpu_per_1000": 0.01,
        "of_raw": 0.05,
        "cpu_per_1000": 0.05,
        "peak_rss_mb": 100.0,
    }
    peers = [
        {"system": "naive", "label": "naive Python consumer", "transport": "kafka", "kind": "od",
         "count": 4800, "rate": 15000.0, "cpu_per_1000": 0.1, "peak_rss_mb": 50.0, "ours_cpu_ratio": 0.5},
        {"system": "benthos", "label": "Benthos v4.27.0", "transport": "kafka", "kind": "od",
         "count": 4900, "rate": 12000.0, "cpu_per_1000": 0.1, "peak_rss_mb": 70.0, "ours_cpu_ratio": 0.5},
    ]  # fmt: skip
    return {"scenarios": [scenario], "peers": peers}


def test_peers_table_has_each_system_with_its_cpu_and_the_ratio() -> None:
    text = table(_results())
    assert "| vision-events-consumer | kafka | 5,000 | 20,000 | 0.050 | 1.00 | 100 |" in text
    assert "| bare client, reading only | kafka | 5,000 | 400,000 | 0.010 | 5.00 | - |" in text
    assert "| Benthos v4.27.0 | kafka | 4,900 | 12,000 | 0.100 | 0.50 | 70 |" in text
    assert "| naive Python consumer | kafka | 4,800 | 15,000 | 0.100 | 0.50 | 50 |" in text


def test_peer_targets_use_the_issue_fractions() -> None:
    checks = {name: met for name, _figure, met in targets(_results())}
    assert checks["kafka od CPU/event <= 0.6 x naive's"] is True
    assert checks["kafka od CPU/event <= 0.4 x benthos's"] is False
