"""docs/formats.md shows each publisher's route exactly as examples/routes.yaml has it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
# The example route of each publisher section (DeepStream full and minimal, DL Streamer and its
# Pipeline Server, Frigate events and counts, Axis).
PUBLISHER_ROUTES = {
    "deepstream-vehicles",
    "deepstream-gate-count",
    "dlstreamer-dock",
    "dlsps-pallet-defects",
    "frigate-people",
    "frigate-counts",
    "axis-lobby",
}


def _documented_routes() -> list[dict[str, Any]]:
    text = (REPO / "docs" / "formats.md").read_text()
    found: list[dict[str, Any]] = []
    for block in re.findall(r"```yaml\n(.*?)```", text, flags=re.DOTALL):
        document = yaml.safe_load(block)
        found.extend(document.get("routes", []))
    return found


def test_each_publisher_section_shows_its_example_route_verbatim() -> None:
    shipped = {
        r["name"]: r for r in yaml.safe_load((REPO / "examples" / "routes.yaml").read_text())["routes"]
    }
    documented = _documented_routes()
    assert {r["name"] for r in documented} == PUBLISHER_ROUTES
    for route in documented:
        assert route == shipped[route["name"]], route["name"]
