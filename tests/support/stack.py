"""The end-to-end stack: consumer processes, a real broker (a transport) and the API stand-in over sockets."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from consumer.deadletter import DeadLetterRecord, read_dead_letters
from consumer.fakeapi import FakeVisionEventsApi
from tests.support.corpus import USE_CASES, CorpusMessage, build_corpus
from tests.support.process import ConsumerProcess, free_port, wait_until, write_settings
from tests.support.transports import Transport

API_KEY = "e2e-key"


@dataclass(kw_only=True)
class Stack:
    """A transport, the API stand-in and a way to start consumer processes against them.

    ``spool``: every consumer stores and forwards through one spool file under ``tmp``, so a
    restarted consumer finds what the previous one left. ``dead_letter_file``: dead letters go to one
    JSONL file (``dead_path``) instead of the transport's dead-letter topic.
    """

    transport: Transport
    api: FakeVisionEventsApi
    tmp: Path
    routes: Path
    drain_deadline: float
    spool: bool = False
    dead_letter_file: bool = False
    retry_max_seconds: float = 1.0
    started: list[ConsumerProcess] = field(default_factory=list)

    @property
    def dead_path(self) -> Path:
        """The JSONL dead-letter file, when ``dead_letter_file``."""
        return self.tmp / "dead-letters.jsonl"

    def consumer(self, name: str, **overrides: Any) -> ConsumerProcess:
        """A consumer process, not started yet; ``overrides`` are dotted settings (``batch.max_events``).

        The same ``name`` is the same replica: same client id, same settings and log file.
        """
        port = free_port()
        prefix = self.transport.topics.prefix
        settings: dict[str, Any] = {
            "routes": str(self.routes),
            **self.transport.source_settings(client_id=f"{prefix}-{name}", group=f"{prefix}-group"),
            "sink": {"type": "cloud", "cloud": {"base_url": self.api.url, "api_key": API_KEY}},
            "batch": {"linger_ms": 50, "max_in_flight_events": 4000},
            "retry": {"initial_backoff_seconds": 0.05, "max_backoff_seconds": self.retry_max_seconds},
            "http": {"host": "127.0.0.1", "port": port},
            "shutdown_deadline_seconds": self.drain_deadline,
            "log": {"level": "INFO"},
        }
        if self.dead_letter_file:
            settings["dead_letter"] = {"type": "jsonl", "jsonl": {"path": str(self.dead_path)}}
        if self.spool:
            settings["spool"] = {"enabled": True, "path": str(self.tmp / "spool" / "spool.db")}
        for dotted, value in overrides.items():
            tree = settings
            *parents, last = dotted.split(".")
            for key in parents:
                tree = tree.setdefault(key, {})
            tree[last] = value
        config = write_settings(self.tmp / f"{name}.yaml", settings)
        process = ConsumerProcess(config, port, self.tmp / f"{name}.log")
        self.started.append(process)
        return process

    def corpus(self, count: int, seed: int) -> list[CorpusMessage]:
        """``count`` mixed messages on this transport's topics."""
        return build_corpus(count, seed=seed, topics=self.transport.topics)

    def api_down(self) -> None:
        """Make the stand-in answer 503 to every Vision Events request until its faults are cleared."""
        self.api.add_fault("/vision-events", statuses=(503,), fail_ratio=1.0, times=None)

    def dead_letters(self) -> list[DeadLetterRecord]:
        """Every dead letter written so far, wherever the consumers write them."""
        if not self.dead_letter_file:
            return self.transport.dead_letters()
        if not self.dead_path.exists():
            return []
        return list(read_dead_letters(self.dead_path))

    def logs(self) -> str:
        """The end of every started consumer's log, for failure messages."""
        return "\n---\n".join(p.log_tail(20) for p in self.started)

    def wait_for_everything(self, corpus: list[CorpusMessage], timeout: float = 120) -> None:
        """Wait until every valid message arrived as an event and every invalid one is dead-lettered."""
        valid = {m.event_id for m in corpus if m.event_type is not None}
        # Distinct (bytes, reason): after a restart a dead letter may legitimately come twice.
        invalid = {(m.payload, m.reason) for m in corpus if m.reason is not None}

        def dead() -> set[tuple[bytes, str | None]]:
            return {(r.payload, r.reason) for r in self.dead_letters()}

        def done() -> bool:
            return valid <= self.api.events().keys() and invalid <= dead()

        try:
            # Every poll copies the stand-in's events and reads every dead letter back (a whole
            # Kafka topic): poll gently, as tens of thousands of events may be under way.
            wait_until(done, timeout, "every event delivered and every invalid message dead-lettered", 0.5)
        except AssertionError:
            missing = len(valid - self.api.events().keys())
            missing_dead = len(invalid - dead())
            summary = f"{missing} events and {missing_dead} dead letters missing"
            raise AssertionError(f"{summary}\n{self.logs()}") from None

    def check_outcome(self, corpus: list[CorpusMessage], *, exactly_once_dead_letters: bool = False) -> None:
        """Every valid message arrived with its type and nothing else arrived; every invalid one is dead.

        Without ``exactly_once_dead_letters`` a dead letter may have been written more than once
        (after a SIGKILL, or a restart that reads a message again); none may be missing.
        """
        valid = {m.event_id: m.event_type for m in corpus if m.event_type is not None}
        # A duplicate event can only ever be the same eventId written again.
        assert {eid: body["eventType"] for eid, body in self.api.events().items()} == valid
        expected_dead = sorted((m.payload, m.reason) for m in corpus if m.reason is not None)
        got_dead = [(r.payload, r.reason) for r in self.dead_letters()]
        if exactly_once_dead_letters:
            assert sorted(got_dead) == expected_dead
        else:
            assert sorted(set(got_dead)) == sorted(set(expected_dead))


@contextmanager
def open_stack(
    transport: Transport,
    tmp: Path,
    *,
    drain_deadline: float,
    spool: bool = False,
    dead_letter_file: bool = False,
    retry_max_seconds: float = 1.0,
) -> Iterator[Stack]:
    """A :class:`Stack` on ``transport`` with a started stand-in; on exit every process is killed,
    the stand-in (whichever one ``stack.api`` is by then) stopped and the transport closed.
    """
    try:
        routes = tmp / "routes.yaml"
        routes.write_text(transport.topics.routes_yaml())
        api = FakeVisionEventsApi(api_keys=(API_KEY,), use_cases=USE_CASES).start()
        stack = Stack(
            transport=transport,
            api=api,
            tmp=tmp,
            routes=routes,
            drain_deadline=drain_deadline,
            spool=spool,
            dead_letter_file=dead_letter_file,
            retry_max_seconds=retry_max_seconds,
        )
        try:
            yield stack
        finally:
            for process in stack.started:
                process.stop_quietly()
            stack.api.stop()
    finally:
        transport.close()
