"""The chart and the durable spool (config.spool): a claim for the data volume, the path on it, sizes;
the dashboard's Spool row and the spool alerts."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart import promql
from tests.chart.render import (
    NAMESPACE,
    Manifest,
    RenderError,
    config_files,
    container,
    helm_args,
    render,
    workload,
)
from tests.chart.test_chart import FULLNAME, _firing, _series
from tests.chart.tools import CHART, require

SPOOL_SCENARIO = CHART / "ci" / "spool-values.yaml"


@pytest.fixture(scope="module")
def helm() -> str:
    return require("helm")


def _render(helm: str, sets: dict[str, str]) -> list[Manifest]:
    return render(helm, helm_args(set_values=sets))


def _fails(helm: str, sets: dict[str, str]) -> str:
    with pytest.raises(RenderError) as failure:
        render(helm, helm_args(set_values=sets))
    return failure.value.stderr


def test_the_spool_always_gets_a_claim_on_the_data_volume(helm: str) -> None:
    manifests = _render(helm, {"config.spool.enabled": "true"})  # persistence.enabled stays false
    spec = workload(manifests)["spec"]
    (claim,) = spec["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "data"
    assert "data" not in {v["name"] for v in spec["template"]["spec"]["volumes"]}, "no emptyDir for it"
    mounts = {m["name"]: m["mountPath"] for m in container(manifests)["volumeMounts"]}
    assert mounts["data"] == "/var/lib/vision-events"
    settings = yaml.safe_load(config_files(manifests)["settings.yaml"])
    assert settings["spool"] == {
        "enabled": True,
        "path": "/var/lib/vision-events/spool.db",
        "max_bytes": 512 * 1024 * 1024,
    }


def test_without_the_spool_the_data_volume_is_still_an_empty_dir(helm: str) -> None:
    spec = workload(_render(helm, {}))["spec"]
    assert "volumeClaimTemplates" not in spec
    volumes = {v["name"]: v for v in spec["template"]["spec"]["volumes"]}
    assert "emptyDir" in volumes["data"]


def test_the_spool_scenario_sizes_fit_the_volume() -> None:
    values = yaml.safe_load(SPOOL_SCENARIO.read_text())
    assert values["config"]["spool"]["enabled"] is True
    assert values["config"]["spool"]["max_bytes"] <= 0.8 * 2 * 1024**3


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        ({"config.spool.path": "/tmp/spool.db"}, "is not on the data volume"),  # noqa: S108
        ({"config.spool.path": "spool.db"}, "is not on the data volume"),
        ({"persistence.size": "500Mi"}, "more than 80% of persistence.size (500Mi)"),
        ({"config.spool.max_bytes": "2147483648", "persistence.size": "2Gi"}, "more than 80%"),
    ],
    ids=["tmp", "relative", "small-volume", "bound-equals-volume"],
)
def test_a_spool_that_cannot_work_fails_to_render(helm: str, sets: dict[str, str], message: str) -> None:
    assert message in _fails(helm, {"config.spool.enabled": "true", **sets})


@pytest.mark.parametrize(
    "sets",
    [
        {"config.spool.synchronous": "off"},
        {"config.spool.max_bytes": "1000"},
        {"config.spool.max_events": "0"},
        {"config.spool.compress": "true"},
    ],
    ids=["synchronous", "tiny-bytes", "zero-events", "unknown-key"],
)
def test_schema_rejects_bad_spool_settings(helm: str, sets: dict[str, str]) -> None:
    assert "values don't meet the specifications of the schema" in _fails(helm, sets)


def test_a_larger_volume_takes_a_larger_spool(helm: str) -> None:
    manifests = _render(
        helm,
        {
            "config.spool.enabled": "true",
            "config.spool.max_bytes": str(3 * 1024**3),
            "persistence.size": "4Gi",
        },
    )
    (claim,) = workload(manifests)["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "4Gi"


# -- the spool in Grafana ------------------------------------------------------------------------------


def _spool_row() -> list[dict[str, Any]]:
    """The panels between the "Spool" row and the next row (or the end)."""
    (path,) = promql.DASHBOARDS
    panels = json.loads(path.read_text())["panels"]
    titles = [p["title"] for p in panels]
    assert titles.count("Spool") == 1, "one row named Spool"
    start = titles.index("Spool") + 1
    rows = [i for i, p in enumerate(panels) if p["type"] == "row" and i >= start]
    return list(panels[start : rows[0] if rows else len(panels)])


def test_the_spool_row_shows_the_backlog_against_its_limits_and_the_drain() -> None:
    row = _spool_row()
    exprs = {panel["title"]: " ".join(t["expr"] for t in panel["targets"]) for panel in row}
    reads = {title: promql.metric_names(expr) for title, expr in exprs.items()}

    def panel_reading(*metrics: str) -> str:
        found = [title for title, names in reads.items() if set(metrics) <= names]
        assert found, f"no panel of the Spool row reads {metrics}: {reads}"
        return str(found[0])

    # Each level next to its bound, on one panel.
    panel_reading("vision_events_spool_events", "vision_events_spool_capacity_events")
    panel_reading("vision_events_spool_bytes", "vision_events_spool_capacity_bytes")
    panel_reading("vision_events_spool_oldest_event_age_seconds")
    panel_reading("vision_events_spool_spooled_total", "vision_events_spool_drained_total")
    outcomes = panel_reading("vision_events_spool_drained_total", "vision_events_spool_full")
    assert "sum by (outcome)" in exprs[outcomes]
    units = {panel["title"]: panel["fieldConfig"]["defaults"]["unit"] for panel in row}
    assert units[panel_reading("vision_events_spool_bytes")] == "bytes"
    assert units[panel_reading("vision_events_spool_oldest_event_age_seconds")] == "s"
    # The row sits below everything else and fills the width without overlaps.
    cells = {
        (panel["gridPos"]["y"] + dy, panel["gridPos"]["x"] + dx)
        for panel in row
        for dy in range(panel["gridPos"]["h"])
        for dx in range(panel["gridPos"]["w"])
    }
    assert len(cells) == sum(p["gridPos"]["h"] * p["gridPos"]["w"] for p in row)


# -- the spool in the alerts ---------------------------------------------------------------------------


def _spool_alerts(helm: str, sets: dict[str, str] | None = None) -> dict[str, dict[str, Any]]:
    """The rendered spool alerts; ``sets`` as --set-json (--set would turn 0.5 into a string)."""
    every = {f"metrics.prometheusRule.alerts.{name}.enabled": "true" for name in promql.ALERTS}
    every["metrics.prometheusRule.enabled"] = "true"
    every = {key: value for key, value in every.items() if key not in (sets or {})}  # --set wins
    manifests = render(helm, helm_args(set_values=every, set_json=sets))
    return {
        q.rule["alert"]: q.rule
        for q in promql.rule_queries(manifests)
        if q.rule and str(q.rule.get("alert", "")).startswith("VisionEventsSpool")
    }


def test_spool_alerts_default_thresholds_and_tuning(helm: str) -> None:
    rules = _spool_alerts(helm)
    assert set(rules) == {
        "VisionEventsSpoolFilling",
        "VisionEventsSpoolOldEvent",
        "VisionEventsSpoolNotDraining",
    }
    selector = f'job="{FULLNAME}",namespace="{NAMESPACE}"'
    for rule in rules.values():
        assert selector in rule["expr"], rule["alert"]
    filling = rules["VisionEventsSpoolFilling"]
    assert filling["expr"].count("> 0.8") == 2 and (filling["for"], filling["labels"]["severity"]) == (
        "5m",
        "warning",
    )
    old = rules["VisionEventsSpoolOldEvent"]
    assert old["expr"].rstrip().endswith("> 3600") and old["for"] == "5m"
    assert rules["VisionEventsSpoolNotDraining"]["expr"].count("[10m]") == 2
    assert rules["VisionEventsSpoolNotDraining"]["labels"]["severity"] == "critical"
    tuned = _spool_alerts(
        helm,
        {
            "metrics.prometheusRule.alerts.spoolFilling.share": "0.5",
            "metrics.prometheusRule.alerts.spoolOldEvent.seconds": "7200",
            "metrics.prometheusRule.alerts.spoolNotDraining.window": '"30m"',
            "metrics.prometheusRule.alerts.spoolNotDraining.for": '"1h"',
            "metrics.prometheusRule.alerts.spoolOldEvent.enabled": "false",
        },
    )
    assert set(tuned) == {"VisionEventsSpoolFilling", "VisionEventsSpoolNotDraining"}
    assert tuned["VisionEventsSpoolFilling"]["expr"].count("> 0.5") == 2
    assert tuned["VisionEventsSpoolNotDraining"]["expr"].count("[30m]") == 2
    assert tuned["VisionEventsSpoolNotDraining"]["for"] == "1h"
    assert (
        "> 7200"
        in _spool_alerts(helm, {"metrics.prometheusRule.alerts.spoolOldEvent.seconds": "7200"})[
            "VisionEventsSpoolOldEvent"
        ]["expr"]
    )


@pytest.mark.parametrize(
    "sets",
    [
        {"metrics.prometheusRule.alerts.spoolFilling.share": "1.5"},
        {"metrics.prometheusRule.alerts.spoolFilling.share": "0"},
        {"metrics.prometheusRule.alerts.spoolOldEvent.seconds": "0"},
        {"metrics.prometheusRule.alerts.spoolNotDraining.window": '"ten"'},
    ],
    ids=["share-above-one", "share-zero", "zero-seconds", "bad-window"],
)
def test_schema_rejects_bad_spool_alert_values(helm: str, sets: dict[str, str]) -> None:
    with pytest.raises(RenderError) as failure:
        render(helm, helm_args(set_json=sets))
    assert "values don't meet the specifications of the schema" in failure.value.stderr


def _spool(pod: str = "p-0", **values: str) -> list[dict[str, str]]:
    """A replica's spool series over 80 one-minute steps: bounds 1000 events and 1 MB unless given."""
    series = {
        "vision_events_spool_events": "0x80",
        "vision_events_spool_capacity_events": "1000x80",
        "vision_events_spool_bytes": "0x80",
        "vision_events_spool_capacity_bytes": "1000000x80",
        "vision_events_spool_oldest_event_age_seconds": "0x80",
        **values,
    }
    return [_series(name, value, pod=pod) for name, value in series.items()]


def _drained(values: str, pod: str = "p-0") -> list[dict[str, str]]:
    return [
        _series("vision_events_spool_drained_total", values, pod=pod, outcome="delivered"),
        _series("vision_events_spool_drained_total", "0x80", pod=pod, outcome="dead_lettered"),
    ]


def _requests(values: str, status: str, pod: str = "p-0") -> list[dict[str, str]]:
    return [
        _series(
            "vision_events_api_request_duration_seconds_count",
            values,
            pod=pod,
            endpoint="batch",
            status=status,
        )
    ]


def test_spool_alerts_fire_when_they_should_and_only_then(helm: str, tmp_path: Path) -> None:
    """`promtool test rules` on the rendered spool alerts (annotations dropped: conditions under test)."""
    promtool = require("promtool")
    rules = list(_spool_alerts(helm).values())
    for rule in rules:
        rule.pop("annotations", None)
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": [{"name": "spool", "rules": rules}]}))
    warning, critical = {"severity": "warning"}, {"severity": "critical"}
    filling, old, stuck = (
        "VisionEventsSpoolFilling",
        "VisionEventsSpoolOldEvent",
        "VisionEventsSpoolNotDraining",
    )
    tests = [
        # +100 events a minute against 1000: above 80 % from minute 9, firing 5 minutes later.
        _firing(
            filling,
            "15m",
            _spool(vision_events_spool_events="0+100x80"),
            pod="p-0",
            limit="events",
            **warning,
        ),
        _firing(filling, "12m", _spool(vision_events_spool_events="0+100x80")),
        # The bytes bound alone (few, large events).
        _firing(
            filling,
            "10m",
            _spool(vision_events_spool_events="3x80", vision_events_spool_bytes="900000x80"),
            pod="p-0",
            limit="bytes",
            **warning,
        ),
        # 70 % for good, or 90 % for three minutes only: silent.
        _firing(
            filling, "30m", _spool(vision_events_spool_events="700x80", vision_events_spool_bytes="700000x80")
        ),
        _firing(filling, "30m", _spool(vision_events_spool_events="500x10 900x3 500x67")),
        # A replica without the spool exports 0 for the bounds too: 0/0 compares false.
        _firing(
            filling,
            "30m",
            _spool(vision_events_spool_capacity_events="0x80", vision_events_spool_capacity_bytes="0x80"),
        ),
        # The oldest event ages 60 s a minute: above 3600 s from minute 61, firing 5 minutes later.
        _firing(
            old, "70m", _spool(vision_events_spool_oldest_event_age_seconds="0+60x80"), pod="p-0", **warning
        ),
        _firing(old, "64m", _spool(vision_events_spool_oldest_event_age_seconds="0+60x80")),
        # Events spend up to 50 minutes in the spool but it keeps draining: silent.
        _firing(
            old,
            "79m",
            _spool(vision_events_spool_oldest_event_age_seconds=" ".join(["0+600x5"] * 12 + ["0+600x4"])),
        ),
        # A backlog, nothing drained, the API answers 200 (or is not even asked): fires after window + for.
        _firing(
            stuck,
            "25m",
            _spool(vision_events_spool_events="500x80") + _drained("40x80") + _requests("0+10x80", "200"),
            pod="p-0",
            **critical,
        ),
        _firing(
            stuck,
            "25m",
            _spool(vision_events_spool_events="500x80") + _drained("0x80"),
            pod="p-0",
            **critical,
        ),
        _firing(stuck, "8m", _spool(vision_events_spool_events="500x80") + _drained("0x80")),
        # Draining, an empty spool, or an API that fails or refuses the key (their own alerts): silent.
        _firing(stuck, "25m", _spool(vision_events_spool_events="500x80") + _drained("0+50x80")),
        _firing(stuck, "25m", _spool() + _drained("40x80") + _requests("0+10x80", "200")),
        _firing(
            stuck,
            "25m",
            _spool(vision_events_spool_events="500x80") + _drained("40x80") + _requests("0+10x80", "503"),
        ),
        _firing(
            stuck,
            "25m",
            _spool(vision_events_spool_events="500x80") + _drained("40x80") + _requests("0+2x80", "401"),
        ),
        _firing(
            stuck,
            "25m",
            _spool(vision_events_spool_events="500x80") + _drained("40x80") + _requests("0+2x80", "error"),
        ),
    ]
    (tmp_path / "tests.yaml").write_text(
        yaml.safe_dump({"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": tests})
    )
    result = subprocess.run(
        [promtool, "test", "rules", "tests.yaml"], capture_output=True, text=True, check=False, cwd=tmp_path
    )
    assert result.returncode == 0, result.stdout + result.stderr
