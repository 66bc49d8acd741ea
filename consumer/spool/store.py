"""The durable spool: one SQLite database in WAL mode, used from one dedicated thread.

Layout (schema version 1, ``PRAGMA user_version``)::

    events(seq INTEGER PRIMARY KEY, capture_ts, spooled_at, event_id, source, topic, received_at,
           doc TEXT, payload BLOB, output_key, input_key, size)
        index events_by_capture(capture_ts, seq, size)     -- the drain order, covering
    images(key TEXT PRIMARY KEY, data BLOB, refs)           -- each distinct image once, ref-counted

Bounds
    ``max_events`` counts rows; ``max_bytes`` counts the bytes of the file in use (its 16 KiB pages
    minus the free ones), so the bound is what the volume holds, whatever the rows' sizes. A write
    waits until the rows already there plus the writes in progress (estimated at their encoded size)
    leave room for it; an empty spool takes any one write.

Threads
    sqlite3 connections belong to the thread that made them, and every statement blocks; so one
    worker thread (``ThreadPoolExecutor(max_workers=1)``) owns the connection and runs every
    operation; the event loop awaits it. SQLite releases the GIL while it works.

Writes
    :meth:`SpoolStore.write` waits for room (the bounds, with what is already reserved by other
    writes), then queues the rows; one writer task commits everything queued in ONE transaction
    (group commit: under load the pipeline's concurrent batches share a commit, and with
    ``synchronous=FULL`` an fsync). It returns once committed; failures are retried with backoff
    until they succeed, so a caller (the pipeline, which acknowledges after) never sees a row as
    written that is not.

Failures
    Each failure is classified (``disk_full``, ``corrupt``, ``io_error``, ``locked``, ``error``),
    counted, logged once when it starts and once when it ends, and makes :attr:`SpoolStore.failing`
    true (readiness) until the same operation succeeds again. A corrupt file (SQLite says it is not
    a database or is malformed, or ``PRAGMA quick_check`` at open says so) is renamed
    ``<path>.corrupt-<UTC time>`` with its ``-wal``/``-shm`` files, never deleted, and a fresh
    spool is started; ``spool_quarantined_files_total`` counts it and an ERROR log names the file.

Generations
    Every (re)open starts a new generation. Rows claimed by the forwarder carry it: a delete for an
    older generation (the file was replaced meanwhile) deletes nothing, as its row numbers name
    other rows now.

A lock file (``<path>.lock``, ``flock``) keeps a second process off the same spool.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import functools
import logging
import os
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, TypeVar

import orjson

from consumer.config import SpoolConfig, SpoolSync
from consumer.errors import SpoolFailure
from consumer.metrics import Metrics
from consumer.spool.codec import NewRow, SpoolRow

log = logging.getLogger(__name__)

T = TypeVar("T")

SCHEMA_VERSION: Final = 1
# 16 KiB pages: typical rows (a message of 0.5-6 kB plus its event) pack several to a page with
# about 10 % overhead, where 4 KiB pages waste half a page on every row just over 2 kB.
PAGE_SIZE: Final = 16384
_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY,
    capture_ts REAL NOT NULL,
    spooled_at REAL NOT NULL,
    event_id TEXT NOT NULL,
    source TEXT NOT NULL,
    topic TEXT NOT NULL,
    received_at REAL NOT NULL,
    doc TEXT NOT NULL,
    payload BLOB NOT NULL,
    output_key TEXT,
    input_key TEXT,
    size INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_capture ON events(capture_ts, seq, size);
CREATE TABLE IF NOT EXISTS images (
    key TEXT PRIMARY KEY,
    data BLOB NOT NULL,
    refs INTEGER NOT NULL
);
"""
_INSERT_EVENT: Final = (
    "INSERT INTO events(capture_ts, spooled_at, event_id, source, topic, received_at, doc, payload,"
    " output_key, input_key, size) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_SELECT_ROWS: Final = (
    "SELECT seq, event_id, source, topic, received_at, doc, payload, output_key, input_key"
    " FROM events WHERE seq IN (SELECT value FROM json_each(?))"
)


def classify(exc: BaseException) -> str:
    """The failure cause of a sqlite3 or OS error."""
    name = str(getattr(exc, "sqlite_errorname", "") or "")
    text = str(exc).lower()
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "disk_full"
    if name.startswith("SQLITE_FULL") or "disk is full" in text:
        return "disk_full"
    if (
        name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB"))
        or "malformed" in text
        or "not a database" in text
    ):
        return "corrupt"
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "database is locked" in text:
        return "locked"
    if isinstance(exc, OSError) or name.startswith(
        ("SQLITE_IOERR", "SQLITE_CANTOPEN", "SQLITE_READONLY", "SQLITE_PERM")
    ):
        return "io_error"
    return "error"


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The spool's state after an operation, copied to the event loop."""

    generation: int
    events: int
    bytes: int
    oldest_spooled_at: float | None


@dataclass(frozen=True, slots=True)
class Opened:
    """What an open found: counts, and the path a corrupt file was moved to (if it was)."""

    events: int
    bytes: int
    quarantined: Path | None
    problem: str


@dataclass(slots=True)
class Claim:
    """Rows taken for delivery, oldest capture time first, with the bytes of their images."""

    generation: int
    rows: list[SpoolRow]
    images: dict[str, bytes]


def _json_list(values: Iterable[Any]) -> str:
    return orjson.dumps(list(values)).decode()


class _Database:
    """The connection and every statement; used from the spool thread only."""

    def __init__(self, path: Path, synchronous: SpoolSync, clock: Callable[[], float]) -> None:
        self.path = path
        self.synchronous = synchronous
        self.clock = clock
        self.conn: sqlite3.Connection | None = None
        self.lock_fd: int | None = None
        self.generation = 0
        self.events = 0
        self.bytes = 0
        self.quarantine_on_open = ""

    # -- opening ----------------------------------------------------------------------------------

    def ensure_open(self) -> Opened | None:
        if self.conn is not None:
            return None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock()
        problem = self.quarantine_on_open
        conn: sqlite3.Connection | None = None
        if not problem:
            conn, problem = self._try_connect()
        quarantined: Path | None = None
        if conn is None:
            quarantined = self._quarantine()
            self.quarantine_on_open = ""
            conn, again = self._try_connect()
            if conn is None:
                raise SpoolFailure("corrupt", f"even a fresh spool file is unusable: {again}")
        self.conn = conn
        self.generation += 1
        self.events, self.bytes = self._count()
        return Opened(self.events, self.bytes, quarantined, problem)

    def _lock(self) -> None:
        if self.lock_fd is not None:
            return
        lock_path = self.path.with_name(self.path.name + ".lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise SpoolFailure("locked", f"another process uses the spool (it holds {lock_path})") from None
        self.lock_fd = fd

    def _try_connect(self) -> tuple[sqlite3.Connection | None, str]:
        """A connection to a usable spool file, or None and why the file is corrupt."""
        conn = sqlite3.connect(self.path, isolation_level=None, timeout=5.0)
        try:
            conn.execute(f"PRAGMA page_size={PAGE_SIZE}")  # takes effect on a new file only
            problem = self._check(conn)
            if problem:
                conn.close()
                return None, problem
            self._prepare(conn)
        except BaseException:
            conn.close()
            raise
        return conn, ""

    @staticmethod
    def _check(conn: sqlite3.Connection) -> str:
        """Why the file is corrupt ("" when it is not): not a database, or ``PRAGMA quick_check``."""
        try:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            check = [row[0] for row in conn.execute("PRAGMA quick_check")]
        except sqlite3.DatabaseError as exc:
            if classify(exc) == "corrupt":
                return f"{type(exc).__name__}: {exc}"
            raise
        if check != ["ok"]:
            return "quick_check: " + "; ".join(str(c) for c in check[:5])
        if str(mode).lower() != "wal":
            raise SpoolFailure("io_error", f"the file system does not allow WAL mode (got {mode!r})")
        return ""

    def _prepare(self, conn: sqlite3.Connection) -> None:
        conn.execute(f"PRAGMA synchronous={self.synchronous.value.upper()}")
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise SpoolFailure(
                "error", f"the spool was written by a newer version (schema {version} > {SCHEMA_VERSION})"
            )
        if version < SCHEMA_VERSION:
            conn.executescript(f"BEGIN; {_SCHEMA} PRAGMA user_version={SCHEMA_VERSION}; COMMIT;")

    def _quarantine(self) -> Path:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        for suffix in ("", "-wal", "-shm"):
            source = Path(str(self.path) + suffix)
            if source.exists():
                os.replace(source, Path(str(target) + suffix))
        with contextlib.suppress(OSError):
            fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        return target

    def _count(self) -> tuple[int, int]:
        (events,) = self._conn().execute("SELECT count(*) FROM events").fetchone()
        return int(events), self._used_bytes()

    def _used_bytes(self) -> int:
        """Bytes of the file in use: its pages but the free ones (what the bound limits, honestly)."""
        conn = self._conn()
        pages = int(conn.execute("PRAGMA page_count").fetchone()[0])
        free = int(conn.execute("PRAGMA freelist_count").fetchone()[0])
        size = int(conn.execute("PRAGMA page_size").fetchone()[0])
        return (pages - free) * size

    def _conn(self) -> sqlite3.Connection:
        if self.conn is None:
            raise SpoolFailure("error", "the spool is not open")
        return self.conn

    # -- running operations ---------------------------------------------------------------------

    def run(
        self, operation: str, fn: Callable[..., T], args: tuple[Any, ...]
    ) -> tuple[T, Snapshot, Opened | None]:
        """Open if needed, run ``fn(*args)``, and report the state; storage errors become SpoolFailure."""
        try:
            opened = self.ensure_open()
            result = fn(*args)
            return result, self.snapshot(), opened
        except SpoolFailure:
            raise
        except (sqlite3.Error, OSError) as exc:
            cause = classify(exc)
            if cause in ("corrupt", "io_error"):
                if cause == "corrupt":
                    self.quarantine_on_open = f"{type(exc).__name__} during {operation}: {exc}"
                self.close_connection()
            raise SpoolFailure(cause, f"{operation}: {exc}") from exc

    def snapshot(self) -> Snapshot:
        oldest: float | None = None
        if self.conn is not None and self.events:
            row = self.conn.execute("SELECT spooled_at FROM events ORDER BY seq LIMIT 1").fetchone()
            oldest = None if row is None else float(row[0])
        return Snapshot(self.generation, self.events, self.bytes, oldest)

    def _rollback(self, conn: sqlite3.Connection) -> None:
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")

    # -- statements ---------------------------------------------------------------------------------

    def noop(self) -> None:
        """Nothing: ``run`` opens the file."""

    def insert(self, rows: list[NewRow], images: dict[str, bytes]) -> int:
        """Insert ``rows`` (their images once each) in one transaction; returns the rows inserted."""
        conn = self._conn()
        refs: Counter[str] = Counter()
        for row in rows:
            for key in (row.output_key, row.input_key):
                if key is not None:
                    refs[key] += 1
        now = self.clock()
        conn.execute("BEGIN IMMEDIATE")
        try:
            for key, count in refs.items():
                if (
                    conn.execute("UPDATE images SET refs = refs + ? WHERE key = ?", (count, key)).rowcount
                    == 0
                ):
                    conn.execute(
                        "INSERT INTO images(key, data, refs) VALUES (?, ?, ?)", (key, images[key], count)
                    )
            conn.executemany(
                _INSERT_EVENT,
                [
                    (
                        row.capture_ts,
                        now,
                        row.event_id,
                        row.source,
                        row.topic,
                        row.received_at,
                        row.doc,
                        row.payload,
                        row.output_key,
                        row.input_key,
                        row.size,
                    )
                    for row in rows
                ],
            )
            conn.execute("COMMIT")
        except BaseException:
            self._rollback(conn)
            raise
        self.events += len(rows)
        self.bytes = self._used_bytes()
        return len(rows)

    def claim(self, limit: int, max_bytes: int, exclude: frozenset[int]) -> Claim:
        """Up to ``limit`` rows (and about ``max_bytes``), oldest capture time first, not in ``exclude``."""
        conn = self._conn()
        chosen: list[int] = []
        total = 0
        scan = conn.execute(
            "SELECT seq, size FROM events ORDER BY capture_ts, seq LIMIT ?", (limit + len(exclude),)
        )
        for seq, size in scan:
            if seq in exclude:
                continue
            if chosen and total + size > max_bytes:
                break
            chosen.append(seq)
            total += size
            if len(chosen) >= limit:
                break
        scan.close()
        if not chosen:
            return Claim(self.generation, [], {})
        found = {
            row[0]: SpoolRow(*row) for row in conn.execute(_SELECT_ROWS, (_json_list(chosen),)).fetchall()
        }
        rows = [found[seq] for seq in chosen if seq in found]
        keys = {key for row in rows for key in (row.output_key, row.input_key) if key is not None}
        images: dict[str, bytes] = {}
        if keys:
            images = {
                str(key): bytes(data)
                for key, data in conn.execute(
                    "SELECT key, data FROM images WHERE key IN (SELECT value FROM json_each(?))",
                    (_json_list(sorted(keys)),),
                )
            }
        return Claim(self.generation, rows, images)

    def delete(self, generation: int, seqs: list[int]) -> int:
        """Delete rows (and images no row needs any more) in one transaction; returns rows deleted."""
        if generation != self.generation or not seqs:
            return 0
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            removed = conn.execute(
                "DELETE FROM events WHERE seq IN (SELECT value FROM json_each(?))"
                " RETURNING output_key, input_key",
                (_json_list(seqs),),
            ).fetchall()
            refs: Counter[str] = Counter()
            for output_key, input_key in removed:
                for key in (output_key, input_key):
                    if key is not None:
                        refs[key] += 1
            for key, count in refs.items():
                conn.execute("UPDATE images SET refs = refs - ? WHERE key = ?", (count, key))
                conn.execute("DELETE FROM images WHERE key = ? AND refs <= 0", (key,))
            conn.execute("COMMIT")
        except BaseException:
            self._rollback(conn)
            raise
        self.events -= len(removed)
        self.bytes = self._used_bytes()
        return len(removed)

    # -- closing ----------------------------------------------------------------------------------

    def close_connection(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    def close(self) -> None:
        """Checkpoint the WAL into the database file, close, release the lock."""
        if self.conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self.close_connection()
        if self.lock_fd is not None:
            os.close(self.lock_fd)
            self.lock_fd = None


@dataclass(slots=True)
class _PendingWrite:
    rows: list[NewRow]
    images: dict[str, bytes]
    size: int
    future: asyncio.Future[None] = field(repr=False)


class SpoolStore:
    """The spool as the event loop sees it: bounded writes, claims, deletes, state and metrics."""

    def __init__(
        self,
        config: SpoolConfig,
        metrics: Metrics,
        *,
        clock: Callable[[], float] = time.time,
        retry_initial_seconds: float = 0.2,
        retry_max_seconds: float = 5.0,
    ) -> None:
        self.config = config
        self.path = Path(config.path)
        self._metrics = metrics
        self._clock = clock
        self._retry_initial = retry_initial_seconds
        self._retry_max = retry_max_seconds
        self._db = _Database(self.path, config.synchronous, clock)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spool")
        self.generation = 0
        self.events = 0
        self.bytes = 0
        self._oldest: float | None = None
        self._reserved_events = 0
        self._reserved_bytes = 0
        self._waiting_for_room = 0
        self._room = asyncio.Condition()
        self._queue: list[_PendingWrite] = []
        self._writer: asyncio.Task[None] | None = None
        self._failures: dict[str, SpoolFailure] = {}
        self.changed = asyncio.Event()
        metrics.spool_capacity_events.set(config.max_events)
        metrics.spool_capacity_bytes.set(config.max_bytes)
        metrics.spool_oldest_age.set_function(self.oldest_age)

    # -- state ------------------------------------------------------------------------------------

    @property
    def failing(self) -> bool:
        """True while an operation keeps failing (readiness is then false)."""
        return bool(self._failures)

    def problems(self) -> list[str]:
        """Why the spool is failing, one line per failing operation (for /readyz)."""
        return [f"the spool cannot {op} ({f.cause}): {f}" for op, f in sorted(self._failures.items())]

    @property
    def full(self) -> bool:
        """True while a write waits for room."""
        return self._waiting_for_room > 0

    def oldest_age(self) -> float:
        """Seconds since the oldest event still in the spool was written to it (0 when empty)."""
        oldest = self._oldest
        return 0.0 if oldest is None else max(0.0, self._clock() - oldest)

    # -- running in the spool thread ------------------------------------------------------------

    async def _call(self, operation: str, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        try:
            result, snapshot, opened = await loop.run_in_executor(
                self._executor, functools.partial(self._db.run, operation, fn, args)
            )
        except SpoolFailure as failure:
            self._failed(operation, failure)
            raise
        self._metrics.spool_transaction.labels(operation).observe(time.perf_counter() - started)
        if opened is not None:
            self._opened(opened)
        freed = self._apply(snapshot)
        self._recovered(operation)
        if freed:
            await self._notify_room()
        return result

    def _apply(self, snapshot: Snapshot) -> bool:
        """Take the state the spool thread reported; True when room was freed."""
        freed = snapshot.events < self.events or snapshot.bytes < self.bytes
        self.generation = snapshot.generation
        self.events = snapshot.events
        self.bytes = snapshot.bytes
        self._oldest = snapshot.oldest_spooled_at
        self._metrics.spool_events.set(snapshot.events)
        self._metrics.spool_bytes.set(snapshot.bytes)
        return freed

    def _opened(self, opened: Opened) -> None:
        if opened.quarantined is not None:
            self._metrics.spool_quarantined.inc()
            log.error(
                "SPOOL FILE CORRUPT: moved it aside and started a fresh spool; the events in it were not "
                "sent. Keep the file and recover them (docs/spool.md)",
                extra={
                    "path": str(self.path),
                    "moved_to": str(opened.quarantined),
                    "problem": opened.problem,
                },
            )
        log.info(
            "spool open",
            extra={
                "path": str(self.path),
                "events": opened.events,
                "bytes": opened.bytes,
                "synchronous": self.config.synchronous.value,
            },
        )

    def _failed(self, operation: str, failure: SpoolFailure) -> None:
        self._metrics.spool_errors.labels(operation, failure.cause).inc()
        previous = self._failures.get(operation)
        self._failures[operation] = failure
        self._metrics.spool_failing.set(1)
        if previous is None or previous.cause != failure.cause:
            hint = {
                "disk_full": "free space on the volume or make it larger; nothing more is acknowledged",
                "locked": "another consumer process uses this spool path",
                "corrupt": "the file will be moved aside and a fresh spool started",
                "io_error": "the volume is not writable or failing",
            }.get(failure.cause, "retrying")
            log.error(
                "spool %s failing (%s): %s; %s",
                operation,
                failure.cause,
                failure,
                hint,
                extra={"path": str(self.path), "operation": operation, "cause": failure.cause},
            )

    def _recovered(self, operation: str) -> None:
        # Any success proves the file is open; the operation's own failure ends with its success.
        for done in {operation, "open"}:
            if self._failures.pop(done, None) is not None:
                log.warning("spool %s works again", done, extra={"path": str(self.path)})
        if not self._failures:
            self._metrics.spool_failing.set(0)

    async def _notify_room(self) -> None:
        async with self._room:
            self._room.notify_all()

    def _backoff(self, delay: float) -> float:
        return min(delay * 2, self._retry_max)

    # -- lifecycle --------------------------------------------------------------------------------

    async def open(self) -> bool:
        """Open (or create) the spool now; on failure it is retried by the next operation."""
        try:
            await self._call("open", self._db.noop)
        except SpoolFailure:
            return False
        return True

    async def close(self, timeout: float = 5.0) -> None:
        """Finish the queued writes (unless failing), checkpoint and close the file, stop the thread."""
        writer = self._writer
        if writer is not None and not writer.done():
            if self.failing:
                writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(writer, timeout)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._db.close)
        self._executor.shutdown(wait=True)
        self._metrics.spool_oldest_age.set_function(lambda: 0.0)

    # -- writing ----------------------------------------------------------------------------------

    def _fits(self, events: int, size: int) -> bool:
        held_events = self.events + self._reserved_events
        held_bytes = self.bytes + self._reserved_bytes
        if held_events == 0:
            return True  # an empty spool takes any one write, however large
        return held_events + events <= self.config.max_events and held_bytes + size <= self.config.max_bytes

    async def _reserve(self, events: int, size: int) -> None:
        if not self._fits(events, size):
            self._waiting_for_room += 1
            self._metrics.spool_full.set(1)
            if self._waiting_for_room == 1:
                log.warning(
                    "spool full: holding acknowledgements until the forwarder makes room",
                    extra={"events": self.events, "bytes": self.bytes},
                )
            try:
                async with self._room:
                    await self._room.wait_for(lambda: self._fits(events, size))
            finally:
                self._waiting_for_room -= 1
                if not self._waiting_for_room:
                    self._metrics.spool_full.set(0)
        self._reserved_events += events
        self._reserved_bytes += size

    async def write(self, rows: list[NewRow], images: dict[str, bytes]) -> None:
        """Commit ``rows`` (with the bytes of the images they name); returns once durable.

        Waits while the spool is full, retries failures; never returns before the commit. If the
        caller is cancelled meanwhile, the rows may still be committed (they are then delivered,
        and the unacknowledged message redelivered by the broker gives the same eventId).
        """
        if not rows:
            return
        keys = {key for row in rows for key in (row.output_key, row.input_key) if key is not None}
        size = sum(row.size for row in rows) + sum(len(images[key]) for key in keys)
        await self._reserve(len(rows), size)
        pending = _PendingWrite(rows, images, size, asyncio.get_running_loop().create_future())
        # If the caller is cancelled meanwhile, nobody else reads the outcome.
        pending.future.add_done_callback(lambda done: done.cancelled() or done.exception())
        self._queue.append(pending)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._write_queued())
        await asyncio.shield(pending.future)

    async def _write_queued(self) -> None:
        """Commit everything queued, one transaction per round (the group commit)."""
        while self._queue:
            group, self._queue = self._queue, []
            outcome = await self._commit(group)
            self._reserved_events -= sum(len(pending.rows) for pending in group)
            self._reserved_bytes -= sum(pending.size for pending in group)
            for pending in group:
                if not pending.future.done():
                    if outcome is None:
                        pending.future.set_result(None)
                    elif isinstance(outcome, asyncio.CancelledError):
                        pending.future.cancel()
                    else:
                        pending.future.set_exception(outcome)
            await self._notify_room()
            if isinstance(outcome, asyncio.CancelledError):
                for pending in self._queue:
                    pending.future.cancel()
                raise outcome
            if outcome is None:
                self._metrics.spool_spooled.inc(sum(len(pending.rows) for pending in group))
                self.changed.set()

    async def _commit(self, group: list[_PendingWrite]) -> BaseException | None:
        """Insert the group's rows, retrying storage failures; what ended it if not the commit."""
        rows = [row for pending in group for row in pending.rows]
        images: dict[str, bytes] = {}
        for pending in group:
            images.update(pending.images)
        delay = self._retry_initial
        try:
            while True:
                try:
                    await self._call("write", self._db.insert, rows, images)
                except SpoolFailure:
                    await asyncio.sleep(delay)
                    delay = self._backoff(delay)
                else:
                    return None
        except asyncio.CancelledError as exc:  # closing while failing: the callers were cancelled
            return exc
        except Exception as exc:  # a bug: the callers see it (the pipeline retries the batch)
            log.exception("writing to the spool failed unexpectedly")
            return exc

    # -- draining ---------------------------------------------------------------------------------

    async def claim(self, max_events: int, max_bytes: int, exclude: frozenset[int]) -> Claim:
        """The oldest rows by capture time not in ``exclude``. Raises SpoolFailure."""
        return await self._call("claim", self._db.claim, max_events, max_bytes, exclude)

    async def delete(self, generation: int, seqs: list[int]) -> int:
        """Delete claimed rows, retrying failures until done; returns how many were deleted."""
        delay = self._retry_initial
        while True:
            try:
                return await self._call("delete", self._db.delete, generation, seqs)
            except SpoolFailure:
                await asyncio.sleep(delay)
                delay = self._backoff(delay)
