"""The dashboard and the alerts against a real Prometheus scraping real consumers under load.

A throwaway Prometheus (Debian's server binary, extracted by scripts/install-tools.sh; 127.0.0.1, a
free port, a temporary data directory, stopped at the end) scrapes two consumer processes every
second, as the chart's ServiceMonitor would (``job``, ``namespace`` and ``pod`` target labels), while
their /readyz is probed every second, as the kubelet would:

- ``pod=...-0`` reads Kafka (so there is lag, rebalances, commits; a subscribed topic that does not
  exist gives a client error) with the durable spool on (events are spooled, then drained: delivered
  or dead-lettered; the dashboard's Spool row and the spool alerts read it) and delivers to an API
  stand-in that answers some batches with 500,
  503 and 429 (retries) or drops the connection (status ``error``), fails some uploads, and does not
  know one use case (rejected events: batch splits, ``api_rejected`` dead letters). The load is the
  e2e corpus (every event type, images to upload, invalid and unrouted messages) plus image URLs
  served on loopback (fetched, and one that 404s).
- ``pod=...-1`` reads MQTT. Its stand-in refuses the key for a while (auth failing, not ready) while a
  burst of QoS 0 messages arrives: they overflow the handoff and are lost (``qos0_overflow``).

Then every expression of the dashboard (Grafana variables substituted) and every signal of every
alert (the alert without its threshold comparisons and set operators, which make it legitimately
empty while it does not fire; tests/chart/promql.py) must return data through ``/api/v1/query``;
every full alert expression must evaluate without error, and the two this scenario triggers
(dead letters, lost messages) must return data too. Prometheus also loads the rendered rules: all
must be healthy, and the lost-messages alert must fire. Each consumer's ``/metrics`` passes
``promtool check metrics``.

Brokers come from tests/support/brokers.py and tools from tests/chart/tools.py: without them the
test is skipped, except under ``CI=true``, where it fails.
"""

from __future__ import annotations

import contextlib
import math
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

import httpx
import orjson
import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from consumer.fakeapi import FakeVisionEventsApi
from tests.chart import promql
from tests.chart.render import NAMESPACE, RELEASE, helm_args, render
from tests.chart.tools import require
from tests.support.corpus import USE_CASES, CorpusMessage, build_corpus
from tests.support.images import png_bytes
from tests.support.process import ConsumerProcess, free_port, wait_until, write_settings
from tests.support.transports import KafkaTransport, MqttTransport

FULLNAME = f"{RELEASE}-vision-events-consumer"
API_KEY = "live-prometheus-key"
# What $__rate_interval / $__interval become: a minute spans several of the 1 s scrapes and the
# scenario's bursts, as Grafana's own choice would over a short time range.
RATE_INTERVAL = "1m"
DASHBOARD_VARIABLES = {"namespace": NAMESPACE, "job": FULLNAME}  # $pod: All
LOAD_SECONDS = 30
KAFKA_RATE = 150.0  # messages per second
MQTT_RATE = 40.0  # QoS 1 messages per second
QOS0_BURST = 3_000
# What the scenario must have made happen, so that "returns data" is more than counters at zero.
SCENARIO_FACTS = {
    "every event type delivered": "count(count by (event_type) (vision_events_events_delivered_total)) == 5",
    "API answers 5xx, 429 and dropped connections": (
        'count(count by (status) (vision_events_api_request_duration_seconds_count{status=~"5..|429|error"}))'
        " >= 4"
    ),
    "requests retried": "sum(vision_events_api_retries_total) > 0",
    "batches split around rejected events": "sum(vision_events_batch_splits_total) > 0",
    "dead letters of several reasons": "count(vision_events_dead_letters_total > 0) >= 5",
    "images uploaded": "sum(vision_events_images_uploaded_total) > 0",
    "images fetched, and one not found": (
        'count(vision_events_images_fetched_total{outcome=~"ok|rejected"} > 0) == 2'
    ),
    "predictions without an image": "sum(vision_events_annotations_dropped_total) > 0",
    "the key refused for a while": "max(max_over_time(vision_events_sink_auth_failing[5m])) == 1",
    "a replica not ready for a while": "min(min_over_time(vision_events_ready[5m])) == 0",
    "QoS 0 messages lost": 'sum(vision_events_messages_dropped_total{reason="qos0_overflow"}) > 0',
    "a Kafka client error": "sum(vision_events_kafka_errors_total) > 0",
    "Kafka lag measured": "count(vision_events_kafka_consumer_lag) > 0",
    "events spooled": "sum(vision_events_spool_spooled_total) > 0",
    "spooled events delivered and dead-lettered": "count(vision_events_spool_drained_total > 0) == 2",
    "the spool's bounds exported": (
        "max(vision_events_spool_capacity_events) > 0 and max(vision_events_spool_capacity_bytes) > 0"
    ),
}


# -- offline: how alerts split into signals ---------------------------------------------------------


def test_signals_split_threshold_and_set_operators() -> None:
    expr = (
        '(sum by (job) (rate(a_total{s=~"5..|error"}[5m])) > 0 or sum(rate(b_total[5m])) > bool 0)\n'
        "unless on (job) group_left (x) (sum(rate(c_total[5m])) > 0)\n"
        'and time() - max(d{l="x > y and z"} offset 5m) >= 1e3'
    )
    assert promql.signals(expr) == [
        'sum by (job) (rate(a_total{s=~"5..|error"}[5m]))',
        "sum(rate(b_total[5m]))",
        "sum(rate(c_total[5m]))",
        'time() - max(d{l="x > y and z"} offset 5m)',
    ]
    assert promql.signals("(up{job='j'} == 0)") == ["up{job='j'}"]
    assert promql.signals("max(x) by (pod)") == ["max(x) by (pod)"]


def test_every_alert_splits_into_its_listed_signals() -> None:
    """promql.ALERT_SIGNALS names, per alert, what each signal reads; the split must agree."""
    queries = _alert_queries(require("helm"))
    assert {q.rule["alert"] for q in queries if q.rule} == set(promql.ALERT_SIGNALS)
    for query in queries:
        assert promql.alert_signals(query)
    renamed = promql.Query("rule X", "up == 0", {"alert": "VisionEventsSomethingNew"})
    with pytest.raises(ValueError, match="no entry"):
        promql.alert_signals(renamed)
    reshaped = promql.Query("rule Y", "ready == 0 and up == 1", {"alert": "VisionEventsNotReady"})
    with pytest.raises(ValueError, match="splits into"):
        promql.alert_signals(reshaped)


def _alert_queries(helm: str) -> list[promql.Query]:
    """The rendered alerts, every one enabled, at the chart's default thresholds and selector."""
    return promql.rule_queries(render(helm, helm_args(set_values=_every_alert())))


# -- helpers -----------------------------------------------------------------------------------------


class Prometheus:
    """A Prometheus server on 127.0.0.1 with its own config, rules and data directory."""

    def __init__(self, binary: str, directory: Path, targets: dict[str, int], rules: dict[str, Any]) -> None:
        self.binary = binary
        self.directory = directory
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = directory / "prometheus.log"
        (directory / "rules.yaml").write_text(yaml.safe_dump(rules, sort_keys=False))
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(directory / "rules.yaml")],
            "scrape_configs": [
                {
                    # What the chart's ServiceMonitor produces: job = the release's full name.
                    "job_name": FULLNAME,
                    "static_configs": [
                        {"targets": [f"127.0.0.1:{port}"], "labels": {"namespace": NAMESPACE, "pod": pod}}
                        for pod, port in targets.items()
                    ],
                }
            ],
        }
        (directory / "prometheus.yml").write_text(yaml.safe_dump(config, sort_keys=False))
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._client = httpx.Client(base_url=self.url, timeout=10)

    def start(self) -> Prometheus:
        self._log = self.log_path.open("ab")
        self._process = subprocess.Popen(
            [
                self.binary,
                f"--config.file={self.directory / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.directory / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                f"--web.console.templates={self.directory}",
                f"--web.console.libraries={self.directory}",
                "--log.level=warn",
            ],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise AssertionError(f"prometheus exited with {self._process.returncode}:\n{self.log_tail()}")
            with contextlib.suppress(httpx.TransportError):
                if self._client.get("/-/ready").status_code == 200:
                    return self
            time.sleep(0.1)
        raise AssertionError(f"prometheus not ready after 30 s:\n{self.log_tail()}")

    def query(self, expr: str) -> dict[str, Any]:
        """``/api/v1/query`` at now: the ``data`` of a successful answer; AssertionError otherwise."""
        response = self._client.get("/api/v1/query", params={"query": expr})
        body = response.json()
        if response.status_code != 200 or body.get("status") != "success":
            raise AssertionError(f"{body.get('errorType')}: {body.get('error')}")
        data: dict[str, Any] = body["data"]
        return data

    def api(self, path: str) -> Any:
        """The ``data`` of another API endpoint (rules, alerts, targets)."""
        body = self._client.get(f"/api/v1/{path}").json()
        assert body["status"] == "success", body
        return body["data"]

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(15)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(5)
        self._client.close()
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return "(no log)"


def samples(data: dict[str, Any]) -> list[float]:
    """The values of an instant query's answer (vector or scalar)."""
    if data["resultType"] == "vector":
        return [float(item["value"][1]) for item in data["result"]]
    if data["resultType"] == "scalar":
        return [float(data["result"][1])]
    raise AssertionError(f"unexpected result type {data['resultType']}")


@contextlib.contextmanager
def image_server() -> Iterator[str]:
    """An HTTP server on loopback with one PNG at /frame.png (everything else 404); yields its base URL."""
    image = png_bytes(16, 12)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/frame.png":
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(len(image)))
                self.end_headers()
                self.wfile.write(image)
            else:
                self.send_error(404)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - base class signature
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def url_image_messages(transport: KafkaTransport, base_url: str, count: int) -> list[CorpusMessage]:
    """Envelope events whose image is a URL to fetch; every tenth one points at a missing image."""
    messages = []
    for index in range(count):
        missing = index % 10 == 9
        payload = {
            "event_id": f"url-image-{transport.uid}-{index}",
            "event_type": "quality_check",
            "use_case": "qc",
            "qc_result": "pass",
            "input_image": {"url": f"{base_url}/{'missing' if missing else 'frame'}.png"},
        }
        messages.append(
            CorpusMessage(
                transport.topics.topic("envelope", "url"),
                orjson.dumps(payload),
                None if missing else "quality_check",
                "image_fetch_failed" if missing else None,
            )
        )
    return messages


def interleave(many: list[CorpusMessage], few: list[CorpusMessage]) -> list[CorpusMessage]:
    """``few`` spread evenly through ``many``."""
    step = max(1, len(many) // max(1, len(few)))
    out: list[CorpusMessage] = []
    for index, message in enumerate(many):
        out.append(message)
        if index % step == step - 1 and index // step < len(few):
            out.append(few[index // step])
    out.extend(few[len(many) // step :])
    return out


def publish_paced(
    publish: Callable[[list[CorpusMessage]], None], messages: list[CorpusMessage], rate: float
) -> None:
    """Publish one second's worth at a time (the transports' own pacing bursts)."""
    start, chunk = time.monotonic(), max(1, int(rate))
    for index in range(0, len(messages), chunk):
        publish(messages[index : index + chunk])
        ahead = (index + chunk) / rate - (time.monotonic() - start)
        if ahead > 0:
            time.sleep(ahead)


def flood_qos0(url: str, messages: list[CorpusMessage]) -> None:
    """Publish at QoS 0, as fast as the broker takes them."""
    parts = urlsplit(url)
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"qos0-flood-{uuid.uuid4().hex[:8]}")
    client.max_queued_messages_set(0)
    client.connect(parts.hostname or "127.0.0.1", parts.port or 1883)
    client.loop_start()
    try:
        infos = [client.publish(m.topic, m.payload, qos=0) for m in messages]
        for info in infos:
            info.wait_for_publish(30)
    finally:
        client.disconnect()
        client.loop_stop()


@contextlib.contextmanager
def readiness_probes(ports: list[int], period: float = 1.0) -> Iterator[None]:
    """GET /readyz on every consumer each ``period``, as the kubelet does: vision_events_ready is
    computed when /readyz is asked, so without a probe it would keep its last value."""
    stop = threading.Event()

    def probe() -> None:
        with httpx.Client(timeout=2) as client:
            while not stop.wait(period):
                for port in ports:
                    with contextlib.suppress(httpx.HTTPError):
                        client.get(f"http://127.0.0.1:{port}/readyz")

    thread = threading.Thread(target=probe, name="readiness-probes", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(5)


def lost_qos0(consumer: ConsumerProcess) -> float:
    """The consumer's own count of QoS 0 messages lost to the overflow."""
    key = 'vision_events_messages_dropped_total{reason="qos0_overflow",source="mqtt"}'
    return consumer.metrics().get(key, 0.0)


# -- the scenario ------------------------------------------------------------------------------------


@dataclass
class Live:
    """Two consumers, their brokers and stand-ins, and the Prometheus scraping them."""

    kafka: KafkaTransport
    mqtt: MqttTransport
    mqtt_url: str
    kafka_api: FakeVisionEventsApi
    mqtt_api: FakeVisionEventsApi
    kafka_consumer: ConsumerProcess
    mqtt_consumer: ConsumerProcess
    prometheus: Prometheus
    image_base: str
    began: float = field(default_factory=time.monotonic)
    timings: dict[str, float] = field(default_factory=dict)

    def mark(self, what: str) -> None:
        self.timings[what] = round(time.monotonic() - self.began, 1)

    def logs(self) -> str:
        return "\n".join(
            f"--- {name}:\n{tail}"
            for name, tail in (
                ("kafka consumer", self.kafka_consumer.log_tail(15)),
                ("mqtt consumer", self.mqtt_consumer.log_tail(15)),
                ("prometheus", self.prometheus.log_tail(10)),
            )
        )


def consumer_settings(
    path: Path,
    *,
    routes: str,
    source: dict[str, Any],
    api: FakeVisionEventsApi,
    port: int,
    spool: bool = False,
) -> Path:
    settings: dict[str, Any] = {
        "routes": str(path.with_suffix(".routes.yaml")),
        **source,
        "sink": {"type": "cloud", "cloud": {"base_url": api.url, "api_key": API_KEY}},
        "batch": {"linger_ms": 50, "max_in_flight_events": 400},
        "retry": {"initial_backoff_seconds": 0.05, "max_backoff_seconds": 1.0, "auth_backoff_seconds": 0.5},
        "http": {"host": "127.0.0.1", "port": port},
        "shutdown_deadline_seconds": 5,
        "log": {"level": "INFO"},
    }
    if spool:
        settings["spool"] = {"enabled": True, "path": str(path.with_suffix(".spool.db"))}
    path.with_suffix(".routes.yaml").write_text(routes)
    return write_settings(path, settings)


@pytest.fixture
def live(kafka_bootstrap: str, mqtt_url: str, tmp_path: Path) -> Iterator[Live]:
    prometheus_binary = require("prometheus")
    rules = {"groups": promql.rule_groups(render(require("helm"), helm_args(set_values=_every_alert())))}
    with contextlib.ExitStack() as stack:
        kafka = KafkaTransport(kafka_bootstrap)
        stack.callback(kafka.close)
        mqtt_transport = MqttTransport(mqtt_url)
        stack.callback(mqtt_transport.close)
        image_base = stack.enter_context(image_server())

        # Kafka's stand-in fails some requests and does not know the "feedback" use case.
        kafka_api = FakeVisionEventsApi(
            api_keys=(API_KEY,), use_cases=[u for u in USE_CASES if u != "feedback"], fault_seed=5
        ).start()
        stack.callback(kafka_api.stop)
        kafka_api.add_fault("/vision-events/batch", statuses=(), drop_connection=True, fail_ratio=0.03)
        kafka_api.add_fault("/vision-events/batch", statuses=(500, 503, 429), retry_after=1, fail_ratio=0.15)
        kafka_api.add_fault("/vision-events/upload", statuses=(503,), fail_ratio=0.1)
        mqtt_api = FakeVisionEventsApi(api_keys=(API_KEY,), use_cases=USE_CASES).start()
        stack.callback(mqtt_api.stop)

        kafka_source = kafka.source_settings(client_id=f"{kafka.topics.prefix}-0", group=kafka.topics.prefix)
        kafka_source["source"]["kafka"]["topics"].append(f"absent-{kafka.uid}")  # a client error
        kafka_source["source"]["kafka"]["settings"]["statistics.interval.ms"] = 1000  # lag every second
        kafka_source["images"] = {"url_allowed_hosts": ["127.0.0.1"]}
        mqtt_source = mqtt_transport.source_settings(
            client_id=f"{mqtt_transport.topics.prefix}-1", group=mqtt_transport.topics.prefix
        )
        # A small handoff (receive_maximum + 1000 messages) and a short put timeout (keepalive / 3).
        mqtt_source["source"]["mqtt"].update({"receive_maximum": 20, "keepalive_seconds": 6})

        consumers: list[tuple[str, ConsumerProcess]] = []
        # The Kafka consumer spools (its faulty API gives the forwarder retries and refusals to
        # drain); the MQTT one does not, so its refused key still fills the pipeline and QoS 0
        # messages overflow.
        for index, (name, routes, source, api, spool) in enumerate(
            (
                ("kafka", kafka.topics.routes_yaml(), kafka_source, kafka_api, True),
                ("mqtt", mqtt_transport.topics.routes_yaml(), mqtt_source, mqtt_api, False),
            )
        ):
            port = free_port()
            config = consumer_settings(
                tmp_path / f"{name}.yaml", routes=routes, source=source, api=api, port=port, spool=spool
            )
            consumers.append((f"{FULLNAME}-{index}", ConsumerProcess(config, port, tmp_path / f"{name}.log")))
            stack.callback(consumers[-1][1].stop_quietly)

        # Prometheus first, so it sees the consumers from their first sample.
        directory = tmp_path / "prometheus"
        directory.mkdir()
        prometheus = Prometheus(prometheus_binary, directory, {pod: c.port for pod, c in consumers}, rules)
        stack.callback(prometheus.stop)
        live = Live(
            kafka,
            mqtt_transport,
            mqtt_url,
            kafka_api,
            mqtt_api,
            consumers[0][1],
            consumers[1][1],
            prometheus,
            image_base,
        )
        prometheus.start()
        live.mark("prometheus ready")
        for _, consumer in consumers:
            consumer.start()
        for _, consumer in consumers:
            consumer.wait_ready()
        live.mark("consumers ready")
        stack.enter_context(readiness_probes([consumer.port for _, consumer in consumers]))
        wait_until(
            lambda: sorted(samples(prometheus.query(f'up{{job="{FULLNAME}"}}'))) == [1.0, 1.0],
            20,
            "Prometheus to scrape both consumers",
        )
        yield live


def drive_load(live: Live) -> None:
    """Kafka and MQTT QoS 1 load for LOAD_SECONDS; in the middle, the MQTT QoS 0 overflow."""
    kafka_count = int(LOAD_SECONDS * KAFKA_RATE)
    corpus = build_corpus(kafka_count, seed=51, topics=live.kafka.topics)
    kafka_load = interleave(corpus, url_image_messages(live.kafka, live.image_base, kafka_count // 40))
    mqtt_load = build_corpus(int(LOAD_SECONDS * MQTT_RATE), seed=52, topics=live.mqtt.topics)
    flood = [m for m in build_corpus(QOS0_BURST, seed=53, topics=live.mqtt.topics) if m.event_type]
    with ThreadPoolExecutor(max_workers=3) as pool:
        publishing = [
            pool.submit(publish_paced, live.kafka.publish, kafka_load, KAFKA_RATE),
            pool.submit(publish_paced, live.mqtt.publish, mqtt_load, MQTT_RATE),
        ]
        wait_until(lambda: len(live.mqtt_api.events()) > 50, 30, "MQTT events delivered")
        # The MQTT stand-in refuses the key: nothing is delivered, the pipeline fills up, and QoS 0
        # messages that find no room in the handoff are lost.
        live.mqtt_api.set_auth_broken(True)
        wait_until(
            lambda: live.mqtt_consumer.metric_total("vision_events_sink_auth_failing") == 1,
            20,
            "the MQTT consumer to see its key refused",
        )
        live.mark("mqtt key refused")
        flooding = pool.submit(flood_qos0, live.mqtt_url, flood)
        wait_until(lambda: lost_qos0(live.mqtt_consumer) > 0, 45, "QoS 0 messages lost to the overflow")
        live.mark("qos0 overflow seen")
        live.mqtt_api.set_auth_broken(False)
        flooding.result(60)
        for future in publishing:
            future.result(LOAD_SECONDS * 3)
    live.mark("load published")


def check_exposition(promtool: str, consumer: ConsumerProcess) -> None:
    """``promtool check metrics`` on what /metrics serves right now: no problem reported."""
    text = httpx.get(f"http://127.0.0.1:{consumer.port}/metrics", timeout=5).text
    checked = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )
    problems = (checked.stdout + checked.stderr).strip()
    assert checked.returncode == 0 and not problems, (
        f"promtool check metrics ({consumer.config.name}):\n{problems}"
    )


@dataclass
class Evaluation:
    """What the queries returned."""

    failures: list[str] = field(default_factory=list)
    report: list[str] = field(default_factory=list)
    firing: set[str] = field(default_factory=set)

    def expect_data(self, prometheus: Prometheus, origin: str, expr: str) -> None:
        """At least one sample that is not NaN (a quantile of nothing is NaN)."""
        try:
            values = samples(prometheus.query(expr))
        except AssertionError as error:
            self.failures.append(f"{origin}: {error}\n    {expr}")
            return
        finite = [v for v in values if not math.isnan(v)]
        self.report.append(
            f"{origin}: {len(values)} series" + (f", {min(finite):.4g}..{max(finite):.4g}" if finite else "")
        )
        if not finite:
            self.failures.append(f"{origin}: no data\n    {expr}")

    def as_written(self, prometheus: Prometheus, query: promql.Query) -> None:
        """The full alert expression: no error; data only when the alert would fire."""
        try:
            if samples(prometheus.query(query.expr)):
                self.firing.add(str((query.rule or {}).get("alert")))
        except AssertionError as error:
            self.failures.append(f"{query.origin} (as written): {error}\n    {query.expr}")


def evaluate(prometheus: Prometheus, helm: str) -> Evaluation:
    """Every dashboard expression, every alert as written and each of its signals."""
    result = Evaluation()
    for query in promql.dashboard_queries():
        expr = promql.concrete(query.expr, RATE_INTERVAL, DASHBOARD_VARIABLES)
        result.expect_data(prometheus, query.origin, expr)
    for query in _alert_queries(helm):
        result.as_written(prometheus, query)
        for signal in promql.alert_signals(query):
            result.expect_data(prometheus, signal.origin, signal.expr)
    for fact, expr in SCENARIO_FACTS.items():
        result.expect_data(prometheus, f"scenario: {fact}", expr)
    return result


# -- the test ----------------------------------------------------------------------------------------


@pytest.mark.e2e
def test_every_dashboard_and_alert_query_returns_data_from_live_consumers(live: Live) -> None:
    promtool, helm = require("promtool"), require("helm")
    drive_load(live)
    time.sleep(3)  # a few more scrapes
    for consumer in (live.kafka_consumer, live.mqtt_consumer):
        check_exposition(promtool, consumer)

    evaluation = evaluate(live.prometheus, helm)
    live.mark("queries evaluated")
    assert not evaluation.failures, "\n".join(evaluation.failures) + "\n" + live.logs()
    # What the scenario made happen, the alerts as written see too.
    assert {"VisionEventsDeadLetters", "VisionEventsMessagesLost"} <= evaluation.firing, evaluation.firing

    # Prometheus's own evaluation of the rendered rules: all healthy, and the loss fires at once.
    rules = [rule for group in live.prometheus.api("rules")["groups"] for rule in group["rules"]]
    assert {rule["name"] for rule in rules} == set(promql.ALERT_SIGNALS)
    assert {rule["name"]: rule.get("lastError") for rule in rules if rule["health"] != "ok"} == {}
    states = {a["labels"]["alertname"]: a["state"] for a in live.prometheus.api("alerts")["alerts"]}
    assert states.get("VisionEventsMessagesLost") == "firing", states
    print("\n".join(["", *evaluation.report, f"alerts: {states}", f"timings (s): {live.timings}"]))


def _every_alert() -> dict[str, str]:
    sets = {f"metrics.prometheusRule.alerts.{name}.enabled": "true" for name in promql.ALERTS}
    sets["metrics.prometheusRule.enabled"] = "true"
    return sets
