"""One benchmark run: the stand-in, then per transport the consumer against real brokers.

Per transport and message kind: the consumer (one process, pinned to its own core) is paused
with SIGSTOP, ``count`` messages are published, it is resumed, and the drain is timed from the
stand-in's acceptance log. The same messages are then read by the bare client (``bench.raw``) on
the same core: the limit. Then the od messages at half the measured rate, for latency; and (full
run, Kafka) a backlog of a million messages drained by a freshly started consumer, for memory.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
import yaml

from bench import peers
from bench.messages import Naming, Payloads, jpeg_of_size
from bench.procs import Child, broker_pids, pin, python, unpin, usage, wait_for
from bench.produce import KafkaPublisher, MqttPublisher, mqtt_session
from bench.standin import API_KEY, StandIn


@dataclass(slots=True)
class Plan:
    """What to run: counts per kind, phases, consumer settings."""

    transports: list[str]
    kinds: list[str]
    counts: dict[str, int]
    latency_seconds: float
    latency_fraction: float
    backlog: int
    standin_seconds: float
    consumer_cpus: set[int]
    other_cpus: set[int]
    batch: dict[str, Any] = field(default_factory=dict)
    kafka: dict[str, Any] = field(default_factory=dict)
    mqtt: dict[str, Any] = field(default_factory=dict)
    sink: dict[str, Any] = field(default_factory=dict)
    profile: Path | None = None
    # With the durable spool: events are acknowledged once spooled, delivered by its forwarder.
    spool: str | None = None
    # The peers (bench/peers.py) measured on the od messages after the consumer, one at a time.
    peers: list[str] = field(default_factory=list)


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Consumer:
    """``python -m consumer run --config ...`` pinned to the consumer's core."""

    def __init__(self, settings: dict[str, Any], workdir: Path, cpus: set[int], name: str) -> None:
        self.port = free_port()
        settings = {**settings, "http": {"host": "127.0.0.1", "port": self.port}}
        self.config = workdir / f"{name}.yaml"
        self.config.write_text(yaml.safe_dump(settings, sort_keys=False))
        prelude = os.environ.get("BENCH_CONSUMER_PRELUDE")
        argv = (
            python("-c", f"{prelude}\nimport runpy; runpy.run_module('consumer', run_name='__main__')")
            if prelude
            else python("-m", "consumer")
        )
        # BENCH_CONSUMER_CWD: run the consumer package found there (e.g. an export of an older
        # commit, for before/after figures); the harness and the stand-in stay these.
        self.child = Child(
            [*argv, "run", "--config", str(self.config)],
            cpus=cpus,
            log=workdir / f"{name}.log",
            cwd=os.environ.get("BENCH_CONSUMER_CWD"),
        )

    def wait_ready(self, timeout: float = 60) -> None:
        """Until /readyz answers 200."""

        def ready() -> bool:
            if not self.child.alive():
                raise RuntimeError(f"the consumer exited:\n{self.child.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                return httpx.get(f"http://127.0.0.1:{self.port}/readyz", timeout=1).status_code == 200
            return False

        wait_for(ready, timeout, "the consumer to be ready", interval=0.1)

    def metric(self, name: str) -> float:
        """Sum of every series of ``name`` on /metrics."""
        text = httpx.get(f"http://127.0.0.1:{self.port}/metrics", timeout=5).text
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name) and (line[len(name)] in " {"):
                total += float(line.rsplit(" ", 1)[1])
        return total


class Runner:
    """Runs a :class:`Plan`; ``results`` collects every figure."""

    def __init__(self, plan: Plan, workdir: Path, log: Any = print) -> None:
        self.plan = plan
        self.workdir = workdir
        self.say = log
        self.run_id = uuid.uuid4().hex[:8]
        self.results: dict[str, Any] = {
            "run": self.run_id,
            "scenarios": [],
            "latency": [],
            "backlog": [],
            "peers": [],
        }
        self._pinned: dict[int, set[int]] = {}
        self.standin: StandIn | None = None
        self.source_id = ""

    # -- setup ----------------------------------------------------------------------------------------

    def __enter__(self) -> Runner:
        for name, pid in broker_pids().items():
            self._pinned.update(pin(pid, self.plan.other_cpus))
            self.say(f"pinned the {name} broker (pid {pid}) to CPUs {sorted(self.plan.other_cpus)}")
        os.sched_setaffinity(0, self.plan.other_cpus)
        self.standin = StandIn(self.plan.other_cpus, self.workdir / "standin.log")
        self.source_id = self.standin.upload(jpeg_of_size())
        self.say(f"stand-in at {self.standin.url} (fast mode); frame uploaded as {self.source_id}")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.standin is not None:
            self.standin.stop()
        unpin(self._pinned)
        os.sched_setaffinity(0, self.plan.consumer_cpus | self.plan.other_cpus)

    # -- the stand-in's own rate ------------------------------------------------------------------------

    def standin_rate(self) -> None:
        """Post ready-made batches from the consumer's core: the stand-in's accept rate."""
        if not (self.standin is not None):
            raise RuntimeError("unexpected state")
        out: dict[str, Any] = {}
        for kind in ("od", "cls"):
            child = Child(
                python(
                    "-m",
                    "bench.load",
                    "--url",
                    self.standin.url,
                    "--api-key",
                    API_KEY,
                    "--source-id",
                    self.source_id,
                    "--kind",
                    kind,
                    "--seconds",
                    str(self.plan.standin_seconds),
                    "--connections",
                    "4",
                ),
                cpus=self.plan.consumer_cpus,
                log=self.workdir / "load.log",
                stdout_pipe=True,
            )
            stdout, _ = child.process.communicate(timeout=self.plan.standin_seconds + 120)
            child.terminate()
            out[kind] = orjson.loads(stdout.splitlines()[-1])
            self.say(f"stand-in accepts {out[kind]['rate']:,.0f} {kind} events/s (4 connections)")
        self.standin.clear()
        self.results["standin"] = out

    # -- per transport ------------------------------------------------------------------------------------

    def transport(self, name: str) -> None:
        """Every phase on one transport."""
        naming = Naming(self.run_id, name)
        routes = self.workdir / f"routes-{name}.yaml"
        routes.write_text(naming.routes_yaml())
        payloads = Payloads(self.run_id, self.source_id)
        if name == "kafka":
            self._kafka(naming, routes, payloads)
        else:
            self._mqtt(naming, routes, payloads)

    def _settings(self, routes: Path, source: dict[str, Any]) -> dict[str, Any]:
        if not (self.standin is not None):
            raise RuntimeError("unexpected state")
        return {
            "routes": str(routes),
            "source": source,
            "sink": {
                "type": "cloud",
                "cloud": {"base_url": self.standin.url, "api_key": API_KEY, **self.plan.sink},
            },
            "batch": self.plan.batch,
            "dead_letter": {"type": "jsonl", "jsonl": {"path": str(self.workdir / "dead-letters.jsonl")}},
            "log": {"level": "INFO", "format": "json"},
            "shutdown_deadline_seconds": 20,
            **(
                {
                    "spool": {
                        "enabled": True,
                        "path": str(self.workdir / "spool.db"),
                        "synchronous": self.plan.spool,
                    }
                }
                if self.plan.spool is not None
                else {}
            ),
        }

    def _kafka(self, naming: Naming, routes: Path, payloads: Payloads) -> None:
        bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
        publisher = KafkaPublisher(bootstrap)
        # The warm-up publishes od messages, whatever kinds are measured.
        topics = {kind: naming.topic(kind) for kind in dict.fromkeys(["od", *self.plan.kinds])}
        publisher.create_topics(list(topics.values()))
        source = {
            "type": "kafka",
            "kafka": {
                "bootstrap_servers": bootstrap,
                "group_id": f"bench-{self.run_id}",
                "topics": list(topics.values()),
                **self.plan.kafka,
            },
        }
        settings = self._settings(routes, source)
        consumer = Consumer(settings, self.workdir, self.plan.consumer_cpus, "consumer-kafka")
        try:
            consumer.wait_ready()
            wait_for(
                lambda: consumer.metric("vision_events_kafka_rebalances_total") >= 1, 60, "an assignment"
            )
            self._warm_up(
                "kafka", consumer, lambda n: publisher.publish(topics["od"], "od", payloads, n, start=10**8)
            )
            raw_settings = orjson.dumps(self.plan.kafka.get("settings", {})).decode()
            for kind in self.plan.kinds:
                count = self.plan.counts[kind]
                row = self._drain(
                    "kafka",
                    kind,
                    count,
                    consumer,
                    lambda n, k=kind: publisher.publish(topics[k], k, payloads, n),
                )
                raw = self._raw(
                    "--count",
                    str(count),
                    "kafka",
                    "--bootstrap",
                    bootstrap,
                    "--topic",
                    topics[kind],
                    "--batch",
                    str(self.plan.kafka.get("consume_batch_size", 500)),
                    "--settings",
                    raw_settings,
                )
                self._finish_row(row, raw)
                if kind == "od":
                    self._peers(
                        "kafka",
                        count,
                        lambda peer: peers.Source(
                            "kafka",
                            bootstrap=bootstrap,
                            topic=topics["od"],
                            group=f"bench-{self.run_id}-{peer}",
                        ),
                    )
            if "od" in self.plan.kinds:
                self._latency(
                    "kafka",
                    consumer,
                    lambda n, rate: publisher.publish(
                        topics["od"], "od", payloads, n, start=2 * 10**8, rate=rate
                    ),
                )
            exit_code = consumer.child.terminate()
            self.say(f"kafka consumer stopped (exit {exit_code})")
            if self.plan.backlog and "od" in self.plan.kinds:
                self._backlog(
                    "kafka",
                    settings,
                    lambda n: publisher.publish(topics["od"], "od", payloads, n, start=3 * 10**8),
                )
        finally:
            consumer.child.terminate()
            publisher.close()
            publisher.delete_topics()
            self.say("kafka topics deleted")

    def _mqtt(self, naming: Naming, routes: Path, payloads: Payloads) -> None:
        url = os.environ.get("MQTT_URL", "mqtt://127.0.0.1:1883")
        parts = urlsplit(url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 1883
        client_id = f"bench-consumer-{self.run_id}"
        source = {"type": "mqtt", "mqtt": {"url": url, "client_id": client_id, **self.plan.mqtt}}
        settings = self._settings(routes, source)
        publisher = MqttPublisher(host, port, f"bench-publisher-{self.run_id}")
        raw_ids: list[str] = []
        consumer = Consumer(settings, self.workdir, self.plan.consumer_cpus, "consumer-mqtt")
        try:
            if "od" in self.plan.kinds:
                # Sessions created before the warm-up: the broker queues the warm-up and the od
                # drain for each peer too, so the peers later read the very same messages.
                for peer in self.plan.peers:
                    raw_ids.append(f"bench-peer-{self.run_id}-{peer}")
                    mqtt_session(host, port, raw_ids[-1], [naming.mqtt_filter("od")])
            consumer.wait_ready()
            self._warm_up(
                "mqtt",
                consumer,
                lambda n: publisher.publish(
                    lambda s: naming.topic("od", 1 + s % 4), "od", payloads, n, start=10**8
                ),
            )
            for kind in self.plan.kinds:
                count = min(self.plan.counts[kind], _mqtt_queue_limit() - 1000)
                # Only when the broker's cap cut the drain short: the quick run's jpeg drain is 300.
                if count < min(self.plan.counts[kind], 1000):
                    raise RuntimeError(
                        f"Mosquitto queues only {_mqtt_queue_limit()} messages per offline session: "
                        "restart the brokers with MQTT_MAX_QUEUED_MESSAGES=100000 scripts/brokers.sh start"
                    )
                raw_id = f"bench-raw-{self.run_id}-{kind}"
                raw_ids.append(raw_id)
                mqtt_session(host, port, raw_id, [naming.mqtt_filter(kind)])
                row = self._drain(
                    "mqtt",
                    kind,
                    count,
                    consumer,
                    lambda n, k=kind: publisher.publish(lambda s: naming.topic(k, 1 + s % 4), k, payloads, n),
                )
                raw = self._raw(
                    "--count",
                    str(count),
                    "mqtt",
                    "--url",
                    url,
                    "--client-id",
                    raw_id,
                    "--receive-maximum",
                    str(self.plan.mqtt.get("receive_maximum", 1000)),
                )
                mqtt_session(host, port, raw_id, [], expiry=0)
                self._finish_row(row, raw)
                if kind == "od":
                    self._peers(
                        "mqtt",
                        count,
                        lambda peer: peers.Source(
                            "mqtt",
                            url=url,
                            client_id=f"bench-peer-{self.run_id}-{peer}",
                            filter=naming.mqtt_filter("od"),
                        ),
                    )
            if "od" in self.plan.kinds:
                self._latency(
                    "mqtt",
                    consumer,
                    lambda n, rate: publisher.publish(
                        lambda s: naming.topic("od", 1 + s % 4), "od", payloads, n, start=2 * 10**8, rate=rate
                    ),
                )
            exit_code = consumer.child.terminate()
            self.say(f"mqtt consumer stopped (exit {exit_code})")
        finally:
            consumer.child.terminate()
            publisher.close()
            for client in [*raw_ids, client_id]:
                with contextlib.suppress(Exception):
                    mqtt_session(host, port, client, [], expiry=0)
            self.say("mqtt sessions removed")

    # -- phases -------------------------------------------------------------------------------------------

    def _warm_up(self, transport: str, consumer: Consumer, publish: Any) -> None:
        if not (self.standin is not None):
            raise RuntimeError("unexpected state")
        self.standin.clear()
        publish(200)
        wait_for(
            lambda: self.standin is not None and self.standin.accepted() >= 200, 60, "the warm-up events"
        )
        self.standin.clear()
        self.say(f"{transport}: consumer ready and warmed up")

    def _drain(
        self, transport: str, kind: str, count: int, consumer: Consumer, publish: Any
    ) -> dict[str, Any]:
        """Publish ``count`` while the consumer is paused, resume it, time the drain."""
        if not (self.standin is not None):
            raise RuntimeError("unexpected state")
        standin = self.standin
        standin.clear()
        pid = consumer.child.pid
        consumer.child.pause()
        try:
            publish_seconds = publish(count)
        finally:
            before = usage(pid)
            resumed = time.time()
            consumer.child.resume()
        profiler = self._profiler(pid, f"{transport}-{kind}")
        peak_rss = 0
        deadline = time.monotonic() + 120 + count / 500
        while standin.accepted() < count:
            if time.monotonic() > deadline or not consumer.child.alive():
                raise RuntimeError(f"{transport}/{kind}: drain incomplete\n{consumer.child.log_tail()}")
            reading = usage(pid)
            if reading is not None:
                peak_rss = max(peak_rss, reading.rss)
            time.sleep(0.05)
        after = usage(pid)
        if profiler is not None:
            profiler.process.send_signal(signal.SIGINT)
            profiler.process.wait(60)
            profiler.terminate()
        summary = standin.acceptance()
        if not (before is not None and after is not None):
            raise RuntimeError("unexpected state")
        peak_rss = max(peak_rss, after.rss)
        steady = steady_rate(summary, count)
        overall = count / max(summary["last"] - resumed, 1e-6)
        row = {
            "transport": transport,
            "kind": kind,
            "count": count,
            "publish_seconds": round(publish_seconds, 3),
            "rate": round(overall, 1),
            "rate_steady": round(steady, 1),
            "cpu_per_1000": round((after.cpu - before.cpu) / count * 1000, 4),
            "cpu_seconds": round(after.cpu - before.cpu, 3),
            "peak_rss_mb": round(peak_rss / 2**20, 1),
            "timeline": summary.get("timeline", []),
            "resumed_at": resumed,
        }
        self.say(
            f"{transport}/{kind}: {count} events drained at {overall:,.0f}/s from resume "
            f"({steady:,.0f}/s between 10 and 90 %), {row['cpu_per_1000']:.3f} CPU-s/1000, "
            f"RSS {row['peak_rss_mb']} MB"
        )
        return row

    def _profiler(self, pid: int, name: str) -> Child | None:
        """py-spy sampling the consumer (all threads, native frames off) until the drain ends."""
        if self.plan.profile is None:
            return None
        self.plan.profile.mkdir(parents=True, exist_ok=True)
        child = Child(
            [
                "py-spy",
                "record",
                "-p",
                str(pid),
                "-r",
                "250",
                "-f",
                "raw",
                "-o",
                str(self.plan.profile / f"{name}.txt"),
            ],
            cpus=self.plan.other_cpus,
            log=self.workdir / "py-spy.log",
        )
        time.sleep(0.3)
        return child

    def _raw(self, *args: str) -> dict[str, Any]:
        child = Child(
            python("-m", "bench.raw", *args[2:], *args[:2]),
            cpus=self.plan.consumer_cpus,
            log=self.workdir / "raw.log",
            stdout_pipe=True,
        )
        stdout, _ = child.process.communicate(timeout=600)
        child.terminate()
        lines = stdout.decode().strip().splitlines()
        if not lines:
            raise RuntimeError(f"bench.raw failed:\n{child.log_tail()}")
        result: dict[str, Any] = orjson.loads(lines[-1])
        return result

    def _finish_row(self, row: dict[str, Any], raw: dict[str, Any]) -> None:
        row["raw_rate"] = raw["rate"]
        row["raw_count"] = raw["count"]
        row["raw_cpu_per_1000"] = round(raw["cpu_seconds"] / max(raw["count"], 1) * 1000, 4)
        row["of_raw"] = round(row["rate"] / raw["rate"], 3) if raw["rate"] else None
        self.results["scenarios"].append(row)
        self.say(
            f"{row['transport']}/{row['kind']}: bare client reads {raw['rate']:,.0f}/s "
            f"-> consumer at {100 * (row['of_raw'] or 0):.0f} % of it"
        )

    def _peers(self, transport: str, count: int, source: Any) -> None:
        """Each peer on the od messages the consumer just drained, alone on the consumer's core."""
        if not (self.standin is not None):
            raise RuntimeError("unexpected state")
        ours = self.results["scenarios"][-1]
        for name in self.plan.peers:
            self.standin.clear()
            try:
                child = peers.start(
                    name,
                    source(name),
                    self.standin.url,
                    workdir=self.workdir,
                    cpus=self.plan.consumer_cpus,
                    http_port=free_port(),
                )
                row = peers.drain(name, child, self.standin, transport=transport, count=count, say=self.say)
            except Exception as exc:  # noqa: BLE001 - report it with the figures of the others
                self.say(f"{transport}/od: peer {name} FAILED: {type(exc).__name__}: {exc}")
                self.results.setdefault("errors", []).append(
                    {"transport": transport, "peer": name, "error": f"{type(exc).__name__}: {exc}"}
                )
                continue
            # Below 1: the consumer spends less CPU per event than the peer.
            row["ours_cpu_ratio"] = (
                round(ours["cpu_per_1000"] / row["cpu_per_1000"], 3) if row["cpu_per_1000"] else None
            )
            self.results["peers"].append(row)
        self.standin.clear()

    def _latency(self, transport: str, consumer: Consumer, publish: Any) -> None:
        if not (self.standin is not None):
            raise RuntimeError("unexpected state")
        measured = next(
            r["rate"] for r in self.results["scenarios"] if r["transport"] == transport and r["kind"] == "od"
        )
        rate = max(100.0, measured * self.plan.latency_fraction)
        count = int(rate * self.plan.latency_seconds)
        self.standin.clear()
        before = usage(consumer.child.pid)
        seconds = publish(count, rate)
        wait_for(lambda: self.standin is not None and self.standin.accepted() >= count, 120, "latency events")
        after = usage(consumer.child.pid)
        summary = self.standin.acceptance()
        if not (before is not None and after is not None):
            raise RuntimeError("unexpected state")
        row = {
            "transport": transport,
            "kind": "od",
            "target_rate": round(rate, 1),
            "achieved_publish_rate": round(count / seconds, 1),
            "count": count,
            "latency_ms": {k: round(v * 1000, 1) for k, v in summary["latency"].items()},
            "cpu_per_1000": round((after.cpu - before.cpu) / count * 1000, 4),
            "linger_ms": self.plan.batch.get("linger_ms"),
            "timeline": summary.get("timeline", []),
        }
        self.results["latency"].append(row)
        lat = row["latency_ms"]
        self.say(
            f"{transport}/od at {rate:,.0f}/s: latency p50 {lat['p50']} ms, p99 {lat['p99']} ms, "
            f"max {lat['max']} ms"
        )

    def _backlog(self, transport: str, settings: dict[str, Any], publish: Any) -> None:
        if not (self.standin is not None):
            raise RuntimeError("unexpected state")
        count = self.plan.backlog
        self.say(f"{transport}: producing a backlog of {count:,} od messages (consumer stopped)")
        seconds = publish(count)
        self.say(f"{transport}: backlog produced in {seconds:.1f}s; starting a fresh consumer")
        self.standin.clear()
        consumer = Consumer(settings, self.workdir, self.plan.consumer_cpus, f"consumer-{transport}-backlog")
        started = time.time()
        samples: list[tuple[float, float, int, int]] = []
        try:
            deadline = time.monotonic() + 600 + count / 1000
            while True:
                accepted = self.standin.accepted()
                reading = usage(consumer.child.pid)
                if reading is not None:
                    samples.append((time.time() - started, reading.cpu, reading.rss, accepted))
                if accepted >= count:
                    break
                if time.monotonic() > deadline or not consumer.child.alive():
                    raise RuntimeError(f"backlog drain incomplete\n{consumer.child.log_tail()}")
                time.sleep(0.25)
            final = usage(consumer.child.pid)
        finally:
            consumer.child.terminate()
        summary = self.standin.acceptance()
        if not (final is not None):
            raise RuntimeError("unexpected state")
        row = {
            "transport": transport,
            "kind": "od",
            "count": count,
            "rate": round(steady_rate(summary, count), 1),
            "seconds": round(summary["last"] - summary["first"], 2),
            "peak_rss_mb": round(final.peak_rss / 2**20, 1),
            "cpu_per_1000": round(final.cpu / count * 1000, 4),
            "samples": [[round(t, 2), round(c, 2), r, a] for t, c, r, a in samples],
        }
        self.results["backlog"].append(row)
        self.say(
            f"{transport}: backlog of {count:,} drained at {row['rate']:,.0f}/s, "
            f"peak RSS {row['peak_rss_mb']} MB, "
            f"{row['cpu_per_1000']:.3f} CPU-s/1000 (start-up included)"
        )


def steady_rate(summary: dict[str, Any], count: int, low: float = 0.1, high: float = 0.9) -> float:
    """Events/s between the moments 10 % and 90 % of ``count`` were accepted (stand-in timeline)."""
    timeline: list[list[float]] = summary.get("timeline") or []
    if not timeline:
        return 0.0
    slot = float(summary.get("slot_seconds", 0.05))
    done = 0.0
    t_low = t_high = None
    n_low = n_high = 0.0
    for start, accepted in timeline:
        done += accepted
        if t_low is None and done >= low * count:
            t_low, n_low = start + slot, done
        if done >= high * count:
            t_high, n_high = start + slot, done
            break
    if t_low is None or t_high is None or t_high <= t_low:
        first, last = summary.get("first") or 0.0, summary.get("last") or 0.0
        return count / max(float(last) - float(first), slot)
    return float(n_high - n_low) / (t_high - t_low)


def _mqtt_queue_limit() -> int:
    """Mosquitto's max_queued_messages (what one offline session can hold)."""
    conf = Path(os.environ.get("BROKERS_STATE", "/tmp/vision-events-brokers")) / "mqtt" / "mosquitto.conf"  # noqa: S108
    with contextlib.suppress(OSError, ValueError):
        for line in conf.read_text().splitlines():
            if line.startswith("max_queued_messages "):
                return int(line.split()[1])
    return 1000
