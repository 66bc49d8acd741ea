"""Topic patterns, values, rules and the routes file."""

from __future__ import annotations

from pathlib import Path

import pytest

from consumer.errors import ConfigError
from consumer.routing import MessageFormat, Router, load_routes
from consumer.routing.rules import AlertClass, AlertRule, Cooldown, CountRule, QualityRule
from consumer.routing.topics import compile_filter, compile_regex
from consumer.routing.values import parse_template, parse_value
from tests.support.messages import routes

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("pattern", "topic", "expected"),
    [
        ("factory/{site}/{camera}/qc", "factory/berlin/cam-7/qc", {"site": "berlin", "camera": "cam-7"}),
        ("factory/{site}/{camera}/qc", "factory/berlin/cam-7/qc/extra", None),
        ("factory/{site}/{camera}/qc", "factory/berlin/qc", None),
        ("factory/+/qc", "factory/x/qc", {}),
        ("factory/#", "factory", {}),
        ("factory/#", "factory/a/b/c", {}),
        ("factory/#", "factoryx/a", None),
        ("#", "anything/at/all", {}),
        ("a/{x}/#", "a/1/2/3", {"x": "1"}),
        ("a.b/c", "aXb/c", None),
    ],
)
def test_mqtt_filter_matching(pattern: str, topic: str, expected: dict[str, str] | None) -> None:
    assert compile_filter(pattern).match(topic) == expected


def test_mqtt_filter_reports_the_subscription_filter() -> None:
    assert compile_filter("factory/{site}/{camera}/qc").mqtt_filter == "factory/+/+/qc"
    assert compile_filter("a/#").mqtt_filter == "a/#"


@pytest.mark.parametrize("bad", ["a/#/b", "a/{x}/{x}", "a/b+/c", "a/{x}y/c", ""])
def test_invalid_filters_are_config_errors(bad: str) -> None:
    with pytest.raises(ConfigError):
        compile_filter(bad)


def test_regex_patterns_match_whole_topic_and_capture_named_groups() -> None:
    pattern = compile_regex(r"vision\.(?P<site>[a-z]+)\.qc")
    assert pattern.match("vision.berlin.qc") == {"site": "berlin"}
    assert pattern.match("vision.berlin.qc.more") is None
    assert pattern.captures == ("site",)
    with pytest.raises(ConfigError):
        compile_regex("(unclosed")


def test_templates_check_names_at_load_and_render_captures() -> None:
    template = parse_template("{site}-{camera}", frozenset({"site", "camera"}), "t")
    assert template.render({"site": "a", "camera": "b"}) == "a-b"
    with pytest.raises(ConfigError, match="unknown placeholder"):
        parse_template("{sight}", frozenset({"site"}), "t")
    with pytest.raises(ConfigError):
        parse_template("{site!r}", frozenset({"site"}), "t")


def test_values_constants_templates_and_selectors() -> None:
    known = frozenset({"site"})
    assert parse_value(42, known, "v").evaluate({}, {}) == 42
    assert parse_value("literal {{braces}}", known, "v").evaluate({}, {}) == "literal {braces}"
    assert parse_value("{site}", known, "v").evaluate({}, {"site": "x"}) == "x"
    selector = parse_value({"select": "meta.frame", "default": -1}, known, "v")
    assert selector.evaluate({"meta": {"frame": 7}}, {}) == 7
    assert selector.evaluate({"meta": {}}, {}) == -1
    with pytest.raises(ConfigError, match="JMESPath"):
        parse_value({"select": "meta[["}, known, "v")
    with pytest.raises(ConfigError):
        parse_value({"select": "a", "oops": 1}, known, "v")
    with pytest.raises(ConfigError):
        parse_value(["a", "list"], known, "v")


def _det(name: str, confidence: float) -> dict[str, object]:
    return {"class": name, "x": 1.0, "y": 1.0, "width": 1.0, "height": 1.0, "confidence": confidence}


def test_quality_rule_fails_only_at_or_above_threshold() -> None:
    rule = QualityRule(frozenset({"defect"}), 0.5)
    assert rule.result({"objectDetections": [_det("defect", 0.49)]}) == "pass"
    assert rule.result({"objectDetections": [_det("defect", 0.5)]}) == "fail"
    assert rule.result({"classifications": [{"class": "defect", "confidence": 0.7}]}) == "fail"
    assert rule.result({}) == "pass"


def test_count_rule_counts_item_classes_above_threshold() -> None:
    annotations = {
        "objectDetections": [_det("box", 0.9), _det("box", 0.3), _det("pallet", 0.9)],
        "instanceSegmentations": [{**_det("box", 0.8), "points": [[0, 0], [1, 0], [1, 1]]}],
    }
    assert CountRule(frozenset({"box"}), 0.5, "box").count(annotations) == 2
    assert CountRule(frozenset(), 0.5, None).count(annotations) == 3


def test_alert_rule_picks_most_severe_present_class() -> None:
    rule = AlertRule(
        {"no_vest": AlertClass("no_vest", "medium"), "fire": AlertClass("fire", "high", "Fire!")}, 0.5
    )
    assert rule.alert({"objectDetections": [_det("person", 0.99)]}) is None
    assert rule.alert({"objectDetections": [_det("fire", 0.4)]}) is None
    alert = rule.alert({"objectDetections": [_det("no_vest", 0.9), _det("fire", 0.6)]})
    assert alert is not None
    assert (alert.alert_type, alert.severity, alert.description) == ("fire", "high", "Fire!")
    generated = rule.alert({"objectDetections": [_det("no_vest", 0.9), _det("no_vest", 0.7)]})
    assert generated is not None
    assert generated.description == "2 x no_vest detected (confidence 0.90)"


def test_cooldown_admits_once_per_key_per_window() -> None:
    now = [1000.0]
    cooldown = Cooldown(30, parse_template("{camera}", frozenset({"camera"}), "k"), clock=lambda: now[0])
    assert cooldown.admit({"camera": "a"})
    assert not cooldown.admit({"camera": "a"})
    assert cooldown.admit({"camera": "b"})
    now[0] += 29.9
    assert not cooldown.admit({"camera": "a"})
    now[0] += 0.2
    assert cooldown.admit({"camera": "a"})


def test_cooldown_prunes_expired_keys_when_full() -> None:
    now = [0.0]
    cooldown = Cooldown(1, parse_template("{k}", frozenset({"k"}), "k"), clock=lambda: now[0], max_keys=3)
    for key in "abc":
        assert cooldown.admit({"k": key})
    now[0] = 5.0
    assert cooldown.admit({"k": "d"})
    assert len(cooldown._last) == 1


def test_router_first_match_wins_and_caches() -> None:
    table = routes(
        """
routes:
  - {name: specific, match: "a/special/x", event_type: custom, use_case: u}
  - {name: general, match: "a/{what}/x", event_type: custom, use_case: u}
"""
    )
    router = Router(table.routes, cache_size=2)
    first = router.match("a/special/x")
    assert first is not None and first[0].name == "specific"
    second = router.match("a/other/x")
    assert second is not None and second[0].name == "general" and second[1] == {"what": "other"}
    assert router.match("b") is None
    assert router.match("c") is None  # the cache was cleared and refilled without error


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("routes: []", "routes"),
        ("routes: [{name: r, event_type: custom}]", "exactly one of match"),
        ("routes: [{match: a, match_regex: b}]", "exactly one of match"),
        ("routes: [{match: a, fields: {colour: red}}]", "unknown fields"),
        ("routes: [{match: 'a/{x}', use_case: '{y}'}]", "unknown placeholder"),
        ("routes: [{match: a, event_type: nope}]", "event_type"),
        (
            "routes: [{match: a, safety_alert: {classes: {f: {alert_type: f, severity: extreme}}}}]",
            "severity",
        ),
        ("routes: [{name: x, match: a}, {name: x, match: b}]", "used twice"),
        ("routes: [{match: a, cooldown: {seconds: 5, key: '{nope}'}}]", "unknown placeholder"),
        ("routes: [{match: a, surprise: 1}]", "surprise"),
    ],
)
def test_routes_file_errors_are_explained(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        routes(text)


def test_shipped_example_routes_cover_every_event_type() -> None:
    table = load_routes(REPO / "examples" / "routes.yaml")
    types = {route.event_type.value for route in table.routes if route.event_type is not None}
    assert types == {"quality_check", "inventory_count", "safety_alert", "custom", "operator_feedback"}
    # Every format is detected, except a Frigate count: a bare number, read only when the route names it.
    named = {route.name: route.format for route in table.routes if route.format is not MessageFormat.AUTO}
    assert named == {"frigate-counts": MessageFormat.FRIGATE}
