"""Every PromQL expression the chart ships, in one place: the dashboard's and the alerts'.

Used by the chart tests (metric names exist, promtool parses everything) and by the test that runs
a real Prometheus against live consumers (tests/chart/test_prometheus_live.py): it takes
:func:`dashboard_queries` and :func:`rule_queries`, turns dashboard queries into something
Prometheus accepts with :func:`concrete`, and splits each alert into the *signals* that must return
data even while the alert does not fire with :func:`alert_signals` (:data:`ALERT_SIGNALS`).

    from tests.chart import promql
    for query in promql.all_queries(helm):
        print(query.origin, promql.concrete(query.expr))
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from consumer.metrics import Metrics
from tests.chart.render import Manifest, helm_args, of_kind, render
from tests.chart.tools import CHART

DASHBOARDS = tuple(sorted((CHART / "dashboards").glob("*.json")))
# The scenario that turns the PrometheusRule on with every alert at its default.
MONITORING_VALUES = CHART / "ci" / "monitoring-values.yaml"


@dataclass(frozen=True)
class Query:
    """One expression and where it comes from."""

    origin: str
    expr: str
    # For alerts: the rule as rendered (alert, expr, for, labels, annotations).
    rule: dict[str, Any] | None = None


# -- collecting --------------------------------------------------------------------------------------


def _panels(panels: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


_LABEL_VALUES = re.compile(r"^\s*label_values\(\s*(?P<selector>.*?)\s*,\s*(?P<label>\w+)\s*\)\s*$", re.DOTALL)


def dashboard_queries(paths: Sequence[Path] = DASHBOARDS) -> list[Query]:
    """Panel targets and query variables of the dashboards (``label_values(sel, label)`` -> ``sel``)."""
    queries: list[Query] = []
    for path in paths:
        dashboard = json.loads(path.read_text())
        for variable in dashboard.get("templating", {}).get("list", []):
            if variable.get("type") != "query":
                continue
            definition = (
                variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
            )
            match = _LABEL_VALUES.match(definition)
            expr = match.group("selector") if match else definition
            queries.append(Query(f"{path.name}: variable ${variable['name']}", expr))
        for panel in _panels(dashboard.get("panels", [])):
            for target in panel.get("targets", []):
                if target.get("expr"):
                    queries.append(
                        Query(
                            f"{path.name}: panel {panel['title']!r} {target.get('refId', '')}", target["expr"]
                        )
                    )
    return queries


def rule_groups(manifests: Iterable[Manifest]) -> list[dict[str, Any]]:
    """The rule groups of the rendered PrometheusRules: a Prometheus rules file's ``groups``."""
    return [group for rule in of_kind(manifests, "PrometheusRule") for group in rule["spec"]["groups"]]


def rule_queries(manifests: Iterable[Manifest]) -> list[Query]:
    """The expressions of the rendered PrometheusRules."""
    return [
        Query(f"rule {rule.get('alert') or rule.get('record')}", str(rule["expr"]), rule)
        for group in rule_groups(manifests)
        for rule in group["rules"]
    ]


def render_rule_queries(helm: str, values_files: Sequence[Path] = (MONITORING_VALUES,)) -> list[Query]:
    """Render the chart (monitoring scenario by default) and return its alert expressions."""
    return rule_queries(render(helm, helm_args(values_files)))


def all_queries(helm: str) -> list[Query]:
    """Every expression the chart ships: dashboards, then alerts with every one enabled."""
    every_alert = {f"metrics.prometheusRule.alerts.{name}.enabled": "true" for name in ALERTS}
    manifests = render(helm, helm_args([MONITORING_VALUES], set_values=every_alert))
    return dashboard_queries() + rule_queries(manifests)


ALERTS = (
    "deadLetters",
    "messagesLost",
    "deliveryFailing",
    "authFailing",
    "apiStuck",
    "kafkaLagGrowing",
    "nothingDelivered",
    "notReady",
    "down",
    "spoolFilling",
    "spoolOldEvent",
    "spoolNotDraining",
)


# -- alert signals -----------------------------------------------------------------------------------

# What each alert watches, as the metric names read by each of its *signals*: the operands of its set
# operators (and, or, unless) and threshold comparisons (> 0, == 1...), which are what make an alert
# expression legitimately empty while it does not fire. A live Prometheus evaluates every signal and
# expects data. :func:`alert_signals` checks the split against this list, so a new alert (or one whose
# shape changes) needs its entry here.
ALERT_SIGNALS: dict[str, tuple[tuple[str, ...], ...]] = {
    "VisionEventsDeadLetters": (("vision_events_dead_letters_total",),),
    "VisionEventsMessagesLost": (("vision_events_messages_dropped_total",),),
    "VisionEventsDeliveryFailing": (
        ("vision_events_api_request_duration_seconds_count",),
        ("vision_events_api_retries_total",),
        ("vision_events_events_delivered_total",),
    ),
    "VisionEventsSinkAuthFailing": (("vision_events_sink_auth_failing",),),
    "VisionEventsApiStuck": (("vision_events_sink_oldest_batch_age_seconds",),),
    "VisionEventsKafkaLagGrowing": (
        ("vision_events_kafka_consumer_lag",),  # its deriv()
        ("vision_events_kafka_consumer_lag",),  # its level
    ),
    "VisionEventsNothingDelivered": (
        ("vision_events_last_delivery_timestamp_seconds",),
        ("vision_events_messages_normalized_total",),
    ),
    "VisionEventsNotReady": (("vision_events_ready",),),
    "VisionEventsDown": (("up",),),
    "VisionEventsSpoolFilling": (
        ("vision_events_spool_capacity_events", "vision_events_spool_events"),
        ("vision_events_spool_bytes", "vision_events_spool_capacity_bytes"),
    ),
    "VisionEventsSpoolOldEvent": (("vision_events_spool_oldest_event_age_seconds",),),
    "VisionEventsSpoolNotDraining": (
        ("vision_events_spool_events",),
        ("vision_events_spool_drained_total",),
        ("vision_events_api_request_duration_seconds_count",),
    ),
}

# Binary operators by precedence, lowest first (PromQL: or < and, unless < comparisons < arithmetic).
_SPLIT_LEVELS = (
    frozenset({"or"}),
    frozenset({"and", "unless"}),
    frozenset({"==", "!=", ">=", "<=", ">", "<"}),
)
_WORD_OPERATORS = frozenset({"and", "or", "unless"})
_WORD = re.compile(r"[a-zA-Z_][a-zA-Z0-9_:]*")
# What may follow a binary operator before its right operand.
_OPERATOR_MODIFIERS = re.compile(
    r"^\s*(?:bool\b)?\s*(?:(?:on|ignoring)\s*\([^)]*\))?\s*(?:(?:group_left|group_right)\b\s*(?:\([^)]*\))?)?"
)
_NUMBER_LITERAL = re.compile(
    r"^[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|0[xX][0-9a-fA-F]+|[iI][nN][fF]|[nN][aA][nN])$"
)


def _top_level_operators(expr: str) -> Iterator[tuple[int, int, str]]:
    """(start, end, operator) of the binary set and comparison operators outside any brackets or strings."""
    depth, index = 0, 0
    while index < len(expr):
        char = expr[index]
        if char in "\"'`":
            end = index + 1
            while end < len(expr) and expr[end] != char:
                end += 2 if expr[end] == "\\" and char != "`" else 1
            index = end + 1
            continue
        if char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif depth == 0:
            word = _WORD.match(expr, index)
            # Not the tail of a number (1e3, 5m) or a name.
            if word is not None and not (index and (expr[index - 1].isalnum() or expr[index - 1] in "_:.")):
                if word.group() in _WORD_OPERATORS:
                    yield index, word.end(), word.group()
                index = word.end()
                continue
            two = expr[index : index + 2]
            if two in {"==", "!=", ">=", "<="}:
                yield index, index + 2, two
                index += 2
                continue
            if char in "<>":
                yield index, index + 1, char
        index += 1


def _unwrap(expr: str) -> str:
    """``expr`` without parentheses around all of it."""
    expr = expr.strip()
    while expr.startswith("(") and expr.endswith(")"):
        depth = 0
        for index, char in enumerate(expr):
            depth += char == "("
            depth -= char == ")"
            if depth == 0 and index < len(expr) - 1:
                return expr  # the first parenthesis closes before the end: (a) > (b)
        expr = expr[1:-1].strip()
    return expr


def signals(expr: str) -> list[str]:
    """The operands of an expression's set operators and comparisons, recursively, numbers left out.

    ``(a > 0 or b > 0) unless on (job) (c > 0)`` gives ``[a, b, c]``; an operand with arithmetic in it
    (``time() - max(x)``) is one signal. Not a full PromQL parser, but enough for the rules we write.
    """
    expr = _unwrap(expr)
    for level in _SPLIT_LEVELS:
        cuts = [(start, end) for start, end, operator in _top_level_operators(expr) if operator in level]
        if not cuts:
            continue
        bounds = [0] + [edge for cut in cuts for edge in cut] + [len(expr)]
        operands = [expr[bounds[i] : bounds[i + 1]] for i in range(0, len(bounds), 2)]
        found: list[str] = []
        for raw in operands:
            operand = _OPERATOR_MODIFIERS.sub("", raw, count=1).strip()
            if not _NUMBER_LITERAL.match(operand):
                found += signals(operand)
        return found
    return [expr]


def alert_signals(query: Query) -> list[Query]:
    """An alert's signals (see :data:`ALERT_SIGNALS`), checked against the list.

    Raises ``ValueError`` when the alert has no entry or its expression splits differently.
    """
    alert = (query.rule or {}).get("alert")
    if alert is None:
        raise ValueError(f"{query.origin} is not an alert")
    expected = ALERT_SIGNALS.get(alert)
    if expected is None:
        raise ValueError(f"{alert} has no entry in promql.ALERT_SIGNALS: add what each of its signals reads")
    found = signals(query.expr)
    reads = tuple(tuple(sorted(metric_names(signal))) for signal in found)
    if reads != expected:
        raise ValueError(
            f"{alert} splits into signals reading {reads}, promql.ALERT_SIGNALS says {expected}:\n"
            + "\n---\n".join(found)
        )
    return [
        Query(f"{query.origin} signal {index}/{len(found)}", signal, query.rule)
        for index, signal in enumerate(found, 1)
    ]


# -- making them concrete ----------------------------------------------------------------------------

_GRAFANA_VARIABLE = re.compile(r"\$\{?(?P<name>__\w+|\w+)(?::\w+)?\}?")


def concrete(expr: str, rate_interval: str = "1m", variables: dict[str, str] | None = None) -> str:
    """The expression with Grafana's variables replaced, so Prometheus (or promtool) accepts it.

    ``$__rate_interval`` / ``$__interval`` become ``rate_interval``; other variables (``$namespace``,
    ``$job``, ``$pod``, used in ``=~`` matchers) become ``variables[name]`` or ``.*``.
    """
    values = variables or {}

    def replace(match: re.Match[str]) -> str:
        name = match.group("name")
        if name in {"__rate_interval", "__interval", "__range"}:
            return rate_interval
        return values.get(name, ".*")

    return _GRAFANA_VARIABLE.sub(replace, expr)


# -- metric names ------------------------------------------------------------------------------------

# Aggregation modifiers and vector matching take label lists, not metric names.
_LABEL_LIST = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_STRING = re.compile(r"\"(?:\\.|[^\"\\])*\"|'(?:\\.|[^'\\])*'|`[^`]*`")
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_FUNCTION_CALL = re.compile(r"(?<![\w:])[a-zA-Z_][a-zA-Z0-9_]*\s*\(")
_IDENTIFIER = re.compile(r"(?<![\w:.])[a-zA-Z_:][a-zA-Z0-9_:]*")
_KEYWORDS = frozenset({"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring",
                       "group_left", "group_right", "inf", "nan", "Inf", "NaN", "start", "end"})  # fmt: skip


def metric_names(expr: str) -> set[str]:
    """The metric names an expression reads (Grafana variables allowed).

    Not a full PromQL parser, but enough for the expressions we write: strings, label matchers,
    ranges and label lists are removed, function names dropped, what is left are metric names.
    ``{__name__=...}`` selectors are not supported (we do not write them).
    """
    text = concrete(expr)
    text = _STRING.sub(" ", text)
    text = _MATCHERS.sub(" ", text)
    text = _RANGE.sub(" ", text)
    text = _LABEL_LIST.sub(" ", text)
    text = _FUNCTION_CALL.sub("(", text)
    return {name for name in _IDENTIFIER.findall(text) if name not in _KEYWORDS}


# Series Prometheus makes itself for every target.
SCRAPE_SERIES = frozenset({"up", "scrape_duration_seconds", "scrape_samples_scraped"})


def exported_names(registry: CollectorRegistry | None = None) -> set[str]:
    """Every series name the consumer exports, with prometheus_client's suffixes.

    Counters: ``<name>_total`` (and ``_created``); histograms: ``_bucket``, ``_count``, ``_sum``
    (and ``_created``); gauges: the name itself.
    """
    metrics = Metrics(registry if registry is not None else CollectorRegistry())
    names: set[str] = set()
    for family in metrics.registry.collect():
        if family.type == "counter":
            names |= {f"{family.name}_total", f"{family.name}_created"}
        elif family.type == "histogram":
            names |= {f"{family.name}_{suffix}" for suffix in ("bucket", "count", "sum", "created")}
        elif family.type == "summary":
            names |= {family.name, f"{family.name}_count", f"{family.name}_sum", f"{family.name}_created"}
        else:
            names.add(family.name)
    return names


# -- promtool ---------------------------------------------------------------------------------------


def rules_file(alert_groups: Sequence[dict[str, Any]], dashboard: Sequence[Query]) -> dict[str, Any]:
    """A Prometheus rules file for ``promtool check rules``: the alert groups as rendered, and each
    dashboard query (made concrete) as a recording rule, so promtool parses those too."""
    recorded = [
        {"record": f"dashboard:query_{index}", "expr": concrete(query.expr)}
        for index, query in enumerate(dashboard)
    ]
    groups = [*alert_groups]
    if recorded:
        groups.append({"name": "dashboard-queries", "rules": recorded})
    return {"groups": groups}
