"""Metrics counted per batch read exactly as metrics counted per event."""

from __future__ import annotations

import math

from prometheus_client import CollectorRegistry, Histogram, generate_latest

from consumer.metrics import observe_many

# On the bounds (an amount equal to a bound belongs to it), between, below the first, above the last.
_AMOUNTS = [0.0, 0.005, 0.0051, 0.01, 0.3, 0.3, 1.0, 2.5, 7.0, 3600.0, 3600.5, 1e9, 0.02, 0.3]
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 3600.0)


def _pair(labelled: bool) -> tuple[CollectorRegistry, Histogram, CollectorRegistry, Histogram]:
    one, many = CollectorRegistry(), CollectorRegistry()
    labels = ["sink"] if labelled else []
    return (
        one,
        Histogram("lat", "latency", labels, buckets=_BUCKETS, registry=one),
        many,
        Histogram("lat", "latency", labels, buckets=_BUCKETS, registry=many),
    )


def _exposition(registry: CollectorRegistry) -> list[str]:
    # The _created sample is the construction time, different for two histograms.
    return [line for line in generate_latest(registry).decode().splitlines() if "_created" not in line]


def test_observe_many_exposes_what_observe_each_exposes() -> None:
    one, single, many, batched = _pair(labelled=False)
    for amount in _AMOUNTS:
        single.observe(amount)
    observe_many(batched, _AMOUNTS)
    observe_many(batched, [])
    assert _exposition(many) == _exposition(one)
    assert 'lat_bucket{le="0.005"} 2.0' in _exposition(many)  # 0.0 and 0.005 itself


def test_observe_many_on_a_labelled_child() -> None:
    one, single, many, batched = _pair(labelled=True)
    for amount in _AMOUNTS:
        single.labels("cloud").observe(amount)
    observe_many(batched.labels("cloud"), _AMOUNTS)
    assert _exposition(many) == _exposition(one)


def test_observe_many_with_nan_falls_back_to_observe_each() -> None:
    one, single, many, batched = _pair(labelled=False)
    amounts = [0.1, math.nan, 2.0]
    for amount in amounts:
        single.observe(amount)
    observe_many(batched, amounts)
    assert _exposition(many) == _exposition(one)
