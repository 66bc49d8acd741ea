"""The chart and the durable spool (config.spool): a claim for the data volume, the path on it, sizes;
the dashboard's Spool row and the spool alerts."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from tests.chart import promql
from tests.chart.render import Manifest, RenderError, config_files, container, helm_args, render, workload
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
